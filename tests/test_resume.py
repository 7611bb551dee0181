"""Resuming with Last-Event-ID: no gap, no duplicate, across reconnects, rotation, restart."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import httpx
import pytest
from helpers import ServerProcess, append, free_port, live_server, make_config, sse, toml_config


async def test_resume_continues_exactly_after_the_last_id(tmp_path):
    log = tmp_path / "app.log"
    append(log, *(f"old {i}" for i in range(10)))
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=3") as s:
            assert await s.collect(3) == ["old 7", "old 8", "old 9"]
            last = s.last_id
        append(log, "missed 1", "missed 2")
        async with sse(base, "/api/files/app/stream?n=50", headers={"Last-Event-ID": last}) as s:
            assert await s.collect(2) == ["missed 1", "missed 2"]
        async with sse(base, f"/api/files/app/stream?last_id={last}&follow=0") as s:
            lines, notices = await s.until_end()
        assert lines == ["missed 1", "missed 2"] and notices == []


async def test_random_reconnects_lose_and_double_nothing(tmp_path):
    log = tmp_path / "app.log"
    log.touch()
    written: list[str] = []
    received: list[str] = []

    reconnects = 0

    async def writer() -> None:
        i = 0
        while reconnects < 120 or i < 2000:  # until the reader has reconnected 120+ times
            append(log, f"w{i:05d}")
            written.append(f"w{i:05d}")
            i += 1
            if i % 10 == 0:
                await asyncio.sleep(0.002)

    rng = random.Random(7)
    async with live_server(make_config(tmp_path)) as base:
        task = None
        last_id = None
        while task is None or not (task.done() and len(received) >= len(written)):
            headers = {"Last-Event-ID": last_id} if last_id else {}
            path = "/api/files/app/stream" + ("" if last_id else "?n=0")
            async with sse(base, path, headers=headers) as s:
                if task is None:  # start writing once the first stream has its position
                    task = asyncio.create_task(writer())
                for _ in range(rng.randint(1, 4)):
                    try:
                        ev = await s.next_event(timeout=1 if task.done() else 5)
                    except TimeoutError:
                        break
                    assert ev.event == "message", ev
                    received.extend(ev.lines)
                    last_id = ev.id
            reconnects += 1
        await task
    assert reconnects >= 100
    assert received == written


async def test_resume_across_rename_rotation_finishes_the_old_file(tmp_path):
    log = tmp_path / "app.log"
    append(log, "a1", "a2")
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=1") as s:
            assert await s.collect(1) == ["a2"]
            last = s.last_id
    # while nobody is connected (and the server is down): more lines, then rotation
    append(log, "a3", "a4")
    os.rename(log, tmp_path / "app.log.1")
    append(log, "b1", "b2")
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream", headers={"Last-Event-ID": last}) as s:
            notices: list = []
            assert await s.collect(4, notices=notices) == ["a3", "a4", "b1", "b2"]
    assert [n.event for n in notices] == ["rotated"]


async def test_resume_after_rotated_file_is_gone_sends_reset_then_backlog(tmp_path):
    log = tmp_path / "app.log"
    append(log, "a1")
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=1") as s:
            await s.collect(1)
            last = s.last_id
    os.rename(log, tmp_path / "app.log.1")
    (tmp_path / "app.log.1").unlink()
    append(log, "b1", "b2")
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=1", headers={"Last-Event-ID": last}) as s:
            ev = await s.next_event()
            assert ev.event == "reset"
            assert "gone" in ev.json()["reason"]
            assert await s.collect(1) == ["b2"]


async def test_resume_into_a_deleted_file_the_follower_still_holds(tmp_path):
    """While the server runs it keeps rotated files open: their last lines are not lost."""
    log = tmp_path / "app.log"
    append(log, "a1")
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=1") as s:
            await s.collect(1)
            last = s.last_id
            append(log, "a2")
            await s.collect(1)
        append(log, "a3")
        os.rename(log, tmp_path / "app.log.1")
        (tmp_path / "app.log.1").unlink()
        append(log, "b1")
        async with sse(base, "/api/files/app/stream", headers={"Last-Event-ID": last}) as s:
            notices: list = []
            assert await s.collect(3, notices=notices) == ["a2", "a3", "b1"]
            assert [n.event for n in notices] == ["rotated"]


@pytest.mark.parametrize("bad_id", ["garbage", "1-2-3", "ffff-ffff-10-00000000", "x" * 500,
                                    "%00", "1-1-ffffffffffffffff-00000000"])
async def test_malformed_or_foreign_id_gets_reset_never_500(tmp_path, bad_id):
    append(tmp_path / "app.log", "l1", "l2")
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=1", headers={"Last-Event-ID": bad_id}) as s:
            ev = await s.next_event()
            assert ev.event == "reset"
            assert await s.collect(1) == ["l2"]


async def test_truncated_and_rewritten_file_is_not_resumed_into(tmp_path):
    log = tmp_path / "app.log"
    append(log, *(f"first {i}" for i in range(10)))
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=2") as s:
            await s.collect(2)
            last = s.last_id
    log.write_text("".join(f"second {i}\n" for i in range(20)))  # same inode, new content
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=1", headers={"Last-Event-ID": last}) as s:
            ev = await s.next_event()
            assert ev.event == "reset"
            assert await s.collect(1) == ["second 19"]


async def test_huge_gap_is_bounded_and_counted(tmp_path):
    log = tmp_path / "app.log"
    append(log, "start")
    config = make_config(tmp_path, extra="[stream]\nmax_resume_bytes = 1000\n")
    async with live_server(config) as base:
        async with sse(base, "/api/files/app/stream?n=1") as s:
            await s.collect(1)
            last = s.last_id
        append(log, *(f"gap {i:04d}" for i in range(500)))
        async with sse(base, "/api/files/app/stream?n=2", headers={"Last-Event-ID": last}) as s:
            ev = await s.next_event()
            assert ev.event == "dropped"
            assert ev.json()["lines"] == 500
            assert await s.collect(2) == ["gap 0498", "gap 0499"]


def test_server_restart_resumes_exactly_the_lines_written_while_down(tmp_path):
    """SIGTERM with a stream open: `bye`, quick exit; restart; resume gets exactly the gap."""
    log = tmp_path / "app.log"
    append(log, *(f"before {i}" for i in range(5)))
    cfg = toml_config(tmp_path)
    port = free_port()
    server = ServerProcess(["-c", str(cfg)], port)
    try:
        server.wait_ready()

        async def first_run() -> tuple[str, list[str], float]:
            async with sse(server.base, "/api/files/app/stream?n=5") as s:
                lines = await s.collect(5)
                last = s.last_id
                started = time.monotonic()
                server.terminate()
                ev = await s.next_event(timeout=5)
                assert ev.event == "bye"
                with pytest.raises(EOFError):
                    await s.next_event(timeout=5)
                return last, lines, started

        last, lines, started = asyncio.run(first_run())
        server.proc.wait(5)
        assert time.monotonic() - started < 2.0
        assert server.proc.returncode == 0, server.output()
        assert lines == [f"before {i}" for i in range(5)]
    finally:
        server.stop()
    append(log, "while down 1", "while down 2")
    server = ServerProcess(["-c", str(cfg)], port)
    try:
        server.wait_ready()

        async def second_run() -> list[str]:
            async with sse(server.base, "/api/files/app/stream",
                           headers={"Last-Event-ID": last}) as s:
                got = await s.collect(2)
                append(log, "after restart")
                got += await s.collect(1)
                return got

        assert asyncio.run(second_run()) == ["while down 1", "while down 2", "after restart"]
    finally:
        server.stop()


def test_sigint_and_sigterm_exit_quickly_with_streams_open(tmp_path):
    append(tmp_path / "app.log", "x")
    cfg = toml_config(tmp_path)
    for sig in (signal.SIGINT, signal.SIGTERM):
        port = free_port()
        server = ServerProcess(["-c", str(cfg)], port)
        try:
            server.wait_ready()
            clients = []
            for _ in range(3):
                c = httpx.Client(timeout=10)
                cm = c.stream("GET", server.base + "/api/files/app/stream")
                r = cm.__enter__()
                assert r.status_code == 200
                clients.append((c, cm, r))
            started = time.monotonic()
            server.terminate(sig)
            server.proc.wait(5)
            assert time.monotonic() - started < 2.0
            for c, cm, r in clients:
                body = b"".join(r.iter_raw())
                assert b"event: bye" in body
                cm.__exit__(None, None, None)
                c.close()
        finally:
            server.stop()
