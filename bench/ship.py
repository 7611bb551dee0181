"""Shipper benchmark: what one `logtail ship` pushes into a real redis-server; writes SHIP.md.

  push     lines/s: a pre-written file of N ~100-byte lines (`common.make_line`) shipped by
           the real `logtail ship` process from a fresh start (`maxlen` above N, so every
           line goes), timed from the stream's first entry to the stream holding every
           line; CPU of the shipper and of redis-server over that time
  memory   Redis memory for those N lines: `INFO memory` used_memory after minus before,
           and `MEMORY USAGE <key> SAMPLES 0`, per million lines; and the same lines one
           per entry (a quiet log's shape), written with the shipper's own script
  rest     shipper CPU over 30 s with nothing written (after it shipped its file)
  rate     shipper and redis-server CPU over 20 s while a writer appends 1,000 lines/s,
           one write() per line, paced by the clock; every line is checked to arrive
  formats  why entries hold batches: the same lines as one entry per line (XADD from a Lua
           script, 1,000 per call; and a MULTI pipeline of XADDs) and as the shipper's
           entries (XADD per entry of about 31 KiB): lines/s from this process, its CPU
           and redis-server's, memory per million lines

Each run starts its own redis-server (no persistence) on a free loopback port, and its own
file in a temp dir removed at the end (read once before measuring: page cache warm).
SHIP.md gets medians and [min-max] over the runs.

    .venv/bin/python bench/ship.py [--runs 3] [--lines 2000000] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))
from common import Quiet, cpu_seconds, free_port, line_block, make_line  # noqa: E402

from logtail.fleet.keys import format_id, parse_entry, stream_key  # noqa: E402
from logtail.fleet.link import COMMIT_SCRIPT  # noqa: E402

HOST = "bench"
KEY = stream_key(HOST, "app")
MIB = 1024 * 1024


# -- processes -----------------------------------------------------------------------------------

@dataclass
class RedisProc:
    proc: subprocess.Popen[bytes]
    port: int

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=30)


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[RedisProc]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rp = RedisProc(proc, port)
        deadline = time.monotonic() + 15
        while True:
            try:
                # ours, not another one that took the port first (others run tests here)
                if int(rp.client().info("server")["process_id"]) == proc.pid:
                    break
            except redis.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield rp
    finally:
        proc.terminate()
        proc.wait(15)


@contextlib.contextmanager
def shipper(directory: Path, port: int, maxlen: int) -> Iterator[subprocess.Popen[bytes]]:
    config = directory / "ship.toml"
    config.write_text(f'[redis]\nurl = "redis://127.0.0.1:{port}/0"\n\n[ship]\n'
                      f'host = "{HOST}"\nmaxlen = {maxlen}\n\n'
                      '[[files]]\nname = "app"\npath = "app.log"\n')
    with (directory / "ship.out").open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "logtail", "ship", "-c", str(config)],
                                stdout=out, stderr=out, cwd=ROOT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def next_number(r: redis.Redis) -> int:
    """The number the stream's next item would take (lines and notices counted)."""
    last = r.xrevrange(KEY, count=1)
    if not last:
        return 0
    entry = parse_entry(*last[0])
    assert entry is not None
    return entry.next


def wait(predicate: Callable[[], bool], timeout: float, what: str,
         interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {what}")
        time.sleep(interval)


def write_file(path: Path, lines: int) -> None:
    with path.open("wb") as f:
        for first in range(0, lines, 10_000):
            f.write(line_block(first, min(10_000, lines - first), time.monotonic_ns()))
    path.read_bytes()  # into the page cache (and out of this process at once)


# -- phases --------------------------------------------------------------------------------------

@dataclass
class Run:
    push_lines_s: float = 0.0
    push_s: float = 0.0
    push_ship_cpu: float = 0.0  # cores
    push_redis_cpu: float = 0.0
    used_mib_per_m: float = 0.0
    usage_mib_per_m: float = 0.0
    one_line_mib_per_m: float = 0.0
    rest_cpu: float = 0.0  # % of a core
    rate_ship_cpu: float = 0.0
    rate_redis_cpu: float = 0.0
    rate_lines: int = 0
    follower_cpu: float = 0.0  # a Follower alone, same writes
    rate_entries_s: float = 0.0
    formats: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)


def phase_push(tmp: Path, lines: int, run: Run, quiet: Quiet, rest_s: float,
               rate_s: float) -> None:
    log = tmp / "app.log"
    write_file(log, lines)
    with redis_server(tmp) as rs:
        r = rs.client()
        before = int(r.info("memory")["used_memory"])
        quiet.wait()
        with shipper(tmp, rs.port, maxlen=lines * 2) as proc:
            wait(lambda: r.exists(KEY) == 1, 120, "the first entry", 0.002)
            cpu = Cpu(proc.pid, rs.proc.pid)
            first = parse_entry(*r.xrange(KEY, count=1)[0])
            assert first is not None and first.notice == "reset", first
            wait(lambda: next_number(r) >= lines + 1, 600, "every line", 0.005)
            done = time.time()
            cores = cpu.stop()
            run.push_s = done - first.t / 1000
            run.push_lines_s = lines / run.push_s
            run.push_ship_cpu, run.push_redis_cpu = cores[proc.pid], cores[rs.proc.pid]
            after = int(r.info("memory")["used_memory"])
            usage = int(r.memory_usage(KEY, samples=0) or 0)
            run.used_mib_per_m = (after - before) / lines * 1e6 / MIB
            run.usage_mib_per_m = usage / lines * 1e6 / MIB
            # at rest: the file shipped, nothing written
            quiet.wait()
            cpu = Cpu(proc.pid)
            time.sleep(rest_s)
            run.rest_cpu = 100 * cpu.stop()[proc.pid]
            # 1,000 lines/s, one write() per line
            start, entries_before = next_number(r), int(r.xlen(KEY))
            quiet.wait()
            cpu = Cpu(proc.pid, rs.proc.pid)
            written = paced_writer(log, 1000, rate_s)
            try:
                wait(lambda: next_number(r) >= start + written, 60, "the paced lines")
            except RuntimeError as e:
                raise RuntimeError(f"{e}: {written} written from number {start}, the stream "
                                   f"is at {next_number(r)}") from None
            cores = cpu.stop()
            run.rate_ship_cpu = 100 * cores[proc.pid]
            run.rate_redis_cpu = 100 * cores[rs.proc.pid]
            run.rate_lines = written
            run.rate_entries_s = (int(r.xlen(KEY)) - entries_before) / rate_s
            got = [ln for _, f in r.xrange(KEY, min=format_id(first.epoch, start))
                   for ln in f[b"lines"].decode().split("\n")]
            assert len(got) == written, (len(got), written)
        r.delete(KEY)
        run.one_line_mib_per_m = one_line_entries(r, min(lines, 200_000))
    run.follower_cpu = follower_alone(tmp, quiet, rate_s)


FOLLOWER_ALONE = """
import asyncio, os, signal, sys
from pathlib import Path
from logtail.config import WatchConfig
from logtail.files.follow import Follower
from logtail.files.position import IdCodec
from logtail.files.watch import WatchRegistry

class Count:
    lines = 0
    def offer(self, batch): self.lines += batch.lines.count
    def notify(self): pass

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    registry = WatchRegistry(WatchConfig())
    f = Follower("app", Path(sys.argv[1]), IdCodec(os.urandom(32)), 65536, 5.0, 5.0,
                 rotate_grace_s=30.0)
    f.on_watch_change = registry.update
    sub = Count()
    await f.subscribe(sub)
    print("ready", flush=True)
    await stop.wait()
    await f.stop()
    await registry.close()
    print(sub.lines, flush=True)

asyncio.run(main())
"""


def follower_alone(tmp: Path, quiet: Quiet, seconds: float) -> float:
    """% of a core a bare Follower (the server's, one subscriber that only counts) uses
    for the same paced writes: what following the file costs before any shipping."""
    log = tmp / "alone.log"
    log.write_bytes(b"")
    proc = subprocess.Popen([sys.executable, "-c", FOLLOWER_ALONE, str(log)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        quiet.wait()
        cpu = Cpu(proc.pid)
        written = paced_writer(log, 1000, seconds)
        time.sleep(0.5)
        share = cpu.stop()[proc.pid]
        proc.send_signal(signal.SIGTERM)
        got = int(proc.stdout.readline())
        assert got == written, (got, written)
        return 100 * share
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


class Cpu:
    """CPU of each of a few processes between two moments, in cores."""

    def __init__(self, *pids: int) -> None:
        self.start = {pid: cpu_seconds([pid]) for pid in pids}
        self.t0 = time.monotonic()

    def stop(self) -> dict[int, float]:
        wall = time.monotonic() - self.t0
        return {pid: (cpu_seconds([pid]) - c) / wall for pid, c in self.start.items()}


def paced_writer(path: Path, per_s: int, seconds: float) -> int:
    """Append `per_s` lines a second for `seconds`, one write() each; the count written."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        n, t0 = 0, time.monotonic()
        total = int(per_s * seconds)
        while n < total:
            due = t0 + n / per_s
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            os.write(fd, make_line(n, time.monotonic_ns()))
            n += 1
        return n
    finally:
        os.close(fd)


def one_line_entries(r: redis.Redis, lines: int) -> float:
    """MiB per million lines stored one per entry, as the shipper stores a quiet log."""
    script = r.register_script(COMMIT_SCRIPT)
    epoch, last, t = 1_800_000_000_000, "", str(int(time.time() * 1000))
    for first in range(0, lines, 1000):
        args: list[str] = []
        for i in range(first, min(lines, first + 1000)):
            line = make_line(i, time.monotonic_ns()).decode().rstrip("\n")
            pos = f"fe01-2c4f1a-{(i + 1) * 100:x}-{i * 7919 % 2**32:x}"
            args += [format_id(epoch, i), "l", line, "1", t, pos]
        done = script(keys=[KEY], args=[last, format_id(epoch, 0), *args])
        assert int(done[0]) == 1
        last = args[-6]
    usage = int(r.memory_usage(KEY, samples=0) or 0)
    r.delete(KEY)
    return usage / lines * 1e6 / MIB


# -- entry formats ---------------------------------------------------------------------------

PER_LINE_LUA = """
local id
for i = 2, #ARGV do
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'line', ARGV[i])
end
return id
"""


def phase_formats(tmp: Path, lines: int, run: Run, quiet: Quiet) -> None:
    block = [make_line(i, 0).decode().rstrip("\n") for i in range(1000)]
    with redis_server(tmp) as rs:
        r = rs.client()
        per_line = r.register_script(PER_LINE_LUA)
        commit = r.register_script(COMMIT_SCRIPT)

        def lua_per_line() -> None:
            for _ in range(lines // 1000):
                per_line(keys=[KEY], args=[lines * 2, *block])

        def multi_per_line() -> None:
            for _ in range(lines // 1000):
                pipe = r.pipeline(transaction=True)
                for line in block:
                    pipe.xadd(KEY, {"line": line}, maxlen=lines * 2, approximate=True)
                pipe.execute()

        def batches() -> None:
            text = "\n".join(block[:310])  # ~31 KiB, the shipper's entry size
            epoch, number, last = 1_800_000_000_000, 0, ""
            t, pos = str(int(time.time() * 1000)), "fe01-2c4f1a-5f5e100-1234abcd"
            for _ in range(lines // 3100):
                args: list[str] = []
                for _ in range(10):
                    args += [format_id(epoch, number), "l", text, "310", t, pos]
                    number += 310
                commit(keys=[KEY], args=[last, format_id(epoch, 0), *args])
                last = args[-6]

        for name, fn in (("per line, Lua", lua_per_line), ("per line, MULTI", multi_per_line),
                         ("per batch (shipper)", batches)):
            r.delete(KEY)
            quiet.wait()
            cpu = Cpu(rs.proc.pid)
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall, client = time.perf_counter() - t0, time.process_time() - c0
            redis_cpu = cpu.stop()[rs.proc.pid] * wall
            stored = int(r.xlen(KEY))
            n = stored * (1 if "line" in name else 310)
            usage = int(r.memory_usage(KEY, samples=0) or 0)
            run.formats[name] = (n / wall, 100 * client / wall, 100 * redis_cpu / wall,
                                 usage / n * 1e6 / MIB)
        r.delete(KEY)


# -- report --------------------------------------------------------------------------------------

def fmt(values: list[float], digits: int = 0, unit: str = "") -> str:
    med = statistics.median(values)
    f = f"{{:,.{digits}f}}"
    return f"{f.format(med)}{unit} [{f.format(min(values))}–{f.format(max(values))}]"


def report(runs: list[Run], args: argparse.Namespace, took: float) -> str:
    cmd = "    .venv/bin/python bench/ship.py" \
        + (f" --runs {args.runs}" if args.runs != 3 else "") \
        + (f" --lines {args.lines}" if args.lines != 2_000_000 else "") \
        + (" --quick" if args.quick else "")
    met = statistics.median(r.push_lines_s for r in runs) >= 200_000
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True,
                             text=True).stdout.split()[2]
    out = [
        "# Shipper benchmark",
        "",
        f"Written by `bench/ship.py` ({time.strftime('%Y-%m-%d %H:%M')}; {len(runs)} runs, "
        f"each with its own redis-server ({redis_v}, no persistence) and file; "
        f"{os.cpu_count()} CPUs shared by the shipper, redis-server, this script and other "
        "work on the machine (each phase first waits, a bounded time, for it to be quiet); "
        f"{took / 60:.0f} min in all). Figures are median [min–max] over runs.",
        "",
        cmd,
        "",
        "## Push: lines/s one shipper gets into Redis",
        "",
        f"A pre-written file of {args.lines:,} lines of 100 bytes (99 + newline, "
        "`bench/common.make_line`), page cache warm, shipped by the real `logtail ship` "
        "process from a fresh start with `maxlen` above that (so every line goes): from "
        "the stream's first entry (its `t`) to the stream holding every line (polled "
        "every 5 ms). CPU in cores over the same time. Target: at least 200,000 lines/s.",
        "",
        "| lines/s | seconds | shipper CPU (cores) | redis-server CPU (cores) | target |",
        "|---|---|---|---|---|",
        f"| {fmt([r.push_lines_s for r in runs])} | {fmt([r.push_s for r in runs], 2)} "
        f"| {fmt([r.push_ship_cpu for r in runs], 2)} "
        f"| {fmt([r.push_redis_cpu for r in runs], 2)} "
        f"| {'**met**' if met else 'missed'} |",
        "",
        "## Redis memory per million 100-byte lines",
        "",
        "The raw text is 95.4 MiB per million lines.",
        "",
        "| how | MiB per million lines |",
        "|---|---|",
        f"| shipped file, `INFO memory` used_memory after − before | "
        f"{fmt([r.used_mib_per_m for r in runs], 1)} |",
        f"| shipped file, `MEMORY USAGE key SAMPLES 0` | "
        f"{fmt([r.usage_mib_per_m for r in runs], 1)} |",
        f"| one line per entry (a quiet log: each line its own commit), `MEMORY USAGE` | "
        f"{fmt([r.one_line_mib_per_m for r in runs], 1)} |",
        "",
        "## Shipper CPU",
        "",
        f"At rest: {args.rest_s:g} s with nothing written, after the file was shipped. "
        f"At 1,000 lines/s: {args.rate_s:g} s of a writer appending one 100-byte line per "
        "write(), paced by the clock; every line was checked to be in the stream.",
        "",
        "| load | shipper (% of a core) | redis-server (% of a core) |",
        "|---|---|---|",
        f"| at rest | {fmt([r.rest_cpu for r in runs], 2)} | — |",
        f"| 1,000 lines/s | {fmt([r.rate_ship_cpu for r in runs], 1)} "
        f"| {fmt([r.rate_redis_cpu for r in runs], 1)} |",
        f"| 1,000 lines/s, the server's Follower alone (one subscriber that only counts) "
        f"| {fmt([r.follower_cpu for r in runs], 1)} | — |",
        "",
        "The last row is what following the file costs before any shipping: the Follower "
        "reads each write as inotify reports it (the server pays the same per followed "
        "file). Shipping adds the cursor and the script calls: a trickle waits up to 20 ms "
        "for more lines, so 1,000 single-line writes a second made "
        f"{fmt([r.rate_entries_s for r in runs])} entries (and script calls) a second, "
        "not 1,000. At rest the shipper only answers the watcher's once-a-second safety "
        "look and writes its heartbeat every 5 s.",
        "",
        "## Entry format: one entry per line, or per batch",
        "",
        f"{args.format_lines:,} lines written by this process through redis-py (no hiredis), "
        "three ways: one entry per line, XADDs in a Lua script (1,000 per call) or in a MULTI "
        "pipeline (1,000 per EXEC); and the shipper's format, one entry of 310 lines "
        "(~31 KiB) per XADD, ten per script call. Client CPU is this process's.",
        "",
        "| format | lines/s | client CPU (% of a core) | redis-server CPU (% of a core) "
        "| MiB per million lines |",
        "|---|---|---|---|---|",
    ]
    for name in runs[0].formats:
        vals = [r.formats[name] for r in runs]
        out.append(f"| {name} | {fmt([v[0] for v in vals])} | {fmt([v[1] for v in vals])} "
                   f"| {fmt([v[2] for v in vals])} | {fmt([v[3] for v in vals], 1)} |")
    out += [
        "",
        "Per-line entries take about 15 % more memory and cap a shipper (and a shared Redis) "
        "at a fraction of the rate: entries hold batches, and each line's id is derived "
        "(`<epoch>-<number of the entry's first line + k>`, see README, \"Shipping to "
        "Redis\").",
        "",
    ]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--lines", type=int, default=2_000_000)
    p.add_argument("--quick", action="store_true", help="fewer lines, shorter phases")
    p.add_argument("--out", default=str(BENCH / "SHIP.md"))
    args = p.parse_args()
    args.rest_s, args.rate_s = (10.0, 10.0) if args.quick else (30.0, 20.0)
    if args.quick:
        args.lines = min(args.lines, 300_000)
    args.format_lines = min(args.lines, 300_000)
    quiet = Quiet()
    runs: list[Run] = []
    started = time.monotonic()
    for i in range(args.runs):
        tmp = Path(tempfile.mkdtemp(prefix="logtail-ship-bench-"))
        try:
            run = Run()
            phase_push(tmp, args.lines, run, quiet, args.rest_s, args.rate_s)
            phase_formats(tmp, args.format_lines, run, quiet)
            runs.append(run)
            print(f"run {i + 1}: {run.push_lines_s:,.0f} lines/s, "
                  f"{run.usage_mib_per_m:.1f} MiB/M lines, rest {run.rest_cpu:.2f} %, "
                  f"1k/s {run.rate_ship_cpu:.1f} %, formats "
                  + ", ".join(f"{k} {v[0]:,.0f}/s" for k, v in run.formats.items()),
                  flush=True)
        except BaseException:
            out = tmp / "ship.out"
            if out.exists():
                print("shipper log (tail):\n" + "\n".join(out.read_text().splitlines()[-30:]),
                      file=sys.stderr)
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    text = report(runs, args, time.monotonic() - started)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
