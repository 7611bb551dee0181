"""Soak: rotations every 10 s, a steady writer, readers that reconnect at random.

Every reader resumes with Last-Event-ID and must end with exactly the written sequence.
Reports lines written / received / lost / duplicated per reader and the server's peak RSS.

    .venv/bin/python bench/soak.py --minutes 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))


def rotate(log: Path, kind: str) -> None:
    if kind == "rename":
        os.replace(log, log.with_name(log.name + ".1"))
        log.touch()
    elif kind == "delete":
        log.unlink()
        log.touch()


async def writer(log: Path, seconds: float, rate: float, rotate_every: float,
                 written: list[str]) -> int:
    rotations = 0
    start = time.monotonic()
    next_rotation = start + rotate_every
    i = 0
    kinds = ["rename", "delete"]
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if now >= next_rotation:
            rotate(log, kinds[rotations % len(kinds)])
            rotations += 1
            next_rotation += rotate_every
        batch = max(1, int(rate / 100))
        with open(log, "a") as f:
            for _ in range(batch):
                line = f"soak {i:09d} " + "x" * 80
                f.write(line + "\n")
                written.append(line)
                i += 1
        await asyncio.sleep(0.01)
    return rotations


async def reader(base: str, seed: int, stop: asyncio.Event, received: list[str],
                 stats: dict[str, int]) -> None:
    rng = random.Random(seed)
    last_id: str | None = None
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client:
        while not stop.is_set():
            headers = {"Last-Event-ID": last_id} if last_id else {}
            url = base + "/api/files/app/stream" + ("" if last_id else "?n=0")
            deadline = time.monotonic() + rng.uniform(0.5, 15)
            try:
                async with client.stream("GET", url, headers=headers) as resp:
                    if resp.status_code != 200:
                        stats["refused"] = stats.get("refused", 0) + 1
                        await asyncio.sleep(1)
                        continue
                    stats["connects"] = stats.get("connects", 0) + 1
                    event, data, ev_id = "message", [], None
                    buf = b""
                    async for chunk in resp.aiter_bytes():
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        for raw in lines:
                            line = raw.decode()
                            if line == "":
                                if event == "message" and data:
                                    received.extend(data)
                                elif event != "message":
                                    stats[event] = stats.get(event, 0) + 1
                                if ev_id:
                                    last_id = ev_id
                                event, data, ev_id = "message", [], None
                            elif line.startswith("data: "):
                                data.append(line[6:])
                            elif line.startswith("id: "):
                                ev_id = line[4:]
                            elif line.startswith("event: "):
                                event = line[7:]
                        if time.monotonic() > deadline or (stop.is_set() and not buf):
                            break
            except httpx.HTTPError:
                stats["errors"] = stats.get("errors", 0) + 1
                await asyncio.sleep(0.5)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=500.0, help="lines per second")
    ap.add_argument("--rotate-every", type=float, default=10.0)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "soak.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="logtail-soak-"))
    log = tmp / "app.log"
    log.touch()
    cfg = tmp / "config.toml"
    cfg.write_text('[limits]\nrequests_per_ip = "100000/minute"\nstreams_per_ip = 100\n'
                   f'[[files]]\nname = "app"\npath = "{log}"\n')
    port = 20000 + os.getpid() % 20000
    server = subprocess.Popen([sys.executable, "-m", "logtail", "serve", "-c", str(cfg),
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(base + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            await asyncio.sleep(0.1)
    written: list[str] = []
    stop = asyncio.Event()
    results = [([], {}) for _ in range(args.readers)]
    readers = [asyncio.create_task(reader(base, i, stop, results[i][0], results[i][1]))
               for i in range(args.readers)]
    await asyncio.sleep(1.0)
    peak = rss_kb(server.pid)

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_kb(server.pid))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    rotations = await writer(log, args.minutes * 60, args.rate, args.rotate_every, written)
    # let every reader catch up, then stop
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(len(r) < len(written) for r, _ in results):
        await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*readers, sampler)
    server.terminate()
    server.wait(10)
    expected = written
    report = {"minutes": round((time.monotonic() - started) / 60, 2), "rotations": rotations,
              "lines_written": len(expected), "peak_server_rss_mb": round(peak / 1024, 1),
              "readers": []}
    # each reader starts at the first line written after it connected: compare from there
    for received, stats in results:
        first = expected.index(received[0]) if received else 0
        want = expected[first:]
        seen = set()
        dups = 0
        for ln in received:
            if ln in seen:
                dups += 1
            seen.add(ln)
        lost = sum(1 for ln in want if ln not in seen)
        report["readers"].append({"received": len(received), "expected": len(want),
                                  "lost": lost, "duplicated": dups,
                                  "in_order": received == want, **stats})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
