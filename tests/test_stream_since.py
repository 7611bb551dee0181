"""Streams that start at a time (`since=`), and streams whose lines carry their ids
(`ids=1`), checked against the file and against `lines?at=`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
import pytest
from helpers import append, live_server, make_config, sse
from history_support import day_lines, iso, lines_at, stamp, write_history


@pytest.fixture
def history(tmp_path):
    return write_history(tmp_path)


async def test_since_starts_at_the_first_line_at_or_after_it(tmp_path, history):
    today = day_lines(4)
    async with live_server(make_config(tmp_path)) as base:
        for since, first in [(stamp(4, 500), 500), (stamp(4, 500).replace(second=30), 501),
                             (stamp(4, 2000), 1000)]:
            async with sse(base, f"/api/files/app/stream?since={iso(since)}&follow=0") as s:
                lines, notices = await s.until_end()
            assert lines == today[first:] and notices == []


async def test_since_then_follows(tmp_path, history):
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, f"/api/files/app/stream?since={iso(stamp(4, 997))}&n=1") as s:
            assert await s.collect(3) == day_lines(4)[997:]
            append(tmp_path / "app.log", "2026-01-05T00:00:00Z new one")
            assert await s.collect(1) == ["2026-01-05T00:00:00Z new one"]


async def test_since_before_the_current_file_starts_at_its_beginning(tmp_path, history):
    """A live stream does not reach into rotated siblings: that is what search is for."""
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, f"/api/files/app/stream?since={iso(stamp(2, 0))}&follow=0") as s:
            lines, _ = await s.until_end()
    assert lines == day_lines(4)


async def test_since_as_a_duration(tmp_path):
    now = time.time()
    log = tmp_path / "app.log"
    log.write_text("".join(
        f"{datetime.fromtimestamp(now - 7200 + 30 + i * 60, UTC).isoformat()} line {i}\n"
        for i in range(120)))
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?since=30m&follow=0") as s:
            lines, _ = await s.until_end()
    assert [ln.split(" ", 1)[1] for ln in lines] == [f"line {i}" for i in range(90, 120)]


async def test_since_further_back_than_max_resume_bytes_is_dropped_then_the_bound(tmp_path,
                                                                                   history):
    today = day_lines(4)
    config = make_config(tmp_path, extra="[stream]\nmax_resume_bytes = 5000\n")
    async with live_server(config) as base:
        async with sse(base, f"/api/files/app/stream?since={iso(stamp(4, 0))}&follow=0") as s:
            lines, notices = await s.until_end()
    data = "".join(f"{ln}\n" for ln in today).encode()
    assert [n.event for n in notices] == ["dropped"]
    dropped = notices[0].json()
    assert dropped["lines"] is None and dropped["file"] == "app"
    kept = "".join(f"{ln}\n" for ln in lines).encode()
    assert data.endswith(kept) and len(kept) <= 5000 < len(kept) + len(lines[0]) + 100
    assert dropped["bytes"] == len(data) - len(kept)


@pytest.mark.parametrize("query", ["since=noon", "since=2026-13-01", "since=5x",
                                   "since=1h&since=2h"])
async def test_a_bad_since_is_400_naming_it(tmp_path, history, query):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        resp = await c.get(f"{base}/api/files/app/stream?{query}")
    assert resp.status_code == 400 and resp.json()["param"] == "since"


async def test_since_on_a_file_without_timestamps_is_422(tmp_path):
    (tmp_path / "app.log").write_text("no time here\n" * 100)
    (tmp_path / "empty.log").write_text("")
    config = make_config(tmp_path, {"app": "app.log", "empty": "empty.log"})
    async with live_server(config) as base, httpx.AsyncClient() as c:
        for follow in ("0", "1"):
            resp = await c.get(f"{base}/api/files/app/stream?since=1h&follow={follow}")
            assert resp.status_code == 422 and resp.json()["param"] == "since"
        # an empty file is not one without timestamps: it starts (at its end) and follows
        async with sse(base, "/api/files/empty/stream?since=1h") as s:
            append(tmp_path / "empty.log", "2026-01-05T00:00:00Z first")
            assert await s.collect(1) == ["2026-01-05T00:00:00Z first"]


# -- line ids on streams ----------------------------------------------------------------

async def _raw_events(base: str, path: str, until_lines: int | None = None,
                      write: bytes | None = None, log=None) -> list[dict[str, list[str]]]:
    """Every event as its fields (several `data` kept in order), read until the end or
    `until_lines` lines arrived."""
    events, fields, count = [], {}, 0
    async with httpx.AsyncClient(timeout=30) as c, c.stream("GET", base + path) as resp:
        assert resp.status_code == 200
        buf = b""
        async for chunk in resp.aiter_bytes():
            if write is not None:
                append(log, raw=write)
                write = None
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode()
                if not line:
                    if fields:
                        events.append(fields)
                        count += len(fields.get("data", []))
                    fields = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                fields.setdefault(name, []).append(value)
            if until_lines is not None and count >= until_lines:
                break
    return events


def _ids(field: str, lines: list[str]) -> list[str]:
    """The client's rule (README): one offset per line, or the first one and then each
    line's UTF-8 length plus one."""
    key, _, offsets = field.partition(":")
    starts = [int(o, 16) for o in offsets.split(",")]
    if len(starts) == len(lines):
        return [f"{key}:{o:x}" for o in starts]
    assert len(starts) == 1
    out, pos = [], starts[0]
    for line in lines:
        out.append(f"{key}:{pos:x}")
        pos += len(line.encode()) + 1
    return out


async def _check(c: httpx.AsyncClient, base: str, events: list[dict[str, list[str]]],
                 every: int = 1) -> int:
    shown = [(i, ln) for ev in events if "data" in ev and "event" not in ev
             for i, ln in zip(_ids(ev["line-ids"][0], ev["data"]), ev["data"], strict=True)]
    for line_id, text in shown[::every]:
        got = await lines_at(c, base, line_id, before=0, after=0)
        assert got["lines"][0]["id"] == line_id
        assert got["lines"][0]["line"].replace("\r", "\u240d") == text
    return len(shown)


async def test_ids_on_a_stream_resolve_with_lines_at(tmp_path, history):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        events = await _raw_events(base, "/api/files/app/stream?n=1000&follow=0&ids=1")
        assert await _check(c, base, events, every=41) == 1000
        events = await _raw_events(base, "/api/files/app/stream?n=50&follow=0&ids=1&q=ERROR")
        assert await _check(c, base, events) == 50
        assert all("," in ev["line-ids"][0] for ev in events if "data" in ev)
        plain = await _raw_events(base, "/api/files/app/stream?n=5&follow=0")
        assert plain and all("line-ids" not in ev for ev in plain)  # only when asked


async def test_ids_for_lines_whose_text_is_not_their_bytes(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"2026-01-01T00:00:00Z plain\r\n" + b"bad \xff\xfe utf-8\n"
                    + b"lone \r cr\n" + b"long " + b"y" * 500 + b"\n" + "é ok\n".encode()
                    + b"last\n")
    config = make_config(tmp_path, extra="[stream]\nmax_line_bytes = 100\n")
    async with live_server(config) as base, httpx.AsyncClient() as c:
        events = await _raw_events(base, "/api/files/app/stream?n=10&follow=0&ids=1")
        assert await _check(c, base, events) == 6
        for ev in events:
            if "data" in ev:
                assert ev["line-ids"][0].count(",") == len(ev["data"]) - 1


async def test_ids_on_live_lines(tmp_path, history):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        task = asyncio.ensure_future(_raw_events(
            base, "/api/files/app/stream?n=2&ids=1", until_lines=2 + 3,
            write=b"2026-01-05T00:00:00Z live one\n2026-01-05T00:00:01Z two\n"
                  b"2026-01-05T00:00:02Z \xff three\n", log=tmp_path / "app.log"))
        events = await asyncio.wait_for(task, 15)
        assert await _check(c, base, events) == 5
