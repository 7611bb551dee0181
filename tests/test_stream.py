"""Streams against a real server: backlog, live lines, filters, formats, heartbeats, errors."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from helpers import append, live_server, make_config, sse


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "app.log"
    path.write_text("".join(f"line {i}\n" for i in range(1, 501)))
    return path


@pytest.mark.parametrize("n", [0, 1, 10, 100, 500])
async def test_backlog_is_exactly_the_last_n_lines(tmp_path, log, n):
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, f"/api/files/app/stream?n={n}&follow=0") as s:
            lines, notices = await s.until_end()
    assert lines == [f"line {i}" for i in range(501 - n, 501)]
    assert notices == []


async def test_backlog_more_than_the_file_gives_the_whole_file(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=10000&follow=0") as s:
            lines, _ = await s.until_end()
    assert len(lines) == 500


async def test_opening_comment_and_retry_come_first(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base, \
            httpx.AsyncClient() as client, \
            client.stream("GET", base + "/api/files/app/stream?n=0") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["cache-control"] == "no-cache, no-transform"
        assert resp.headers["x-accel-buffering"] == "no"
        first = await asyncio.wait_for(resp.aiter_raw().__anext__(), 5)
        assert first.startswith(b": logtail ")
        assert b"retry: 3000\n\n" in first


async def test_lines_appended_after_connecting_arrive_in_order_once(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            for i in range(50):
                append(log, f"new {i}")
                if i % 7 == 0:
                    await asyncio.sleep(0.01)
            got = await s.collect(50)
            assert got == [f"new {i}" for i in range(50)]
            with pytest.raises(asyncio.TimeoutError):
                await s.next_event(timeout=0.5)


async def test_partial_last_line_waits_for_its_newline(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            append(log, raw=b"half a li")
            with pytest.raises(asyncio.TimeoutError):
                await s.next_event(timeout=0.7)
            append(log, raw=b"ne\nnext\n")
            assert await s.collect(2) == ["half a line", "next"]


async def test_backlog_leaves_out_an_unfinished_last_line(tmp_path, log):
    append(log, raw=b"unfinished")
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=2&follow=0") as s:
            lines, _ = await s.until_end()
    assert lines == ["line 499", "line 500"]


async def test_ten_thousand_lines_in_one_write_arrive_whole(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            append(log, *(f"bulk {i:05d} " + "x" * 80 for i in range(10_000)))
            got = await s.collect(10_000, timeout=30)
    assert got == [f"bulk {i:05d} " + "x" * 80 for i in range(10_000)]


@pytest.mark.parametrize(("query", "expected"), [
    ("q=error", ["ERROR disk full", "error: lower case", "an Error here"]),
    ("q=ERROR&case=1", ["ERROR disk full"]),
    ("q=%5E(error%7CERROR)&regex=1&case=1", ["ERROR disk full", "error: lower case"]),
    ("q=err(or)%3F%3A&regex=1", ["error: lower case"]),
    ("q=error&invert=1", ["INFO all good", "WARN almost"]),
])
async def test_filters_apply_to_backlog_and_live_lines(tmp_path, query, expected):
    log = tmp_path / "app.log"
    rows = ["INFO all good", "ERROR disk full", "WARN almost", "error: lower case", "an Error here"]
    append(log, *rows)
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, f"/api/files/app/stream?n=100&{query}") as s:
            backlog = await s.collect(len(expected))
            assert backlog == expected
            append(log, *rows)
            assert await s.collect(len(expected)) == expected


async def test_filtered_backlog_finds_the_last_n_matching_lines(tmp_path):
    log = tmp_path / "app.log"
    append(log, *(f"{'ERROR' if i % 100 == 0 else 'INFO'} {i}" for i in range(5000)))
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=3&q=ERROR&case=1&follow=0") as s:
            lines, _ = await s.until_end()
    assert lines == ["ERROR 4700", "ERROR 4800", "ERROR 4900"]


async def test_text_format_is_raw_lines(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as client:
        resp = await client.get(base + "/api/files/app/stream?n=3&follow=0&format=text")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert resp.text == "line 498\nline 499\nline 500\n"


async def test_text_format_follows(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as client, \
            client.stream("GET", base + "/api/files/app/stream?n=1&format=text") as resp:
        chunks = resp.aiter_text()
        got = await asyncio.wait_for(chunks.__anext__(), 5)
        append(log, "live one")
        while "live one" not in got:
            got += await asyncio.wait_for(chunks.__anext__(), 5)
        assert got == "line 500\nlive one\n"


async def test_follow_0_ends_after_the_backlog(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as client:
        resp = await asyncio.wait_for(
            client.get(base + "/api/files/app/stream?n=5&follow=0"), 10)
    assert resp.status_code == 200
    assert resp.text.count("data: ") == 5


async def test_heartbeat_comment_when_idle(tmp_path, log):
    config = make_config(tmp_path, extra="[stream]\nheartbeat_s = 0.3\n")
    async with live_server(config) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            with pytest.raises(asyncio.TimeoutError):
                await s.next_event(timeout=1.2)
            assert s.comments.count("ping") >= 2


async def test_filtered_heartbeat_moves_the_id_past_hidden_lines(tmp_path, log):
    config = make_config(tmp_path, extra="[stream]\nheartbeat_s = 0.3\n")
    async with live_server(config) as base:
        async with sse(base, "/api/files/app/stream?n=0&q=nomatch") as s:
            append(log, "hidden")
            with pytest.raises(asyncio.TimeoutError):
                await s.next_event(timeout=1.0)
            assert s.last_id is not None
        async with sse(base, "/api/files/app/stream", headers={"Last-Event-ID": s.last_id}) as s2:
            append(log, "after")
            assert await s2.collect(1) == ["after"]


async def test_unknown_file_is_404_json(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as client:
        resp = await client.get(base + "/api/files/nope/stream")
        assert resp.status_code == 404
        assert resp.json()["error"] == "unknown file"
        resp = await client.get(base + "/api/files/..%2Fetc%2Fpasswd/stream")
        assert resp.status_code == 404


@pytest.mark.parametrize(("query", "param"), [
    ("n=-1", "n"), ("n=abc", "n"), ("follow=maybe", "follow"), ("format=html", "format"),
    ("q=(unclosed&regex=1", "q"), ("regex=2", "regex"), ("bogus=1", "bogus"),
    ("n=1&n=2", "n"), ("q=" + "a" * 1001, "q"),
])
async def test_bad_parameters_are_400_naming_the_parameter(tmp_path, log, query, param):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as client:
        resp = await client.get(base + "/api/files/app/stream?" + query)
    assert resp.status_code == 400
    body = resp.json()
    assert body["param"] == param
    assert body["error"]


async def test_n_is_clamped_to_max_backlog_lines(tmp_path, log):
    config = make_config(tmp_path, extra="[stream]\nbacklog_lines = 5\nmax_backlog_lines = 20\n")
    async with live_server(config) as base:
        async with sse(base, "/api/files/app/stream?n=400&follow=0") as s:
            lines, _ = await s.until_end()
        assert len(lines) == 20
        async with sse(base, "/api/files/app/stream?follow=0") as s:
            lines, _ = await s.until_end()
        assert lines == [f"line {i}" for i in range(496, 501)]


async def test_files_list_and_healthz(tmp_path, log):
    config = make_config(tmp_path, {"app": "app.log", "later": "later.log"})
    async with live_server(config) as base, httpx.AsyncClient() as client:
        files = (await client.get(base + "/api/files")).json()["files"]
        health = (await client.get(base + "/healthz")).json()
    assert [(f["name"], f["exists"]) for f in files] == [("app", True), ("later", False)]
    assert files[0]["size"] == log.stat().st_size
    assert all("path" not in f for f in files)
    assert health["status"] == "ok"
    assert health["missing"] == ["later"]


async def test_crlf_and_lone_cr_and_invalid_utf8(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"windows\r\nlone\rcr\nbad \xff\xfe bytes\nnul\x00byte\n\n")
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=10&follow=0") as s:
            lines, _ = await s.until_end()
    assert lines == ["windows", "lone\u240dcr", "bad \ufffd\ufffd bytes", "nul\x00byte", ""]


async def test_file_created_after_start_is_followed(tmp_path):
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream") as s:
            first = await s.next_event()
            assert first.event == "missing"
            append(tmp_path / "app.log", "hello")
            notices = []
            assert await s.collect(1, notices=notices) == ["hello"]
            assert [n.event for n in notices] == ["rotated"]
            assert notices[0].json()["reason"] == "created"
