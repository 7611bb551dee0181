"""The viewer on shipped files (`[fleet]`): Debian's Chromium, a real redis-server, the real
`logtail ship` and `logtail serve` processes."""

from __future__ import annotations

import os
import re
import time

import pytest
import redis
from playwright.async_api import expect
from redis_support import (
    NAME,
    append,
    redis_server,
    serve_config,
    serving,
    shipping,
    wait_listed,
    write_config,
)
from viewer_support import WAIT, open_live, viewer_page

from logtail.fleet.keys import HOSTS_KEY, stream_key

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]


async def test_a_rotation_on_the_shipping_host_shows_its_notice_in_the_viewer(tmp_path,
                                                                              browser):
    log = tmp_path / "app.log"
    append(log, [f"before {i}" for i in range(3)])
    with redis_server(tmp_path) as rs, shipping(write_config(tmp_path, rs.url)):
        server = serving(serve_config(tmp_path, rs.url))
        try:
            wait_listed(server.base, NAME)
            async with viewer_page(browser) as (page, watch):
                await open_live(page, f"{server.base}/#file={NAME}")
                rows = page.locator("#rows .row:not(.notice) .txt")
                await expect(rows).to_have_text([f"before {i}" for i in range(3)],
                                                timeout=WAIT)
                os.rename(log, tmp_path / "app.log.1")
                append(log, ["after rotation"])
                notices = page.locator("#rows .row.notice")
                await expect(notices.filter(has_text="rotated")).to_have_count(1, timeout=WAIT)
                await expect(rows.last).to_have_text("after rotation", timeout=WAIT)
                assert watch.real_errors() == []
        finally:
            server.stop()


async def test_the_pickers_group_shipped_files_by_host_and_mark_a_quiet_one(tmp_path, browser):
    (tmp_path / "app.log").touch()
    with redis_server(tmp_path) as rs, shipping(write_config(tmp_path, rs.url)):
        r = redis.Redis(port=rs.port)
        r.xadd(stream_key("web-9", "app"), {"lines": "old", "n": "1", "t": "1", "pos": "-"},
               id="1-0")
        r.hset(HOSTS_KEY, "web-9", str(int(time.time()) - 3 * 3600))  # gone for 3 hours
        server = serving(serve_config(tmp_path, rs.url))
        try:
            wait_listed(server.base, NAME)
            wait_listed(server.base, "web-9:app")
            async with viewer_page(browser) as (page, watch):
                await open_live(page, f"{server.base}/#file={NAME}")
                options = page.locator("#file option")
                await expect(options.filter(has_text="web-9:app")).to_have_text(
                    "web-9:app (quiet: last seen 3 h ago)", timeout=WAIT)
                await expect(options.filter(has_text=NAME)).to_have_text(NAME)
                await page.click("#files-btn")
                groups = page.locator("#files-list .pick-group legend")
                await expect(groups).to_have_text([
                    re.compile(r"All files of host web-1 \(1\)"),
                    re.compile(r"All files of host web-9 \(quiet: last seen 3 h ago\) \(1\)")])
                assert watch.real_errors() == []
        finally:
            server.stop()
