"""The Cursor's state machine without a server: catch-up reads, crossing a rotation,
what a slow stream is told, and the live queue. Generations are real files; the follower
is a fake that only records who subscribes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from logtail.files.generation import Batch, Generation, open_generation
from logtail.files.lines import Lines
from logtail.files.position import IdCodec
from logtail.streaming.cursor import END, Cursor, Notice

CODEC = IdCodec(b"k" * 32)


def _gen(path: Path, text: str) -> Generation:
    path.write_text(text)
    gen = open_generation(path, CODEC)
    assert gen is not None
    gen.published = len(text.encode())
    return gen


def _cursor(gen: Generation, offset: int = 0, follower: object = None,
            buffer_bytes: int = 1 << 20) -> Cursor:
    return Cursor(follower, gen, offset, None, max_line_bytes=1000,  # type: ignore[arg-type]
                  buffer_bytes=buffer_bytes, name="app")


async def _drain(c: Cursor, limit: int = 100) -> list[Batch | Notice]:
    out: list[Batch | Notice] = []
    for _ in range(limit):
        item = await asyncio.wait_for(c.next(), 2)
        if item is END:
            break
        assert item is not None
        out.append(item)
    return out


def _lines(items: list[Batch | Notice]) -> list[str]:
    return [ln for i in items if isinstance(i, Batch) for ln in i.lines.split()]


async def test_catch_up_reads_the_file_from_its_offset(tmp_path):
    gen = _gen(tmp_path / "app.log", "a\nb\nc\n")
    items = await _drain(_cursor(gen, offset=2))
    assert _lines(items) == ["b", "c"]
    last = items[-1]
    assert isinstance(last, Batch) and last.end == 6
    assert CODEC.parse(last.id).offset == 6  # the id says where it ends


async def test_a_rotation_is_crossed_after_the_old_file_is_read_to_its_end(tmp_path):
    old = _gen(tmp_path / "app.log.1", "old 1\nold 2\n")
    new = _gen(tmp_path / "app.log", "new 1\n")
    old.retire("replaced")
    old.link(new)
    items = await _drain(_cursor(old))
    assert _lines(items) == ["old 1", "old 2", "new 1"]
    notices = [i for i in items if isinstance(i, Notice)]
    assert [(n.name, n.data["reason"]) for n in notices] == [("rotated", "replaced")]
    # the notice comes between the two files' lines
    kinds = ["n" if isinstance(i, Notice) else i.gen.path.name for i in items]
    assert kinds.index("n") > kinds.index("app.log.1") and kinds.index("n") < kinds.index("app.log")


async def test_data_that_vanished_before_it_was_read_is_told_as_dropped(tmp_path):
    gen = _gen(tmp_path / "app.log", "one\ntwo\nthree\n")
    gen.lines = 3
    os.truncate(gen.path, 0)  # copytruncate: the bytes the stream still had to read are gone
    gen.retire("truncated")
    c = _cursor(gen, offset=4)
    c.line_no = 1
    items = await _drain(c, limit=1)
    (notice,) = items
    assert isinstance(notice, Notice) and notice.name == "dropped"
    assert notice.data["lines"] == 2 and notice.data["bytes"] == 10
    assert notice.data["reason"] == "truncated"


class _Follower:
    """What a Cursor needs of a follower: to be left when the stream ends."""

    def __init__(self) -> None:
        self.left: list[object] = []
        self.missing = False

    def unsubscribe(self, sub: object) -> None:
        self.left.append(sub)

    def retiring_generations(self) -> list[Generation]:
        return []


async def test_live_batches_are_queued_and_an_overflow_falls_back_to_the_file(tmp_path):
    gen = _gen(tmp_path / "app.log", "")
    f = _Follower()
    c = _cursor(gen, follower=f, buffer_bytes=200)
    assert await _wait_parked(c)  # level with the (empty) file: waits for batches

    def publish(text: str) -> Batch:
        start = gen.published
        with open(gen.path, "a") as w:
            w.write(text)
        end = start + len(text.encode())
        b = Batch(gen, start, end, Lines(text.rstrip("\n"), text.count("\n")), -1,
                  gen.event_id(end))
        gen.published = end
        c.offer(b)
        return b

    first = publish("live 1\n")
    item = await asyncio.wait_for(c.next(), 2)
    assert item is first  # the shared batch itself, no copy
    shared = [publish(f"burst {i}\n") for i in range(20)]  # far more than 200 bytes
    items = []
    while len(_lines(items)) < 20:
        items.append(await asyncio.wait_for(c.next(), 2))
    assert _lines(items) == [f"burst {i}" for i in range(20)]
    # the queue overflowed and was dropped: the lines came back from the file instead
    assert not any(any(i is b for b in shared) for i in items)
    c.close()
    assert f.left == [c]


async def _wait_parked(c: Cursor) -> bool:
    task = asyncio.ensure_future(c.next())
    await asyncio.sleep(0.05)
    parked = not task.done() and c.parked
    c.notify()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return parked
