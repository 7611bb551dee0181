"""Append-to-client latency, direct and through nginx (the shipped deploy/nginx.conf).

logtail runs as `python -m logtail serve` and nginx as a child process, both on loopback.
Each run opens one SSE stream straight to logtail and one through nginx's /logs/, then
appends lines to the log about every 20 ms; each line's latency is the time from just
before its write() to its arrival at each client. Both clients read the same lines at
the same time, so they see the same server load.

    .venv/bin/python bench/nginx_latency.py [--runs 5] [--lines 250] [--gap-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers import ServerProcess, free_port  # noqa: E402
from nginx_helpers import running_nginx  # noqa: E402


async def reader(url: str, tag: str, arrivals: dict[str, float], opened: asyncio.Event,
                 count: int) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0)) as client, \
            client.stream("GET", url) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if line.startswith(":"):
                opened.set()
            elif line.startswith("data: ") and line[6:].startswith(tag):
                arrivals[line[6:]] = time.perf_counter()
                if len(arrivals) == count:
                    return


async def one_run(direct: str, proxied: str, log: Path, run: int, lines: int,
                  gap_s: float) -> dict[str, list[float]]:
    tag = f"r{run}-"
    got: dict[str, dict[str, float]] = {"direct": {}, "nginx": {}}
    opened = {k: asyncio.Event() for k in got}
    path = "/api/files/app/stream?n=0"
    tasks = [asyncio.create_task(reader(direct + path, tag, got["direct"], opened["direct"],
                                        lines)),
             asyncio.create_task(reader(proxied + path, tag, got["nginx"], opened["nginx"],
                                        lines))]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened.values())), 10)
    await asyncio.sleep(0.3)  # the follower is up
    written: dict[str, float] = {}
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(lines):
            text = f"{tag}{i:05d} " + "x" * 80
            written[text] = time.perf_counter()
            os.write(fd, (text + "\n").encode())
            await asyncio.sleep(gap_s)
    finally:
        os.close(fd)
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    return {k: [(v[t] - written[t]) * 1000 for t in written] for k, v in got.items()}


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def main(runs: int, lines: int, gap_ms: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="logtail-bench-") as tmp_name:
        tmp = Path(tmp_name)
        log = tmp / "app.log"
        log.touch()
        config = tmp / "config.toml"
        config.write_text('[server]\ntrusted_proxies = ["127.0.0.1"]\n'
                          '[limits]\nrequests_per_ip = "100000/minute"\n'
                          '[[files]]\nname = "app"\npath = "app.log"\n')
        port = free_port()
        server = ServerProcess(["-c", str(config)], port)
        try:
            server.wait_ready()
            with running_nginx(tmp / "nginx", port) as nginx:
                results = []
                for run in range(runs):
                    lat = await one_run(server.base, nginx.base + "/logs", log, run, lines,
                                        gap_ms / 1000)
                    row = {k: {"median": statistics.median(v), "p99": p99(v), "max": max(v)}
                           for k, v in lat.items()}
                    results.append(row)
                    print(f"run {run + 1}: direct median {row['direct']['median']:.2f} ms, "
                          f"p99 {row['direct']['p99']:.2f} ms | nginx median "
                          f"{row['nginx']['median']:.2f} ms, p99 {row['nginx']['p99']:.2f} ms",
                          flush=True)
        finally:
            server.stop()
    summary = {k: {m: statistics.median(r[k][m] for r in results) for m in ("median", "p99")}
               for k in ("direct", "nginx")}
    return {"runs": results, "median_of_runs": summary, "lines_per_run": lines,
            "gap_ms": gap_ms}


def report(out: dict) -> str:
    rows = ["| run | direct median | direct p99 | nginx median | nginx p99 |",
            "|---|---|---|---|---|"]
    for i, r in enumerate(out["runs"], 1):
        rows.append(f"| {i} | {r['direct']['median']:.2f} ms | {r['direct']['p99']:.2f} ms | "
                    f"{r['nginx']['median']:.2f} ms | {r['nginx']['p99']:.2f} ms |")
    s = out["median_of_runs"]
    rows.append(f"| median of runs | {s['direct']['median']:.2f} ms | {s['direct']['p99']:.2f} ms"
                f" | {s['nginx']['median']:.2f} ms | {s['nginx']['p99']:.2f} ms |")
    return "\n".join(rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lines", type=int, default=250, help="appends per run (>= 200)")
    ap.add_argument("--gap-ms", type=float, default=20.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    result = asyncio.run(main(args.runs, args.lines, args.gap_ms))
    print(report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
