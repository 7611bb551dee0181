"""The viewer passes axe-core's WCAG 2 A and AA rules in both themes: a merged view of
several files (badges, legend, the per-minute overview), a filter on (marks), every level,
ANSI colours, JSON, a notice, and the file picker open.

axe-core comes from the npm registry, pinned and checked (tests/fetch_axe.py), cached in
tests/.cache/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fetch_axe import ensure_axe
from helpers import append, live_server, make_config
from playwright.async_api import Page, expect
from viewer_support import WAIT, open_live, viewer_page

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
ANSI = "".join(f"\x1b[{code}mc{code}\x1b[0m " for code in [*range(30, 38), *range(90, 98)])


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe.min.js, fetched from the registry on first use (no network later)."""
    return ensure_axe().read_text(encoding="utf-8")


def sample(name: str) -> list[str]:
    return [
        f"2026-11-30T10:00:00Z DEBUG svc {name}: cache hit key=user:42",
        f"2026-11-30T10:00:01Z INFO svc {name}: GET /api/orders -> 200 in 12 ms",
        f"2026-11-30T10:00:02Z WARN svc {name}: slow query (870 ms)",
        f"2026-11-30T10:00:03Z ERROR svc {name}: payment declined",
        f"2026-11-30T10:00:04Z \x1b[31mERROR\x1b[0m svc {name}: upstream timeout",
        f"2026-11-30T10:00:05Z FATAL svc {name}: out of memory",
        f"2026-11-30T10:00:06Z TRACE svc {name}: entering handler",
        f'{{"ts": "2026-11-30T10:01:00Z", "level": "info", "msg": "svc {name}", "n": 3, '
        f'"ok": true, "none": null}}',
        f"2026-11-30T10:01:01Z INFO svc {name}: colours {ANSI}",
        f"  at {name}.handler (frame without a time)",
        f"2026-11-30T10:02:00Z INFO svc {name}: <b>markup</b> stays text & so on",
    ]


async def violations(page: Page, source: str) -> list[dict[str, Any]]:
    await page.add_script_tag(content=source)
    result: list[dict[str, Any]] = await page.evaluate("""async (tags) => {
      const r = await axe.run(document, {runOnly: {type: "tag", values: tags}});
      return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map((n) => ({target: n.target.join(" "),
          why: n.failureSummary}))}));
    }""", WCAG_TAGS)
    return result


def report(found: list[dict[str, Any]]) -> str:
    return json.dumps(found, indent=1)[:6000]


@pytest.mark.parametrize("theme", ["light", "dark"])
async def test_merged_view_with_a_filter_has_no_wcag_violation(tmp_path: Path, browser,
                                                              axe_source: str,
                                                              theme: str) -> None:
    names = ["app", "db", "worker"]
    for n in names:
        append(tmp_path / f"{n}.log", *sample(n))
    config = make_config(tmp_path, {n: f"{n}.log" for n in names})
    async with live_server(config) as base, \
            viewer_page(browser, color_scheme=theme, bypass_csp=True) as (page, watch):
        await open_live(page, base + "/#file=app&file=db&file=worker&q=svc")
        scheme = await page.evaluate(
            "getComputedStyle(document.documentElement).colorScheme")
        assert scheme == "light dark"  # the theme follows the system (emulated here)
        total = 3 * len(sample("x"))
        await expect(page.locator("#count")).to_have_text(
            f"{total - 3} of {total} lines", timeout=WAIT)  # the frames have no "svc "
        # a notice (amber), a file hidden in the legend, bars in the overview
        (tmp_path / "db.log").write_text("")
        await expect(page.locator("#rows .row.notice").first).to_be_visible(timeout=WAIT)
        await page.click('#legend button.chip[data-file="worker"]')
        await expect(page.locator('#legend button.chip[data-file="worker"]')).to_have_attribute(
            "aria-pressed", "false")
        await expect(page.locator("#spark .bar:not([disabled])")).to_have_count(3, timeout=WAIT)
        await expect(page.locator("#rows mark").first).to_be_visible()
        await expect(page.locator("#rows .row .badge").first).to_be_visible()

        found = await violations(page, axe_source)
        assert found == [], report(found)

        await page.click("#files-btn")  # the picker, open
        await expect(page.locator("#files-dialog")).to_be_visible()
        found = await violations(page, axe_source)
        assert found == [], report(found)
    assert watch.real_errors() == []
