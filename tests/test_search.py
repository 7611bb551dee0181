"""Searching a log's whole history over HTTP: the live file and its rotated siblings
(plain and gzip), both orders, filters, time bounds, formats, bounds and failures."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import os
import time
import zlib

import httpx
import pytest
from helpers import live_server, make_config, sse
from history_support import day_lines, iso, lines_at, ndjson, stamp, write_history

from logtail.streaming.filters import LineFilter
from logtail.streaming.scans import GeneratorScan
from logtail.streaming.search import Search, SearchSpec


@pytest.fixture
def history(tmp_path):
    return write_history(tmp_path)


def _url(base: str, query: str) -> str:
    return f"{base}/api/files/app/search?format=ndjson&{query}"


async def test_newest_first_across_plain_rotated_and_gz_with_ids(tmp_path, history):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        rows, done = await ndjson(c, _url(base, "q=ERROR&case=1&limit=10000"))
        expected = [ln for ln in reversed(history) if "ERROR" in ln]
        assert [r["line"] for r in rows] == expected
        assert done == {"matches": len(expected), "scanned_bytes": done["scanned_bytes"],
                        "limited": False}
        by_source = {r["source"] for r in rows}
        assert by_source == {"app.log", "app.log.1", "app.log.2.gz", "app.log.3.gz"}
        assert len({r["id"] for r in rows}) == len(rows)
        for r in [*rows[::37], rows[-1]]:  # an id names exactly its line, in any generation
            got = await lines_at(c, base, r["id"], before=0, after=0)
            assert got["lines"] == [{"id": r["id"], "line": r["line"]}]


async def test_oldest_first(tmp_path, history):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        rows, _ = await ndjson(c, _url(base, "q=ERROR&order=asc&limit=10000"))
        assert [r["line"] for r in rows] == [ln for ln in history if "ERROR" in ln]
        rows, _ = await ndjson(c, _url(base, "order=asc&limit=3"))
        assert [r["line"] for r in rows] == history[:3]
        assert rows[0]["source"] == "app.log.3.gz"


@pytest.mark.parametrize(("query", "pick"), [
    ("q=error", lambda ln: "ERROR" in ln),  # case-insensitive by default
    ("q=error&case=1", lambda ln: False),
    ("q=line%20%5B0-9%5D*5%20&regex=1", lambda ln: " line " in ln and
     ln.split(" line ")[1].split(" ")[0].endswith("5")),
    ("q=info&invert=1", lambda ln: "info" not in ln),
    ("q=LINE%20[0-9]*0%20error&regex=1", lambda ln: "ERROR" in ln),
])
async def test_regex_case_and_invert_as_on_streams(tmp_path, history, query, pick):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        rows, _ = await ndjson(c, _url(base, query + "&limit=10000"))
    assert [r["line"] for r in rows] == [ln for ln in reversed(history) if pick(ln)]


async def test_since_and_until_bound_the_scan_and_skip_generations(tmp_path, history):
    # the oldest .gz is corrupt: reading it at all would show up as a source_error
    (tmp_path / "app.log.3.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 5000)
    os.utime(tmp_path / "app.log.3.gz", (stamp(1, 2000).timestamp(),) * 2)
    since, until = stamp(2, 900), stamp(3, 30)
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        for order in ("desc", "asc"):
            rows, done = await ndjson(c, _url(base, f"since={iso(since)}&until={iso(until)}"
                                                    f"&order={order}&limit=10000"))
            want = [ln for ln in history if "day1" not in ln
                    and since <= _time(ln) < until]
            assert [r["line"] for r in rows] == (want[::-1] if order == "desc" else want)
            assert "error" not in json.dumps(rows)
            # the live file (day 4) is not read at all; the bounds cost probes, not scans
            assert done["scanned_bytes"] < 60_000, done
        rows, _ = await ndjson(c, _url(base, f"until={iso(stamp(2, 5))}&q=ERROR"))
        assert rows[0]["line"] == "2026-01-02T00:00:00Z day2 line 0 ERROR "
        assert rows[1]["source"] == "app.log.3.gz" and "error" in rows[1]  # before until
        assert len(rows) == 2


def _time(line: str):
    from datetime import datetime
    return datetime.fromisoformat(line.split(" ")[0].replace("Z", "+00:00"))


async def test_limit_and_its_bound(tmp_path, history):
    config = make_config(tmp_path, extra="[history]\nmax_matches = 50\n")
    async with live_server(config) as base, httpx.AsyncClient() as c:
        rows, done = await ndjson(c, _url(base, "limit=3"))
        assert [r["line"] for r in rows] == history[-1:-4:-1]
        rows, done = await ndjson(c, _url(base, "q=ERROR&limit=100000"))
        assert len(rows) == done["matches"] == 50
        rows, done = await ndjson(c, _url(base, "q=ERROR"))
        assert len(rows) == 50  # the default (1000) is bounded too


async def test_sse_events_and_text_format(tmp_path, history):
    with open(tmp_path / "app.log", "ab") as f:
        f.write(b"2026-01-05T00:00:00Z evil \x1b]0;title\x07 \x1b[2J ERROR \x1b[31mred\x1b[0m\r\n")
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/search?q=ERROR&limit=2") as s:
            _, events = await s.until_end()
        matches = [e for e in events if e.event == "match"]
        assert [m.data for m in matches] == [
            "2026-01-05T00:00:00Z evil \x1b]0;title\x07 \x1b[2J ERROR \x1b[31mred\x1b[0m",
            history[-10]]
        assert all(m.id and ":" in m.id for m in matches)
        assert events[-1].event == "done"
        assert events[-1].json() == {"matches": 2, "scanned_bytes": events[-1].json()[
            "scanned_bytes"], "limited": False}
        async with httpx.AsyncClient() as c:
            resp = await c.get(base + "/api/files/app/search?q=ERROR&limit=2&format=text")
            assert resp.headers["content-type"] == "text/plain; charset=utf-8"
            lines = resp.content.split(b"\n")
            assert lines[0] == b"2026-01-05T00:00:00Z evil   ERROR \x1b[31mred\x1b[0m"
            assert lines[1:] == [history[-10].encode(), b""]
            resp = await c.get(base + "/api/files/app/search?q=nothing-like-it&format=text")
            assert resp.status_code == 200 and resp.content == b""


def _big(path, mb: int) -> int:
    line = b"2026-01-04T00:00:00Z a line of some length for a big file, without the word\n"
    block = line * (1024 * 1024 // len(line))
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(block)
    return path.stat().st_size


async def test_progress_at_least_every_250_ms_on_a_big_file(tmp_path):
    size = _big(tmp_path / "app.log", 160)
    async with live_server(make_config(tmp_path)) as base:
        # invert: every line is tested on its own, so the scan takes a while
        async with sse(base, "/api/files/app/search?q=line&invert=1") as s:
            stamps, progress = [time.monotonic()], []
            while True:
                ev = await s.next_event(10)
                if ev.event == "progress":
                    progress.append(ev.json())
                    stamps.append(time.monotonic())
                if ev.event == "done":
                    stamps.append(time.monotonic())
                    done = ev.json()
                    break
    assert len(progress) >= 3, progress
    gaps = [b - a for a, b in itertools.pairwise(stamps[1:])]  # from the first progress on
    assert max(gaps) < 1.0, gaps  # every 250 ms: the bound leaves room for a busy machine
    assert all(p["total_bytes"] == size and p["source"] == "app.log" for p in progress)
    scanned = [p["scanned_bytes"] for p in progress]
    assert scanned == sorted(scanned) and scanned[-1] == done["scanned_bytes"] == size
    assert done["matches"] == 0


async def test_a_client_that_leaves_stops_its_scan(tmp_path):
    _big(tmp_path / "app.log", 400)
    config = make_config(tmp_path, extra="[history]\nmax_scans = 1\n")
    async with live_server(config) as base, httpx.AsyncClient() as c:
        async with sse(base, "/api/files/app/search?q=line&invert=1") as s:
            while (await s.next_event(10)).event != "progress":
                pass
            busy = await c.get(base + "/api/files/app/search?limit=1&format=text")
            assert busy.status_code == 503 and busy.headers["retry-after"]
            assert busy.json()["reason"] == "max_scans"
        left = time.monotonic()
        while True:  # the scan's thread stops and gives its slot back
            resp = await c.get(base + "/api/files/app/search?limit=1&format=text")
            if resp.status_code == 200:
                break
            assert time.monotonic() - left < 0.5, "the scan kept running"
            await asyncio.sleep(0.01)
        assert resp.text.startswith("2026-01-04T00:00:00Z a line")


async def test_a_line_lookup_is_not_held_up_by_the_same_clients_search(tmp_path):
    _big(tmp_path / "app.log", 400)
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        rows, _ = await ndjson(c, _url(base, "limit=1"))
        async with sse(base, "/api/files/app/search?q=line&invert=1") as s:
            await s.next_event(10)
            started = time.monotonic()
            got = await lines_at(c, base, rows[0]["id"], before=2, after=0)
            assert time.monotonic() - started < 1.0
            assert got["at"] == 2
            assert (await s.next_event(10)).event == "progress"  # still searching


async def test_shutdown_ends_a_running_search_quickly(tmp_path):
    _big(tmp_path / "app.log", 400)
    client = httpx.AsyncClient(timeout=30)
    try:
        async with live_server(make_config(tmp_path)) as base:
            req = client.build_request("GET", base + "/api/files/app/search?q=line&invert=1")
            resp = await client.send(req, stream=True)
            chunks = resp.aiter_bytes()
            assert b"logtail" in await chunks.__anext__()
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 3
        rest = b"".join([c async for c in chunks])
        assert b"event: done" not in rest  # cut short, and the client can tell
        await resp.aclose()
    finally:
        await client.aclose()


async def test_scans_per_ip_is_429(tmp_path):
    _big(tmp_path / "app.log", 200)
    config = make_config(tmp_path, extra="[history]\nscans_per_ip = 1\n")
    async with live_server(config) as base, httpx.AsyncClient() as c:
        async with sse(base, "/api/files/app/search?q=line&invert=1") as s:
            await s.next_event(10)
            resp = await c.get(base + "/api/files/app/lines?at=1000.0123456789abcdef:0")
            assert resp.status_code == 429 and resp.json()["reason"] == "scans_per_ip"
            assert resp.headers["retry-after"]


async def test_a_gzip_bomb_stops_at_max_scan_bytes(tmp_path):
    (tmp_path / "app.log").write_bytes(b"2026-01-04T00:00:00Z live\n")
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(tmp_path / "app.log.1.gz", "wb") as f:
        zeros = b"\0" * (1 << 20)
        for _ in range(1024):  # 1 GiB of zeros, about 1 MB on disk
            f.write(c.compress(zeros))
        f.write(c.flush())
    config = make_config(tmp_path, extra="[history]\nmax_scan_bytes = 67108864\n")
    started = time.monotonic()
    async with live_server(config) as base, httpx.AsyncClient() as client:
        rows, done = await ndjson(client, _url(base, "q=anything"))
    assert rows == [] and done["limited"] is True
    assert 64 << 20 <= done["scanned_bytes"] <= (64 << 20) + (2 << 20)
    assert time.monotonic() - started < 20


async def test_a_corrupt_gz_is_reported_and_the_scan_goes_on(tmp_path, history):
    good = (tmp_path / "app.log.2.gz").read_bytes()
    (tmp_path / "app.log.2.gz").write_bytes(good[:200] + b"\xff" * 300 + good[500:])
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/search?q=day1%20line%20990&case=1") as s:
            _, events = await s.until_end()
    names = [e.event for e in events if e.event != "progress"]
    assert names == ["source_error", "match", "done"], names
    err = events[[e.event for e in events].index("source_error")].json()
    assert err["source"] == "app.log.2.gz" and "gzip" in err["error"]
    match = next(e for e in events if e.event == "match")
    assert match.data.startswith(iso(stamp(1, 990)))


async def test_a_symlinked_sibling_is_never_read(tmp_path):
    (tmp_path / "app.log").write_text("2026-01-04T00:00:00Z live\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("2026-01-03T00:00:00Z SECRET\n")
    (tmp_path / "app.log.1").symlink_to(secret)
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        rows, done = await ndjson(c, _url(base, "q=SECRET"))
        assert rows == [] and done["matches"] == 0
        rows, _ = await ndjson(c, _url(base, ""))
        assert [r["line"] for r in rows] == ["2026-01-04T00:00:00Z live"]


@pytest.mark.parametrize(("query", "param"), [
    ("since=yesterday", "since"), ("until=13:00", "until"), ("order=up", "order"),
    ("limit=0", "limit"), ("limit=-1", "limit"), ("limit=1e3", "limit"), ("limit=²", "limit"),
    ("format=html", "format"), ("q=(x&regex=1", "q"), ("bogus=1", "bogus"),
    ("since=2026-01-02&until=2026-01-01", "until"), ("order=asc&order=desc", "order"),
])
async def test_bad_parameters_are_400_naming_them(tmp_path, history, query, param):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        resp = await c.get(f"{base}/api/files/app/search?{query}")
        assert resp.status_code == 400, resp.text
        assert resp.json()["param"] == param
        resp = await c.get(f"{base}/api/files/nope/search")
        assert resp.status_code == 404


async def test_since_on_a_history_without_timestamps_is_422(tmp_path):
    (tmp_path / "app.log").write_text("no time here\n" * 100)
    (tmp_path / "app.log.1.gz").write_bytes(gzip.compress(b"nor here\n" * 100))
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        resp = await c.get(f"{base}/api/files/app/search?since=1h")
        assert resp.status_code == 422 and resp.json()["param"] == "since"
        resp = await c.get(f"{base}/api/files/app/search?until=2026-01-01")
        assert resp.status_code == 422 and resp.json()["param"] == "until"
        rows, _ = await ndjson(c, _url(base, "q=nor&limit=2"))  # without times: fine
        assert [r["line"] for r in rows] == ["nor here", "nor here"]


def _naive(data: bytes, pick) -> list[tuple[int, str]]:
    out, pos = [], 0
    for raw in data.split(b"\n"):
        if pos >= len(data):
            break
        text = raw.decode("utf-8", "replace").removesuffix("\r")
        if pick(text):
            out.append((pos, text))
        pos += len(raw) + 1
    return out


@pytest.mark.parametrize("seed", range(6))
def test_the_scan_agrees_with_reading_line_by_line(tmp_path, seed):
    """Long lines across blocks (backwards and forwards), CRLF, a last line without a
    newline, empty lines, in a plain rotated file and a .gz: every match, every offset."""
    import random
    rnd = random.Random(seed)
    parts = []
    for i in range(3000):
        size = rnd.choice([0, 1, 5, 40, 200, 70_000, 300_000]) if rnd.random() < 0.05 \
            else rnd.randint(0, 80)
        word = rnd.choice(["hit", "miss", "HIT"])
        parts.append(f"{i} {word} " + "y" * size + ("\r" if rnd.random() < 0.1 else ""))
    data = "\n".join(parts).encode()  # no newline at the end
    (tmp_path / "app.log.1").write_bytes(data)
    (tmp_path / "app.log.2.gz").write_bytes(gzip.compress(data))
    (tmp_path / "app.log").write_bytes(b"")
    filters = [(LineFilter("hit"), lambda t: "hit" in t.lower()),
               (LineFilter("hit", invert=True, case=True), lambda t: "hit" not in t),
               (None, lambda t: True)]
    for f, pick in filters:
        want = _naive(data, pick)
        for desc in (True, False):
            s = Search(tmp_path / "app.log", SearchSpec(f, None, None, 100_000, desc, 1 << 40,
                                                        65536))
            scan = GeneratorScan(s.work())
            got = []
            while not scan.step(1 << 20):
                got += s.take()
            got += s.take()
            for source in ("app.log.1", "app.log.2.gz"):
                mine = [(int(m.id.split(":")[1], 16), m.line) for m in got if m.source == source]
                expect = want[::-1] if desc else want
                assert [o for o, _ in mine] == [o for o, _ in expect]
                for (_, line), (_, text) in zip(mine, expect, strict=True):
                    if len(text.encode()) <= 65536:
                        assert line == text
                    else:
                        assert line.startswith(text[:1000]) and "line cut" in line


def test_day_lines_grow_in_time():
    lines = day_lines(2, 5)
    assert lines == sorted(lines)


def _scan_all(log, f, desc: bool, max_line: int, limit: int = 100_000) -> list:
    s = Search(log, SearchSpec(f, None, None, limit, desc, 1 << 40, max_line))
    scan = GeneratorScan(s.work())
    got = []
    while not scan.step(1 << 20):
        got += s.take()
    return got + s.take()


@pytest.mark.parametrize("desc", [False, True])
def test_lines_across_blocks_and_longer_than_a_block(tmp_path, desc):
    """A short max_line, and lines longer than a 1 MiB read block, placed so that newlines
    fall on the last and the first byte of blocks: every line, its offset and its cut
    text, forwards and backwards, plain and gz, with a block search, with lines tested
    one by one, and without a filter."""
    import random

    from logtail.files.history import CHUNK
    from logtail.files.lines import SLACK, cut_line, normalise

    max_line = 100
    rnd = random.Random(3)
    parts = [b"0 hit " + b"a" * (CHUNK - 7), b"", b"2 hit"]  # newlines at CHUNK - 1, CHUNK
    i = 3
    while sum(len(p) + 1 for p in parts) < 6 * CHUNK:
        size = rnd.choice([0, 50, 99, 100, 101, 102, 103, 104, 5000, 70_000]) \
            if rnd.random() < 0.2 else rnd.randint(0, 60)
        if i % 97 == 0:
            size = rnd.choice([CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK // 2])
        parts.append(f"{i} {rnd.choice(['hit', 'miss'])} ".encode() + b"y" * size)
        i += 1
    data = b"\n".join(parts)  # no newline at the end
    (tmp_path / "app.log.1").write_bytes(data)
    (tmp_path / "app.log.2.gz").write_bytes(gzip.compress(data + b"\n"))
    (tmp_path / "app.log").write_bytes(b"")
    keep = max_line + SLACK
    everything, pos = [], 0
    for raw in parts:
        text = normalise(cut_line(raw[:keep], len(raw), max_line) if len(raw) > max_line
                         else raw)
        everything.append((pos, text, raw[:keep]))
        pos += len(raw) + 1
    assert any(len(p) > CHUNK for p in parts)
    for f, pick in ((LineFilter("hit"), lambda h: b" hit" in h[:12]),
                    (LineFilter("miss", invert=True), lambda h: b"miss" not in h[:12]),
                    (None, lambda h: True)):
        want = [(o, t) for o, t, h in everything if pick(h)]
        got = _scan_all(tmp_path / "app.log", f, desc, max_line)
        for source in ("app.log.1", "app.log.2.gz"):
            mine = [(int(m.id.split(":")[1], 16), m.line) for m in got if m.source == source]
            assert mine == (want[::-1] if desc else want), (source, f)


def test_the_scan_pool_lowers_the_switch_interval():
    """Python in a scan thread makes the event loop wait up to the switch interval for
    the GIL after each of its system calls."""
    import sys

    from logtail.streaming.scans import SWITCH_INTERVAL_S, OneShot, ScanGate

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        gate = ScanGate(1, 1)
        asyncio.run(gate.run("ip", OneShot(lambda: 1), lambda: None))
        gate.close()
        assert sys.getswitchinterval() <= SWITCH_INTERVAL_S
    finally:
        sys.setswitchinterval(old)


def test_scans_run_at_the_lowest_cpu_priority_and_the_loop_keeps_its_own():
    """A search keeps a core busy: its threads yield the CPU to the event loop (and to
    anything else), so a live line's wake-up never queues behind a scan."""
    import threading

    from logtail.streaming.scans import SCAN_NICENESS, OneShot, ScanGate

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    loop_thread = niceness()
    gate = ScanGate(2, 2)
    seen = OneShot(niceness)
    asyncio.run(gate.run("ip", seen, lambda: None))
    gate.close()
    assert seen.result == SCAN_NICENESS == 19
    assert niceness() == loop_thread < 19
