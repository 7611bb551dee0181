"""Append benchmark lines to a file: paced at a rate, or as fast as possible.

    python bench/writer.py FILE --count N --rate R      # R lines/s, one write() per line
    python bench/writer.py FILE --payload BLOB          # BLOB's bytes in 1 MB writes, flat out

Prints one JSON object at the end: lines written, start/end (CLOCK_MONOTONIC ns), own CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_line

BLOCK = 1_000_000  # 10,000 lines of 100 bytes


def paced(fd: int, count: int, rate: float, first: int) -> None:
    step = 1e9 / rate
    t0 = time.monotonic_ns()
    for i in range(count):
        wait = t0 + i * step - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        os.write(fd, make_line(first + i, time.monotonic_ns()))


def flat_out(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    for pos in range(0, len(payload), BLOCK):
        os.write(fd, view[pos : pos + BLOCK])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--payload", help="write this file's bytes as fast as possible")
    args = ap.parse_args()
    fd = os.open(args.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    payload = Path(args.payload).read_bytes() if args.payload else b""
    start = time.monotonic_ns()
    if payload:
        flat_out(fd, payload)
        written = len(payload) // 100
    else:
        paced(fd, args.count, args.rate, args.first)
        written = args.count
    end = time.monotonic_ns()
    os.close(fd)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"written": written, "start_ns": start, "end_ns": end,
                      "cpu_s": ru.ru_utime + ru.ru_stime}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
