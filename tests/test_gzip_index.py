"""Checkpoints in compressed generations: a read that starts deep in a .gz starts from the
last checkpoint before it, and gives exactly the bytes (and the lines, over HTTP) that a
read from the start gives; the index stays within its bound and never serves a file that
was rewritten."""

from __future__ import annotations

import gzip
import os
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import live_server, make_config
from history_support import lines_at, ndjson, write_history

from logtail.files.history import GZ_INDEX, GZ_OUT, GzipIndex, GzipReader

SPACING = 64 * 1024
STEP = SPACING + GZ_OUT  # checkpoints are at least SPACING apart, and at most this


def _read_all(reader: GzipReader) -> bytes:
    out = bytearray()
    buf = bytearray(100_000)
    while n := reader.readinto(memoryview(buf)):
        out += buf[:n]
    return bytes(out)


def _numbered(count: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return b"".join(f"{i:08d} {rng.random():.12f}\n".encode() for i in range(count))


@pytest.fixture
def two_members(tmp_path: Path) -> Iterator[tuple[int, bytes, int]]:
    """A .gz of two members (as `cat a.gz b.gz` makes), open; its data and where the
    second member's data starts."""
    data = _numbered(120_000, 5)  # 3.2 MB
    third = len(data) // 3
    path = tmp_path / "app.log.1.gz"
    path.write_bytes(gzip.compress(data[:third]) + gzip.compress(data[third:]))
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd, data, third
    finally:
        os.close(fd)


def test_a_read_from_a_checkpoint_gives_the_same_bytes(two_members):
    fd, data, third = two_members
    index = GzipIndex(spacing=SPACING, max_bytes=64 * 1024 * 1024)
    assert _read_all(GzipReader(fd, 0, None, index)) == data  # leaves the checkpoints
    file = index.identity(fd)
    points = [index.before(file, at) for at in range(0, len(data), SPACING)]
    assert sum(p is not None for p in points) >= len(data) // SPACING - 1
    assert any(p is not None and p.state is None for p in points) or \
        index.before(file, third) is not None  # one lies in the second member
    rng = random.Random(9)
    starts = [1, SPACING - 1, SPACING, SPACING + 1, third - 7, third, third + 1,
              len(data) - 10, len(data), *(rng.randrange(len(data)) for _ in range(40))]
    for start in starts:
        reader = GzipReader(fd, start, 5000, index)
        point = index.before(file, start)
        if start >= STEP:  # restored there: the bytes before it are not inflated again
            assert point is not None and start - point.out < STEP
            assert reader.pos == point.pos and reader.skip == start - point.out
        assert _read_all(reader) == data[start: start + 5000], start
    # and without the index, the same
    assert _read_all(GzipReader(fd, len(data) - 100, None)) == data[-100:]


def test_checkpoints_are_taken_once_however_many_readers(two_members):
    fd, _, _ = two_members
    index = GzipIndex(spacing=SPACING, max_bytes=64 * 1024 * 1024)
    _read_all(GzipReader(fd, 0, None, index))
    size = index.size
    _read_all(GzipReader(fd, 0, None, index))
    _read_all(GzipReader(fd, SPACING * 5 + 3, None, index))
    assert index.size == size > 0


def test_the_index_keeps_within_its_bound_and_forgets_the_oldest_file(tmp_path, two_members):
    fd, _, _ = two_members
    index = GzipIndex(spacing=SPACING, max_bytes=1024 * 1024)
    _read_all(GzipReader(fd, 0, None, index))
    first = index.identity(fd)
    assert 0 < index.size <= index.max_bytes
    other = tmp_path / "other.gz"
    other.write_bytes(gzip.compress(_numbered(120_000, 6)))
    fd2 = os.open(other, os.O_RDONLY)
    try:
        _read_all(GzipReader(fd2, 0, None, index))
        assert index.before(index.identity(fd2), 3_000_000) is not None
    finally:
        os.close(fd2)
    assert index.size <= index.max_bytes
    assert index.before(first, 3_000_000) is None  # read least lately: forgotten


def test_a_rewritten_file_is_not_read_from_the_old_checkpoints(tmp_path):
    path = tmp_path / "app.log.2.gz"
    index = GzipIndex(spacing=SPACING, max_bytes=64 * 1024 * 1024)
    old, new = _numbered(100_000, 1), _numbered(100_000, 2)
    path.write_bytes(gzip.compress(old))
    fd = os.open(path, os.O_RDONLY)
    try:
        _read_all(GzipReader(fd, 0, None, index))
    finally:
        os.close(fd)
    tmp = tmp_path / "new.gz"
    tmp.write_bytes(gzip.compress(new, 9))  # another size, another inode
    os.replace(tmp, path)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert _read_all(GzipReader(fd, 2_000_000, 1000, index)) == new[2_000_000: 2_001_000]
    finally:
        os.close(fd)


@pytest.fixture
def close_checkpoints() -> Iterator[None]:
    """The server's index with checkpoints every 4 KiB, read from 200 bytes before a line:
    the small generations of `write_history` get many, and reads from them start too
    late for the lines before (and must go further back)."""
    saved = GZ_INDEX.spacing, GZ_INDEX.lead
    GZ_INDEX.clear()
    GZ_INDEX.spacing, GZ_INDEX.lead = 4096, 200
    try:
        yield
    finally:
        GZ_INDEX.spacing, GZ_INDEX.lead = saved
        GZ_INDEX.clear()


async def test_the_context_of_lines_in_a_gz_is_the_same_from_checkpoints(tmp_path,
                                                                          close_checkpoints):
    history = write_history(tmp_path)
    gz_lines = [ln for ln in history if ln.split(" ")[1] == "day1"]
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        rows, done = await ndjson(c, f"{base}/api/files/app/search?format=ndjson&order=asc"
                                     f"&q=day1 line&limit=100000")
        assert [r["line"] for r in rows] == gz_lines and not done["limited"]
        assert GZ_INDEX.size > 0  # the search left checkpoints
        for k in [*range(0, 40), *range(40, len(rows), 37), len(rows) - 1]:
            i = history.index(rows[k]["line"])
            for before, after in [(0, 0), (3, 2), (20, 20), (150, 0)]:
                got = await lines_at(c, base, rows[k]["id"], before=before, after=after)
                want = history[max(0, i - before): i + after + 1]
                assert [x["line"] for x in got["lines"]] == want, (k, before, after)
                assert got["lines"][got["at"]]["id"] == rows[k]["id"]
                assert got["more_before"] == (i - before > 0)


async def test_load_earlier_pages_through_a_gz_from_its_checkpoints(tmp_path, close_checkpoints):
    history = write_history(tmp_path)
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        # read once, so the .gz has checkpoints; then page up from the newest file into it
        await ndjson(c, f"{base}/api/files/app/search?format=ndjson&q=nothing-matches-this")
        assert GZ_INDEX.size > 0
        rows, _ = await ndjson(c, f"{base}/api/files/app/search?format=ndjson&case=1"
                                  f"&q=day4 line 5 ")
        at = rows[0]["id"]
        seen = [(await lines_at(c, base, at, before=0, after=0))["lines"][0]["line"]]
        while True:
            got = await lines_at(c, base, at, before=97, after=0)
            seen = [x["line"] for x in got["lines"][: got["at"]]] + seen
            at = got["lines"][0]["id"]
            if not got["more_before"]:
                break
        assert seen == history[: history.index(seen[-1]) + 1]
        assert seen[0] == history[0]
