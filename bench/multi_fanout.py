#!/usr/bin/env python3
"""Fan-out of several files: one multi-file stream per client against one stream per file.

    python bench/multi_fanout.py --reps 5          # 200 clients x 4 files, 100 lines/s each

A dashboard that follows 4 files can open `/api/stream?file=a&...&file=d` (one
connection) or 4 single-file streams. Both deliver the same lines; this measures what
each costs the server and how fast the lines arrive. Per run: a fresh server and fresh
files, one client process (bench/load_client.py mode `files`, uvloop) holding every
stream, one paced writer (bench/writer.py) per file; after a warm-up, the measured window
gives the server's CPU and RSS and the clients' append-to-client latency. Every line of
every (client, file) is checked by sequence number: none missing, none repeated, in order.

The two modes run alternately, so drift in the machine's load hits both alike. Every run
is bounded in time; servers, clients and writers are stopped in `finally`. Raw results go
to bench/out/multi_fanout.json, a Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import (  # noqa: E402
    CLK_TCK,
    CpuMark,
    LogtailServer,
    Quiet,
    cpu_fields,
    hwm_kb,
    raise_nofile,
    rss_kb,
    tree,
)
from run import WORK as RUN_WORK  # noqa: E402
from run import Client  # noqa: E402  (a load-client process: READY/RESULT on stdout)

OUT = BENCH / "out"
WORK = OUT / "multi"
PY = sys.executable
MODES = {"multi": "1 multi-file stream per client", "single": "1 stream per file per client"}


def say(msg: str) -> None:
    print(f"[multi {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _proc_ticks() -> dict[int, tuple[str, int]]:
    """Every process's (name, utime+stime ticks)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(entry)] = (raw[raw.index("(") + 1 : raw.rindex(")")],
                           int(fields[11]) + int(fields[12]))
    return out


class Machine:
    """Where the machine's CPU went in a window: our processes, other processes (by
    name), interrupts (loopback traffic is mostly softirq, charged to no process) and
    steal (the hypervisor): "others" alone would mix all of these."""

    def __init__(self) -> None:
        self.procs, self.fields, self.t = _proc_ticks(), cpu_fields(), time.monotonic()

    def stop(self, ours: set[int]) -> dict[str, object]:
        procs, fields = _proc_ticks(), cpu_fields()
        wall = time.monotonic() - self.t
        d = [b - a for a, b in zip(self.fields, fields, strict=False)]

        def cores(ticks: float) -> float:
            return ticks / CLK_TCK / wall

        others: dict[str, float] = {}
        for pid, (name, ticks) in procs.items():
            if pid in ours:
                continue
            used = ticks - self.procs.get(pid, (name, 0))[1]  # a new process: all of it
            if used > 0:
                others[name] = others.get(name, 0.0) + cores(used)
        top = sorted(others.items(), key=lambda kv: -kv[1])[:4]
        return {"busy_cores": cores(sum(d[:8]) - d[3] - d[4]),
                "irq_cores": cores(d[5] + d[6]), "steal_cores": cores(d[7]),
                "other_procs_cores": sum(others.values()),
                "other_top": {k: round(v, 3) for k, v in top}}


def runq_wait_s(pids: list[int]) -> float:
    """Seconds the threads of `pids` spent runnable but waiting for a CPU (schedstat):
    how much of a latency is the machine's contention rather than the process's work."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, IndexError, ValueError):
                    total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text()
                                 .split()[1])
    return total / 1e9


def config(files: dict[str, Path], tag: str) -> Path:
    """Limits raised so that 800 streams from one address are all admitted."""
    conf = WORK / f"{tag}.toml"
    conf.write_text(
        '[server]\nhost = "127.0.0.1"\nworkers = 1\naccess_log = "off"\n'
        f"secret_file = {json.dumps(str(WORK / 'secret'))}\n\n"
        '[limits]\nstreams_per_ip = 100000\nmax_streams = 100000\n'
        'requests_per_ip = "1000000/minute"\n\n'
        + "".join(f"[[files]]\nname = {json.dumps(n)}\npath = {json.dumps(str(p))}\n\n"
                  for n, p in files.items()))
    return conf


def one_run(mode: str, args: argparse.Namespace, env: dict[str, str], tag: str) -> dict:
    """Fresh files and server, the clients connected, then the writers; measured after
    the warm-up until the writers stop."""
    names = [chr(ord("a") + i) for i in range(args.files)]
    files = {}
    for n in names:
        files[n] = WORK / "logs" / f"{n}.log"
        files[n].parent.mkdir(parents=True, exist_ok=True)
        files[n].write_bytes(b"")
    count = int(args.rate * (args.warmup + args.seconds))
    warm = int(args.rate * args.warmup)
    lat_out = WORK / f"lat-{tag}.f64"
    row: dict[str, object] = {"mode": mode, "tag": tag, "load_before": loadavg(),
                              "ok": False}
    server: LogtailServer | None = None
    client: Client | None = None
    writers: list[subprocess.Popen[str]] = []
    try:
        server = LogtailServer.run(config(files, tag), WORK / f"server-{tag}.log", env, WORK)
        cmd = [PY, str(BENCH / "load_client.py"), "files", "--port", str(server.port),
               "--conns", str(args.clients), "--files", ",".join(names),
               "--expect", str(count), "--warm", str(warm), "--latency",
               "--timeout", str(args.warmup + args.seconds + 60), "--out", str(lat_out)]
        if mode == "single":
            cmd.append("--single")
        client = Client(cmd, f"multi-{tag}")
        ready = client.wait("READY", 120)
        want = args.clients * (args.files if mode == "single" else 1)
        if ready is None or ready["conns"] != want:
            raise RuntimeError(f"clients did not connect: {ready} (want {want} streams)")
        row["connections"] = ready["conns"]
        row["open_s"] = ready["open_s"]
        time.sleep(1.0)  # streams subscribe just after their opening bytes
        pids = tree(server.proc.pid)
        for n in names:
            writers.append(subprocess.Popen(
                [PY, str(BENCH / "writer.py"), str(files[n]), "--count", str(count),
                 "--rate", str(args.rate)], stdout=subprocess.PIPE, text=True))
        time.sleep(args.warmup)
        cpu = CpuMark.start(pids)
        gen = CpuMark.start([client.p.pid])
        machine = Machine()
        waits = runq_wait_s(pids), runq_wait_s([client.p.pid])
        rss_max, next_rss = 0, 0.0
        deadline = time.monotonic() + args.seconds + 30
        while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
            if time.monotonic() >= next_rss:
                rss_max, next_rss = max(rss_max, rss_kb(pids)), time.monotonic() + 1.0
            time.sleep(0.1)
        server_cpu, wall = cpu.stop()
        server_wait = runq_wait_s(pids) - waits[0]
        client_wait = runq_wait_s([client.p.pid]) - waits[1]
        client_cpu, _ = gen.stop()
        ours = {os.getpid(), *pids, client.p.pid, *(w.pid for w in writers)}
        where = machine.stop(ours)
        if any(w.poll() is None for w in writers):
            raise RuntimeError("writers did not finish in time")
        rss_end, hwm = rss_kb(pids), hwm_kb(pids)
        reports = [json.loads(w.communicate()[0].strip().splitlines()[-1]) for w in writers]
        written = sum(r["written"] for r in reports)
        # the writers say their own CPU; averaged over their whole run (warm-up included)
        writer_cores = sum(r["cpu_s"] / ((r["end_ns"] - r["start_ns"]) / 1e9) for r in reports)
        res = client.result(30)
        client = None
        row.update(summarise(res, args, count, written))
        row.update({
            "wall_s": wall, "server_cpu_pct": 100 * server_cpu / wall,
            # lines delivered in the window: as many as were written in it, all verified
            "server_us_per_line": 1e6 * server_cpu / (wall * args.rate * args.files
                                                      * args.clients),
            "client_cpu_pct": 100 * client_cpu / wall,
            "server_runq_pct": 100 * server_wait / wall,
            "client_runq_pct": 100 * client_wait / wall,
            "writers_cpu_pct": 100 * writer_cores,
            **where, "unattributed_cores": where["busy_cores"] - where["irq_cores"]
            - where["steal_cores"] - where["other_procs_cores"] - writer_cores
            - (server_cpu + client_cpu) / wall,  # exited processes, the harness itself
            "rss_end_mib": rss_end / 1024, "rss_window_max_mib": rss_max / 1024,
            "rss_peak_mib": hwm / 1024, "server_pids": len(pids),
            "load_after": loadavg()})
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
            w.wait()
        if client is not None:
            client.close()
        if server is not None:
            server.stop()
    return row


def summarise(res: dict, args: argparse.Namespace, count: int, written: int) -> dict:
    """The client's RESULT as one row; `ok` only when every line of every (client, file)
    arrived once and in order."""
    streams = args.clients * args.files
    expected = streams * count
    row = {
        "lines_expected": expected, "lines_written": written,
        "lines_delivered": res["counts_sum"], "streams_checked": res["streams"],
        "short": res["n_short"], "over": res["n_over"], "firsts_bad": res["firsts_bad"],
        "gaps": res["gaps"], "missing": res["missing"], "back": res["back"],
        "unparsed": res["unparsed"], "seq_errors": res["n_errors"],
        "errors": res["errors"], "notices": res["notices"],
        "failed_conns": res["n_failed"], "lost_conns": res["lost_conns"],
        "lat_samples": res.get("n_lat", 0), "client_wall_s": res["wall_s"],
        "events": res["events"],
        "lines_per_event": res["counts_sum"] / res["events"] if res["events"] else 0.0,
        **{f"lat_{k}": v for k, v in res.get("lat_ms", {}).items()},
    }
    row["lines_verified"] = (res["counts_sum"] if not (res["n_errors"] or res["unparsed"])
                             else 0)
    row["ok"] = (written == args.files * count and res["streams"] == streams
                 and res["counts_sum"] == expected and not res["n_short"]
                 and not res["n_over"] and not res["firsts_bad"] and not res["n_errors"]
                 and not res["unparsed"] and not res["n_failed"] and not res["notices"])
    return row


# -- the table ------------------------------------------------------------------------------

METRICS = [  # (key, label, format)
    ("lat_p50", "latency p50 (ms)", "{:.2f}"),
    ("lat_p99", "latency p99 (ms)", "{:.1f}"),
    ("lat_p99.9", "latency p99.9 (ms)", "{:.1f}"),
    ("lat_max", "latency max (ms)", "{:.0f}"),
    ("server_cpu_pct", "server CPU (% of one core)", "{:.1f}"),
    ("server_runq_pct", "server waiting for a CPU (% of the time)", "{:.1f}"),
    ("server_us_per_line", "server CPU per line delivered (µs)", "{:.2f}"),
    ("lines_per_event", "lines per event received (batching)", "{:.2f}"),
    ("rss_end_mib", "server RSS at end (MiB)", "{:.1f}"),
    ("rss_peak_mib", "server RSS peak, VmHWM (MiB)", "{:.1f}"),
    ("client_cpu_pct", "load client CPU (% of one core)", "{:.1f}"),
    ("client_runq_pct", "load client waiting for a CPU (% of the time)", "{:.1f}"),
    ("writers_cpu_pct", "4 writers CPU (% of one core)", "{:.1f}"),
    ("other_procs_cores", "other processes' CPU (cores)", "{:.2f}"),
    ("irq_cores", "irq + softirq, no process (cores)", "{:.2f}"),
    ("steal_cores", "steal (cores)", "{:.2f}"),
    ("busy_cores", "whole machine busy (cores of 2)", "{:.2f}"),
    ("lines_delivered", "lines delivered per run", "{:,.0f}"),
    ("lines_verified", "lines verified per run", "{:,.0f}"),
]


def spread(values: list[float], fmt: str) -> str:
    if not values:
        return "—"
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"**{med}** [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def table(rows: list[dict]) -> str:
    ok = {m: [r for r in rows if r["mode"] == m and r.get("ok")] for m in MODES}
    runs = {m: [r for r in rows if r["mode"] == m] for m in MODES}
    head = "| metric | " + " | ".join(
        f"{m}: {MODES[m]} ({len(ok[m])}/{len(runs[m])} runs ok)" for m in MODES) + " |"
    out = [head, "|---" * (len(MODES) + 1) + "|"]
    for key, label, fmt in METRICS:
        out.append(f"| {label} | " + " | ".join(
            spread([float(r[key]) for r in ok[m] if key in r], fmt) for m in MODES) + " |")
    return "\n".join(out)


def _num(row: dict, key: str, fmt: str) -> str:
    return fmt.format(row[key]) if key in row else "—"


def runs_table(rows: list[dict]) -> str:
    """Every run in order, failed ones included: what the medians were taken from."""
    out = ["| run | load avg before | others before (cores) | others during (cores) "
           "| p50 ms | p99 ms | max ms | server CPU % | server waiting % | lines/event "
           "| RSS end MiB | lines verified | ok |",
           "|---" * 13 + "|"]
    for r in rows:
        if "lat_p50" not in r:
            out.append(f"| {r['tag']} | {r.get('load_before', '?')} | "
                       f"{r.get('busy_before', 0):.2f} | — | — | — | — | — | — | — | — | — | "
                       f"✗ {r.get('error', '')[:80]} |")
            continue
        out.append(
            f"| {r['tag']} | {r['load_before']} | {r['busy_before']:.2f} | "
            f"{r['other_procs_cores']:.2f} | {r['lat_p50']:.2f} | {r['lat_p99']:.1f} | "
            f"{r['lat_max']:.0f} | {r['server_cpu_pct']:.1f} | "
            f"{_num(r, 'server_runq_pct', '{:.1f}')} | {_num(r, 'lines_per_event', '{:.2f}')} | "
            f"{r['rss_end_mib']:.1f} | "
            f"{r['lines_verified']:,} of {r['lines_expected']:,} | "
            f"{'✓' if r['ok'] else '✗'} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="runs of each mode, alternately")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--rate", type=float, default=100.0, help="lines/s written to each file")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    ap.add_argument("--seconds", type=float, default=25.0, help="measured seconds")
    ap.add_argument("--modes", default=",".join(MODES), help="which modes, in this order")
    ap.add_argument("--quiet-budget", type=float, default=300.0,
                    help="seconds in all to wait for other processes to go quiet before "
                         "runs (a shared 2-core machine)")
    ap.add_argument("--logtail-path", default="",
                    help="run the logtail package found in this directory instead")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= set(MODES) or not 1 <= args.files <= 16:
        raise SystemExit(f"multi_fanout: modes are {', '.join(MODES)}; 1 to 16 files")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up as on ^C
    raise_nofile(65536)  # inherited by the server and the client
    WORK.mkdir(parents=True, exist_ok=True)
    RUN_WORK.mkdir(parents=True, exist_ok=True)  # the load-client wrapper logs there
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.logtail_path:
        env["PYTHONPATH"] = str(Path(args.logtail_path).resolve())
    quiet = Quiet(threshold=0.3, budget_s=args.quiet_budget)
    rows: list[dict] = []
    started = time.time()
    for rep in range(args.reps):
        for mode in modes:
            busy = quiet.wait(max_s=60)
            tag = f"{mode}-{rep + 1}"
            say(f"{tag}: load average {loadavg()}, {busy:.2f} cores busy elsewhere")
            try:
                row = one_run(mode, args, env, tag)
            except Exception as e:  # a failed run is reported, not hidden
                row = {"mode": mode, "tag": tag, "ok": False, "error": repr(e)[:500]}
            row["busy_before"] = busy
            rows.append(row)
            say(f"{tag}: " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                         for k, v in row.items()}))
    meta = {"args": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M UTC",
                                                            time.gmtime(started)),
            "seconds": round(time.time() - started), "cpus": os.cpu_count(),
            "quiet_waited_s": round(quiet.waited, 1), "kernel": os.uname().release}
    OUT.mkdir(exist_ok=True)
    (OUT / "multi_fanout.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
    print()
    print(table(rows))
    print()
    print(runs_table(rows))
    failed = [r for r in rows if not r.get("ok")]
    for r in failed:
        print(f"\nrun {r['tag']} FAILED: " + json.dumps(
            {k: r.get(k) for k in ("error", "short", "over", "gaps", "missing", "back",
                                   "unparsed", "errors", "notices", "failed_conns",
                                   "lost_conns", "lines_delivered", "lines_expected")}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
