"""Reading history for a search: aiofiles on the event loop vs. the scan pool's threads.

Both read a plain file of `--mb` MiB (default 1024) and search it, once for a rare word
(RE2 over whole blocks) and once with `invert` (every line tested on its own, in
Python); meanwhile a probe task measures how late the event loop wakes up (what every
live stream would feel):

- aiofiles: `await f.read(chunk)` (each read a hop to the default thread pool and back),
  the search of each chunk on the loop;
- gate: the real search path, `Search` as a `GeneratorScan` in the `ScanGate`'s threads,
  `os.pread` and the search both in the thread, in 4 MiB slices, newest first
  (backwards) and oldest first.

With `--gil`, instead: how long the scan thread holds the GIL at a stretch. `Search`
runs in this thread over the plain file and over a `.gz` of its first quarter, and the
CPU time between the calls that let the GIL go (`os.pread`/`os.preadv`, RE2's search,
zlib's inflate) is taken for each stretch: the event loop, wanting the GIL back, waits
for the one under way (up to the switch interval, for Python). CPU time of the thread,
not wall time, so other work on a shared machine hardly moves it; run it once per code
to compare (`PYTHONPATH=<a copy of the package> python bench/history_read.py --gil`).

    python bench/history_read.py [--mb 1024] [--runs 3] [--gil]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiofiles
import re2

import logtail
from logtail.streaming.filters import LineFilter
from logtail.streaming.scans import GeneratorScan, ScanGate
from logtail.streaming.search import Search, SearchSpec

LINE = b"2026-01-04T00:00:00Z GET /api/files/app/stream 200 1234 0.004 some words here\n"


def make(path: Path, mb: int) -> int:
    block = LINE * (1024 * 1024 // len(LINE))
    with open(path, "wb") as f:
        for i in range(mb):
            f.write(block)
            if i % 97 == 0:
                f.write(b"2026-01-04T00:00:00Z needle\n")
    return path.stat().st_size


async def probe(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - t - 0.001)


async def with_aiofiles(path: Path, chunk: int, f: LineFilter) -> int:
    search = f.block_search()
    found = 0
    held = b""
    async with aiofiles.open(path, "rb") as fh:
        while data := await fh.read(chunk):
            data, held = held + data[: data.rfind(b"\n") + 1], data[data.rfind(b"\n") + 1:]
            if search is not None:
                pos = 0
                while (m := search(data, pos)) is not None:
                    found += 1
                    pos = data.find(b"\n", m.start()) + 1
            else:
                found += sum(1 for line in data.decode().split("\n")[:-1] if f.match(line))
    return found


async def with_gate(path: Path, f: LineFilter, desc: bool) -> int:
    gate = ScanGate(2, 1)
    s = Search(path, SearchSpec(f, None, None, 1_000_000, desc, 1 << 40, 65536))
    scan = GeneratorScan(s.work())
    found = 0

    async def between() -> None:
        nonlocal found
        found += len(s.take())

    try:
        await gate.run("bench", scan, scan.close, between=between)
    finally:
        gate.close()
    return found + len(s.take())


async def measure(name: str, work: object) -> tuple[float, float, float, int]:
    stop, lags = asyncio.Event(), []
    prober = asyncio.ensure_future(probe(stop, lags))
    t = time.perf_counter()
    found = await work  # type: ignore[misc]
    elapsed = time.perf_counter() - t
    stop.set()
    await prober
    lags.sort()
    p99 = lags[int(len(lags) * 0.99)] if lags else 0.0
    return elapsed, p99 * 1000, lags[-1] * 1000 if lags else 0.0, found


class GilHeld:
    """Stretches of thread CPU time between calls that let the GIL go, in this thread."""

    def __init__(self) -> None:
        self.stretches: list[int] = []  # ns
        self.left: int | None = None  # when the last such call returned
        self.saved: list[tuple[Any, str, Any]] = []

    def releasing(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            now = time.thread_time_ns()
            if self.left is not None:
                self.stretches.append(now - self.left)
            try:
                return fn(*args, **kwargs)
            finally:
                self.left = time.thread_time_ns()
        return call

    def __enter__(self) -> GilHeld:
        inflater = zlib.decompressobj
        held = self

        class Inflate:  # zlib's objects take no new attributes: wrap the one call
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self._d = inflater(*args, **kwargs)
                self.decompress = held.releasing(self._d.decompress)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._d, name)

        for owner, name, new in ((os, "pread", None), (os, "preadv", None),
                                 (re2._Regexp, "search", None),
                                 (zlib, "decompressobj", Inflate)):
            old = getattr(owner, name)
            self.saved.append((owner, name, old))
            setattr(owner, name, new or self.releasing(old))
        return self

    def __exit__(self, *_: object) -> None:
        for owner, name, old in self.saved:
            setattr(owner, name, old)


def gil_case(log: Path, make_filter: Callable[[], LineFilter], desc: bool
             ) -> tuple[float, list[int], int]:
    """MB per CPU second, the GIL stretches (ns) and the bytes scanned, for one search."""
    with GilHeld() as held:
        f = make_filter()  # after the wrapping: it keeps RE2's search method
        s = Search(log, SearchSpec(f, None, None, 1_000_000, desc, 1 << 40, 65536))
        scan = GeneratorScan(s.work())
        t0 = time.thread_time()
        while not scan.step(4 << 20):
            held.left = None  # between slices the thread goes back to the pool
            s.take()
        cpu = time.thread_time() - t0
    return s.scanned / 1e6 / cpu, held.stretches, s.scanned


def gil_main(args: argparse.Namespace, tmp: Path) -> None:
    plain = tmp / "plain" / "app.log"
    plain.parent.mkdir()
    size = make(plain, args.mb)
    gz = tmp / "gz" / "app.log"
    gz.parent.mkdir()
    gz.write_bytes(b"")
    # in other processes: what this one allocates and frees shapes how malloc serves the
    # scan later (a freed GiB would keep every later MiB warm, unlike in a server)
    subprocess.run(f"head -c {(args.mb // 4) << 20} {plain} | gzip -6 > {gz}.1.gz",
                   shell=True, check=True)
    subprocess.run(["cat", str(plain)], stdout=subprocess.DEVNULL, check=True)  # page cache
    def regex() -> LineFilter:  # RE2 over whole blocks, finding nothing
        return LineFilter(r"latency=[0-9]{7,}ms", regex=True)

    def invert() -> LineFilter:  # every line tested in Python
        return LineFilter("GET", invert=True)

    cases = [("regex, oldest first", plain, regex, False),
             ("regex, newest first", plain, regex, True),
             ("regex, .gz", gz, regex, False),
             ("invert (Python per line)", plain, invert, False)]
    print(f"{size / 2**20:.0f} MiB plain, {args.mb // 4} MiB in a .gz; page cache warm; "
          f"code in {Path(logtail.__file__).parent}; medians of {args.runs} runs")
    print(f"{'':26} {'MB/s cpu':>8} {'held ms/MiB':>11} {'stretch p50 ms':>14} "
          f"{'p99':>6} {'p99.9':>6} {'max':>6}")
    for name, log, f, desc in cases:
        rows = []
        for _ in range(args.runs):
            mbps, st, scanned = gil_case(log, f, desc)
            st.sort()
            q = [st[min(len(st) - 1, int(len(st) * p))] / 1e6 for p in (0.5, 0.99, 0.999)]
            rows.append((mbps, sum(st) / 1e6 / (scanned / 2**20), *q, st[-1] / 1e6))
        med = [statistics.median(r[i] for r in rows) for i in range(6)]
        print(f"{name:26} {med[0]:8.0f} {med[1]:11.3f} {med[2]:14.3f} {med[3]:6.3f} "
              f"{med[4]:6.3f} {med[5]:6.2f}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gil", action="store_true",
                    help="measure the GIL stretches of the scan thread instead")
    args = ap.parse_args()
    if args.gil:
        with tempfile.TemporaryDirectory() as tmp:
            gil_main(args, Path(tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "app.log"
        size = make(path, args.mb)
        path.read_bytes() if args.mb <= 2048 else None  # warm the page cache once
        results: dict[str, list[tuple[float, float, float, int]]] = {}
        rare, invert = LineFilter("needle"), LineFilter("GET", invert=True)
        cases = [
            ("rare word: aiofiles 1 MiB", lambda: with_aiofiles(path, 1 << 20, rare)),
            ("rare word: aiofiles 4 MiB", lambda: with_aiofiles(path, 4 << 20, rare)),
            ("rare word: gate, newest 1st", lambda: with_gate(path, rare, True)),
            ("rare word: gate, oldest 1st", lambda: with_gate(path, rare, False)),
            ("invert: aiofiles 1 MiB", lambda: with_aiofiles(path, 1 << 20, invert)),
            ("invert: gate, newest 1st", lambda: with_gate(path, invert, True)),
        ]
        for _ in range(args.runs):
            for name, make_work in cases:
                results.setdefault(name, []).append(await measure(name, make_work()))
        print(f"{size / 2**20:.0f} MiB, page cache warm, medians of {args.runs} runs")
        print(f"{'':28} {'MB/s':>6} {'loop lag p99 ms':>16} {'max ms':>8} {'found':>6}")
        for name, rs in results.items():
            mbps = statistics.median(size / 1e6 / r[0] for r in rs)
            p99 = statistics.median(r[1] for r in rs)
            worst = statistics.median(r[2] for r in rs)
            print(f"{name:28} {mbps:6.0f} {p99:16.2f} {worst:8.2f} {rs[0][3]:6}")


if __name__ == "__main__":
    asyncio.run(main())
