"""Several files in one view, in a real Chromium against a real server: one connection for
the whole set (`api/stream`), a coloured badge per line, per-file toggles, the set in the
page address, the filter across files, and the per-minute overview of levels.
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime

import pytest
from helpers import RELAXED, append, live_server, make_config
from playwright.async_api import Locator, Page, expect
from viewer_support import WAIT, PageWatch, open_live, saved_lines, shown_lines, viewer_page

from logtail.config import parse_config

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

PALETTE = 10  # web/files.js: badge colours .c0 … .c9
STREAM_RE = re.compile(r"/api/stream\?|/api/files/[^/?]+/stream")


def colour_of(name: str) -> int:
    """web/files.js colourOf: FNV-1a of the name's UTF-16 code units, into the palette."""
    h = 0x811C9DC5
    data = name.encode("utf-16-le")
    for i in range(0, len(data), 2):
        h ^= data[i] | data[i + 1] << 8
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h % PALETTE


def colours_of(names: list[str]) -> dict[str, int]:
    """web/files.js assignColours: each name its own colour; in name order, one that is
    taken moves on to the next free one."""
    out: dict[str, int] = {}
    for name in sorted(set(names)):
        c = colour_of(name)
        while len(out) < PALETTE and c in out.values():
            c = (c + 1) % PALETTE
        out[name] = c
    return out


def streams(watch: PageWatch) -> list[str]:
    """Every request the page made for a stream of lines, of one file or merged."""
    return [u for u in watch.requests if STREAM_RE.search(u)]


def files_of(url: str) -> list[str]:
    return re.findall(r"[?&]file=([^&]+)", url)


def row_of(page: Page, text: str) -> Locator:
    """The row whose log text is exactly `text`."""
    return page.locator("#rows .row").filter(
        has=page.locator(".txt", has_text=re.compile(f"^{re.escape(text)}$")))


# Everything the page says to screen readers (its live region), in order.
HEARD = """
window.heard = [];
document.addEventListener("DOMContentLoaded", () => {
  const region = document.getElementById("announce");
  new MutationObserver(() => {
    if (region.textContent) window.heard.push(region.textContent);
  }).observe(region, {childList: true, characterData: true, subtree: true});
});
"""


def hash_of(names: list[str]) -> str:
    return "#" + "&".join(f"file={n}" for n in names)


# -- one connection, every file ----------------------------------------------------------

async def test_eight_files_stream_over_one_connection(tmp_path, browser):
    names = [f"svc{i}" for i in range(8)]
    for n in names:
        append(tmp_path / f"{n}.log", f"{n} backlog")
    config = make_config(tmp_path, {n: f"{n}.log" for n in names})
    async with live_server(config) as base, viewer_page(browser) as (page, watch):
        await open_live(page, base + "/" + hash_of(names))
        await expect(page.locator("#count")).to_have_text("8 lines", timeout=WAIT)
        for round_ in (1, 2):
            for n in names:
                append(tmp_path / f"{n}.log", f"{n} live {round_}")
            await expect(page.locator("#count")).to_have_text(f"{8 * (1 + round_)} lines",
                                                              timeout=WAIT)
            for n in names:  # every file's new line, marked with its file
                await expect(row_of(page, f"{n} live {round_}").locator(".badge")).to_have_text(
                    n, timeout=WAIT)
        saved = await saved_lines(page)
        assert sorted(saved) == sorted(f"{n}: {n} {what}" for n in names
                                       for what in ("backlog", "live 1", "live 2"))
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        assert await page.locator("#file").input_value() == ""
        await expect(page.locator("#file option").first).to_have_text("8 files, merged")
        assert await page.title() == "8 files · logtail"
    made = streams(watch)
    assert len(made) == 1, made  # one connection for the whole set, none per file
    assert "/api/stream?" in made[0] and files_of(made[0]) == names, made
    assert "ids=1" in made[0]
    assert watch.real_errors() == []


# -- badges and toggles ------------------------------------------------------------------

async def test_badges_keep_their_colour_and_toggles_hide_a_file_without_reconnecting(
        tmp_path, browser):
    names = ["app", "db", "worker"]
    colours = colours_of(names)
    assert len(set(colours.values())) == len(names)
    for n in names:
        append(tmp_path / f"{n}.log", *(f"{n} line {i}" for i in range(3)))
    config = make_config(tmp_path, {n: f"{n}.log" for n in names})
    async with live_server(config) as base, viewer_page(browser) as (page, watch):
        await open_live(page, base + "/" + hash_of(names))
        await expect(page.locator("#count")).to_have_text("9 lines", timeout=WAIT)
        painted: dict[str, str] = {}
        for n in names:
            badges = page.locator("#rows .row .badge", has_text=re.compile(f"^{n}$"))
            await expect(badges).to_have_count(3)
            for i in range(3):  # every line of a file: the same colour, from its name
                await expect(badges.nth(i)).to_have_class(f"badge c{colours[n]}")
            painted[n] = await badges.first.evaluate("b => getComputedStyle(b).backgroundColor")
            swatch = page.locator(f'#legend button.chip[data-file="{n}"] .swatch')
            await expect(swatch).to_have_class(f"swatch c{colours[n]}")
        assert len(set(painted.values())) == len(names)  # three files, three colours
        await page.reload()  # stable: the same colours on the next visit
        await expect(page.locator("#count")).to_have_text("9 lines", timeout=WAIT)
        for n in names:
            badge = page.locator("#rows .row .badge", has_text=re.compile(f"^{n}$")).first
            assert await badge.evaluate("b => getComputedStyle(b).backgroundColor") == painted[n]

        chips = page.locator("#legend button.chip")
        await expect(chips).to_have_text(names)
        db = page.locator('#legend button.chip[data-file="db"]')
        await expect(db).to_have_attribute("aria-pressed", "true")
        await db.click()
        await expect(db).to_have_attribute("aria-pressed", "false")
        await expect(page.locator("#count")).to_have_text("6 of 9 lines", timeout=WAIT)
        await expect(page.locator("#rows .row .badge", has_text="db")).to_have_count(0)
        append(tmp_path / "db.log", "db while hidden")
        append(tmp_path / "app.log", "app while db is hidden")
        await expect(row_of(page, "app while db is hidden")).to_have_count(1, timeout=WAIT)
        await expect(page.locator("#count")).to_have_text("7 of 11 lines", timeout=WAIT)
        assert "db while hidden" not in await shown_lines(page)
        assert not [s for s in await saved_lines(page) if s.startswith("db: ")]

        await db.click()  # back: its lines, the one that came while hidden too
        await expect(page.locator("#count")).to_have_text("11 lines", timeout=WAIT)
        await expect(row_of(page, "db while hidden").locator(".badge")).to_have_text("db")
        assert [s for s in await saved_lines(page) if s.startswith("db: ")] == [
            "db: db line 0", "db: db line 1", "db: db line 2", "db: db while hidden"]
    # one stream per page load (the reload made the second); toggles never reconnect
    assert len(streams(watch)) == 2, streams(watch)
    assert watch.real_errors() == []


# -- the set in the address; the picker ----------------------------------------------------

async def test_the_address_holds_the_set_and_the_picker_changes_it(tmp_path, browser):
    names = ["app", "db", "worker"]
    for n in names:
        append(tmp_path / f"{n}.log", f"{n} first", f"{n} second")
    config = make_config(tmp_path, {n: f"{n}.log" for n in names})
    perms = {"permissions": ["clipboard-read", "clipboard-write"]}
    async with live_server(config) as base, viewer_page(browser, **perms) as (page, watch):
        await open_live(page, base + "/#file=app")
        await expect(page.locator("#count")).to_have_text("2 lines", timeout=WAIT)
        await expect(page.locator("#legend")).to_be_hidden()
        await expect(page.locator("#rows .badge")).to_have_count(0)  # one file: no badges

        await page.click("#files-btn")
        dialog = page.locator("#files-dialog")
        await expect(dialog).to_be_visible()
        await expect(dialog.get_by_role("checkbox", name="app")).to_be_checked()
        await dialog.get_by_role("checkbox", name="db").check()
        await dialog.get_by_role("checkbox", name="worker").check()
        await expect(page.locator("#files-note")).to_have_text("3 files, merged in one view")
        await dialog.get_by_role("button", name="Show").click()
        await expect(dialog).to_be_hidden()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=WAIT)
        await expect(page.locator("#count")).to_have_text("6 lines", timeout=WAIT)
        assert page.url.endswith("/#file=app&file=db&file=worker"), page.url
        await expect(page.locator("#legend button.chip")).to_have_text(names)
        await expect(page.locator("#file option:checked")).to_have_text("3 files, merged")

        await page.reload()  # the address alone reproduces the view
        await expect(page.locator("#count")).to_have_text("6 lines", timeout=WAIT)
        await expect(page.locator("#legend button.chip")).to_have_text(names)

        # a merged line's link names its own file, and opens in that file's context
        row = row_of(page, "worker first")
        link = page.locator("#line-link")
        for _ in range(20):
            await page.mouse.move(0, 0)
            await row.hover()
            if "worker first" in (await link.get_attribute("aria-label") or ""):
                break
            await page.wait_for_timeout(250)
        await link.click()
        await expect(page.locator("#link-toast")).to_have_text("Link copied", timeout=WAIT)
        url = await page.evaluate("navigator.clipboard.readText()")
        assert re.fullmatch(rf"{re.escape(base)}/#file=worker&line=[^&]+", url), url
        async with viewer_page(browser) as (other, other_watch):
            await other.goto(url)
            await expect(other.locator("#rows .row.target .txt")).to_have_text(
                "worker first", timeout=WAIT)
            assert await shown_lines(other) == ["worker first", "worker second"]
        assert other_watch.real_errors() == []

        await page.select_option("#file", "db")  # one file again: its own stream
        await expect(page.locator("#count")).to_have_text("2 lines", timeout=WAIT)
        assert page.url.endswith("/#file=db"), page.url
        await expect(page.locator("#legend")).to_be_hidden()
        assert await shown_lines(page) == ["db first", "db second"]

        await page.goto(base + "/#file=db&file=app")  # the address changed by hand
        await expect(page.locator("#count")).to_have_text("4 lines", timeout=WAIT)
        await expect(page.locator("#legend button.chip")).to_have_text(["db", "app"])
    made = streams(watch)
    assert [files_of(u) for u in made if "/api/stream?" in u] == [
        names, names, ["db", "app"]], made
    assert [u for u in made if "/api/files/" in u] == [
        u for u in made if "/api/files/app/stream" in u or "/api/files/db/stream" in u]
    assert watch.real_errors() == []


async def test_unknown_files_are_left_out_and_at_most_the_limit_is_asked_for(tmp_path,
                                                                              browser):
    names = [f"f{i:02d}" for i in range(17)]
    for n in names:
        append(tmp_path / f"{n}.log", f"{n} hello")
    config = make_config(tmp_path, {n: f"{n}.log" for n in names})
    async with live_server(config) as base, viewer_page(browser) as (page, watch):
        await page.add_init_script(HEARD)
        await open_live(page, base + "/#file=f00&file=nope&file=f01")
        await expect(page.locator("#count")).to_have_text("2 lines", timeout=WAIT)
        await page.wait_for_function("""() => window.heard.some(
          (said) => said.includes("No file named nope; showing f00, f01"))""", timeout=WAIT)
        assert page.url.endswith("/#file=f00&file=f01"), page.url

        await page.click("#files-btn")
        dialog = page.locator("#files-dialog")
        for n in names:
            await dialog.get_by_role("checkbox", name=n, exact=True).check()
        await expect(page.locator("#files-note")).to_have_text(
            "At most 16 files in one view: 17 chosen")
        await expect(dialog.get_by_role("button", name="Show")).to_be_disabled()
        await dialog.get_by_role("checkbox", name="f16", exact=True).uncheck()
        await expect(dialog.get_by_role("button", name="Show")).to_be_enabled()
        await dialog.get_by_role("button", name="Show").click()
        await expect(page.locator("#count")).to_have_text("16 lines", timeout=WAIT)
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    made = streams(watch)
    assert [len(files_of(u)) for u in made] == [2, 16], made
    assert watch.real_errors(allow_network=True) == []


async def test_all_files_of_a_glob_source_at_once(tmp_path, browser):
    logs = tmp_path / "logs"
    logs.mkdir()
    append(tmp_path / "app.log", "app line")
    for n in ("a", "b", "c"):
        append(logs / f"{n}.log", f"{n} line")
    config = parse_config(tomllib.loads(
        RELAXED + '[[files]]\nname = "app"\npath = "app.log"\n'
        '[[files]]\nname = "web"\nglob = "logs/*.log"\n'), tmp_path)
    async with live_server(config) as base, viewer_page(browser) as (page, watch):
        await open_live(page, base + "/")
        await page.click("#files-btn")
        dialog = page.locator("#files-dialog")
        await dialog.get_by_role("button", name="None").click()
        await expect(dialog.get_by_role("button", name="Show")).to_be_disabled()
        group = dialog.get_by_role("checkbox", name="All files of web (3)")
        await group.check()
        for n in ("a", "b", "c"):
            await expect(dialog.get_by_role("checkbox", name=f"web.{n}.log")).to_be_checked()
        await dialog.get_by_role("checkbox", name="web.b.log").uncheck()
        assert await group.evaluate("b => b.indeterminate") is True
        await dialog.get_by_role("checkbox", name="web.b.log").check()
        await dialog.get_by_role("button", name="Show").click()
        await expect(page.locator("#count")).to_have_text("3 lines", timeout=WAIT)
        assert page.url.endswith("/#file=web.a.log&file=web.b.log&file=web.c.log"), page.url
        append(logs / "b.log", "b later")
        await expect(row_of(page, "b later").locator(".badge")).to_have_text("web.b.log",
                                                                             timeout=WAIT)
    assert [files_of(u) for u in streams(watch)][-1] == ["web.a.log", "web.b.log",
                                                         "web.c.log"]
    assert watch.real_errors(allow_network=True) == []


# -- the filter across files ---------------------------------------------------------------

async def test_the_filter_applies_across_every_file(tmp_path, browser):
    names = ["app", "db", "worker"]
    for n in names:
        append(tmp_path / f"{n}.log", f"{n} has the needle", f"{n} has nothing")
    config = make_config(tmp_path, {n: f"{n}.log" for n in names})
    async with live_server(config) as base, viewer_page(browser) as (page, watch):
        await open_live(page, base + "/" + hash_of(names))
        await expect(page.locator("#count")).to_have_text("6 lines", timeout=WAIT)
        await page.fill("#filter", "needle")
        await expect(page.locator("#count")).to_have_text("3 of 6 lines", timeout=WAIT)
        assert sorted(await shown_lines(page)) == sorted(f"{n} has the needle" for n in names)
        assert sorted(await page.locator("#rows .row .badge").all_inner_texts()) == names
        await expect(page.locator("#rows mark")).to_have_count(3)
        append(tmp_path / "db.log", "db: another needle", "db: no")
        await expect(page.locator("#count")).to_have_text("4 of 8 lines", timeout=WAIT)
        assert page.url.endswith("&q=needle"), page.url

        # a line with many matches: the first few are <mark> elements, the rest painted
        # as highlights (no element each); every one is marked
        append(tmp_path / "app.log", " ".join(["needle"] * 7))
        row = row_of(page, " ".join(["needle"] * 7))
        await expect(row.locator("mark")).to_have_count(4, timeout=WAIT)
        painted = await page.evaluate("""() => [...CSS.highlights.get("logtail-match")]
          .map((r) => r.startContainer.data.slice(r.startOffset, r.endOffset))""")
        assert painted == ["needle"] * 3, painted
        await expect(page.locator("#count")).to_have_text("5 of 9 lines", timeout=WAIT)

        await page.click("#opt-server")  # on the server: one stream, with the query
        await expect(page.locator("#count")).to_have_text("5 matching lines (server filter)",
                                                          timeout=WAIT)
        append(tmp_path / "worker.log", "worker: late needle", "worker: late hay")
        await expect(page.locator("#count")).to_have_text("6 matching lines (server filter)",
                                                          timeout=WAIT)
        assert "worker: late hay" not in await saved_lines(page)
    made = streams(watch)
    assert len(made) == 2 and all("/api/stream?" in u for u in made), made
    assert "q=needle" in made[1] and files_of(made[1]) == names
    assert watch.real_errors() == []


# -- the overview: lines per minute by level -------------------------------------------------

def minute_lines(name: str, minute: int, count: int) -> tuple[list[str], int, int]:
    """`count` lines of 2025-06-01 10:<minute> UTC; every 7th an error, every 5th a warning."""
    lines, errors, warnings = [], 0, 0
    for i in range(count):
        level = "ERROR" if i % 7 == 3 else "WARN" if i % 5 == 1 else "INFO"
        errors += level == "ERROR"
        warnings += level == "WARN"
        lines.append(f"2025-06-01T10:{minute:02d}:{i % 60:02d}Z {level} {name}: event {i}")
    return lines, errors, warnings


async def top_row_matches(page: Page, pattern: str) -> None:
    """Wait until the row at the top of the log's viewport matches `pattern`."""
    await page.wait_for_function("""(pattern) => {
      const vp = document.getElementById("viewport").getBoundingClientRect();
      const el = document.elementFromPoint(vp.left + vp.width / 2, vp.top + 4);
      const row = el && el.closest(".row");
      return !!row && new RegExp(pattern).test(row.querySelector(".txt").textContent);
    }""", arg=pattern, timeout=WAIT)


async def test_the_overview_counts_levels_per_minute_and_a_bar_goes_to_its_minute(tmp_path,
                                                                                  browser):
    expected: dict[int, tuple[int, int, int]] = {}
    for minute in range(6):
        total = errors = warnings = 0
        for name, count in (("app", 40), ("db", 20)):
            lines, e, w = minute_lines(name, minute, count)
            append(tmp_path / f"{name}.log", *lines)
            total, errors, warnings = total + count, errors + e, warnings + w
        expected[minute] = (total, errors, warnings)
    config = make_config(tmp_path, {"app": "app.log", "db": "db.log"},
                         "[stream]\nbacklog_lines = 1000\n")
    async with live_server(config) as base, \
            viewer_page(browser, timezone_id="UTC") as (page, watch):
        await open_live(page, base + "/#file=app&file=db")
        await expect(page.locator("#count")).to_have_text("360 lines", timeout=WAIT)
        bars = page.locator("#spark .bar:not([disabled])")
        await expect(bars).to_have_count(6, timeout=WAIT)
        for minute, (total, errors, warnings) in expected.items():
            await expect(bars.nth(minute)).to_have_attribute(
                "aria-label",
                f"10:{minute:02d}: {total} lines, {errors} errors, {warnings} warnings")
        await expect(page.locator("#spark .spark-from")).to_have_text("10:00")
        await expect(page.locator("#spark .spark-to")).to_have_text("10:05")

        await bars.nth(2).click()  # to 10:02: its first line at the top, following stops
        await expect(page.locator("#follow-state")).to_contain_text("scrolled up", timeout=WAIT)
        await top_row_matches(page, r"^2025-06-01T10:02:00Z ")
        await expect(page.locator("#announce")).to_contain_text("Showing the lines from 10:02",
                                                             timeout=WAIT)

        # from the keyboard: the bar last chosen keeps the one tab stop; arrows move,
        # Enter goes
        await page.click("#end")
        await expect(page.locator("#spark .bar[tabindex='0']")).to_have_count(1)
        await expect(bars.nth(2)).to_have_attribute("tabindex", "0")
        await bars.nth(2).focus()
        await page.keyboard.press("ArrowRight")
        await expect(bars.nth(3)).to_be_focused()
        await expect(bars.nth(3)).to_have_attribute("tabindex", "0")
        await page.keyboard.press("Enter")
        await top_row_matches(page, r"^2025-06-01T10:03:00Z ")

        # counted as lines arrive: a new minute gets its bar
        lines, errors, warnings = minute_lines("db", 6, 12)
        append(tmp_path / "db.log", *lines)
        await expect(bars).to_have_count(7, timeout=WAIT)
        await expect(bars.nth(6)).to_have_attribute(
            "aria-label", f"10:06: 12 lines, {errors} errors, {warnings} warnings", timeout=WAIT)
        # the filter hides lines, not counts: the bars count what the page keeps
        await page.fill("#filter", "db:")
        await expect(page.locator("#count")).to_have_text("132 of 372 lines", timeout=WAIT)
        await expect(bars.nth(0)).to_have_attribute(
            "aria-label", re.compile(rf"^10:00: {expected[0][0]} lines"))

        # a time, for the merged view: its one stream starts there (nothing that old here)
        await page.fill("#filter", "")
        await page.click("#jump-form button[data-since='15m']")
        await expect(page.locator("#count")).to_have_text("0 lines", timeout=WAIT)
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=WAIT)
        await expect(bars).to_have_count(0)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        append(tmp_path / "app.log", f"{now} ERROR app: fresh")
        await expect(row_of(page, f"{now} ERROR app: fresh").locator(".badge")).to_have_text(
            "app", timeout=WAIT)
        await expect(bars).to_have_count(1, timeout=WAIT)
    made = streams(watch)
    assert len(made) == 2 and "since=15m" in made[1] and files_of(made[1]) == ["app", "db"]
    assert watch.real_errors() == []


async def test_minutes_come_from_the_lines_own_times_in_many_formats(tmp_path, browser):
    """Timestamps the overview reads: ISO 8601 with a zone, JSON `ts`, nginx, epoch, and a
    line without one takes the time of the line before it (a stack trace)."""
    lines = [
        "2025-06-01T10:00:59.999+02:00 INFO started",  # 08:00 UTC
        "  at frame one (no time of its own)",
        '{"ts": "2025-06-01T08:01:30Z", "level": "error", "msg": "json"}',
        '203.0.113.9 - - [01/Jun/2025:08:02:05 +0000] "GET / HTTP/1.1" 200 12',
        "1748764980 WARN epoch seconds",  # 2025-06-01T08:03:00Z
    ]
    append(tmp_path / "app.log", *lines)
    append(tmp_path / "db.log", "2025-06-01 08:03:10Z WARN db too")
    config = make_config(tmp_path, {"app": "app.log", "db": "db.log"})
    async with live_server(config) as base, \
            viewer_page(browser, timezone_id="UTC") as (page, watch):
        await open_live(page, base + "/#file=app&file=db")
        await expect(page.locator("#count")).to_have_text("6 lines", timeout=WAIT)
        bars = page.locator("#spark .bar")
        await expect(bars).to_have_count(4, timeout=WAIT)
        for i, label in enumerate(["08:00: 2 lines", "08:01: 1 line, 1 error", "08:02: 1 line",
                                   "08:03: 2 lines, 2 warnings"]):
            await expect(bars.nth(i)).to_have_attribute("aria-label", label, timeout=WAIT)
    assert watch.real_errors() == []
