"""`/api/stream?file=a&file=b`: several files over one connection, merged, tagged, resumable."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess

import httpx
from helpers import (
    SSE,
    Event,
    ServerProcess,
    append,
    free_port,
    live_server,
    make_config,
    sse,
    toml_config,
)

THREE = {"app": "app.log", "db": "db.log", "web": "web.log"}


async def tagged(s: SSE, count: int, notices: list[Event] | None = None,
                 timeout: float = 15.0) -> list[tuple[str, str]]:
    """The next `count` lines of a multi-file stream as (file, line)."""
    out: list[tuple[str, str]] = []
    while len(out) < count:
        ev = await s.next_event(timeout)
        if ev.event == "lines":
            data = ev.json()
            out.extend((data["file"], line) for line in data["lines"])
        elif notices is not None:
            notices.append(ev)
        else:
            raise AssertionError(f"unexpected {ev.event}: {ev.data}")
    return out


async def until_end(s: SSE) -> tuple[list[tuple[str, str]], list[Event]]:
    lines: list[tuple[str, str]] = []
    notices: list[Event] = []
    try:
        while True:
            ev = await s.next_event()
            if ev.event == "lines":
                lines.extend((ev.json()["file"], ln) for ln in ev.json()["lines"])
            else:
                notices.append(ev)
    except EOFError:
        return lines, notices


def by_file(lines: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, line in lines:
        out.setdefault(name, []).append(line)
    return out


async def test_the_backlog_is_merged_by_time_and_every_line_says_its_file(tmp_path):
    append(tmp_path / "app.log", "2026-03-01T10:00:01Z app starts",
           "2026-03-01T10:00:04Z app ready")
    append(tmp_path / "db.log", "2026-03-01T10:00:02Z db error: deadlock",
           "Traceback (most recent call last):", "  in lock()",  # no time: stays with its line
           "2026-03-01T10:00:05Z db recovered")
    append(tmp_path / "web.log", "Mar  1 10:00:03 host nginx: GET /")  # syslog time
    append(tmp_path / "plain.log", "no time here", "nor here")
    files = {**THREE, "plain": "plain.log"}
    async with live_server(make_config(tmp_path, files)) as base:
        path = "/api/stream?file=app&file=db&file=web&file=plain&n=10&follow=0"
        async with sse(base, path) as s:
            lines, notices = await until_end(s)
    assert notices == []
    assert lines == [
        ("plain", "no time here"), ("plain", "nor here"),  # no time at all: first, whole
        ("app", "2026-03-01T10:00:01Z app starts"),
        ("db", "2026-03-01T10:00:02Z db error: deadlock"),
        ("db", "Traceback (most recent call last):"), ("db", "  in lock()"),
        ("web", "Mar  1 10:00:03 host nginx: GET /"),
        ("app", "2026-03-01T10:00:04Z app ready"),
        ("db", "2026-03-01T10:00:05Z db recovered"),
    ]


async def test_live_lines_of_every_file_arrive_on_one_connection(tmp_path):
    for name in THREE.values():
        (tmp_path / name).touch()
    async with live_server(make_config(tmp_path, THREE)) as base, \
            sse(base, "/api/stream?file=app&file=db&file=web&n=0") as s:
        for i in range(20):
            for name, rel in THREE.items():
                append(tmp_path / rel, f"{name} {i}")
        got = by_file(await tagged(s, 60))
    assert got == {name: [f"{name} {i}" for i in range(20)] for name in THREE}


async def test_text_format_prefixes_each_line_with_its_file_for_curl(tmp_path):
    append(tmp_path / "app.log", "2026-03-01T10:00:01Z one")
    append(tmp_path / "db.log", "2026-03-01T10:00:02Z two \x1b]0;title\x07")  # escapes removed
    async with live_server(make_config(tmp_path, {"app": "app.log", "db": "db.log"})) as base:
        out = await asyncio.to_thread(subprocess.run, [
            "curl", "-sSN", "--max-time", "20",
            f"{base}/api/stream?file=app&file=db&format=text&follow=0"],
            capture_output=True, check=True)
    assert out.stdout.decode() == ("app: 2026-03-01T10:00:01Z one\n"
                                   "db: 2026-03-01T10:00:02Z two \n")  # the OSC title: gone


async def test_a_filter_applies_to_every_file_and_hidden_lines_are_not_resent(tmp_path):
    append(tmp_path / "app.log", "app ok", "app ERROR 1")
    append(tmp_path / "db.log", "db ok", "db ERROR 2")
    async with live_server(make_config(tmp_path, {"app": "app.log", "db": "db.log"})) as base:
        async with sse(base, "/api/stream?file=app&file=db&n=10&q=error") as s:
            assert sorted(await tagged(s, 2)) == [("app", "app ERROR 1"), ("db", "db ERROR 2")]
            append(tmp_path / "db.log", "db quiet", "db ERROR 3")
            append(tmp_path / "app.log", *(f"app noise {i}" for i in range(5)))
            assert await tagged(s, 1) == [("db", "db ERROR 3")]
            last = s.last_id
        append(tmp_path / "app.log", "app ERROR 4")
        async with sse(base, "/api/stream?file=app&file=db&q=error",
                       headers={"Last-Event-ID": last or ""}) as s:
            assert await tagged(s, 1) == [("app", "app ERROR 4")]


async def test_a_resume_gives_every_file_exactly_what_it_missed_across_a_rotation(tmp_path):
    for name, rel in THREE.items():
        append(tmp_path / rel, *(f"2026-03-01T10:00:0{i}Z {name} old {i}" for i in range(3)))
    config = make_config(tmp_path, THREE)
    async with live_server(config) as base:
        async with sse(base, "/api/stream?file=app&file=db&file=web&n=3") as s:
            backlog = await tagged(s, 9)
            mid = None
            seen = 0
            # an id from the middle of the merged backlog, as a client that left there has
            async with sse(base, "/api/stream?file=app&file=db&file=web&n=3") as again:
                for _ in range(4):
                    ev = await again.next_event()
                    if ev.event == "lines":
                        seen += len(ev.json()["lines"])
                        mid = ev.id
        assert [line for _, line in backlog][:3] == [
            "2026-03-01T10:00:00Z app old 0", "2026-03-01T10:00:00Z db old 0",
            "2026-03-01T10:00:00Z web old 0"]
        last = s.last_id
        async with sse(base, "/api/stream?file=app&file=db&file=web&follow=0",
                       headers={"Last-Event-ID": mid or ""}) as s:
            rest, notices = await until_end(s)
        assert notices == [] and rest == backlog[seen:]
    # while the client is away: lines everywhere, and `db` rotates (rename, new file)
    append(tmp_path / "app.log", "app missed")
    append(tmp_path / "db.log", "db missed before rotation")
    os.rename(tmp_path / "db.log", tmp_path / "db.log.1")
    append(tmp_path / "db.log", "db new file")
    async with live_server(config) as base:
        async with sse(base, "/api/stream?file=app&file=db&file=web&n=50",
                       headers={"Last-Event-ID": last or ""}) as s:
            notices: list[Event] = []
            got = by_file(await tagged(s, 3, notices))
            append(tmp_path / "web.log", "web live")
            got = by_file([(n, ln) for n, lines in got.items() for ln in lines]
                          + await tagged(s, 1, notices))
    assert got == {"app": ["app missed"], "db": ["db missed before rotation", "db new file"],
                   "web": ["web live"]}
    assert [(n.event, n.json()["file"]) for n in notices] == [("rotated", "db")]


def test_a_resume_after_a_server_restart_misses_nothing(tmp_path):
    files = {"app": "app.log", "db": "db.log"}
    for name, rel in files.items():
        append(tmp_path / rel, f"{name} before")
    cfg = toml_config(tmp_path, files,
                      extra=f'[server]\nsecret_file = "{tmp_path / "secret"}"\n')
    port = free_port()

    async def read(path: str, count: int, last: str | None) -> tuple[list[tuple[str, str]],
                                                                      str | None]:
        headers = {"Last-Event-ID": last} if last else {}
        async with sse(f"http://127.0.0.1:{port}", path, headers=headers) as s:
            return await tagged(s, count), s.last_id

    server = ServerProcess(["-c", str(cfg)], port)
    try:
        server.wait_ready()
        first, last = asyncio.run(read("/api/stream?file=app&file=db&n=5", 2, None))
    finally:
        server.stop()
    assert sorted(first) == [("app", "app before"), ("db", "db before")]
    append(tmp_path / "db.log", "db while down")
    append(tmp_path / "app.log", "app while down")
    server = ServerProcess(["-c", str(cfg)], port)
    try:
        server.wait_ready()
        second, _ = asyncio.run(read("/api/stream?file=app&file=db&n=5", 2, last))
    finally:
        server.stop()
    assert sorted(second) == [("app", "app while down"), ("db", "db while down")]


async def test_random_reconnects_lose_and_double_nothing_in_any_file(tmp_path):
    names = ["app", "db", "web"]
    for name in names:
        (tmp_path / f"{name}.log").touch()
    written: dict[str, list[str]] = {name: [] for name in names}
    received: dict[str, list[str]] = {name: [] for name in names}
    reconnects = 0
    rng = random.Random(11)

    async def writer() -> None:
        i = 0
        while reconnects < 60 or i < 1500:
            name = names[i % 3]
            log = tmp_path / f"{name}.log"
            if name == "web" and i % 301 == 0 and i:  # web rotates now and then
                os.rename(log, tmp_path / "web.log.1")
            append(log, f"{name} {i:05d}")
            written[name].append(f"{name} {i:05d}")
            i += 1
            if i % 10 == 0:
                await asyncio.sleep(0.002)

    async with live_server(make_config(tmp_path, {n: f"{n}.log" for n in names})) as base:
        task = None
        last_id = None
        total = lambda d: sum(map(len, d.values()))  # noqa: E731
        while task is None or not (task.done() and total(received) >= total(written)):
            headers = {"Last-Event-ID": last_id} if last_id else {}
            async with sse(base, "/api/stream?file=app&file=db&file=web&n=0",
                           headers=headers) as s:
                if task is None:  # start writing once the first stream has its position
                    task = asyncio.create_task(writer())
                for _ in range(rng.randint(1, 4)):
                    try:
                        ev = await s.next_event(timeout=1 if task.done() else 5)
                    except TimeoutError:
                        break
                    if ev.event == "lines":
                        data = ev.json()
                        received[data["file"]].extend(data["lines"])
                    else:
                        assert (ev.event, ev.json()["file"]) == ("rotated", "web"), ev
                    if ev.id:
                        last_id = ev.id
            reconnects += 1
        await task
    assert reconnects >= 40
    assert received == written


async def test_bad_requests_are_refused_clearly(tmp_path):
    for name in ("a", "b", "c"):
        append(tmp_path / f"{name}.log", f"{name} 1")
    config = make_config(tmp_path, {n: f"{n}.log" for n in ("a", "b", "c")},
                         extra="[limits]\nmax_files_per_stream = 2\nstreams_per_ip = 8\n"
                               'requests_per_ip = "10000/minute"\n')
    async with live_server(config) as base, httpx.AsyncClient(base_url=base) as client:
        r = await client.get("/api/stream?file=a&file=nope")
        assert r.status_code == 404 and r.json()["file"] == "nope"
        r = await client.get("/api/stream")
        assert r.status_code == 400 and r.json()["param"] == "file"
        r = await client.get("/api/stream?file=")
        assert r.status_code == 400 and r.json()["param"] == "file"
        r = await client.get("/api/stream?file=a&file=b&file=c")
        assert r.status_code == 400 and "at most 2" in r.json()["error"]
        # the cap is stated where clients choose files (the viewer's picker keeps to it)
        assert (await client.get("/api/files")).json()["max_files_per_stream"] == 2
        r = await client.get("/api/stream?file=a&file=b&n=x")
        assert r.status_code == 400 and r.json()["param"] == "n"
        r = await client.get("/api/stream?file=a&file=b&bogus=1")
        assert r.status_code == 400
        # the same file twice is served once; more than the cap counts names, not mentions
        async with sse(base, "/api/stream?file=a&file=a&file=b&file=a&follow=0") as s:
            lines, _ = await until_end(s)
        assert sorted(lines) == [("a", "a 1"), ("b", "b 1")]
        # a forged id: every file is told `reset`, then gets its backlog
        async with sse(base, "/api/stream?file=a&file=b&n=1&follow=0",
                       headers={"Last-Event-ID": "a=1-2-3-4-00~b=zz"}) as s:
            lines, notices = await until_end(s)
        assert sorted((n.event, n.json()["file"]) for n in notices) == [("reset", "a"),
                                                                        ("reset", "b")]
        assert sorted(lines) == [("a", "a 1"), ("b", "b 1")]


async def test_a_stream_of_several_files_takes_one_stream_slot(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.log").touch()
    config = make_config(tmp_path, {n: f"{n}.log" for n in ("a", "b", "c")},
                         extra='[limits]\nstreams_per_ip = 1\nrequests_per_ip = "1000/minute"\n')
    async with live_server(config) as base:
        async with sse(base, "/api/stream?file=a&file=b&file=c") as s:
            append(tmp_path / "c.log", "c 1")
            assert await tagged(s, 1) == [("c", "c 1")]
            async with httpx.AsyncClient() as client:
                r = await client.get(base + "/api/files/a/stream")
                assert r.status_code == 429
        async with sse(base, "/api/files/a/stream?follow=0") as s:  # the slot is free again
            await until_end(s)


async def test_a_missing_file_is_told_then_followed_when_it_appears(tmp_path):
    append(tmp_path / "app.log", "app 1")
    async with live_server(make_config(tmp_path, {"app": "app.log", "db": "db.log"})) as base, \
            sse(base, "/api/stream?file=app&file=db&n=5") as s:
        notices: list[Event] = []
        assert await tagged(s, 1, notices) == [("app", "app 1")]
        while not notices:
            ev = await s.next_event()
            notices.append(ev)
        assert [(n.event, n.json()["file"]) for n in notices] == [("missing", "db")]
        append(tmp_path / "db.log", "db 1")
        notices.clear()
        assert await tagged(s, 1, notices) == [("db", "db 1")]
        assert [(n.event, n.json()["file"]) for n in notices] == [("rotated", "db")]



async def test_since_starts_every_file_at_that_time(tmp_path):
    append(tmp_path / "app.log", "2026-03-01T10:00:01Z app 1", "2026-03-01T10:00:04Z app 4")
    append(tmp_path / "db.log", "2026-03-01T10:00:02Z db 2", "2026-03-01T10:00:03Z db 3")
    async with live_server(make_config(tmp_path, {"app": "app.log", "db": "db.log"})) as base:
        path = "/api/stream?file=app&file=db&since=2026-03-01T10:00:02Z&follow=0"
        async with sse(base, path) as s:
            lines, notices = await until_end(s)
    assert notices == []
    assert lines == [("db", "2026-03-01T10:00:02Z db 2"), ("db", "2026-03-01T10:00:03Z db 3"),
                     ("app", "2026-03-01T10:00:04Z app 4")]


async def test_heartbeats_keep_a_quiet_stream_and_move_its_id_past_hidden_lines(tmp_path):
    append(tmp_path / "app.log", "app ERROR 1")
    (tmp_path / "db.log").touch()
    config = make_config(tmp_path, {"app": "app.log", "db": "db.log"},
                         extra="[stream]\nheartbeat_s = 0.3\n")
    async with live_server(config) as base:
        async with sse(base, "/api/stream?file=app&file=db&n=5&q=error") as s:
            assert await tagged(s, 1) == [("app", "app ERROR 1")]
            shown = s.last_id
            append(tmp_path / "app.log", "app quiet 1", "app quiet 2")
            append(tmp_path / "db.log", "db quiet")
            for _ in range(100):  # the next heartbeat carries the id past the hidden lines
                if s.last_id != shown:
                    break
                await asyncio.sleep(0.05)
            assert s.last_id != shown and "ping" in s.comments
            moved = s.last_id
        append(tmp_path / "db.log", "db after")
        async with sse(base, "/api/stream?file=app&file=db&follow=0",
                       headers={"Last-Event-ID": moved or ""}) as s:
            lines, notices = await until_end(s)
    assert notices == [] and lines == [("db", "db after")]


def _line_ids(field: str, lines: list[str]) -> list[str]:
    """The client's rule (README "Line ids on streams"): one offset per line, or the first
    one and then each line's UTF-8 length plus one."""
    key, _, offsets = field.partition(":")
    starts = [int(o, 16) for o in offsets.split(",")]
    if len(starts) != len(lines):
        assert len(starts) == 1
        pos = starts[0]
        for line in lines[:-1]:
            pos += len(line.encode()) + 1
            starts.append(pos)
    return [f"{key}:{o:x}" for o in starts]


async def test_line_ids_of_merged_and_live_lines_resolve_in_their_own_file(tmp_path):
    (tmp_path / "app.log").write_bytes(b"2026-03-01T10:00:01Z app crlf\r\n"
                                       b"2026-03-01T10:00:03Z bad \xff utf-8\n")
    (tmp_path / "db.log").write_bytes("2026-03-01T10:00:02Z db é\n".encode())
    files = {"app": "app.log", "db": "db.log"}
    shown: list[tuple[str, str, str]] = []  # file, line id, text
    async with live_server(make_config(tmp_path, files)) as base, \
            httpx.AsyncClient(timeout=30) as client:
        async with client.stream("GET", base + "/api/stream?file=app&file=db&n=5&ids=1") as r:
            field, buf = "", b""
            async for chunk in r.aiter_bytes():
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    if raw.startswith(b"line-ids: "):
                        field = raw[10:].decode()
                    elif raw.startswith(b"data: "):
                        data = json.loads(raw[6:])
                        shown += [(data["file"], i, t) for i, t in
                                  zip(_line_ids(field, data["lines"]), data["lines"],
                                      strict=True)]
                if len(shown) == 3:
                    append(tmp_path / "db.log", "db live")
                if len(shown) == 4:
                    break
        assert [(f, t) for f, _, t in shown] == [
            ("app", "2026-03-01T10:00:01Z app crlf"), ("db", "2026-03-01T10:00:02Z db é"),
            ("app", "2026-03-01T10:00:03Z bad \ufffd utf-8"), ("db", "db live")]
        for name, line_id, text in shown:
            r = await client.get(f"{base}/api/files/{name}/lines",
                                 params={"at": line_id, "before": 0, "after": 0})
            assert r.status_code == 200, r.text
            assert r.json()["lines"][0]["line"] == text
