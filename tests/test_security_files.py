"""Positions no client can forge, rotated files resolved by logrotate's names only, bounded
backlog work, descriptors that cannot run out, and only regular files served."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time

import httpx
import pytest
from helpers import append, live_server, make_config, sse

from logtail.files.secret import default_secret_path


async def _id_after(base: str, n: int = 1) -> str:
    async with sse(base, f"/api/files/app/stream?n={n}") as s:
        await s.collect(n)
        assert s.last_id is not None
        return s.last_id


def _forge(event_id: str, ino: int | None = None, offset: int | None = None,
           check: str | None = None, mac: str | None = None) -> str:
    dev, old_ino, old_off, old_check, old_mac = event_id.split("-")
    return "-".join([dev, f"{ino:x}" if ino is not None else old_ino,
                     f"{offset:x}" if offset is not None else old_off,
                     check or old_check, mac or old_mac])


async def _first_event(base: str, last_id: str, path: str = "/api/files/app/stream?n=1"):
    async with sse(base, path, headers={"Last-Event-ID": last_id}) as s:
        return await s.next_event(), s


async def test_forged_inode_and_offset_get_reset_not_another_file(tmp_path):
    """The id of one's own stream, pointed at a neighbouring inode at offset 0 (whose check
    is always 00000000), used to stream that file; a signed id cannot be altered."""
    append(tmp_path / "app.log", "public")
    secret = tmp_path / "app.log.bak-keys"  # not configured: must never be served
    secret.write_text("SECRET KEY\n")
    async with live_server(make_config(tmp_path)) as base:
        own = await _id_after(base)
        target = os.stat(secret).st_ino
        for forged in (_forge(own, ino=target, offset=0, check="00000000"),
                       _forge(own, offset=0, check="00000000"),
                       _forge(own, mac="0" * 24),
                       own.rsplit("-", 1)[0]):  # the old, unsigned form
            async with sse(base, "/api/files/app/stream?n=1&follow=0",
                           headers={"Last-Event-ID": forged}) as s:
                lines, notices = await s.until_end()
            assert [n.event for n in notices] == ["reset"]
            assert "SECRET" not in "".join(lines) and lines == ["public"]


async def test_resume_on_disk_takes_only_logrotate_names_and_no_symlinks(tmp_path):
    """A rotated generation is found on disk beside the log under `.N` / `-YYYYMMDD`; a
    file that merely starts with the log's name, or a symlink, is never read."""
    log = tmp_path / "app.log"
    append(log, "one", "two")
    config = make_config(tmp_path)
    async with live_server(config) as base:
        last = await _id_after(base)  # after "two"
    append(log, "three")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name, expect in [("app.log.bak-keys", "reset"), ("app.log_private", "reset"),
                         ("app.log.1", "rotated"), ("app.log-20261130", "rotated")]:
        moved = tmp_path / name
        log.rename(moved)
        append(log, "new file")
        async with live_server(config) as base:  # a fresh server: nothing held open
            async with sse(base, "/api/files/app/stream?n=1&follow=1",
                           headers={"Last-Event-ID": last}) as s:
                ev = await s.next_event()
                if expect == "reset":
                    assert ev.event == "reset", name
                    assert await s.collect(1) == ["new file"]
                else:
                    assert ev.lines == ["three"], name
                    assert (await s.next_event()).event == "rotated"
                    assert await s.collect(1) == ["new file"]
        log.unlink()
        moved.rename(log)
    # a rotated name that is a symlink to the very file: still never followed
    outside = elsewhere / "keys"
    log.rename(outside)
    (tmp_path / "app.log.1").symlink_to(outside)
    append(log, "new file")
    async with live_server(config) as base:
        async with sse(base, "/api/files/app/stream?n=1",
                       headers={"Last-Event-ID": last}) as s:
            assert (await s.next_event()).event == "reset"


async def test_secret_key_is_private_and_stable(tmp_path):
    append(tmp_path / "app.log", "a", "b")
    config = make_config(tmp_path, extra=f'[server]\nsecret_file = "{tmp_path}/key"\n')
    async with live_server(config) as base:
        last = await _id_after(base)
    assert stat.S_IMODE(os.stat(tmp_path / "key").st_mode) == 0o600
    async with live_server(config) as base:  # restarted: the same key, ids still resume
        append(tmp_path / "app.log", "c")
        async with sse(base, "/api/files/app/stream?follow=0",
                       headers={"Last-Event-ID": last}) as s:
            lines, notices = await s.until_end()
        assert lines == ["c"] and notices == []
    assert default_secret_path().is_relative_to(os.environ["XDG_STATE_HOME"])


async def test_resume_through_many_rotated_files_holds_few_descriptors(tmp_path):
    """A resume id naming the oldest of 200 rotated files: clients that stop reading keep
    one or two of them open each, not all 200; the server keeps answering."""
    log = tmp_path / "app.log"
    append(log, "first")
    config = make_config(tmp_path)
    async with live_server(config) as base:
        last = await _id_after(base)
    line = "x" * 200
    append(log, *([line] * 2500))  # ~500 KB per file: a stalled client stops in the chain
    log.rename(tmp_path / "app.log.200")
    for i in range(199, 0, -1):
        append(tmp_path / f"app.log.{i}", *([f"{i} {line}"] * 2500))
        time.sleep(0.002)  # mtimes order them
    append(log, "current")

    def open_siblings() -> int:
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            n += target.startswith(str(tmp_path / "app.log."))
        return n

    async with live_server(config) as base:
        before = open_siblings()
        clients = [httpx.AsyncClient(timeout=30) for _ in range(6)]
        streams = []
        try:
            for c in clients:
                cm = c.stream("GET", base + "/api/files/app/stream",
                              headers={"Last-Event-ID": last})
                r = await cm.__aenter__()
                assert r.status_code == 200
                body = r.aiter_raw()  # kept: a dropped iterator would close the response
                await body.__anext__()  # started, then reads nothing more
                streams.append((cm, body))
            await asyncio.sleep(1.0)
            assert open_siblings() - before <= 6 * 2
            async with httpx.AsyncClient(timeout=10) as c:
                assert (await c.get(base + "/healthz")).status_code == 200
        finally:
            for cm, _ in streams:
                await cm.__aexit__(None, None, None)
            for c in clients:
                await c.aclose()
        await asyncio.sleep(0.3)
        assert open_siblings() == before
        # and one that reads gets every line of every file, in order, then the live file
        async with sse(base, "/api/files/app/stream", headers={"Last-Event-ID": last}) as s:
            got = await s.collect(2500 * 200 + 1, timeout=60)
        assert got[:2500] == [line] * 2500
        assert got[2500] == f"199 {line}" and got[-2] == f"1 {line}" and got[-1] == "current"


async def test_backlog_reads_at_most_max_backlog_bytes(tmp_path):
    """A huge file without newlines (sparse, 10 GB): the backlog is bounded, says so, and
    arrives at once; the server stays responsive."""
    big = tmp_path / "big.log"
    with open(big, "wb") as f:
        f.truncate(10 * 1024**3)
    append(tmp_path / "app.log", "small")
    config = make_config(tmp_path, {"app": "app.log", "big": "big.log"},
                         extra="[stream]\nmax_backlog_bytes = 4194304\n")
    async with live_server(config) as base:
        started = time.monotonic()
        for follow in (0, 1):
            async with sse(base, f"/api/files/big/stream?n=10&follow={follow}") as s:
                ev = await s.next_event(timeout=10)
                assert ev.event == "limited"
                assert ev.json()["max_backlog_bytes"] == 4194304
        assert time.monotonic() - started < 10
        async with sse(base, "/api/files/app/stream?n=1&follow=0") as s:
            lines, notices = await s.until_end()
        assert lines == ["small"] and notices == []


async def test_filtered_backlog_is_bounded_and_says_so(tmp_path):
    log = tmp_path / "app.log"
    append(log, "ERROR old", *(f"info {i}" for i in range(20000)), "ERROR new")
    config = make_config(tmp_path, extra="[stream]\nmax_backlog_bytes = 65536\n")
    async with live_server(config) as base:
        async with sse(base, "/api/files/app/stream?n=2&q=ERROR&follow=0") as s:
            lines, notices = await s.until_end()
    assert lines == ["ERROR new"]
    assert [n.event for n in notices] == ["limited"]


async def test_one_clients_costly_scans_do_not_hold_up_anothers_backlog(tmp_path):
    """8 filtered backlogs that match nothing in a large log, from one address, while
    another address asks for 10 lines of another file: it gets them promptly."""
    big = tmp_path / "big.log"
    with open(big, "wb") as f:
        f.write((b"x" * 60 + b" abc\n") * 1_000_000)  # 65 MB, nothing matches
    append(tmp_path / "app.log", *(f"line {i}" for i in range(100)))
    config = make_config(tmp_path, {"app": "app.log", "big": "big.log"})

    async def attacker(c: httpx.AsyncClient, stop: asyncio.Event) -> int:
        done = 0
        while not stop.is_set():
            r = await c.get("/api/files/big/stream?n=10&follow=0&regex=1&q=(x%2B)%2By")
            done += r.status_code == 200
        return done

    async with live_server(config) as base:
        stop = asyncio.Event()
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=base, transport=transport, timeout=60,
                                     limits=httpx.Limits(max_connections=8)) as bad:
            tasks = [asyncio.create_task(attacker(bad, stop)) for _ in range(8)]
            await asyncio.sleep(0.5)
            times = []
            async with httpx.AsyncClient(base_url=base, timeout=30) as good:
                for _ in range(10):
                    t0 = time.monotonic()
                    r = await good.get("/api/files/app/stream?n=10&follow=0&format=text")
                    times.append(time.monotonic() - t0)
                    assert r.text.splitlines() == [f"line {i}" for i in range(90, 100)]
            stop.set()
            await asyncio.gather(*tasks)
        assert max(times) < 5.0, times  # it took 52 s before scans took turns


@pytest.mark.timeout(60)
async def test_fifo_is_never_opened_and_listed_unreadable(tmp_path):
    """A FIFO in the config: nothing opens it (its writer would get EPIPE when we closed
    it), the stream says it is missing, /api/files lists it as unreadable."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # blocks until someone opens it for reading
        opened.set()
        os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    config = make_config(tmp_path, {"app": "pipe"})
    async with live_server(config) as base:
        async with httpx.AsyncClient(timeout=10) as c:
            files = (await c.get(base + "/api/files")).json()["files"]
        assert files[0]["readable"] is False and files[0]["error"] == "not a regular file"
        async with sse(base, "/api/files/app/stream?n=5") as s:
            assert (await s.next_event()).event == "missing"
            await asyncio.sleep(2.5)  # a few safety-net rounds
        async with sse(base, "/api/files/app/stream?n=5&follow=0") as s:
            lines, notices = await s.until_end()
            assert lines == [] and [n.event for n in notices] == ["missing"]
    assert not opened.is_set()
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # let the writer go
    t.join(5)
    os.close(fd)


async def test_proc_file_is_not_served_as_a_log(tmp_path):
    """A pseudo-file (size 0, yet content) would read as a truncation every second."""
    config = make_config(tmp_path, {"app": "/proc/self/status"})
    async with live_server(config) as base:
        async with httpx.AsyncClient(timeout=10) as c:
            files = (await c.get(base + "/api/files")).json()["files"]
        assert files[0]["readable"] is False
        async with sse(base, "/api/files/app/stream?n=5") as s:
            events = [await s.next_event()]
            with pytest.raises(TimeoutError):
                while True:
                    events.append(await s.next_event(timeout=2.5))
        assert [e.event for e in events] == ["missing"]
