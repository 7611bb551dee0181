"""The viewer in a real Chromium against a real server: loading (at / and under a prefix),
following, filtering, pausing, notices, reconnects, limits, safety and the address.

Lines are checked twice: on screen (the rows the virtual list rendered) and in full
through the Save button, which downloads every retained line on show.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from helpers import ServerProcess, append, free_port, live_server, make_config, sse, toml_config
from playwright.async_api import Browser, Page, expect
from viewer_support import (
    WAIT,
    PageWatch,
    PrefixProxy,
    open_live,
    saved_lines,
    shown_lines,
    viewer_page,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]


@pytest_asyncio.fixture(loop_scope="module")
async def view(browser: Browser) -> AsyncIterator[tuple[Page, PageWatch]]:
    async with viewer_page(browser) as pw:
        yield pw


def numbered(prefix: str, start: int, stop: int) -> list[str]:
    return [f"{prefix} {i:05d}" for i in range(start, stop)]


async def last_shown(page: Page) -> str:
    lines = await shown_lines(page)
    return lines[-1] if lines else ""


async def expect_last_shown(page: Page, text: str) -> None:
    """Wait for `text` on the last rendered row: a state change (Resume, End) paints the
    rows in the next animation frame, so reading them at once would race the paint."""
    await expect(page.locator("#rows .row:not(.notice) .txt").last).to_have_text(text, timeout=WAIT)


# -- loading -------------------------------------------------------------------------------

async def test_page_loads_at_root_under_strict_csp_without_errors(tmp_path, view):
    page, watch = view
    append(tmp_path / "app.log", "first line", "second line", "third line")
    async with live_server(make_config(tmp_path)) as base:
        response = await page.goto(base + "/")
        assert response is not None and response.ok
        csp = response.headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp and "script-src 'self'" in csp
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=WAIT)
        await expect(page.locator("#count")).to_have_text("3 lines", timeout=WAIT)
        assert await shown_lines(page) == ["first line", "second line", "third line"]
        append(tmp_path / "app.log", "fourth line")
        await expect(page.locator("#count")).to_have_text("4 lines", timeout=WAIT)
        await expect_last_shown(page, "fourth line")
    assert watch.real_errors() == []  # a CSP violation would be a console error
    assert all(status < 400 for status, _ in watch.statuses), watch.statuses


async def test_page_works_under_a_path_prefix(tmp_path, view):
    page, watch = view
    append(tmp_path / "app.log", *numbered("line", 0, 5))
    async with live_server(make_config(tmp_path)) as base, \
            PrefixProxy("/logs/", int(base.rsplit(":", 1)[1])) as proxy:
        await open_live(page, proxy.base + "/logs/")
        await expect(page.locator("#count")).to_have_text("5 lines", timeout=WAIT)
        append(tmp_path / "app.log", "through the proxy")
        await expect(page.locator("#count")).to_have_text("6 lines", timeout=WAIT)
        await expect_last_shown(page, "through the proxy")
        # none failed while the proxy was up (closing it cuts the page's stream: that
        # error is the teardown's, not the page's)
        assert all(status < 400 for status, _ in watch.statuses), watch.statuses
        assert watch.real_errors() == []
    # every request the page made stayed under the prefix
    assert proxy.paths and all(p.startswith("/logs/") for p in proxy.paths), proxy.paths
    assert any(p.startswith("/logs/api/files/app/stream") for p in proxy.paths)


# -- following -----------------------------------------------------------------------------

async def test_backlog_then_live_lines_appear_in_order(tmp_path, view):
    page, watch = view
    log = tmp_path / "app.log"
    append(log, *numbered("old", 0, 150))  # backlog_lines = 100 by default
    async with live_server(make_config(tmp_path)) as base:
        await open_live(page, base + "/")
        await expect(page.locator("#count")).to_have_text("100 lines", timeout=WAIT)
        for start in range(0, 300, 30):
            append(log, *numbered("new", start, start + 30))
            await asyncio.sleep(0.02)
        await expect(page.locator("#count")).to_have_text("400 lines", timeout=WAIT)
        await expect_last_shown(page, "new 00299")
        assert await saved_lines(page) == numbered("old", 50, 150) + numbered("new", 0, 300)
    assert watch.real_errors() == []


async def test_pause_keeps_buffering_and_resume_shows_every_line(tmp_path, view):
    page, _ = view
    log = tmp_path / "app.log"
    append(log, *numbered("line", 0, 20))
    async with live_server(make_config(tmp_path)) as base:
        await open_live(page, base + "/")
        await expect(page.locator("#count")).to_have_text("20 lines", timeout=WAIT)
        await page.locator("#viewport").focus()
        await page.keyboard.press("p")
        await expect(page.locator("#pause")).to_have_attribute("aria-pressed", "true")
        await expect(page.locator("#announce")).to_contain_text("Paused", timeout=WAIT)
        for start in range(20, 220, 50):
            append(log, *numbered("line", start, start + 50))
            await asyncio.sleep(0.05)
        await expect(page.locator("#new-lines")).to_have_text("↓ 200 new lines", timeout=WAIT)
        await expect(page.locator("#count")).to_have_text("220 lines", timeout=WAIT)
        # the paused view holds still: nothing newer than the pause is on screen
        assert await last_shown(page) == "line 00019"
        await page.click("#pause")  # Resume
        await expect(page.locator("#new-lines")).to_be_hidden(timeout=WAIT)
        await expect(page.locator("#follow-state")).to_have_text("following")
        await expect_last_shown(page, "line 00219")
        assert await saved_lines(page) == numbered("line", 0, 220)


async def test_scrolling_up_stops_following_without_losing_lines(tmp_path, view):
    page, _ = view
    log = tmp_path / "app.log"
    append(log, *numbered("line", 0, 1000))
    config = make_config(tmp_path, extra="[stream]\nbacklog_lines = 1000\n")
    async with live_server(config) as base:
        await open_live(page, base + "/")
        await expect(page.locator("#count")).to_have_text("1,000 lines", timeout=WAIT)
        await page.hover("#viewport")
        await page.mouse.wheel(0, -3000)
        await expect(page.locator("#follow-state")).to_contain_text("scrolled up", timeout=WAIT)
        top_before = (await shown_lines(page))[10]
        append(log, *numbered("line", 1000, 1100))
        await expect(page.locator("#new-lines")).to_have_text("↓ 100 new lines", timeout=WAIT)
        await expect(page.locator("#count")).to_have_text("1,100 lines")
        assert (await shown_lines(page))[10] == top_before  # the view did not move
        await page.keyboard.press("End")
        await expect(page.locator("#follow-state")).to_have_text("following", timeout=WAIT)
        await expect_last_shown(page, "line 01099")
        # scrolling up and back to the bottom follows again by itself
        await page.mouse.wheel(0, -500)
        await expect(page.locator("#follow-state")).to_contain_text("scrolled up", timeout=WAIT)
        await page.mouse.wheel(0, 100_000)
        await expect(page.locator("#follow-state")).to_have_text("following", timeout=WAIT)
        append(log, "after scrolling back")
        await expect(page.locator("#count")).to_have_text("1,101 lines", timeout=WAIT)
        await expect_last_shown(page, "after scrolling back")


async def test_a_small_cap_evicts_the_oldest_lines_with_a_visible_note(tmp_path, view):
    page, _ = view
    log = tmp_path / "app.log"
    append(log, *numbered("line", 0, 10_000))
    config = make_config(tmp_path, extra="[stream]\nbacklog_lines = 10000\n")
    async with live_server(config) as base:
        await open_live(page, base + "/")
        await expect(page.locator("#count")).to_have_text("10,000 lines", timeout=WAIT)
        await page.keyboard.press("?")
        await page.select_option("#cap", "10000")
        await page.click("#help-close")
        append(log, *numbered("line", 10_000, 12_500))
        await expect(page.locator("#evicted")).to_have_text(
            "2,500 older lines dropped (keeping the newest 10,000)", timeout=WAIT)
        await expect(page.locator("#count")).to_have_text("10,000 lines")
        await expect_last_shown(page, "line 12499")
        assert await saved_lines(page) == numbered("line", 2_500, 12_500)


# -- filtering -----------------------------------------------------------------------------

FILTER_LINES = ["alpha ERROR one", "beta error two", "gamma warn three", "Delta ERROR four",
                "epsilon info five"]


async def test_filter_modes_highlight_and_count(tmp_path, view):
    page, watch = view
    log = tmp_path / "app.log"
    append(log, *FILTER_LINES)
    count, error = page.locator("#count"), page.locator("#filter-error")
    async with live_server(make_config(tmp_path)) as base:
        await open_live(page, base + "/")
        await expect(count).to_have_text("5 lines", timeout=WAIT)

        await page.keyboard.press("/")  # focuses the filter
        await page.keyboard.type("error")
        await expect(count).to_have_text("3 of 5 lines")
        assert await shown_lines(page) == ["alpha ERROR one", "beta error two", "Delta ERROR four"]
        assert await page.locator("#rows mark").all_inner_texts() == ["ERROR", "error", "ERROR"]

        await page.click("#opt-case")
        await expect(count).to_have_text("1 of 5 lines")
        assert await shown_lines(page) == ["beta error two"]
        await page.click("#opt-case")

        await page.click("#opt-invert")
        await expect(count).to_have_text("2 of 5 lines")
        assert await shown_lines(page) == ["gamma warn three", "epsilon info five"]
        assert await page.locator("#rows mark").count() == 0
        await page.click("#opt-invert")

        await page.click("#opt-regex")
        await page.fill("#filter", r"^(alpha|gamma)\b")
        await expect(count).to_have_text("2 of 5 lines")
        assert await page.locator("#rows mark").all_inner_texts() == ["alpha", "gamma"]

        await page.fill("#filter", "(unclosed")  # a bad regex: an inline error, no exception
        await expect(error).to_be_visible()
        await expect(error).to_contain_text("Invalid regular expression")
        await expect(page.locator("#filter")).to_have_attribute("aria-invalid", "true")
        await expect(count).to_have_text("2 of 5 lines")  # the last good filter stays
        await page.fill("#filter", "o(ne|ur)$")
        await expect(error).to_be_hidden()
        await expect(count).to_have_text("2 of 5 lines")

        append(log, "zeta ERROR one")  # live lines go through the filter too
        await expect(count).to_have_text("3 of 6 lines", timeout=WAIT)
        assert await saved_lines(page) == ["alpha ERROR one", "Delta ERROR four", "zeta ERROR one"]

        await page.locator("#filter").press("Escape")  # Esc clears the filter
        await expect(page.locator("#filter")).to_have_value("")
        await expect(count).to_have_text("6 lines")
    assert watch.real_errors() == []


async def test_filter_on_the_server_sends_the_query_and_shows_its_errors(tmp_path, view):
    page, watch = view
    log = tmp_path / "app.log"
    append(log, *FILTER_LINES)
    count = page.locator("#count")
    async with live_server(make_config(tmp_path)) as base:
        await open_live(page, base + "/#q=error&server=1")
        await expect(count).to_have_text("3 matching lines (server filter)", timeout=WAIT)
        await page.wait_for_timeout(1000)  # a second, needless connection would show by now
        streams = [url for url in watch.requests if "/api/files/app/stream" in url]
        assert len(streams) == 1 and "/stream?q=error" in streams[0], streams
        assert await shown_lines(page) == ["alpha ERROR one", "beta error two", "Delta ERROR four"]
        assert await page.locator("#rows mark").count() == 3
        append(log, "not this one", "another error")
        await expect(count).to_have_text("4 matching lines (server filter)", timeout=WAIT)
        await expect_last_shown(page, "another error")

        # a pattern JavaScript accepts but the server's RE2 refuses: the server's 400 is shown
        await page.click("#opt-regex")
        await page.fill("#filter", r"(e)\1")
        await expect(page.locator("#filter-error")).to_contain_text("bad regular expression",
                                                                    timeout=WAIT)
        await page.fill("#filter", "warn|info")
        await expect(count).to_have_text("2 matching lines (server filter)", timeout=WAIT)
        await expect(page.locator("#filter-error")).to_be_hidden()

        await page.click("#opt-server")  # back to filtering here, over everything
        await expect(count).to_have_text("2 of 7 lines", timeout=WAIT)


# -- notices, reconnects, limits -----------------------------------------------------------

async def test_rotation_and_truncation_show_inline_notices(tmp_path, view):
    page, _ = view
    log = tmp_path / "app.log"
    append(log, *numbered("before", 0, 3))
    notices = page.locator("#rows .row.notice")
    async with live_server(make_config(tmp_path)) as base:
        await open_live(page, base + "/")
        await expect(page.locator("#count")).to_have_text("3 lines", timeout=WAIT)
        os.rename(log, tmp_path / "app.log.1")
        append(log, *numbered("after", 0, 2))
        await expect(notices).to_have_count(1, timeout=WAIT)
        await expect(notices.first).to_contain_text("rotated")
        await expect(page.locator("#count")).to_have_text("5 lines", timeout=WAIT)
        with open(log, "r+b") as f:
            f.truncate(0)
        append(log, "fresh start")
        await expect(notices.nth(1)).to_contain_text("truncated", timeout=WAIT)
        await expect(page.locator("#count")).to_have_text("6 lines", timeout=WAIT)
        rows = await page.locator("#rows .row .txt").all_inner_texts()
        assert [r for r in rows if "rotated" not in r and "truncated" not in r] == [
            *numbered("before", 0, 3), *numbered("after", 0, 2), "fresh start"]
        assert rows.index(next(r for r in rows if "rotated" in r)) == 3  # between the files


async def test_server_restart_mid_stream_every_line_exactly_once(tmp_path, view):
    page, watch = view
    log = tmp_path / "app.log"
    append(log, *numbered("backlog", 0, 100))
    config = toml_config(tmp_path, extra="[stream]\nretry_ms = 500\n")
    port = free_port()
    server = ServerProcess(["-c", str(config)], port)
    written: list[str] = []

    async def writer() -> None:
        for i in range(1500):
            line = f"w {i:05d}"
            append(log, line)
            written.append(line)
            await asyncio.sleep(0.002)

    try:
        await asyncio.to_thread(server.wait_ready)
        await open_live(page, server.base + "/")
        await expect(page.locator("#count")).to_have_text("100 lines", timeout=WAIT)
        task = asyncio.ensure_future(writer())
        while len(written) < 400:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(server.stop)  # the stream says `bye` and ends
        await expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting",
                                                              timeout=WAIT)
        await asyncio.sleep(0.5)
        server = ServerProcess(["-c", str(config)], port)
        await asyncio.to_thread(server.wait_ready)
        await expect(page.locator("#conn")).to_have_attribute("data-state", "resumed",
                                                              timeout=WAIT)
        await task
        expected = numbered("backlog", 0, 100) + written
        await expect(page.locator("#count")).to_have_text(f"{len(expected):,} lines",
                                                          timeout=30_000)
        assert await saved_lines(page) == expected
        await page.fill("#filter", "matches no line")  # notices stay on show: read them all
        await expect(page.locator("#count")).to_have_text(f"0 of {len(expected):,} lines")
        notices = await page.locator("#rows .row.notice .txt").all_inner_texts()
    finally:
        await asyncio.to_thread(server.stop)
    assert any("shutting down" in n for n in notices), notices
    assert any("resumed" in n for n in notices), notices
    assert not any("could not resume" in n for n in notices), notices
    assert watch.real_errors(allow_network=True) == []


@pytest.mark.parametrize(("limit", "status"), [("streams_per_ip", 429), ("max_streams", 503)])
async def test_refusals_wait_for_retry_after_then_connect_by_themselves(tmp_path, view, limit,
                                                                        status):
    page, watch = view
    append(tmp_path / "app.log", "only line")
    config = make_config(tmp_path, extra=f"[limits]\n{limit} = 1\n")
    conn = page.locator("#conn")
    async with live_server(config) as base:
        async with sse(base, "/api/files/app/stream?n=0"):  # takes the one stream allowed
            await page.goto(base + "/")
            await expect(conn).to_have_attribute("data-state", "limited", timeout=WAIT)
            await expect(conn).to_contain_text("limited")
            await expect(page.locator("#conn-detail")).to_contain_text("retrying in")
            await expect(page.locator("#announce")).to_contain_text("will retry", timeout=WAIT)
        await expect(conn).to_have_attribute("data-state", "live", timeout=WAIT)
        await expect(page.locator("#count")).to_have_text("1 line", timeout=WAIT)
    refused = [url for code, url in watch.statuses if code == status]
    assert refused and all("/api/files/app/stream" in url for url in refused)
    assert watch.real_errors(allow_network=True) == []


# -- safety, address, files, reading aids ---------------------------------------------------

XSS = ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>",
       '"><svg onload=alert(3)>', "&lt;b&gt;not bold&lt;/b&gt;"]


async def test_markup_in_log_lines_renders_as_text(tmp_path, view):
    page, watch = view
    append(tmp_path / "app.log", *XSS, '{"msg": "<img src=x onerror=alert(4)>"}')
    async with live_server(make_config(tmp_path)) as base:
        await open_live(page, base + "/")
        await expect(page.locator("#count")).to_have_text("5 lines", timeout=WAIT)
        assert (await shown_lines(page))[:4] == XSS
        await page.fill("#filter", "on")  # highlighted pieces are text too
        await expect(page.locator("#count")).to_have_text("3 of 5 lines")
        await page.fill("#filter", "")
        await page.locator("#rows .row.json").click()  # the JSON detail pane
        await expect(page.locator("#detail-body")).to_contain_text('"msg": "<img src=x')
        await page.wait_for_timeout(300)
        assert await page.locator("#rows img, #rows script, #rows svg, #detail img").count() == 0
    assert watch.dialogs == []
    assert watch.real_errors() == []


async def test_address_holds_file_and_filter_and_reproduces_the_view(tmp_path, browser, view):
    page, _ = view
    append(tmp_path / "app.log", *FILTER_LINES)
    append(tmp_path / "db.log", "db ERROR deadlock", "db info vacuum", "db Error again")
    config = make_config(tmp_path, {"app": "app.log", "db": "db.log"})
    async with live_server(config) as base:
        await open_live(page, base + "/")
        await page.select_option("#file", "db")
        await page.fill("#filter", "ERROR|vacuum")
        await page.click("#opt-regex")
        await page.click("#opt-case")
        await expect(page.locator("#count")).to_have_text("2 of 3 lines", timeout=WAIT)
        url = page.url
        assert re.search(r"#file=db&q=ERROR%7Cvacuum&regex=1&case=1$", url), url

        async with viewer_page(browser) as (other, _):
            await open_live(other, url)
            await expect(other.locator("#count")).to_have_text("2 of 3 lines", timeout=WAIT)
            await expect(other.locator("#file")).to_have_value("db")
            await expect(other.locator("#filter")).to_have_value("ERROR|vacuum")
            await expect(other.locator("#opt-regex")).to_have_attribute("aria-pressed", "true")
            await expect(other.locator("#opt-case")).to_have_attribute("aria-pressed", "true")
            await expect(other.locator("#opt-invert")).to_have_attribute("aria-pressed", "false")
            assert await shown_lines(other) == ["db ERROR deadlock", "db info vacuum"]
            # editing the address (a pasted link, back/forward) is applied too
            await other.evaluate("location.hash = '#file=app&q=beta'")
            await expect(other.locator("#file")).to_have_value("app", timeout=WAIT)
            await expect(other.locator("#count")).to_have_text("1 of 5 lines", timeout=WAIT)
            await expect(other.locator("#opt-regex")).to_have_attribute("aria-pressed", "false")


async def test_switching_files_shows_only_the_chosen_file(tmp_path, view):
    page, _ = view
    app, db = tmp_path / "app.log", tmp_path / "db.log"
    append(app, "app one", "app two")
    append(db, "db one")
    config = make_config(tmp_path, {"app": "app.log", "db": "db.log"})
    async with live_server(config) as base:
        await open_live(page, base + "/")
        options = await page.locator("#file option").all_inner_texts()
        assert options == ["app", "db"]
        await expect(page.locator("#count")).to_have_text("2 lines", timeout=WAIT)
        await page.select_option("#file", "db")
        await expect(page.locator("#count")).to_have_text("1 line", timeout=WAIT)
        assert await shown_lines(page) == ["db one"]
        assert page.url.endswith("#file=db")
        append(app, "app three")  # the file no longer shown
        append(db, "db two")
        await expect(page.locator("#count")).to_have_text("2 lines", timeout=WAIT)
        assert await shown_lines(page) == ["db one", "db two"]
        await page.select_option("#file", "app")
        await expect(page.locator("#count")).to_have_text("3 lines", timeout=WAIT)
        assert await shown_lines(page) == ["app one", "app two", "app three"]


async def test_reading_aids_levels_ansi_json_wrap_gutter_theme_clear(tmp_path, browser):
    long = "long " + "x" * 400
    append(tmp_path / "app.log", "2024-01-01 ERROR payment failed", "level=warn disk 91%",
           "\x1b[32mgreen\x1b[0m and \x1b[1;31mbold red\x1b[0m \x1b]0;title\x07done"
           " \x1b[38;2;10;200;30mtruecolor\x1b[0m",
           '{"level":"info","msg":"hello","n":3}', long)
    async with live_server(make_config(tmp_path)) as base, \
            viewer_page(browser, color_scheme="dark") as (page, watch):
        await open_live(page, base + "/")
        await expect(page.locator("#count")).to_have_text("5 lines", timeout=WAIT)
        rows = page.locator("#rows .row")
        await expect(rows.nth(0)).to_have_class(re.compile(r"\blvl-error\b"))
        await expect(rows.nth(0).locator(".lvl-tok")).to_have_text("ERROR")
        await expect(rows.nth(1)).to_have_class(re.compile(r"\blvl-warn\b"))
        ansi = rows.nth(2).locator(".txt")
        # other escapes stripped; 24-bit colours set through the CSSOM, which CSP allows
        await expect(ansi).to_have_text("green and bold red done truecolor")
        await expect(ansi.locator(".a-f2")).to_have_text("green")
        await expect(ansi.locator(".a-f1.a-bold")).to_have_text("bold red")
        await expect(ansi.locator("span", has_text="truecolor")).to_have_css(
            "color", "rgb(10, 200, 30)")
        await expect(rows.nth(3).locator(".j-key").first).to_have_text('"level"')
        await rows.nth(3).click()
        await expect(page.locator("#detail-body")).to_have_text(
            '{\n  "level": "info",\n  "msg": "hello",\n  "n": 3\n}')
        await page.keyboard.press("Escape")
        await expect(page.locator("#detail")).to_be_hidden()

        # wrap: the long line takes several rows of text instead of one
        one_row = await rows.nth(4).evaluate("r => r.getBoundingClientRect().height")
        await page.click("#wrap")
        await expect(page.locator("#wrap")).to_have_attribute("aria-pressed", "true")
        await page.wait_for_function(
            "h => document.querySelectorAll('#rows .row')[4].getBoundingClientRect().height > 2*h",
            arg=one_row)
        assert await shown_lines(page) == ["2024-01-01 ERROR payment failed",
                                           "level=warn disk 91%",
                                           "green and bold red done truecolor",
                                           '{"level":"info","msg":"hello","n":3}', long]

        # gutter: line numbers, then arrival times, then none
        await expect(rows.nth(0).locator(".gut")).to_have_text("1")
        await page.click("#gutter")
        clock = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$")
        await expect(rows.nth(0).locator(".gut")).to_have_text(clock)
        await page.click("#gutter")
        await expect(rows.nth(0).locator(".gut")).to_have_count(0)

        # theme: follows the system (dark here) until toggled
        html = page.locator("html")
        assert await html.get_attribute("data-theme") is None
        await page.click("#theme")
        await expect(html).to_have_attribute("data-theme", "light")
        await page.reload()
        await expect(html).to_have_attribute("data-theme", "light")  # remembered
        await expect(page.locator("#wrap")).to_have_attribute("aria-pressed", "true")
        await page.click("#theme")
        assert await html.get_attribute("data-theme") is None  # back to the system's

        await expect(page.locator("#count")).to_have_text("5 lines", timeout=WAIT)
        await page.click("#clear")
        await expect(page.locator("#count")).to_have_text("0 lines")
        append(tmp_path / "app.log", "after clear")
        await expect(page.locator("#count")).to_have_text("1 line", timeout=WAIT)
        assert await shown_lines(page) == ["after clear"]
    assert watch.real_errors() == []


# Rows drawn brief while lines replace the screen faster than anyone reads (view.js): one
# text node, matches painted as highlights; in full again once the stream stops.
BRIEF_ROW = """() => {
  const row = [...document.querySelectorAll("#rows .row.brief")].find((r) => {
    const t = r.querySelector(".txt");
    return t.textContent.includes("ERROR needle") && t.childNodes.length === 1
      && t.firstChild.nodeType === Node.TEXT_NODE && !r.querySelector(".lvl-tok, mark");
  });
  return row && CSS.highlights.get("logtail-match").size > 0
    && row.querySelector(".txt").getBoundingClientRect().left;
}"""
TEXT_LEFT = """() => document.querySelector("#rows .row:not(.brief) .txt")
  .getBoundingClientRect().left"""
FULL_ROWS = """(marked) => {
  const rows = [...document.querySelectorAll("#rows .row:not(.notice)")];
  return rows.length > 10 && rows.every((r) => (!marked || r.querySelector(".txt mark"))
    && (r.querySelector(".txt").textContent.startsWith("{") ? r.querySelector(".j-key")
        : r.querySelector(".lvl-tok")?.textContent === "ERROR"));
}"""


async def test_rows_flying_past_are_brief_then_drawn_in_full_when_the_stream_stops(
        tmp_path, view):
    page, watch = view
    log = tmp_path / "app.log"
    log.write_text("")
    total = 9_600  # line numbers keep 4 digits: the gutter keeps its width throughout

    def line(i: int) -> str:
        if i % 10 == 0:
            return f'{{"level":"error","msg":"needle {i:06d}"}}'
        return f"2024-01-01 ERROR needle {i:06d}"

    async def flood() -> None:  # 6,000 lines/s for 1.6 s, in 10 ms slices
        for start in range(0, total, 60):
            append(log, *(line(i) for i in range(start, start + 60)))
            await asyncio.sleep(0.01)

    async with live_server(make_config(tmp_path)) as base:
        await open_live(page, base + "/")
        await page.fill("#filter", "needle")  # every line matches: they still fly past
        writer = asyncio.create_task(flood())
        try:
            brief_left = await (await page.wait_for_function(
                BRIEF_ROW, timeout=WAIT, polling=50)).json_value()
        finally:
            await writer
        await expect(page.locator("#count")).to_have_text(
            f"{total:,} of {total:,} lines", timeout=WAIT)
        await page.wait_for_function(FULL_ROWS, arg=True, timeout=WAIT)
        rows = await shown_lines(page)
        assert rows[-1] == line(total - 1) and len(rows) > 10
        # the text stays in its column from one way of drawing to the other
        assert abs(await page.evaluate(TEXT_LEFT) - brief_left) < 1
    assert watch.real_errors() == []


async def test_a_screen_of_changed_rows_is_drawn_in_full_over_a_few_frames(tmp_path, view):
    page, watch = view
    lines = [f'{{"level":"warn","n":{i},"tag":"x{i}"}}' if i % 5 == 0 else f"2024-01-01 ERROR x{i}"
             for i in range(100)]  # the backlog: a few screens
    append(tmp_path / "app.log", *lines)
    async with live_server(make_config(tmp_path)) as base:
        await open_live(page, base + "/")
        await expect(page.locator("#count")).to_have_text("100 lines", timeout=WAIT)
        await page.wait_for_function(FULL_ROWS, arg=False, timeout=WAIT)
        await page.evaluate("""() => {  // the most brief rows seen at the start of a frame
          window.briefMost = 0;
          const look = () => {
            const n = document.querySelectorAll("#rows .row.brief").length;
            window.briefMost = Math.max(window.briefMost, n);
            requestAnimationFrame(look);
          };
          requestAnimationFrame(look);
        }""")
        await page.fill("#filter", "x")  # every row on show is drawn again, with its mark
        await expect(page.locator("#count")).to_have_text("100 of 100 lines")
        await page.wait_for_function(FULL_ROWS, arg=True, timeout=WAIT)
        rows = await page.locator("#rows .row:not(.notice)").count()
        assert rows > 30  # a screen: more rows changed than one frame draws in full
        assert await page.evaluate("window.briefMost") >= rows - 16
        assert await shown_lines(page) == lines[-len(await shown_lines(page)):]
    assert watch.real_errors() == []


async def test_viewer_assets_are_relative_and_free_of_inline_code():
    """No absolute asset URL (breaks under a prefix), no inline script or style (CSP)."""
    web = Path(__file__).resolve().parent.parent / "web"
    html = (web / "index.html").read_text()
    assert re.findall(r'(?:src|href)="([^"]+)"', html) == [
        "static/favicon.svg", "static/style.css", "static/app.js"]
    assert "<style" not in html and not re.search(r"\sstyle\s*=", html)
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers
    assert not re.search(r"<script\b[^>]*>[^<\s]", html)  # scripts only by src
    for js in web.glob("*.js"):
        text = js.read_text()
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, js.name
        assert "document.write" not in text and "eval(" not in text, js.name
        assert not re.search(r"""(?:from|fetch\(|import\()\s*["'`]/""", text), js.name
