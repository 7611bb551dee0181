"""The viewer's file picker follows the served set live (`api/files?watch=1`), in a real
Chromium: files that appear are offered without a reload, files that go are marked.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from helpers import RELAXED, append, live_server
from playwright.async_api import Page, expect
from viewer_support import WAIT, PrefixProxy, shown_lines, viewer_page

from logtail.config import Config, parse_config

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]


def glob_config(tmp: Path) -> Config:
    (tmp / "logs").mkdir(exist_ok=True)
    return parse_config(tomllib.loads(
        RELAXED + '[[files]]\nname = "l"\nglob = "logs/*.log"\n'), tmp)


async def picker(page: Page) -> list[str]:
    return await page.locator("#file option").evaluate_all("os => os.map(o => o.value)")


async def test_a_new_file_appears_in_the_picker_without_a_reload(tmp_path, browser):
    logs = tmp_path / "logs"
    config = glob_config(tmp_path)
    append(logs / "a.log", "line a")
    async with live_server(config) as base, viewer_page(browser) as (page, watch):
        await page.goto(base + "/")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=WAIT)
        await page.evaluate("window.notReloaded = true")
        assert await picker(page) == ["l.a.log"]
        assert await page.locator("#file").is_disabled()  # one file: nothing to pick

        append(logs / "b.log", "line b")
        await expect(page.locator('#file option[value="l.b.log"]')).to_have_count(1, timeout=WAIT)
        assert await page.evaluate("window.notReloaded") is True
        assert await picker(page) == ["l.a.log", "l.b.log"]
        assert await page.locator("#file").is_enabled()
        assert await page.locator("#file").input_value() == "l.a.log"  # still on its file
        await expect(page.locator("#announce")).to_have_text("New file: l.b.log", timeout=WAIT)

        await page.select_option("#file", "l.b.log")
        await expect(page.locator("#rows .row:not(.notice) .txt").last).to_have_text(
            "line b", timeout=WAIT)
        (logs / "a.log").unlink()
        await expect(page.locator('#file option[value="l.a.log"]')).to_have_text(
            "l.a.log (missing)", timeout=WAIT)
        assert await page.evaluate("window.notReloaded") is True
    assert watch.real_errors(allow_network=True) == []


async def test_the_first_file_to_appear_is_followed(tmp_path, browser):
    config = glob_config(tmp_path)
    async with live_server(config) as base, viewer_page(browser) as (page, watch), \
            PrefixProxy("/logs/", int(base.rsplit(":", 1)[1])) as proxy:
        await page.goto(proxy.base + "/logs/")
        await expect(page.locator("#conn-detail")).to_have_text(
            "no files yet; waiting for one to appear", timeout=WAIT)
        append(tmp_path / "logs" / "first.log", "hello")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=WAIT)
        await expect(page.locator("#rows .row:not(.notice) .txt").last).to_have_text(
            "hello", timeout=WAIT)
        assert await shown_lines(page) == ["hello"]
        assert "file=l.first.log" in page.url
    assert any(p == "/logs/api/files?watch=1" for p in proxy.paths), proxy.paths
    assert not [p for p in proxy.paths if not p.startswith("/logs/")]  # relative URLs only
    assert watch.real_errors(allow_network=True) == []
