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

    python bench/history_read.py [--mb 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiofiles

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


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
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
