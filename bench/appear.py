"""How long a new file takes to be served: from its creation to its appearance in
`GET /api/files`, in the `?watch=1` stream, and in the viewer's file picker.

logtail runs as `python -m logtail serve DIR` (limits relaxed through the environment).
Each run creates one new file in DIR; the time starts just before the file is created:

- `/api/files`: polled every 2 ms on a keep-alive connection; the time is when the
  first response listing the file arrived (so it includes up to one poll interval);
- `?watch=1`: when the `files` event listing it arrived;
- the viewer: headless Chromium on the page; a MutationObserver stamps the moment the
  option appears in the picker (the browser's clock and ours are the same wall clock).

Each run waits 0.6 s first: the watch stream sends at most one list every 0.25 s, so a
file created just after a list went out would wait for the next one.

    .venv/bin/python bench/appear.py [--runs 20] [--backend inotify,watchfiles]
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
from viewer_support import launch  # noqa: E402

GAP_S = 0.6
STAMP_OPTIONS = """() => {
  window.seen = {};
  const stamp = () => {
    const now = performance.timeOrigin + performance.now();
    for (const o of document.querySelectorAll("#file option")) {
      if (!(o.value in window.seen)) window.seen[o.value] = now;
    }
  };
  stamp();
  new MutationObserver(stamp).observe(document.getElementById("file"), { childList: true });
}"""


def create(path: Path) -> float:
    """Create `path`; the time (s, wall clock) just before."""
    t0 = time.time()
    with open(path, "w") as f:
        f.write("hello\n")
    return t0


async def poll_listing(client: httpx.AsyncClient, base: str, name: str) -> float:
    while True:
        r = await client.get(base + "/api/files")
        if any(f["name"] == name for f in r.json()["files"]):
            return time.time()
        await asyncio.sleep(0.002)


async def watch_events(base: str, arrivals: asyncio.Queue[tuple[float, list[str]]]) -> None:
    async with httpx.AsyncClient(timeout=None) as client, \
            client.stream("GET", base + "/api/files?watch=1") as resp:
        event = ""
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "files":
                names = [f["name"] for f in json.loads(line[6:])["files"]]
                arrivals.put_nowait((time.time(), names))


async def measure_api(base: str, folder: Path, prefix: str, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"api": [], "watch": []}
    arrivals: asyncio.Queue[tuple[float, list[str]]] = asyncio.Queue()
    watcher = asyncio.get_running_loop().create_task(watch_events(base, arrivals))
    await arrivals.get()  # the list at once
    async with httpx.AsyncClient() as client:
        for i in range(runs):
            await asyncio.sleep(GAP_S)
            name = f"api{i:03d}.log"
            t0 = create(folder / name)
            t_api = await poll_listing(client, base, f"{prefix}.{name}")
            while True:
                t_watch, names = await asyncio.wait_for(arrivals.get(), 10)
                if f"{prefix}.{name}" in names:
                    break
            out["api"].append((t_api - t0) * 1000)
            out["watch"].append((t_watch - t0) * 1000)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    return out


async def measure_viewer(base: str, folder: Path, prefix: str, runs: int) -> list[float]:
    from playwright.async_api import async_playwright

    out: list[float] = []
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await browser.new_page()
            await page.goto(base + "/")
            await page.wait_for_selector('#conn[data-state="live"]', timeout=20_000)
            await page.evaluate(STAMP_OPTIONS)
            for i in range(runs):
                await asyncio.sleep(GAP_S)
                name = f"{prefix}.view{i:03d}.log"
                t0 = create(folder / f"view{i:03d}.log")
                seen = None
                while seen is None:  # the page stamped it; here we only collect the stamp
                    await asyncio.sleep(0.01)
                    seen = await page.evaluate("(n) => window.seen[n] ?? null", name)
                out.append(seen - t0 * 1000)
        finally:
            await browser.close()
    return out


def summary(label: str, values: list[float]) -> str:
    return (f"{label:<22} median {statistics.median(values):7.1f} ms   "
            f"range {min(values):6.1f} – {max(values):6.1f} ms   (n={len(values)})")


async def one_backend(backend: str, runs: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="logtail-appear-") as tmp:
        folder = Path(tmp) / "logs"
        folder.mkdir()
        (folder / "seed.log").write_text("seed\n")  # the viewer opens on a file
        port = free_port()
        os.environ.update({"LOGTAIL_LIMITS__REQUESTS_PER_IP": "1000000/minute",
                           "LOGTAIL_WATCH__BACKEND": backend})
        server = ServerProcess([str(folder)], port, cwd=Path(tmp))
        try:
            server.wait_ready()
            api = await measure_api(server.base, folder, "logs", runs)
            viewer = await measure_viewer(server.base, folder, "logs", runs)
        finally:
            server.stop()
    return [f"backend {backend}:",
            summary("  GET /api/files (poll)", api["api"]),
            summary("  ?watch=1 event", api["watch"]),
            summary("  viewer picker", viewer)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--backend", default="inotify",
                    help="comma-separated: inotify, watchfiles (default: inotify)")
    args = ap.parse_args()
    for backend in args.backend.split(","):
        print("\n".join(asyncio.run(one_backend(backend.strip(), args.runs))), flush=True)


if __name__ == "__main__":
    main()
