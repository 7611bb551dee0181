#!/usr/bin/env python3
"""Screenshots of the viewer's history features, for a look by eye: the search panel over a
log's whole history (with a match opened in its context), and a permalink opened in a
fresh page. Light theme, realistic demo lines in four generations (two of them gzip).

Writes docs/screenshots/search-panel.png and docs/screenshots/permalink.png.
Usage: python bench/history_screenshots.py [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import re
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from helpers import ServerProcess, free_port, toml_config  # noqa: E402
from playwright.async_api import Page, async_playwright, expect  # noqa: E402
from viewer_support import launch  # noqa: E402

from logtail.demo import demo_line  # noqa: E402

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
GENERATIONS = ["app.log.3.gz", "app.log.2.gz", "app.log.1", "app.log"]
PER_DAY = 6000


def write_history(folder: Path) -> None:
    """Four days of demo lines, one generation a day, the last one ending now."""
    rng = random.Random(11)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=len(GENERATIONS))
    step = timedelta(days=1) / PER_DAY
    for day, name in enumerate(GENERATIONS):
        lines = []
        for i in range(PER_DAY):
            t = start + timedelta(days=day) + i * step
            stamp = t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            lines.append(STAMP.sub(stamp, demo_line(rng), count=1))
        data = "".join(f"{ln}\n" for ln in lines).encode()
        path = folder / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        done = (start + timedelta(days=day + 1)).timestamp()
        os.utime(path, (done, done))


async def settle(page: Page) -> None:
    await page.wait_for_timeout(400)  # the last frame painted, the progress bar drawn


async def shoot(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        write_history(Path(d))
        config = toml_config(Path(d), {"app": "app.log"}, "[stream]\nbacklog_lines = 400\n")
        server = ServerProcess(["-c", str(config)], free_port())
        try:
            server.wait_ready()
            async with async_playwright() as pw:
                browser = await launch(pw)
                args = {"viewport": {"width": 1280, "height": 720}, "color_scheme": "light",
                        "permissions": ["clipboard-read", "clipboard-write"]}
                context = await browser.new_context(**args)  # type: ignore[arg-type]
                page = await context.new_page()
                await page.goto(server.base + "/#file=app")
                await page.wait_for_selector("#conn[data-state=live]", timeout=20_000)

                # the search panel: matches from every generation, one opened in context
                await page.click("#search-toggle")
                await page.fill("#search-q", "upstream timeout")
                await page.click("#search-go")
                await expect(page.locator("#search-summary")).to_contain_text("Done",
                                                                              timeout=30_000)
                await page.locator("#search-results .hit").nth(7).click()
                await page.wait_for_selector("#rows .row.target", timeout=20_000)
                await settle(page)
                search_png = out / "search-panel.png"
                await page.screenshot(path=str(search_png))

                # copy a line's link, open it elsewhere: the line in context, Back to live
                await page.click("#back-live")
                await page.wait_for_selector("#conn[data-state=live]", timeout=20_000)
                await page.click("#search-close")
                row = page.locator("#rows .row.lvl-error").last
                await row.hover()
                await page.click("#line-link")
                url = await page.evaluate("navigator.clipboard.readText()")
                other = await context.new_page()
                await other.goto(url)
                await other.wait_for_selector("#rows .row.target", timeout=20_000)
                target = other.locator("#rows .row.target")
                box = await target.bounding_box()
                if box:  # the pointer on a neighbour: its copy-link button shows
                    await other.mouse.move(box["x"] + 300, box["y"] + box["height"] * 3.5)
                await settle(other)
                link_png = out / "permalink.png"
                await other.screenshot(path=str(link_png))
                await context.close()
                await browser.close()
        finally:
            server.stop()
    return [search_png, link_png]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    for path in asyncio.run(shoot(args.out)):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
