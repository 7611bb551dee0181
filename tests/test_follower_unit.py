"""The Follower's life cycle without a server: hold, attach, unsubscribe, idle stop.

No watcher runs: the tests poke the follower themselves, as a directory watcher would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from logtail.files.follow import Follower
from logtail.files.generation import Batch
from logtail.files.position import IdCodec

CODEC = IdCodec(b"k" * 32)


class Sub:
    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.notified = 0

    def offer(self, batch: Batch) -> None:
        self.batches.append(batch)

    def notify(self) -> None:
        self.notified += 1

    def lines(self) -> list[str]:
        return [ln for b in self.batches for ln in b.lines.split()]


def _follower(path: Path, idle: float = 0.05) -> Follower:
    return Follower("app", path, CODEC, 1000, 5.0, idle)


async def _until(cond, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_a_stream_that_leaves_while_starting_lets_the_follower_stop(tmp_path):
    """The bug: a placeholder subscriber removed behind the follower's back kept it
    running for good. Cancelled inside `hold()`, the idle timer still runs."""
    log = tmp_path / "app.log"
    log.write_text("a\n")
    f = _follower(log)
    started = asyncio.Event()

    async def starting_stream() -> None:
        async with f.hold():
            started.set()
            await asyncio.sleep(10)  # working out the backlog when the client leaves

    task = asyncio.create_task(starting_stream())
    await started.wait()
    assert f.active
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _until(lambda: not f.active and f.generations() == [])  # files closed too


async def test_attached_streams_get_new_lines_and_the_last_one_out_stops_it(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("old\n")
    f = _follower(log)
    a, b = Sub(), Sub()
    async with f.hold():
        f.attach(a)
        f.attach(b)
    with open(log, "a") as w:
        w.write("new 1\nnew 2\n")
    f.poke()
    await _until(lambda: a.lines() == ["new 1", "new 2"])
    assert b.lines() == a.lines()
    assert a.batches[0] is b.batches[0]  # one batch, shared
    f.unsubscribe(a)
    await asyncio.sleep(0.15)
    assert f.active  # b still watches
    f.unsubscribe(b)
    await _until(lambda: not f.active)


async def test_rotation_and_truncation_are_told_to_every_stream(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    f = _follower(log)
    s = Sub()
    async with f.hold():
        f.attach(s)
    log.write_text("one\n")
    f.poke()
    await _until(lambda: s.lines() == ["one"])
    gen = f.latest()
    log.rename(tmp_path / "app.log.1")
    log.write_text("two\n")
    f.poke()
    await _until(lambda: s.lines() == ["one", "two"])
    assert gen.final and gen.reason == "replaced" and gen.next is f.latest()
    before = s.notified
    log.write_text("")  # truncated in place
    with open(log, "a") as w:
        w.write("three\n")
    f.poke()
    await _until(lambda: s.lines()[-1:] == ["three"])
    assert s.notified > before
    f.unsubscribe(s)
    await f.stop()


async def test_a_partial_line_waits_for_its_newline_then_is_sent_once(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    f = Follower("app", log, CODEC, 1000, 0.2, 0.05)
    s = Sub()
    async with f.hold():
        f.attach(s)
    with open(log, "a") as w:
        w.write("half")
    f.poke()
    await asyncio.sleep(0.05)
    assert s.lines() == []
    await _until(lambda: s.lines() == ["half"])  # partial_line_s passed: sent as it is
    with open(log, "a") as w:
        w.write(" rest\nnext\n")
    f.poke()
    await _until(lambda: s.lines() == ["half", " rest", "next"])
    f.unsubscribe(s)
    await f.stop()


async def test_clients_that_leave_during_their_backlog_leave_no_follower_running(tmp_path):
    """Through a real server: 20 clients give up while their filtered backlog is being
    looked for in a large file; the follower still stops once idle."""
    import httpx
    from helpers import live_server, make_config

    big = tmp_path / "app.log"
    with open(big, "wb") as w:
        w.write(b"x" * 60 + b" abc\n" * 1)
        w.write((b"y" * 60 + b"\n") * 500_000)
    config = make_config(tmp_path, extra="[watch]\nidle_stop_s = 0.2\n")
    async with live_server(config) as base:
        async with httpx.AsyncClient(timeout=httpx.Timeout(0.05)) as c:
            for _ in range(20):
                with pytest.raises(httpx.TimeoutException):
                    await c.get(base + "/api/files/app/stream?n=10&q=nomatch")

        async def active() -> str:
            async with httpx.AsyncClient(timeout=10) as c:
                text = (await c.get(base + "/metrics")).text
            return next(ln for ln in text.splitlines()
                        if ln.startswith('logtail_follower_active{file="app"}'))

        deadline = asyncio.get_running_loop().time() + 10
        while (line := await active()).endswith(" 1.0"):
            assert asyncio.get_running_loop().time() < deadline, line
            await asyncio.sleep(0.1)
