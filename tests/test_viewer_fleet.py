"""The viewer on shipped files (`[fleet]`): Debian's Chromium, a real redis-server, the real
`logtail ship` and `logtail serve` processes."""

from __future__ import annotations

import os

import pytest
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
