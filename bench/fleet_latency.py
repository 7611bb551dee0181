#!/usr/bin/env python3
"""Fleet latency: file -> `logtail ship` -> Redis -> `logtail serve` -> client, against the
same server streaming a local file, side by side in one run (issue 15, "Many hosts").

Each repetition starts its own redis-server (no persistence) on a free loopback port, one
shipper (`[ship] host = "bench"`, one file `app`) and one server (`[fleet] enabled`, plus a
local file `local`), in a temp dir removed at the end. Then:

  rest        shipper CPU over --rest-s with nothing written (also redis-server's, the
              server's), after the shipper's first entry is listed and a short settle
  rate R      two `load_client.py stream` clients, one on `bench:app`, one on `local`
              (n=0, every sequence number checked, latency of every line recorded); two
              `writer.py` processes then write the same numbered lines, R lines/s each,
              to the shipped and the local file at the same time. CPU of the shipper,
              redis-server and the server over the writing window; the lines Redis holds
              are counted and the shipper's own share of the latency (the entry's `t`,
              Unix ms, minus the line's stamp) is read from them
  rest-after  the shipper at rest again, once the rates are done

Both paths run at the same time on the same cores, so the local stream is a baseline taken
under the same conditions, not on an idle machine. Raw results go to
bench/out/fleet_latency[-TAG].json, each repetition's process logs to
bench/out/fleet[-TAG]-repN/; the summary (medians, [min-max] over repetitions) is printed
and written next to the JSON as .md.

    .venv/bin/python bench/fleet_latency.py [--reps 3] [--rates 100,1000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))
from common import (  # noqa: E402
    HOUSEKEEPING_IP,
    CpuMark,
    LogtailServer,
    MachineMark,
    Quiet,
    free_port,
    tree,
)

PY = sys.executable
HOST = "bench"
FILE = "app"
SHIPPED = f"{HOST}:{FILE}"
KEY = f"logtail:{HOST}:{FILE}"
LOCAL = "local"


def say(msg: str) -> None:
    print(f"[fleet {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- processes -----------------------------------------------------------------------------------

class Procs:
    """Every process a repetition starts, stopped in reverse order (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = []

    def add(self, proc: subprocess.Popen) -> subprocess.Popen:  # type: ignore[type-arg]
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()


def start_redis(tmp: Path, procs: Procs) -> tuple[subprocess.Popen[bytes], redis.Redis]:
    port = free_port()
    with open(tmp / "redis.log", "wb") as out:
        proc = procs.add(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp)], stdout=out, stderr=subprocess.STDOUT))
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    deadline = time.monotonic() + 15
    while True:
        try:
            r.ping()
            return proc, r
        except redis.exceptions.ConnectionError as e:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not start: {tail(tmp / 'redis.log')}") from e
            time.sleep(0.05)


def start_shipper(tmp: Path, url: str, procs: Procs) -> subprocess.Popen[bytes]:
    conf = tmp / "ship.toml"
    conf.write_text(f'[redis]\nurl = "{url}"\n\n[ship]\nhost = "{HOST}"\n\n'
                    f'[[files]]\nname = "{FILE}"\npath = "app.log"\n')
    with open(tmp / "ship.log", "wb") as out:
        return procs.add(subprocess.Popen(
            [PY, "-m", "logtail", "ship", "-c", str(conf)], cwd=ROOT, env=child_env(),
            stdout=out, stderr=subprocess.STDOUT))


def start_server(tmp: Path, url: str, procs: Procs) -> LogtailServer:
    """The server, registered for cleanup before it is waited for."""
    conf = tmp / "serve.toml"
    conf.write_text(
        '[server]\nhost = "127.0.0.1"\nworkers = 1\naccess_log = "off"\n\n'
        f'[redis]\nurl = "{url}"\n\n[fleet]\nenabled = true\nlist_s = 0.5\n\n'
        "[stream]\nmax_backlog_lines = 10000\n\n"
        '[limits]\nstreams_per_ip = 100000\nmax_streams = 100000\n'
        'requests_per_ip = "1000000/minute"\n\n'
        f'[[files]]\nname = "{LOCAL}"\npath = "local.log"\n')
    log = tmp / "serve.log"
    port = free_port()
    with open(log, "wb") as out:
        proc = procs.add(subprocess.Popen(
            [PY, "-m", "logtail", "serve", "-c", str(conf), "--port", str(port)],
            cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT))
    server = LogtailServer(proc, f"http://127.0.0.1:{port}", port, log)
    server.wait_ready()
    return server


def child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def tail(path: Path, n: int = 1500) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-n:]
    return ""


def wait_listed(server: LogtailServer, name: str, timeout: float = 30.0) -> float:
    """Seconds until `/api/files` lists `name` (the shipper's first entry, then a list)."""
    t0 = time.monotonic()
    transport = httpx.HTTPTransport(local_address=HOUSEKEEPING_IP)
    with httpx.Client(transport=transport, timeout=5, trust_env=False) as client:
        while time.monotonic() - t0 < timeout:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited: {tail(server.log)}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                files = client.get(server.base + "/api/files").json().get("files", [])
                if any(f.get("name") == name for f in files):
                    return time.monotonic() - t0
            time.sleep(0.1)
    raise TimeoutError(f"/api/files did not list {name} within {timeout:.0f} s")


class LoadClient:
    """A `load_client.py` process speaking READY/RESULT on stdout."""

    def __init__(self, cmd: list[str], err: Path, procs: Procs) -> None:
        self.err_path = err
        with open(err, "wb") as errf:
            self.p = procs.add(subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, stderr=errf,
                                                text=True, cwd=ROOT))
        self.q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def wait(self, prefix: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            if line.startswith(prefix + " "):
                return json.loads(line[len(prefix) + 1 :])
        return None

    def result(self, timeout: float) -> dict:
        res = self.wait("RESULT", timeout)
        # closing stdin makes a client that is still waiting report what it has
        with contextlib.suppress(OSError, ValueError):
            assert self.p.stdin is not None
            self.p.stdin.close()
        if res is None:
            res = self.wait("RESULT", 20)
        if res is None:
            raise RuntimeError(f"client gave no result: {tail(self.err_path)}")
        return res


# -- measuring -----------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q / 100))] if s else float("nan")


def lat_stats(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50": pct(ms, 50), "p99": pct(ms, 99), "p99.9": pct(ms, 99.9),
            "max": max(ms, default=float("nan")),
            "over_100ms": sum(1 for v in ms if v > 100)}


def cpu_pct(mark: CpuMark) -> float:
    cpu, wall = mark.stop()
    return 100 * cpu / wall if wall > 0 else float("nan")


def redis_tail(r: redis.Redis) -> str:
    """The id of the stream's last entry ("0-0" when none)."""
    last = r.xrevrange(KEY, count=1)
    return last[0][0].decode() if last else "0-0"


def shipped_since(r: redis.Redis, after: str, mono_offset_ns: int) -> dict[str, object]:
    """What the shipper put in Redis after entry `after`: entries, lines, notices, and each
    line's wait in the shipper (the entry's `t`, taken just before its write, minus the
    line's CLOCK_MONOTONIC stamp moved to Unix time)."""
    entries, lines, seqs = 0, 0, []
    notices: dict[str, int] = {}
    wait_ms: list[float] = []
    start = f"({after}"
    while True:
        got = r.xrange(KEY, min=start, max="+", count=1000)
        if not got:
            break
        for entry_id, fields in got:
            start = f"({entry_id.decode()}"
            entries += 1
            if b"lines" not in fields:
                name = fields.get(b"notice", b"?").decode()
                notices[name] = notices.get(name, 0) + 1
                continue
            t_ns = int(fields[b"t"]) * 1_000_000
            for line in fields[b"lines"].split(b"\n"):
                lines += 1
                seqs.append(int(line[:10]))
                wait_ms.append((t_ns - (int(line[11:30]) + mono_offset_ns)) / 1e6)
    in_order = all(b == a + 1 for a, b in itertools.pairwise(seqs))
    return {"entries": entries, "lines": lines, "notices": notices,
            "first_seq": seqs[0] if seqs else None, "in_order": in_order,
            "ship_wait_ms": lat_stats(wait_ms) if wait_ms else {}}


def busy_now(quiet: Quiet, max_s: float) -> float:
    return round(quiet.wait(max_s), 2)


@dataclass
class Rep:
    uptime: str = ""
    listed_s: float = 0.0
    rest: dict[str, float] = field(default_factory=dict)
    rest_after: dict[str, float] = field(default_factory=dict)
    rates: dict[str, dict[str, object]] = field(default_factory=dict)
    error: str = ""


def rest_phase(pids: dict[str, list[int]], seconds: float, quiet: Quiet,
               quiet_max_s: float) -> dict[str, float]:
    busy = busy_now(quiet, quiet_max_s)
    marks = {k: CpuMark.start(v) for k, v in pids.items()}
    machine = MachineMark()
    time.sleep(seconds)
    out = {f"{k}_cpu_pct": round(cpu_pct(m), 3) for k, m in marks.items()}
    out["machine_busy_cores"] = round(machine.stop(), 2)
    out["busy_before"] = busy
    return out


def rate_phase(tmp: Path, server: LogtailServer, r: redis.Redis, pids: dict[str, list[int]],
               rate: int, seconds: float, first: int, quiet: Quiet, quiet_max_s: float,
               mono_offset_ns: int, procs: Procs) -> dict[str, object]:
    count = int(rate * seconds)
    timeout = seconds + 60
    clients: dict[str, LoadClient] = {}
    lat_files = {}
    for which, name in (("fleet", SHIPPED), ("local", LOCAL)):
        lat_files[which] = tmp / f"lat-{which}-{rate}.bin"
        cmd = [PY, str(BENCH / "load_client.py"), "stream", "--port", str(server.port),
               "--path", f"/api/files/{name}/stream?n=0", "--expect", str(count),
               "--first", str(first), "--latency", "--out", str(lat_files[which]),
               "--timeout", str(timeout)]
        clients[which] = LoadClient(cmd, tmp / f"client-{which}-{rate}.err", procs)
    for which, c in clients.items():
        ready = c.wait("READY", 30)
        if ready is None or ready.get("conns") != 1:
            raise RuntimeError(f"{which} client not ready ({ready}): {tail(c.err_path)}")
    before = redis_tail(r)
    busy = busy_now(quiet, quiet_max_s)
    marks = {k: CpuMark.start(v) for k, v in pids.items()}
    machine = MachineMark()
    writers = {
        which: procs.add(subprocess.Popen(
            [PY, str(BENCH / "writer.py"), str(tmp / fname), "--count", str(count),
             "--rate", str(rate), "--first", str(first)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT))
        for which, fname in (("fleet", "app.log"), ("local", "local.log"))}
    written: dict[str, dict] = {}
    for which, w in writers.items():
        out, _ = w.communicate(timeout=seconds * 3 + 30)
        if w.returncode != 0:
            raise RuntimeError(f"writer {which} failed: {out[-500:]}")
        written[which] = json.loads(out.strip().splitlines()[-1])
    cpu = {f"{k}_cpu_pct": round(cpu_pct(m), 2) for k, m in marks.items()}
    busy_during = round(machine.stop(), 2)
    res: dict[str, object] = {"rate": rate, "count": count, "first": first,
                              "busy_before": busy, "machine_busy_cores": busy_during, **cpu,
                              "writer_s": {k: round((v["end_ns"] - v["start_ns"]) / 1e9, 2)
                                           for k, v in written.items()}}
    for which, c in clients.items():
        got = c.result(timeout)
        raw = array("d")
        with contextlib.suppress(OSError, EOFError), open(lat_files[which], "rb") as f:
            raw.frombytes(f.read())
        ms = [v / 1e6 for v in raw]
        res[which] = {
            "received": got.get("counts_sum"), "short": got.get("n_short"),
            "errors": got.get("errors"), "failed": got.get("failed"),
            "lost_conns": got.get("lost_conns"), "firsts_bad": got.get("firsts_bad"),
            "lat_ms": lat_stats(ms),
            "slowest_s": worst_second(ms, rate),
        }
    res["redis"] = shipped_since(r, before, mono_offset_ns)
    return res


def worst_second(ms: list[float], rate: int) -> dict[str, float]:
    """The second (by line order) with the highest p99: where a stall would show."""
    if not ms:
        return {}
    best = (-1.0, 0)
    for i in range(0, len(ms), rate):
        p = pct(ms[i : i + rate], 99)
        if p > best[0]:
            best = (p, i // rate)
    return {"second": best[1], "p99": best[0]}


def one_rep(idx: int, args: argparse.Namespace, quiet: Quiet) -> Rep:
    rep = Rep()
    rep.uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    say(f"rep {idx + 1}/{args.reps}: {rep.uptime}")
    procs = Procs()
    keep = OUT / f"fleet{'-' + args.tag if args.tag else ''}-rep{idx + 1}"
    with tempfile.TemporaryDirectory(prefix="logtail-fleet-") as tmpname:
        tmp = Path(tmpname)
        (tmp / "app.log").touch()
        (tmp / "local.log").touch()
        try:
            rproc, r = start_redis(tmp, procs)
            url = f"redis://127.0.0.1:{r.connection_pool.connection_kwargs['port']}/0"
            ship = start_shipper(tmp, url, procs)
            server = start_server(tmp, url, procs)
            rep.listed_s = round(wait_listed(server, SHIPPED), 2)
            if ship.poll() is not None:
                raise RuntimeError(f"shipper exited: {tail(tmp / 'ship.log')}")
            time.sleep(2)  # startup work (imports, first list, first entry) is not rest
            pids = {"ship": tree(ship.pid), "redis": [rproc.pid],
                    "server": tree(server.proc.pid)}
            rep.rest = rest_phase(pids, args.rest_s, quiet, args.quiet_max_s)
            say(f"  rest: shipper {rep.rest['ship_cpu_pct']:.2f} % of a core")
            mono_offset_ns = time.time_ns() - time.monotonic_ns()
            first = 0
            for rate in args.rates:
                res = rate_phase(tmp, server, r, pids, rate, args.seconds, first, quiet,
                                 args.quiet_max_s, mono_offset_ns, procs)
                rep.rates[str(rate)] = res
                first += int(rate * args.seconds)
                f, loc = res["fleet"], res["local"]
                say(f"  {rate}/s: fleet p50 {f['lat_ms']['p50']:.1f} p99 "  # type: ignore[index]
                    f"{f['lat_ms']['p99']:.1f} ms ({f['received']} lines), local p50 "  # type: ignore[index]
                    f"{loc['lat_ms']['p50']:.1f} p99 {loc['lat_ms']['p99']:.1f} ms "  # type: ignore[index]
                    f"({loc['received']}); shipper {res['ship_cpu_pct']:.1f} %")  # type: ignore[index]
            rep.rest_after = rest_phase(pids, args.rest_s, quiet, args.quiet_max_s)
            say(f"  rest after: shipper {rep.rest_after['ship_cpu_pct']:.2f} %")
        except Exception as e:  # reported in the results, never hidden
            rep.error = f"{type(e).__name__}: {e}"
            say(f"  FAILED: {rep.error}")
        finally:
            procs.stop_all()
            keep.mkdir(parents=True, exist_ok=True)
            for name in ("ship.log", "serve.log", "redis.log"):
                with contextlib.suppress(OSError):
                    (keep / name).write_bytes((tmp / name).read_bytes())
            for err in tmp.glob("client-*.err"):
                with contextlib.suppress(OSError):
                    (keep / err.name).write_bytes(err.read_bytes())
    return rep


# -- report --------------------------------------------------------------------------------------

def med(values: list[float], digits: int = 1) -> str:
    vals = [v for v in values if v == v]
    if not vals:
        return "n/a"
    fmt = f"{{:.{digits}f}}"
    return f"{fmt.format(statistics.median(vals))} [{fmt.format(min(vals))}–" \
           f"{fmt.format(max(vals))}]"


def clean(res: dict, which: str) -> bool:
    side = res[which]
    return not (side["short"] or side["errors"] or side["failed"] or side["lost_conns"]
                or side["firsts_bad"])


def report(reps: list[Rep], args: argparse.Namespace) -> str:
    ok = [r for r in reps if not r.error]
    lines = [f"{len(ok)} of {len(reps)} repetitions completed; medians [min–max] over them.",
             ""]
    lines += ["| rate | path | p50 ms | p99 ms | max ms | lines > 100 ms | lines "
              "received / written | clean runs |", "|---|---|---|---|---|---|---|---|"]
    for rate in args.rates:
        runs = [r.rates[str(rate)] for r in ok if str(rate) in r.rates]
        for which, label in (("fleet", "shipped (file → ship → Redis → serve)"),
                             ("local", "local file (baseline)")):
            lat = [x[which]["lat_ms"] for x in runs]
            recv = sum(x[which]["received"] or 0 for x in runs)
            want = sum(x["count"] for x in runs)
            lines.append(
                f"| {rate}/s | {label} | {med([v['p50'] for v in lat])} | "
                f"{med([v['p99'] for v in lat])} | {med([v['max'] for v in lat], 0)} | "
                f"{med([v['over_100ms'] for v in lat], 0)} | {recv} / {want} | "
                f"{sum(clean(x, which) for x in runs)} of {len(runs)} |")
    lines += ["", "Shipper's share of the shipped latency (entry `t`, ms resolution, minus "
              "the line's stamp), and what Redis holds:", "",
              "| rate | p50 ms | p99 ms | lines per entry | lines in Redis / written | in order, "
              "no notice |", "|---|---|---|---|---|---|"]
    for rate in args.rates:
        runs = [r.rates[str(rate)] for r in ok if str(rate) in r.rates]
        rd = [x["redis"] for x in runs]
        waits = [d["ship_wait_ms"] for d in rd]
        per_entry = [d["lines"] / d["entries"] if d["entries"] else float("nan") for d in rd]
        lines.append(f"| {rate}/s | {med([w.get('p50', float('nan')) for w in waits])} | "
                     f"{med([w.get('p99', float('nan')) for w in waits])} | "
                     f"{med(per_entry)} | {sum(d['lines'] for d in rd)} / "
                     f"{sum(x['count'] for x in runs)} | "
                     f"{sum(bool(d['in_order'] and not d['notices']) for d in rd)} of "
                     f"{len(rd)} |")
    lines += ["", "CPU, % of one core (from /proc/PID/stat utime+stime):", "",
              "| phase | shipper | redis-server | server | machine busy cores (all users) |",
              "|---|---|---|---|---|"]
    for label, phase in ((f"rest ({args.rest_s:g} s, nothing written)", "rest"),
                         (f"rest after the rates ({args.rest_s:g} s)", "rest_after")):
        vals = [getattr(r, phase) for r in ok]
        lines.append(f"| {label} | {med([v['ship_cpu_pct'] for v in vals], 2)} | "
                     f"{med([v['redis_cpu_pct'] for v in vals], 2)} | "
                     f"{med([v['server_cpu_pct'] for v in vals], 2)} | "
                     f"{med([v['machine_busy_cores'] for v in vals], 2)} |")
    for rate in args.rates:
        runs = [r.rates[str(rate)] for r in ok if str(rate) in r.rates]
        lines.append(f"| {rate} lines/s to each file (server: both streams) | "
                     f"{med([x['ship_cpu_pct'] for x in runs])} | "
                     f"{med([x['redis_cpu_pct'] for x in runs])} | "
                     f"{med([x['server_cpu_pct'] for x in runs])} | "
                     f"{med([x['machine_busy_cores'] for x in runs], 2)} |")
    lines += ["", "Load before each repetition (`uptime`):", ""]
    lines += [f"- {i + 1}: `{r.uptime}`" + (f" — FAILED: {r.error}" if r.error else "")
              for i, r in enumerate(reps)]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rates", default="100,1000", help="lines/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=30.0, help="writing time per rate")
    ap.add_argument("--rest-s", type=float, default=20.0)
    ap.add_argument("--quiet-max-s", type=float, default=15.0,
                    help="wait at most this long per phase for the machine to be quiet")
    ap.add_argument("--quiet-budget-s", type=float, default=300.0)
    ap.add_argument("--tag", default="", help="suffix of the output files (keeps others)")
    ap.add_argument("--quick", action="store_true", help="1 rep, 5 s phases (a smoke run)")
    args = ap.parse_args()
    args.rates = [int(x) for x in args.rates.split(",") if x]
    if args.quick:
        args.reps, args.seconds, args.rest_s = 1, 5.0, 5.0
    OUT.mkdir(parents=True, exist_ok=True)
    quiet = Quiet(threshold=0.3, budget_s=args.quiet_budget_s)
    reps = [one_rep(i, args, quiet) for i in range(args.reps)]
    text = report(reps, args)
    raw = {"args": vars(args), "cpus": os.cpu_count(), "quiet_waited_s": quiet.waited,
           "reps": [r.__dict__ for r in reps]}
    suffix = f"-{args.tag}" if args.tag else ""
    (OUT / f"fleet_latency{suffix}.json").write_text(json.dumps(raw, indent=1))
    (OUT / f"fleet_latency{suffix}.md").write_text(text)
    print(text)
    return 1 if any(r.error for r in reps) else 0


if __name__ == "__main__":
    sys.exit(main())
