#!/usr/bin/env python3
"""`make bench`: logtail, frontail and GNU `tail -F`, side by side, in one run.

    python bench/run.py                 # everything, writes bench/RESULTS.md and PNG plots
    python bench/run.py --quick         # a short smoke run (fewer repeats, shorter phases)
    python bench/run.py --only latency,fanout --reps 5
    python bench/run.py --profile       # also py-spy profiles of logtail under load

Everything runs on loopback, every phase is bounded in time and count, every process it
starts is stopped at the end. Raw results go to bench/out/results.json; `report.py` turns
them into RESULTS.md (it can be re-run alone).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from common import (  # noqa: E402
    CpuMark,
    MachineMark,
    Quiet,
    free_port,
    hwm_kb,
    line_block,
    raise_nofile,
    rss_kb,
    tree,
)

OUT = BENCH / "out"
WORK = OUT / "work"
PEERS = OUT / "peers"
PY = sys.executable
FRONTAIL_VERSION = "4.9.2"
SOCKETIO_CLIENT_VERSION = "2.3.0"  # the socket.io version frontail 4.9.2 ships
PY_DEPS = {"matplotlib": "matplotlib", "numpy": "numpy"}
SYSTEMS = ("logtail", "frontail", "tail")
LOGTAIL_PATH = ""
SCENARIOS = ("backlog", "latency", "throughput", "fanout", "idle", "filter", "rest")


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- dependencies ------------------------------------------------------------------------------

def ensure_deps(need_frontail: bool, profile: bool) -> dict[str, str]:
    """pip/npm-install what the benchmark needs; returns tool versions for the report."""
    missing = [pkg for mod, pkg in PY_DEPS.items() if not _importable(mod)]
    if profile and shutil.which("py-spy", path=str(Path(PY).parent)) is None:
        missing.append("py-spy")
    if missing:
        say(f"pip install {' '.join(missing)}")
        subprocess.run([PY, "-m", "pip", "install", "-q", *missing], check=True)
    versions = {"python": sys.version.split()[0]}
    if need_frontail:
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise SystemExit("bench: node and npm are needed for the frontail comparison")
        fr = PEERS / "node_modules" / "frontail" / "package.json"
        sio = PEERS / "node_modules" / "socket.io-client" / "package.json"
        if not (fr.exists() and sio.exists()
                and json.loads(fr.read_text())["version"] == FRONTAIL_VERSION):
            say(f"npm install frontail@{FRONTAIL_VERSION} into {PEERS.relative_to(ROOT)}")
            PEERS.mkdir(parents=True, exist_ok=True)
            subprocess.run(["npm", "install", "--prefix", str(PEERS), "--no-audit", "--no-fund",
                            "--loglevel=error", f"frontail@{FRONTAIL_VERSION}",
                            f"socket.io-client@{SOCKETIO_CLIENT_VERSION}"], check=True)
        versions["frontail"] = json.loads(fr.read_text())["version"]
        versions["node"] = subprocess.run(["node", "--version"], capture_output=True,
                                          text=True).stdout.strip()
    for mod in ("sanic", "watchfiles", "uvloop"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[mod] = version(mod)
    versions["tail"] = subprocess.run(["tail", "--version"], capture_output=True,
                                      text=True).stdout.splitlines()[0]
    return versions


def _importable(mod: str) -> bool:
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


# -- systems under test --------------------------------------------------------------------------

def _nofile() -> None:
    raise_nofile(65536)


@dataclass
class Live:
    """One running system under test."""

    name: str
    port: int = 0
    proc: subprocess.Popen | None = None
    ns: str = ""  # frontail's socket.io namespace
    files: dict[str, Path] = field(default_factory=dict)
    server_pids: list[int] = field(default_factory=list)  # for tail: set by the client

    def pids(self) -> list[int]:
        if self.proc is not None:
            return tree(self.proc.pid)
        return [p for pid in self.server_pids for p in tree(pid)]

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        kids = tree(p.pid)[1:]
        p.send_signal(signal.SIGINT)
        try:
            p.wait(8)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        for k in kids:  # frontail's `tail` child
            with contextlib.suppress(ProcessLookupError):
                os.kill(k, signal.SIGKILL)


def logtail_config(files: dict[str, Path], port: int, *, step_ms: int = 1,
                   heartbeat_s: float = 15.0, idle_stop_s: float = 5.0,
                   backend: str = "") -> Path:
    cfg = WORK / f"logtail-{port}.toml"
    entries = "".join(f'\n[[files]]\nname = "{n}"\npath = "{p}"\n' for n, p in files.items())
    cfg.write_text(
        "# written by bench/run.py\n"
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nworkers = 1\naccess_log = "off"\n\n'
        f"[stream]\nheartbeat_s = {heartbeat_s}\nmax_backlog_lines = 10000\n\n"
        '[limits]\nstreams_per_ip = 100000\nmax_streams = 100000\n'
        'requests_per_ip = "1000000/minute"\n\n'
        f"[watch]\nstep_ms = {step_ms}\nidle_stop_s = {idle_stop_s}\n"
        + (f'backend = "{backend}"\n' if backend else "") + entries)
    return cfg


def start_logtail(files: dict[str, Path], **cfg: float | str) -> Live:
    port = free_port()
    conf = logtail_config(files, port, **cfg)  # type: ignore[arg-type]
    log = open(WORK / f"logtail-{port}.log", "wb")  # noqa: SIM115
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if LOGTAIL_PATH:  # measure another copy of the package (a prototype) instead
        env["PYTHONPATH"] = LOGTAIL_PATH
    proc = subprocess.Popen([PY, "-m", "logtail", "serve", "-c", str(conf)], cwd=WORK,
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_nofile, env=env)
    live = Live("logtail", port, proc, files=files)
    _wait_http(live, f"http://127.0.0.1:{port}/healthz")
    return live


def start_frontail(file: Path, backlog: int = 0) -> Live:
    port = free_port()
    log = open(WORK / f"frontail-{port}.log", "wb")  # noqa: SIM115
    main = PEERS / "node_modules" / "frontail" / "index.js"
    proc = subprocess.Popen(
        ["node", str(main), "--disable-usage-stats", "-h", "127.0.0.1", "-p", str(port),
         "-n", str(backlog), "-l", str(max(backlog, 2000)), str(file)],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=_nofile, start_new_session=True)
    live = Live("frontail", port, proc, ns=hashlib.md5(str(file).encode()).hexdigest(),
                files={"bench": file})
    _wait_http(live, f"http://127.0.0.1:{port}/")
    return live


def _wait_http(live: Live, url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if live.proc is not None and live.proc.poll() is not None:
            raise RuntimeError(f"{live.name} exited with {live.proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    live.stop()
    raise RuntimeError(f"{live.name} did not answer {url}")


# -- load clients ---------------------------------------------------------------------------------

class Client:
    """A load-client process speaking the READY/RESULT protocol on stdout."""

    def __init__(self, cmd: list[str], tag: str) -> None:
        self.err = open(WORK / f"client-{tag}.err", "wb")  # noqa: SIM115
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True, preexec_fn=_nofile)
        self.q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def wait(self, prefix: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            if line.startswith(prefix + " "):
                return json.loads(line[len(prefix) + 1 :])

    def stop_input(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.p.stdin is not None
            self.p.stdin.close()

    def result(self, timeout: float, close: bool = True) -> dict:
        res = self.wait("RESULT", timeout)
        if res is None:
            self.stop_input()
            res = self.wait("RESULT", 30)
        if close:
            self.close()
        if res is None:
            raise RuntimeError(f"client gave no result; see {self.err.name}")
        return res

    def close(self) -> None:
        self.stop_input()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.err.close()


def client_cmd(live: Live, mode: str, *, conns: int = 1, expect: int = 0, step: int = 1,
               latency: bool = False, out: Path | None = None, query: str = "n=0",
               name: str = "bench", timeout: float = 120, reps: int = 10, n: int = 1000,
               grep: str = "", grep_regex: bool = False) -> list[str]:
    if live.name == "frontail":
        opt = {"mode": mode, "url": f"http://127.0.0.1:{live.port}", "ns": live.ns,
               "modules": str(PEERS / "node_modules"), "conns": conns, "expect": expect,
               "step": step, "latency": latency, "out": str(out) if out else None,
               "timeout": timeout, "reps": reps, "n": n}
        return ["node", str(BENCH / "frontail_client.js"), json.dumps(opt)]
    cmd = [PY, str(BENCH / "load_client.py"), mode, "--conns", str(conns), "--expect",
           str(expect), "--step", str(step), "--timeout", str(timeout), "--reps", str(reps),
           "--n", str(n)]
    if live.name == "tail":
        cmd[2] = "tail"
        cmd += ["--tail-file", str(live.files[name])]
        if grep:
            cmd += ["--grep", grep] + (["--grep-regex"] if grep_regex else [])
    else:
        cmd += ["--port", str(live.port), "--path", f"/api/files/{name}/stream?{query}"]
    if latency:
        cmd.append("--latency")
    if out is not None:
        cmd += ["--out", str(out)]
    return cmd


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# -- one measured stream run ------------------------------------------------------------------

@dataclass
class Load:
    conns: int = 1
    procs: int = 1
    rate: float = 100.0  # lines/s; 0 = the payload, flat out
    count: int = 1000
    payload: Path | None = None
    latency: bool = False
    query: str = "n=0"
    step: int = 1  # sequence step of the lines a client should get (10: ERROR lines only)
    grep: str = ""
    grep_regex: bool = False
    timeout: float = 120.0


def fresh_file(tag: str) -> Path:
    path = WORK / "logs" / tag / "bench.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def stream_run(start: Callable[[Path], Live], load: Load, tag: str) -> dict:
    """Start the system on a fresh file, connect clients, write, verify, measure."""
    file = fresh_file(tag)
    live = start(file)
    clients: list[Client] = []
    lat_files: list[Path] = []
    expect = load.count // load.step
    try:
        for i, k in enumerate(split(load.conns, load.procs)):
            out = WORK / f"lat-{tag}-{i}.f64" if load.latency else None
            if out is not None:
                lat_files.append(out)
            cmd = client_cmd(live, "stream", conns=k, expect=expect, step=load.step,
                             latency=load.latency, out=out, query=load.query,
                             timeout=load.timeout, grep=load.grep, grep_regex=load.grep_regex)
            clients.append(Client(cmd, f"{tag}-{i}"))
        readies = [c.wait("READY", 120) for c in clients]
        if any(r is None for r in readies):
            raise RuntimeError(f"{tag}: clients did not connect")
        if live.name == "tail":
            live.server_pids = [r["tail_pid"] for r in readies]  # type: ignore[index]
        time.sleep(1.0)  # streams subscribe just after their opening bytes
        server = CpuMark.start(live.pids())
        loadgen = CpuMark.start([c.p.pid for c in clients])
        machine_mark = MachineMark()
        writer = run_writer(file, load)
        rss = rss_kb(live.pids())
        results = [c.result(load.timeout + 30, close=False) for c in clients]
        cpu, wall = server.stop()
        gen_cpu, _ = loadgen.stop()
        busy = machine_mark.stop()
        rss, hwm = max(rss, rss_kb(live.pids())), hwm_kb(live.pids())
    finally:
        for c in clients:
            c.close()
        live.stop()
    row = summarise(live.name, load, writer, results, cpu, wall, gen_cpu, rss, hwm, lat_files)
    # what everything else on the machine used meanwhile (this is a shared machine)
    row["others_cores"] = max(0.0, busy - (cpu + gen_cpu + writer["cpu_s"]) / wall)
    return row


def run_writer(file: Path, load: Load) -> dict:
    cmd = [PY, str(BENCH / "writer.py"), str(file)]
    if load.payload is not None:
        cmd += ["--payload", str(load.payload)]
    else:
        cmd += ["--count", str(load.count), "--rate", str(load.rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=load.timeout + 60,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(system: str, load: Load, writer: dict, results: list[dict], cpu: float,
              wall: float, gen_cpu: float, rss: int, hwm: int, lat_files: list[Path]) -> dict:
    import numpy as np

    expect = load.count // load.step
    conns = sum(r["conns"] for r in results)
    bad = {
        "failed_conns": load.conns - conns + sum(r["n_failed"] for r in results),
        "short_conns": sum(r["n_short"] for r in results),
        "seq_errors": sum(r["n_errors"] for r in results),
        "late_start": sum(r["firsts_bad"] for r in results),
    }
    last = max(r["last_ns"] for r in results)
    span = (last - writer["start_ns"]) / 1e9 if last else math.inf
    lines_in = load.count
    row: dict = {
        "system": system, "ok": not any(bad.values()), **bad,
        "delivered": sum(r["counts_sum"] for r in results), "expected": expect * load.conns,
        "span_s": span, "lines_per_s": lines_in / span if span else 0.0,
        "server_cpu_s": cpu, "server_cores": cpu / wall if wall else 0.0,
        "wall_s": wall, "loadgen_cpu_s": gen_cpu, "loadgen_cores": gen_cpu / wall,
        "writer_cpu_s": writer["cpu_s"], "rss_mb": rss / 1024, "hwm_mb": hwm / 1024,
        "cpu_s_per_mlines": cpu / (lines_in / 1e6) if lines_in else 0.0,
        "errors": [e for r in results for e in r["errors"]][:3] + [
            f for r in results for f in r["failed"]][:3],
    }
    if lat_files:
        lat = np.concatenate([np.fromfile(f, dtype=np.float64) for f in lat_files
                              if f.exists()]) / 1e6
        if lat.size:
            row.update(p50_ms=float(np.percentile(lat, 50)), p99_ms=float(np.percentile(lat, 99)),
                       max_ms=float(lat.max()), n_lat=int(lat.size))
            row["_lat"] = lat
        for f in lat_files:
            f.unlink(missing_ok=True)
    return row


def starter(system: str, **cfg: float | str) -> Callable[[Path], Live]:
    if system == "logtail":
        return lambda f: start_logtail({"bench": f}, **cfg)
    if system == "frontail":
        return lambda f: start_frontail(f)
    return lambda f: Live("tail", files={"bench": f})


# -- the scenarios --------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.reps = args.reps or (2 if args.quick else 3)
        self.systems = [s for s in SYSTEMS if s in args.systems.split(",")]
        self.results: dict = {}
        self.lat_store: dict[str, list] = {}
        self.payloads: dict[int, Path] = {}
        self.quiet = Quiet(budget_s=args.quiet_budget)

    def record(self, scenario: str, key: str, system: str, row: dict) -> None:
        lat = row.pop("_lat", None)
        if lat is not None:
            self.lat_store.setdefault(f"{scenario}|{key}|{system}", []).append(lat)
        runs = self.results.setdefault(scenario, {}).setdefault(key, {}).setdefault(system, [])
        runs.append(row)
        status = "ok" if row.get("ok", True) else f"FAILED {row.get('errors')}"
        brief = {k: round(v, 3) for k, v in row.items()
                 if isinstance(v, float) and k in ("p50_ms", "p99_ms", "lines_per_s",
                                                   "server_cores", "rss_mb", "backlog_ms",
                                                   "kb_per_stream", "cores")}
        say(f"  {scenario} {key} {system}: {status} {brief}")

    def payload(self, lines: int) -> Path:
        """A file of `lines` benchmark lines, built once, for flat-out writers."""
        path = WORK / f"payload-{lines}.bin"
        if not path.exists() or path.stat().st_size != lines * 100:
            with open(path, "wb") as f:
                for first in range(0, lines, 10_000):
                    f.write(line_block(first, min(10_000, lines - first), 0))
        return path

    def safe(self, scenario: str, key: str, system: str, fn: Callable[[], dict]) -> None:
        bg = self.quiet.wait()
        try:
            row = fn()
        except Exception as e:  # one failed phase must not sink the whole run
            row = {"ok": False, "errors": [f"{type(e).__name__}: {e}"[:300]]}
        row["bg_cores"] = bg
        self.record(scenario, key, system, row)

    # 1 -------------------------------------------------------------------------------------------
    def backlog(self) -> None:
        sizes = {"1MB": 1 << 20, "100MB": 100 << 20, "1GB": 1 << 30, "4GB": 4 << 30}
        files = {k: self._sized_file(k, v) for k, v in sizes.items()}
        reps = 5 if self.quick else 15
        for r in range(self.reps):
            if "logtail" in self.systems:
                live = start_logtail(files)
                try:
                    for name in sizes:
                        self.safe("backlog", name, "logtail",
                                  lambda n=name, lv=live: self._backlog_client(lv, n, reps))
                finally:
                    live.stop()
            for name, path in files.items():
                if "frontail" in self.systems:
                    self.safe("backlog", name, "frontail",
                              lambda p=path: self._frontail_backlog(p, reps))
                if "tail" in self.systems:
                    self.safe("backlog", name, "tail", lambda p=path: self._tail_backlog(p, reps))
            say(f"backlog run {r + 1}/{self.reps} done")

    def _sized_file(self, name: str, size: int) -> Path:
        """Real lines up to 100 MB; bigger files are sparse with 4 MB of real lines at the end."""
        path = WORK / "backlog" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size == size:
            return path
        real = min(size, 4 << 20) if size > (100 << 20) else size
        lines = real // 100
        with open(path, "wb") as f:
            if size > real:
                f.truncate(size - lines * 100 - 1)
                f.seek(size - lines * 100 - 1)
                f.write(b"\n")
            for first in range(0, lines, 10_000):
                f.write(line_block(first, min(10_000, lines - first), 0))
        return path

    def _backlog_client(self, live: Live, name: str, reps: int) -> dict:
        c = Client(client_cmd(live, "backlog", query="n=1000", name=name, reps=reps, n=1000,
                              timeout=30), f"backlog-{name}")
        ready = c.wait("READY", 60 + reps * 30)
        res = c.result(10)
        return self._backlog_row(ready, res)

    @staticmethod
    def _backlog_row(ready: dict | None, res: dict) -> dict:
        import numpy as np

        times = (ready or {}).get("backlog_ms") or []
        return {"ok": not res["n_failed"] and bool(times), "backlog_ms":
                float(np.median(times)) if times else math.nan, "samples": times,
                "errors": res["failed"]}

    def _frontail_backlog(self, path: Path, reps: int) -> dict:
        live = start_frontail(path, backlog=1000)
        try:
            time.sleep(1.0)  # frontail reads the file once, at start (`tail -n 1000 -F`)
            c = Client(client_cmd(live, "backlog", reps=reps, n=1000, timeout=30),
                       "backlog-frontail")
            ready = c.wait("READY", 60 + reps * 30)
            res = c.result(10)
        finally:
            live.stop()
        return self._backlog_row(ready, res)

    @staticmethod
    def _tail_backlog(path: Path, reps: int) -> dict:
        times = []
        for _ in range(reps):
            t0 = time.monotonic_ns()
            out = subprocess.run(["tail", "-n", "1000", str(path)], capture_output=True,
                                 check=True).stdout
            times.append((time.monotonic_ns() - t0) / 1e6)
            if out.count(b"\n") != 1000:
                return {"ok": False, "errors": ["tail -n 1000 gave a different count"]}
        import numpy as np

        return {"ok": True, "backlog_ms": float(np.median(times)), "samples": times}

    # 2 -------------------------------------------------------------------------------------------
    def latency(self) -> None:
        plan = {10: 15, 100: 8, 1000: 4, 10000: 2}  # rate: seconds
        for r in range(self.reps):
            for rate, secs in plan.items():
                secs = secs / 2 if self.quick else secs
                load = Load(rate=rate, count=int(rate * secs), latency=True,
                            timeout=secs * 3 + 20)
                for system in self.systems:
                    self.safe("latency", f"{rate}/s", system,
                              lambda s=system, ld=load, rt=rate: stream_run(
                                  starter(s), ld, f"lat-{s}-{rt}"))
            say(f"latency run {r + 1}/{self.reps} done")

    # 3 -------------------------------------------------------------------------------------------
    def throughput(self) -> None:
        lines = 300_000 if self.quick else 1_000_000
        payload = self.payload(lines)
        for r in range(self.reps):
            for system in self.systems:
                load = Load(rate=0, count=lines, payload=payload, timeout=90)
                self.safe("throughput", "max", system,
                          lambda s=system, ld=load: stream_run(starter(s), ld, f"tp-{s}"))
            say(f"throughput run {r + 1}/{self.reps} done")

    # 4 -------------------------------------------------------------------------------------------
    def fanout(self) -> None:
        counts = [100, 1000] if self.quick else [100, 1000, 2000]
        secs = 5 if self.quick else 8
        for r in range(self.reps):
            for n in counts:
                load = Load(conns=n, procs=1 if n <= 100 else 2, rate=100, count=100 * secs,
                            latency=True, timeout=secs * 4 + 30)
                for system in self.systems:
                    if system == "tail":
                        continue  # one tail process per client is not a server
                    self.safe("fanout", str(n), system,
                              lambda s=system, ld=load, k=n: stream_run(
                                  starter(s), ld, f"fan-{s}-{k}"))
            say(f"fan-out run {r + 1}/{self.reps} done")

    # 5 -------------------------------------------------------------------------------------------
    def idle(self) -> None:
        n = 2000 if self.quick else 10_000
        secs = 8 if self.quick else 20
        for r in range(self.reps):
            for system in self.systems:
                if system == "tail":
                    continue
                self.safe("idle", str(n), system, lambda s=system: self._idle_run(s, n, secs))
            say(f"idle run {r + 1}/{self.reps} done")

    def _idle_run(self, system: str, n: int, secs: float) -> dict:
        file = fresh_file(f"idle-{system}")
        file.write_bytes(line_block(0, 100, 0))
        # heartbeats every 5 s (the default is 15 s): more work at rest, not less
        live = (start_logtail({"bench": file}, heartbeat_s=5.0) if system == "logtail"
                else start_frontail(file))
        clients: list[Client] = []
        try:
            time.sleep(1.0)
            base = rss_kb(live.pids())
            procs = max(1, math.ceil(n / 2500))
            for i, k in enumerate(split(n, procs)):
                clients.append(Client(client_cmd(live, "idle", conns=k, timeout=secs + 600),
                                      f"idle-{system}-{i}"))
            readies = [c.wait("READY", 300) for c in clients]
            opened = sum(r["conns"] for r in readies if r)
            open_s = max((r["open_s"] for r in readies if r), default=math.nan)
            time.sleep(3.0)
            mark = CpuMark.start(live.pids())
            gen = CpuMark.start([c.p.pid for c in clients])
            time.sleep(secs)
            cpu, wall = mark.stop()
            gen_cpu, _ = gen.stop()
            rss = rss_kb(live.pids())
            for c in clients:
                c.stop_input()
            results = [c.result(30) for c in clients]
        finally:
            for c in clients:
                c.close()
            live.stop()
        lost = sum(r["lost_conns"] for r in results)
        return {"ok": opened == n and not lost, "streams": opened, "lost_conns": lost,
                "open_s": open_s, "rss_base_mb": base / 1024, "rss_mb": rss / 1024,
                "kb_per_stream": (rss - base) / max(opened, 1), "cores": cpu / wall,
                "loadgen_cores": gen_cpu / wall, "pings": sum(r["pings"] for r in results),
                "errors": [f for r in results for f in r["failed"]][:3]}

    # 6 -------------------------------------------------------------------------------------------
    def filter(self) -> None:
        lines = 300_000 if self.quick else 1_000_000
        payload = self.payload(lines)
        filters = {"substring": ("q=error", "ERROR", False),
                   "regex": ("q=ERROR%20svc%3D%5Cw%2B%20user%3D%5Cd%2B&regex=1",
                             r"ERROR svc=\w+ user=[0-9]+", True)}
        for r in range(self.reps):
            for key, (query, grep, is_re) in filters.items():
                for system in self.systems:
                    if system == "frontail":
                        continue  # frontail filters in the browser only
                    load = Load(rate=0, count=lines, payload=payload, query=f"n=0&{query}",
                                step=10, grep=grep, grep_regex=is_re, timeout=90)
                    self.safe("filter", key, system,
                              lambda s=system, ld=load, k=key: stream_run(
                                  starter(s), ld, f"flt-{s}-{k}"))
            say(f"filter run {r + 1}/{self.reps} done")

    # 7 -------------------------------------------------------------------------------------------
    def rest(self) -> None:
        secs = 5 if self.quick else 6
        steps = [1, 10, 50] if self.quick else [1, 2, 5, 10, 50]
        for r in range(self.reps):
            if "logtail" in self.systems:
                self.safe("rest", "no clients", "logtail", lambda: self._rest_noclient(secs))
                self.safe("rest", "inotify", "logtail",
                          lambda: self._rest_quiet("logtail", secs, backend="inotify"))
                for step in steps:  # the fallback backend, where inotify is not available
                    self.safe("rest", f"step={step}", "logtail",
                              lambda st=step: self._rest_quiet("logtail", secs, step_ms=st,
                                                               backend="watchfiles"))
            for system in ("frontail", "tail"):
                if system in self.systems:
                    self.safe("rest", "quiet", system,
                              lambda s=system: self._rest_quiet(s, secs))
            say(f"rest run {r + 1}/{self.reps} done")

    def _rest_noclient(self, secs: float) -> dict:
        """No client ever, then after one client came and left (followers stop when idle)."""
        file = fresh_file("rest-none")
        live = start_logtail({"bench": file}, idle_stop_s=1.0)
        try:
            time.sleep(1.0)
            mark = CpuMark.start(live.pids())
            time.sleep(secs)
            cpu0, wall0 = mark.stop()
            c = Client(client_cmd(live, "idle", conns=1, timeout=60), "rest-none")
            c.wait("READY", 30)
            time.sleep(1.0)
            c.close()
            time.sleep(2.5)  # idle_stop_s = 1: the follower and its watcher stop
            mark = CpuMark.start(live.pids())
            time.sleep(secs)
            cpu1, wall1 = mark.stop()
        finally:
            live.stop()
        return {"ok": True, "cores": cpu0 / wall0, "cores_after_client_left": cpu1 / wall1}

    def _rest_quiet(self, system: str, secs: float, step_ms: int = 1,
                    backend: str = "") -> dict:
        """One client on a quiet log: CPU at rest, then latency at 100 lines/s."""
        cfg: dict[str, float | str] = {}
        if system == "logtail":
            cfg = {"step_ms": step_ms, "backend": backend}
        file = fresh_file(f"rest-{system}")
        live = starter(system, **cfg)(file)
        try:
            out = WORK / f"lat-rest-{system}.f64"
            c = Client(client_cmd(live, "stream", expect=500, latency=True, out=out,
                                  timeout=secs + 60), f"rest-{system}")
            ready = c.wait("READY", 30)
            if live.name == "tail" and ready:
                live.server_pids = [ready["tail_pid"]]
            time.sleep(1.5)
            mark = CpuMark.start(live.pids())
            time.sleep(secs)
            cpu, wall = mark.stop()
            writer = run_writer(file, Load(rate=100, count=500))
            res = c.result(30)
        finally:
            live.stop()
        row = summarise(system, Load(rate=100, count=500, latency=True), writer, [res], cpu,
                        wall, 0.0, 0, 0, [out])
        row["cores"] = cpu / wall
        return row

    # -- profiles ---------------------------------------------------------------------------
    def profile(self) -> None:
        """py-spy flame graphs of logtail under throughput and 1,000-client fan-out."""
        spy = shutil.which("py-spy", path=str(Path(PY).parent)) or "py-spy"
        lines = 300_000 if self.quick else 1_000_000
        tag = f"-{self.args.tag}" if self.args.tag else ""
        cases = {"throughput": Load(rate=0, count=lines, payload=self.payload(lines),
                                    timeout=90),
                 "fanout-1000": Load(conns=1000, procs=2, rate=100, count=1000, latency=True,
                                     timeout=60)}
        for name, load in cases.items():
            holder: dict[str, subprocess.Popen] = {}

            def start(f: Path, nm: str = name, h: dict = holder) -> Live:
                live = start_logtail({"bench": f})
                assert live.proc is not None
                h["spy"] = subprocess.Popen(
                    [spy, "record", "-r", "250", "-p", str(live.proc.pid), "-f", "raw",
                     "-o", str(OUT / f"profile-{nm}{tag}.txt"), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                return live

            self.safe("profile", name, "logtail", lambda ld=load, st=start, nm=name:
                      stream_run(st, ld, f"prof-{nm}"))
            spy_proc = holder.get("spy")
            if spy_proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy_proc.wait(20)
            say(f"profile {name}: bench/out/profile-{name}{tag}.txt (py-spy raw: collapsed "
                "stacks; `py-spy record -f flamegraph` makes an SVG)")


def run_viewer_bench(quick: bool) -> str | None:
    script = BENCH / "viewer_bench.py"
    if not script.exists():
        return None
    say("viewer bench (bench/viewer_bench.py)")
    env = dict(os.environ, BENCH_QUICK="1" if quick else "0")
    try:
        subprocess.run([PY, str(script)], cwd=ROOT, env=env, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        say("viewer bench timed out")
    md = OUT / "viewer.md"
    return md.read_text() if md.exists() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument("--reps", type=int, default=0, help="repeats (default 3, quick 2)")
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--profile", action="store_true", help="py-spy profiles of logtail too")
    ap.add_argument("--no-viewer", action="store_true", help="skip bench/viewer_bench.py")
    ap.add_argument("--quiet-budget", type=float, default=120.0,
                    help="seconds in all to wait for other processes to go quiet before "
                         "phases (this is a shared 2-core machine)")
    ap.add_argument("--logtail-path", default="",
                    help="run the logtail package found in this directory (a prototype)")
    ap.add_argument("--tag", default="",
                    help="write out/results-TAG.json only, not RESULTS.md (for comparisons)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)  # clean up servers and clients, as on ^C
    global LOGTAIL_PATH
    LOGTAIL_PATH = str(Path(args.logtail_path).resolve()) if args.logtail_path else ""
    raise_nofile(65536)
    OUT.mkdir(exist_ok=True)
    WORK.mkdir(exist_ok=True)
    versions = ensure_deps("frontail" in args.systems, args.profile)
    bench = Bench(args)
    started = time.time()
    where = machine()  # the code measured is the code at the start
    for scenario in filter(None, args.only.split(",")):
        if scenario not in SCENARIOS:
            raise SystemExit(f"bench: unknown scenario {scenario!r}")
        say(f"scenario {scenario}")
        getattr(bench, scenario)()
    if args.profile:
        bench.profile()
    viewer = None if args.no_viewer else run_viewer_bench(args.quick)
    import numpy as np

    suffix = f"-{args.tag}" if args.tag else ""
    lat_path = OUT / f"latencies{suffix}.npz"
    np.savez_compressed(lat_path, **{k: np.concatenate(v) for k, v in bench.lat_store.items()})
    data = {"meta": {"versions": versions, "quick": args.quick, "reps": bench.reps,
                     "quiet_waited_s": bench.quiet.waited,
                     "started": started, "seconds": time.time() - started,
                     "machine": where, "logtail_path": LOGTAIL_PATH or "logtail/",
                     "args": sys.argv[1:]}, "results": bench.results, "viewer": viewer}
    (OUT / f"results{suffix}.json").write_text(json.dumps(data, indent=1, default=str))
    if args.tag:
        say(f"done in {time.time() - started:.0f} s: bench/out/results{suffix}.json")
        return 0
    import report

    report.write(data, lat_path)
    say(f"done in {time.time() - started:.0f} s: bench/RESULTS.md")
    return 0


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "logtail"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": str(os.cpu_count()), "kernel": os.uname().release,
            "commit": rev + (" (logtail/ modified)" if dirty else ""),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


if __name__ == "__main__":
    sys.exit(main())
