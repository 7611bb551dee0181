"""The viewer and the whole log, in a real Chromium against a real server: loading earlier
lines through rotated and compressed generations, searching the history, jumping to a time,
and permalinks (copy a line's link, open it in context, go back to live).

The history on disk is `history_support`'s: four generations (two of them gzip) of 1,000
lines each, with ISO timestamps a minute apart.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from helpers import append, live_server, make_config
from history_support import write_history
from playwright.async_api import Locator, Page, expect
from viewer_support import WAIT, open_live, saved_lines, shown_lines, viewer_page

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]
LINE_ID = r"[0-9a-f]+\.[0-9a-f]{16}:[0-9a-f]+"


async def top_line(page: Page) -> str:
    """The text of the row at the top edge of the log (what the reader's eye is on)."""
    return await page.evaluate("""() => {
        const vp = document.getElementById("viewport").getBoundingClientRect();
        const hit = document.elementFromPoint(vp.left + 200, vp.top + 10);
        const row = hit && hit.closest(".row");
        return row ? row.querySelector(".txt").textContent : "";
    }""")


async def settles(get: Callable[[], Awaitable[Any]], want: Any = None,
                  check: Callable[[Any], bool] | None = None) -> Any:
    """Wait until `get()` equals `want` (or passes `check`); assert on the last value."""
    deadline = time.monotonic() + WAIT / 1000
    while True:
        got = await get()
        ok = check(got) if check is not None else got == want
        if ok or time.monotonic() > deadline:
            assert ok, got
            return got
        await asyncio.sleep(0.05)


async def point_at(page: Page, row: Locator, link: Locator, wanted: re.Pattern[str]) -> None:
    """Put the pointer on `row` until the copy-link button names it.

    The pointer leaves first, so that arriving is a real move: a late repaint (the list
    following its end on a busy machine) can slide another row under a pointer kept still.
    """
    for _ in range(20):
        await page.mouse.move(0, 0)
        await row.hover()
        if wanted.match(await link.get_attribute("aria-label") or ""):
            return
        await asyncio.sleep(0.25)


def find(lines: list[str], marker: str) -> str:
    return next(line for line in lines if marker in line)


async def line_at(base: str, line_id: str) -> str:
    async with httpx.AsyncClient() as client:
        r = await client.get(base + "/api/files/app/lines",
                             params={"at": line_id, "before": 0, "after": 0})
        r.raise_for_status()
        body = r.json()
        return body["lines"][body["at"]]["line"]


# -- load earlier --------------------------------------------------------------------------

async def test_load_earlier_pages_back_through_every_generation_keeping_the_place(tmp_path,
                                                                                  browser):
    everything = write_history(tmp_path)  # 4,000 lines; the live file holds the last 1,000
    async with live_server(make_config(tmp_path)) as base, \
            viewer_page(browser) as (page, watch):
        count, status = page.locator("#count"), page.locator("#history-status")
        await open_live(page, base + "/")
        await expect(count).to_have_text("100 lines", timeout=WAIT)
        streams = [u for u in watch.requests if "/api/files/app/stream" in u]
        assert streams and "ids=1" in streams[0], streams

        # scrolling to the top loads the lines before by itself; the line read stays put
        await page.hover("#viewport")
        await page.mouse.wheel(0, -100_000)
        await expect(count).to_have_text("300 lines", timeout=WAIT)
        await expect(status).to_have_text("200 earlier lines loaded", timeout=WAIT)
        reading = find(everything, "day4 line 900 ")
        await settles(lambda: top_line(page), reading)
        assert await page.locator("#follow-state").inner_text() != "following"

        # live lines keep arriving at the bottom meanwhile; the view does not move
        append(tmp_path / "app.log", *[f"live {i}" for i in range(10)])
        await expect(count).to_have_text("310 lines", timeout=WAIT)
        await expect(page.locator("#new-lines")).to_have_text("↓ 10 new lines", timeout=WAIT)
        assert await top_line(page) == reading

        # the button does the same, page after page, across .1 and the .gz files
        button = page.locator("#load-earlier")
        await expect(button).to_be_visible()
        loaded = 300
        while loaded < 4000:
            await button.click()
            loaded = min(4000, loaded + 200)
            await expect(count).to_have_text(f"{loaded + 10:,} lines", timeout=WAIT)
        await expect(button).to_have_text("Start of history", timeout=WAIT)
        await expect(button).to_be_disabled()
        await expect(status).to_contain_text("start of history")
        assert await top_line(page) == reading

        # every line of the history once, in order, then the live ones
        assert await saved_lines(page) == everything + [f"live {i}" for i in range(10)]
        await page.keyboard.press("Home")
        await expect(page.locator("#rows .row .gut").first).to_have_text("1", timeout=WAIT)
        await settles(lambda: top_line(page), everything[0])
        await page.keyboard.press("End")
        await expect(page.locator("#follow-state")).to_have_text("following", timeout=WAIT)
        await expect(page.locator("#rows .row .txt").last).to_have_text("live 9", timeout=WAIT)
    assert watch.real_errors() == []


async def test_load_earlier_stops_at_the_cap_and_keeps_the_newest_lines(tmp_path, browser):
    """Lines kept in the page are bounded: at the cap nothing older is loaded (the newest
    lines are never dropped for older ones), and the status says what to change."""
    append(tmp_path / "app.log.1", *[f"older {i:05d}" for i in range(100)])
    append(tmp_path / "app.log", *[f"line {i:05d}" for i in range(10_000)])
    config = make_config(tmp_path, extra="[stream]\nbacklog_lines = 10000\n")
    async with live_server(config) as base, viewer_page(browser) as (page, watch):
        await page.goto(base + "/")
        await page.evaluate("localStorage.setItem('logtail.prefs', JSON.stringify({cap: 10000}))")
        await page.goto(base + "/#n=10000")
        await page.reload()  # with the cap set
        await expect(page.locator("#cap")).to_have_value("10000")
        await expect(page.locator("#count")).to_have_text("10,000 lines", timeout=WAIT)
        await page.click("#load-earlier")
        await expect(page.locator("#history-status")).to_have_text(
            'The page keeps at most 10,000 lines: raise "Lines kept" (?) to load earlier ones',
            timeout=WAIT)
        assert not any("/lines?" in u for u in watch.requests)
        # with room, the older generation comes in front
        await page.keyboard.press("?")
        await page.select_option("#cap", "50000")
        await page.click("#help-close")
        await page.click("#load-earlier")
        await expect(page.locator("#count")).to_have_text("10,100 lines", timeout=WAIT)
        await expect(page.locator("#load-earlier")).to_have_text("Start of history",
                                                                 timeout=WAIT)
        lines = await saved_lines(page)
        assert lines[:101] == [f"older {i:05d}" for i in range(100)] + ["line 00000"]
    assert watch.real_errors() == []


async def test_with_the_server_filter_ids_hold_and_earlier_lines_are_filtered(tmp_path,
                                                                               browser):
    """A filtered stream lists every line's offset; earlier lines keep only the matches."""
    everything = write_history(tmp_path)
    perms = {"permissions": ["clipboard-read", "clipboard-write"]}
    async with live_server(make_config(tmp_path)) as base, \
            viewer_page(browser, **perms) as (page, watch):
        count = page.locator("#count")
        await open_live(page, base + "/#q=ERROR&case=1&server=1")
        # every tenth line of the live file is an ERROR: all 100 of them
        await expect(count).to_have_text("100 matching lines (server filter)", timeout=WAIT)
        await page.locator("#rows .row", has_text="day4 line 980 ").hover()
        await page.click("#line-link")
        await expect(page.locator("#link-toast")).to_have_text("Link copied", timeout=WAIT)
        url = await page.evaluate("navigator.clipboard.readText()")
        assert await line_at(base, url.split("line=")[1]) == find(everything, "day4 line 980 ")

        await page.click("#load-earlier")  # day 3's last 200 lines: 20 of them match
        await expect(count).to_have_text("120 matching lines (server filter)", timeout=WAIT)
        await expect(page.locator("#history-status")).to_have_text(
            "200 earlier lines loaded, 20 matching the server filter")
        lines = await saved_lines(page)
        assert lines[:21] == [find(everything, f"day3 line {i} ") for i in range(800, 1000, 10)
                              ] + [find(everything, "day4 line 0 ")]

        # a page with no match at all: the next one starts before it, not at the same line
        await page.evaluate("location.hash = '#q=day4 line 99&server=1'")
        await expect(count).to_have_text("11 matching lines (server filter)", timeout=WAIT)
        for _ in range(2):
            await page.click("#load-earlier")
            await expect(page.locator("#history-status")).to_have_text(
                "200 earlier lines loaded, 0 matching the server filter", timeout=WAIT)
            await expect(page.locator("#load-earlier")).to_be_enabled(timeout=WAIT)
        ats = [u.split("at=")[1].split("&")[0] for u in watch.requests if "/lines?" in u]
        assert len(ats) == 3 and len(set(ats)) == 3, ats
        assert await count.inner_text() == "11 matching lines (server filter)"
    assert watch.real_errors() == []


# -- search ---------------------------------------------------------------------------------

async def test_search_panel_streams_matches_with_progress_and_opens_one_in_context(tmp_path,
                                                                                   browser):
    everything = write_history(tmp_path)
    async with live_server(make_config(tmp_path)) as base, \
            viewer_page(browser) as (page, watch):
        await open_live(page, base + "/")
        await expect(page.locator("#count")).to_have_text("100 lines", timeout=WAIT)
        await page.locator("#viewport").focus()
        await page.keyboard.press("s")  # opens the panel, focus in its box
        panel = page.locator("#search-panel")
        await expect(panel).to_be_visible()
        await expect(page.locator("#search-toggle")).to_have_attribute("aria-expanded", "true")
        await expect(page.locator("#search-q")).to_be_focused()
        await page.keyboard.type(r"line 50[05] ")
        await page.click("#search-regex")
        await expect(page.locator("#search-regex")).to_have_attribute("aria-pressed", "true")
        await page.locator("#search-q").press("Enter")

        summary = page.locator("#search-summary")
        await expect(summary).to_have_text("Done: 8 matches", timeout=WAIT)
        hits = page.locator("#search-results .hit")
        expected = [find(everything, f"day{d} line {i} ") for d in (4, 3, 2, 1) for i in (505, 500)]
        assert await hits.all_inner_texts() == expected  # newest first, every generation
        assert await page.locator("#search-results mark").all_inner_texts() == [
            f"line {i} " for _ in range(4) for i in (505, 500)]
        # the progress bar is full; it names the last generation read
        done = await page.evaluate(
            "() => { const p = document.getElementById('search-progress');"
            " return [p.value, p.max]; }")
        assert done[0] == done[1] > 0, done
        await expect(page.locator("#search-where")).to_contain_text("app.log.3.gz")
        await expect(page.locator("#search-stop")).to_be_disabled()
        searches = [u for u in watch.requests if "/api/files/app/search?" in u]
        assert len(searches) == 1 and "regex=1" in searches[0] and "order=desc" in searches[0]

        # a match opens in its context: highlighted, the lines around it, not live
        target = find(everything, "day2 line 500 ")
        await hits.nth(5).click()
        await expect(page.locator("#rows .row.target .txt")).to_have_text(target, timeout=WAIT)
        await expect(page.locator("#place-banner")).to_be_visible()
        await expect(page.locator("#back-live")).to_be_visible()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "history")
        assert re.search(rf"#file=app&line={LINE_ID}$", page.url), page.url
        await expect(hits.nth(5)).to_have_attribute("aria-current", "true")
        i = everything.index(target)
        shown = await shown_lines(page)
        assert shown[shown.index(target) - 1] == everything[i - 1]
        assert shown[shown.index(target) + 1] == everything[i + 1]
        # arrow keys walk the results; Enter opens another one
        await hits.nth(5).focus()
        await page.keyboard.press("ArrowDown")
        await expect(hits.nth(6)).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator("#rows .row.target .txt")).to_have_text(
            find(everything, "day1 line 505 "), timeout=WAIT)

        # back to live: the stream again, following, the address without the line
        await page.click("#back-live")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live",
                                                              timeout=WAIT)
        await expect(page.locator("#count")).to_have_text("100 lines", timeout=WAIT)
        await expect(page.locator("#place-banner")).to_be_hidden()
        assert page.url.endswith("#file=app"), page.url
        append(tmp_path / "app.log", "after going back")
        await expect(page.locator("#rows .row .txt").last).to_have_text("after going back",
                                                                        timeout=WAIT)
        await page.locator("#search-q").press("Escape")  # closes the panel
        await expect(panel).to_be_hidden()
        await expect(page.locator("#search-toggle")).to_be_focused()
    assert watch.real_errors() == []


async def test_stop_aborts_a_long_search_and_the_next_one_runs(tmp_path, browser):
    """A search through a very large (sparse) generation: matches come first, Stop aborts
    the request mid-scan, and a new search (time-bounded: the big file has no timestamps,
    so it is left out) runs at once."""
    big = tmp_path / "app.log.1"
    size = 16 * 2**30
    with open(big, "wb") as f:
        f.truncate(size)
        for at in range(2**23, size, 2**23):  # holes, with a newline every 8 MiB
            f.seek(at - 1)
            f.write(b"\n")
        f.seek(size - 200)
        f.write(b"\n2026-01-03T23:59:00Z the needle\n")
    # the 16 GiB must be holes, not data: temp folders here are on filesystems that have them
    assert os.stat(big).st_blocks * 512 < 2**28, "tmp_path needs a filesystem with sparse files"
    append(tmp_path / "app.log", "2026-01-04T00:00:00Z live needle", "2026-01-04T00:01:00Z more")
    os.utime(big, (1767484800, 1767484800))
    config = make_config(tmp_path, extra="[history]\nmax_scan_bytes = 68719476736\n")
    async with live_server(config) as base, \
            viewer_page(browser, timezone_id="UTC") as (page, watch):
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        await open_live(page, base + "/")
        await page.click("#search-toggle")
        await page.fill("#search-q", "needle")
        await page.click("#search-go")
        hits = page.locator("#search-results .hit")
        await expect(hits).to_have_count(2, timeout=WAIT)  # the live file, then the big one
        await expect(page.locator("#search-where")).to_contain_text("app.log.1", timeout=WAIT)
        await expect(page.locator("#search-stop")).to_be_enabled()
        await page.click("#search-stop")
        await expect(page.locator("#search-summary")).to_have_text("Stopped: 2 matches")
        await expect(page.locator("#search-stop")).to_be_disabled()
        await expect(page.locator("#search-go")).to_be_enabled()

        async def aborted() -> bool:  # the browser cancelled the request: the scan stops
            return any("/search?" in u for u in failed)

        await settles(aborted, True)

        await page.fill("#search-since", "2026-01-04T00:00:00")
        await page.click("#search-go")
        await expect(page.locator("#search-summary")).to_have_text("Done: 1 match", timeout=WAIT)
        assert await hits.all_inner_texts() == ["2026-01-04T00:00:00Z live needle"]
        searches = [u for u in watch.requests if "/search?" in u]
        assert "since=2026-01-04T00%3A00%3A00Z" in searches[-1], searches
    assert watch.real_errors(allow_network=True) == []


# -- time ------------------------------------------------------------------------------------

async def test_jump_to_time_reopens_the_stream_from_that_time(tmp_path, browser):
    everything = write_history(tmp_path)
    log = tmp_path / "app.log"
    async with live_server(make_config(tmp_path)) as base, \
            viewer_page(browser, timezone_id="UTC") as (page, watch):
        count = page.locator("#count")
        await open_live(page, base + "/")
        await expect(count).to_have_text("100 lines", timeout=WAIT)
        await page.hover("#viewport")
        await page.mouse.wheel(0, -300)  # not at the end, nor at the top
        await page.fill("#jump-time", "2026-01-04T10:00:00")
        await page.click("#jump-form button[type=submit]")
        # 10:00 is line 600 of the last day: from there on, at the top, then following
        await expect(count).to_have_text("400 lines", timeout=WAIT)
        await settles(lambda: top_line(page), find(everything, "day4 line 600 "))
        streams = [u for u in watch.requests if "/api/files/app/stream" in u]
        assert "since=2026-01-04T10%3A00%3A00Z" in streams[-1], streams
        assert page.url.endswith("#file=app&since=2026-01-04T10:00:00Z"), page.url
        await expect(page.locator("#place-text")).to_have_text(
            re.compile(r"^From .*2026.*, then following$"))
        append(log, "2026-01-04T17:00:00Z a new line")
        await expect(count).to_have_text("401 lines", timeout=WAIT)
        await expect(page.locator("#new-lines")).to_be_visible()
        assert await top_line(page) == find(everything, "day4 line 600 ")
        # and earlier lines still load above
        await page.click("#load-earlier")
        await expect(count).to_have_text("601 lines", timeout=WAIT)
        assert await top_line(page) == find(everything, "day4 line 600 ")

        # a quick choice: the last 15 minutes (all of this log is older: nothing, then live)
        await page.click("#jump-form button[data-since='15m']")
        await expect(count).to_have_text("0 lines", timeout=WAIT)
        assert page.url.endswith("#file=app&since=15m"), page.url
        await expect(page.locator("#place-text")).to_have_text(
            "The last 15 minutes, then following")
        append(log, "2026-01-04T17:01:00Z live again")
        await expect(count).to_have_text("1 line", timeout=WAIT)

        await page.click("#back-live")
        await expect(count).to_have_text("100 lines", timeout=WAIT)
        assert page.url.endswith("#file=app"), page.url
        await expect(page.locator("#rows .row .txt").last).to_have_text(
            "2026-01-04T17:01:00Z live again", timeout=WAIT)
    assert watch.real_errors() == []


# -- permalinks ------------------------------------------------------------------------------

async def test_copy_a_line_link_and_open_it_in_context(tmp_path, browser):
    everything = write_history(tmp_path)
    log = tmp_path / "app.log"
    # after multi-byte lines, ids are counted in UTF-8 bytes, not characters
    fresh = ["2026-01-05T00:00:00Z héllo wörld ☃", "2026-01-05T00:01:00Z emoji 😀 after",
             "2026-01-05T00:02:00Z plain"]
    append(log, *fresh)
    perms = {"permissions": ["clipboard-read", "clipboard-write"]}
    async with live_server(make_config(tmp_path)) as base, \
            viewer_page(browser, **perms) as (page, watch):
        await open_live(page, base + "/")
        await expect(page.locator("#count")).to_have_text("100 lines", timeout=WAIT)
        link = page.locator("#line-link")
        await expect(link).not_to_have_class(re.compile(r"\bon\b"))
        row = page.locator("#rows .row", has_text="emoji")
        wanted = re.compile(r"^Copy link to line 99: .*emoji")
        await point_at(page, row, link, wanted)
        await expect(link).to_have_class(re.compile(r"\bon\b"))
        await expect(link).to_have_attribute("aria-label", wanted)
        await link.click()
        await expect(page.locator("#link-toast")).to_have_text("Link copied", timeout=WAIT)
        url = await page.evaluate("navigator.clipboard.readText()")
        assert re.fullmatch(rf"{re.escape(base)}/#file=app&line={LINE_ID}", url), url
        assert await line_at(base, url.split("line=")[1]) == fresh[1]

        # from the keyboard: Tab from the log reaches the button on the line under the
        # pointer (the blur of the focus move hid it: point again), arrows pick a line
        await page.locator("#viewport").focus()
        await point_at(page, row, link, wanted)
        await page.keyboard.press("Tab")
        await expect(link).to_be_focused()
        await expect(link).to_have_class(re.compile(r"\bon\b"))
        await expect(link).to_have_attribute("aria-label",
                                             re.compile(r"^Copy link to line 99: .*emoji"))
        await page.keyboard.press("ArrowUp")
        await expect(link).to_have_attribute("aria-label", f"Copy link to line 98: {fresh[0]}")
        await page.keyboard.press("Enter")
        picked = await settles(lambda: page.evaluate("navigator.clipboard.readText()"),
                               check=lambda text: text != url)
        assert await line_at(base, picked.split("line=")[1]) == fresh[0]
        for _ in range(3):  # up through the day's last lines, the view holding still
            await page.keyboard.press("ArrowUp")
        await expect(link).to_have_attribute("aria-label", re.compile(r"^Copy link to line 95: "))
        await expect(page.locator("#follow-state")).not_to_have_text("following")
        await page.keyboard.press("Escape")
        await expect(page.locator("#viewport")).to_be_focused()

        # the link, opened elsewhere: that line, highlighted, in its context
        async with viewer_page(browser) as (other, other_watch):
            await other.goto(url)
            target = other.locator("#rows .row.target")
            await expect(target.locator(".txt")).to_have_text(fresh[1], timeout=WAIT)
            await expect(other.locator("#conn")).to_have_attribute("data-state", "history")
            await expect(other.locator("#place-text")).to_have_text("Linked line, in its context")
            shown = await shown_lines(other)
            assert shown[shown.index(fresh[1]) - 1] == fresh[0]
            assert shown[shown.index(fresh[1]) + 1] == fresh[2]
            # 100 lines before it (the last 99 of the day, and one), the one after it
            await expect(other.locator("#count")).to_have_text("102 lines", timeout=WAIT)
            assert everything[-99] in shown or everything[-99] in await saved_lines(other)
            await other.click("#back-live")
            await expect(other.locator("#conn")).to_have_attribute("data-state", "live",
                                                                   timeout=WAIT)
            await expect(other.locator("#rows .row.target")).to_have_count(0)
            assert other.url.endswith("#file=app"), other.url
            append(log, "2026-01-05T00:03:00Z live after the link")
            await expect(other.locator("#rows .row .txt").last).to_have_text(
                "2026-01-05T00:03:00Z live after the link", timeout=WAIT)
        assert other_watch.real_errors() == []
    assert watch.real_errors() == []


async def test_a_link_into_a_compressed_generation_reads_on_both_ways(tmp_path, browser):
    everything = write_history(tmp_path)
    async with live_server(make_config(tmp_path)) as base, \
            viewer_page(browser) as (page, watch):
        async with httpx.AsyncClient() as client:
            r = await client.get(base + "/api/files/app/search",
                                 params={"q": "day1 line 500 ", "format": "ndjson"})
        line_id = r.text.splitlines()[0].split('"id":"')[1].split('"')[0]
        await page.goto(f"{base}/#file=app&line={line_id}")
        target = find(everything, "day1 line 500 ")
        await expect(page.locator("#rows .row.target .txt")).to_have_text(target, timeout=WAIT)
        count = page.locator("#count")
        await expect(count).to_have_text("201 lines", timeout=WAIT)
        await page.click("#load-earlier")
        await expect(count).to_have_text("401 lines", timeout=WAIT)
        later = page.locator("#load-later")
        await expect(later).to_be_visible()
        await later.click()
        await expect(count).to_have_text("601 lines", timeout=WAIT)  # on into day 2
        lines = await saved_lines(page)
        i = everything.index(target)
        assert lines == everything[i - 300:i + 301]
        assert await page.locator("#rows .row.target .txt").inner_text() == target
    assert watch.real_errors() == []


async def test_a_link_to_a_line_no_longer_kept_says_so_and_goes_back_to_live(tmp_path, browser):
    write_history(tmp_path)
    async with live_server(make_config(tmp_path)) as base, \
            viewer_page(browser) as (page, watch):
        await page.goto(base + "/#file=app&line=1000.0123456789abcdef:0")
        await expect(page.locator("#place-banner")).to_contain_text(
            "no longer in the history", timeout=WAIT)
        await expect(page.locator("#announce")).to_contain_text("no longer", timeout=WAIT)
        await page.click("#back-live")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live",
                                                              timeout=WAIT)
        await expect(page.locator("#count")).to_have_text("100 lines", timeout=WAIT)
    assert any(code == 410 and "/api/files/app/lines?" in url for code, url in watch.statuses)
    assert watch.real_errors(allow_network=True) == []
