"""Cutting a generation's bytes into lines in place: block boundaries, lines across
blocks, lines longer than a block or than `max_line`, a last line without newline, short
reads, and a reused buffer whose bytes past a block are stale."""

from __future__ import annotations

import gzip
import os
import random
import zlib

import pytest

from logtail.files import linescan
from logtail.files.history import GzipReader, PlainReader
from logtail.files.lines import SLACK
from logtail.files.linescan import (
    Block,
    ForwardRegions,
    Line,
    LineBlocks,
    Matcher,
    Region,
    backward_blocks,
    backward_regions,
)
from logtail.streaming.filters import LineFilter

MAX_LINE = 16
KEEP = MAX_LINE + SLACK


def _lines(data: bytes, lo: int = 0, hi: int | None = None) -> list[tuple[int, bytes, int]]:
    """Every line of data[lo:hi] read the plain way: (offset, kept head, length)."""
    hi = len(data) if hi is None else hi
    out, pos = [], lo
    while pos < hi:
        nl = data.find(b"\n", pos, hi)
        end = hi if nl < 0 else nl
        out.append((pos, data[pos: min(end, pos + KEEP)], end - pos))
        pos = end + 1
    return out


def _as_tuples(lines: list[Line]) -> list[tuple[int, bytes, int]]:
    return [(ln.offset, ln.raw, ln.size) for ln in lines]


def _data(rnd: random.Random, lines: int) -> bytes:
    """Lines of every kind of length: empty, short, about `max_line`, a few blocks."""
    parts = []
    for i in range(lines):
        size = rnd.choice([0, 1, MAX_LINE - 1, MAX_LINE, KEEP, KEEP + 1, 50, 130]) \
            if rnd.random() < 0.4 else rnd.randint(0, 12)
        parts.append(f"{i}:".encode() + bytes(rnd.choice(b"abcxyz") for _ in range(size)))
    data = b"\n".join(parts)
    return data if rnd.random() < 0.5 else data + b"\n"


def _forward(data: bytes, block: int, rnd: random.Random, offset: int = 0,
             matcher: Matcher | None = None) -> tuple[list[Region], list[Line]]:
    """`data` read into LineBlocks in short reads of random length: the regions (each
    Block copied out before the next read, since the buffer is reused) and the lines
    `matcher` finds in them as they come."""
    m = matcher or Matcher(MAX_LINE)
    blocks = LineBlocks(offset, MAX_LINE, block=block)
    regions: list[Region] = []
    lines: list[Line] = []
    pos = 0
    while pos < len(data):
        space = blocks.space()
        assert len(space) == block
        n = min(len(data) - pos, rnd.randint(1, block))
        space[:n] = data[pos: pos + n]
        pos += n
        for r in blocks.filled(n):
            lines += m.lines(r)
            regions.append(r.region() if isinstance(r, Block) else r)
    if (last := blocks.finish()) is not None:
        lines += m.lines(last)
        regions.append(last)
    return regions, lines


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("block", [1, 2, 7, KEEP, 64])
def test_line_blocks_give_every_line_whatever_the_block_boundaries(seed, block):
    rnd = random.Random(seed * 100 + block)
    data = _data(rnd, 60)
    regions, lines = _forward(data, block, rnd, offset=1000)
    assert _as_tuples(lines) == [(o + 1000, h, s) for o, h, s in _lines(data)]
    # regions follow each other with no gap or overlap, and hold whole lines only
    at = 1000
    for r in regions:
        assert r.offset == at
        at = r.end + (1 if r.size >= 0 and r.end - 1000 < len(data) else 0)
        if r.size < 0:
            assert len(r.data) <= block + KEEP
        else:
            assert r.size > KEEP or r.end - 1000 == len(data)  # long, or the last line


@pytest.mark.parametrize("seed", range(6))
def test_line_blocks_cut_as_forward_regions_do(seed):
    """The same regions as the copying `ForwardRegions`, fed the same reads."""
    rnd = random.Random(seed)
    data = _data(rnd, 80)
    block = rnd.choice([3, 20, 64])
    reads, pos = [], 0
    while pos < len(data):
        n = rnd.randint(1, block)
        reads.append(data[pos: pos + n])
        pos += n
    copying = ForwardRegions(0, MAX_LINE)
    want = [r for chunk in reads for r in copying.feed(chunk)]
    blocks = LineBlocks(0, MAX_LINE, block=block)
    got: list[Region] = []
    for chunk in reads:
        blocks.space()[: len(chunk)] = chunk
        got += [r.region() if isinstance(r, Block) else r for r in blocks.filled(len(chunk))]
    assert got == want
    assert blocks.finish() == copying.finish()


def test_a_line_longer_than_the_block_keeps_its_head_only():
    blocks = LineBlocks(0, MAX_LINE, block=8)
    line = bytes(range(65, 65 + 50))
    data = b"ab\n" + line + b"\nz\n"
    out: list[Region | Block] = []
    lines: list[Line] = []
    for i in range(0, len(data), 8):
        piece = data[i: i + 8]
        blocks.space()[: len(piece)] = piece
        for r in blocks.filled(len(piece)):
            lines += Matcher(MAX_LINE).lines(r)
            out.append(r)
    assert [r for r in out if isinstance(r, Region)] == [Region(3, line[:KEEP], 50)]
    assert _as_tuples(lines) == [(0, b"ab", 2), (3, line[:KEEP], 50), (54, b"z", 1)]
    assert blocks.held <= KEEP  # the buffer never holds more of a line than its head


def test_a_block_is_searched_between_its_bounds_only():
    """The reused buffer holds stale bytes around a block: never found, never counted."""
    buf = bytearray(b"hit stale\nhit 1\nmiss 2\nhit 3\nstale hit\nhit")
    start = buf.index(b"hit 1")
    end = buf.index(b"stale hit")
    block = Block(500, buf, start, end)
    f = LineFilter("hit")
    got = Matcher(MAX_LINE, f.block_search(), f.match).lines(block)
    assert _as_tuples(got) == [(500, b"hit 1", 5), (500 + 13, b"hit 3", 5)]
    tested = Matcher(MAX_LINE, None, LineFilter("miss", invert=True).match).lines(block)
    assert _as_tuples(tested) == _as_tuples(got)
    assert _as_tuples(Matcher(MAX_LINE).lines(block, 2, last=True)) == [
        (500 + 6, b"miss 2", 6), (500 + 13, b"hit 3", 5)]
    assert _as_tuples(Matcher(MAX_LINE).lines(block, 1)) == [(500, b"hit 1", 5)]
    anchored = LineFilter("^hit [0-9]$", regex=True)  # ^ and $ at the block's own ends
    got = Matcher(MAX_LINE, anchored.block_search(), anchored.match).lines(block)
    assert [ln.raw for ln in got] == [b"hit 1", b"hit 3"]
    # a last line without newline, stale bytes right after it
    tail = Block(0, bytearray(b"miss 1\nmiss 2hit\n"), 0, len(b"miss 1\nmiss 2"))
    assert Matcher(MAX_LINE, f.block_search(), f.match).lines(tail) == []
    got = Matcher(MAX_LINE, anchored.block_search(), anchored.match).lines(
        Block(0, bytearray(b"hit 12\n"), 0, 5))
    assert [ln.raw for ln in got] == [b"hit 1"]


@pytest.mark.parametrize("seed", range(4))
def test_search_and_line_tests_agree_on_blocks(seed):
    """Block search (RE2 on a view) and line-by-line tests (in pieces) find the same."""
    rnd = random.Random(seed)
    data = _data(rnd, 3000)
    block = rnd.choice([100, 1000, 4096])
    f = LineFilter("x[a-c]y|^[0-9]+:z", regex=True)
    _, by_search = _forward(data, block, rnd, matcher=Matcher(MAX_LINE, f.block_search(),
                                                              f.match))
    _, by_test = _forward(data, block, rnd, matcher=Matcher(MAX_LINE, None, f.match))
    assert by_search
    want = [(o, h, s) for o, h, s in _lines(data) if s <= MAX_LINE and f.match(h.decode())]
    assert [t for t in _as_tuples(by_search) if t[2] <= MAX_LINE] == want
    assert [t for t in _as_tuples(by_test) if t[2] <= MAX_LINE] == want


def test_lines_tested_one_by_one_are_taken_in_bounded_pieces(monkeypatch):
    monkeypatch.setattr(linescan, "TESTED_PIECE", 10)
    data = b"a1\nbbbbbbbbbbbbbbbbbb2\n\nc3\nd4" * 3
    pieces = []
    m = Matcher(MAX_LINE, None, lambda t: "b" not in t)
    real = m._tested_piece
    monkeypatch.setattr(m, "_tested_piece", lambda p: pieces.append(p) or real(p))
    got = m.lines(Region(0, data))
    assert _as_tuples(got) == [t for t in _lines(data) if b"b" not in t[1]]
    assert b"".join(pieces) == data and len(pieces) > 3
    assert all(p.endswith(b"\n") for p in pieces[:-1])  # whole lines in each


@pytest.mark.parametrize("seed", range(8))
def test_backward_blocks_give_every_line_last_first(tmp_path, monkeypatch, seed):
    monkeypatch.setattr(linescan, "BLOCK", 8)
    monkeypatch.setattr(linescan, "MAX_BLOCK", 32)
    rnd = random.Random(seed)
    data = _data(rnd, 80)
    path = tmp_path / "app.log"
    path.write_bytes(data)
    lo = data.index(b"\n", len(data) // 4) + 1 if seed % 2 else 0
    hi = len(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        got: list[Line] = []
        regions: list[Region] = []
        for r, read in backward_blocks(fd, lo, hi, MAX_LINE):
            assert read > 0
            got = Matcher(MAX_LINE).lines(r) + got  # a Block is good until the next
            regions.append(r.region() if isinstance(r, Block) else r)
        copies = [r for r, _ in backward_regions(fd, lo, hi, MAX_LINE)]
    finally:
        os.close(fd)
    assert copies == regions
    assert _as_tuples(got) == _lines(data, lo, hi)
    assert any(r.size > 32 for r in regions)  # lines longer than the largest block
    assert all(len(r.data) <= 33 or r.size >= 0 for r in regions)


def test_readers_fill_reused_buffers(tmp_path):
    text = b"".join(b"line %d\n" % i for i in range(50_000))
    plain = tmp_path / "app.log.1"
    plain.write_bytes(text)
    gz = tmp_path / "app.log.2.gz"
    gz.write_bytes(gzip.compress(text[:1000]) + gzip.compress(text[1000:]) + b"\0" * 600)
    for path, make in ((plain, PlainReader), (gz, GzipReader)):
        fd = os.open(path, os.O_RDONLY)
        try:
            for start, limit, size in ((0, None, 1 << 20), (7, 5000, 999), (3, 1, 10)):
                buf = bytearray(size)
                view = memoryview(buf)
                reader = make(fd, start, limit)
                got = b""
                while n := reader.readinto(view):
                    assert n <= size
                    got += buf[:n]
                want = text[start:] if limit is None else text[start: start + limit]
                assert got == want, (path.name, start, limit)
        finally:
            os.close(fd)


def test_a_gzip_cut_short_or_corrupt_raises_where_it_breaks(tmp_path):
    good = gzip.compress(b"".join(b"line %d\n" % i for i in range(100_000)))
    cases = {"cut.gz": (good[: len(good) // 2], EOFError),
             "bad.gz": (good[:100] + b"\xff" * 500 + good[600:], zlib.error),
             "junk.gz": (good + b"not gzip at all", zlib.error)}
    for name, (content, error) in cases.items():
        (tmp_path / name).write_bytes(content)
        fd = os.open(tmp_path / name, os.O_RDONLY)
        try:
            reader = GzipReader(fd)
            buf = memoryview(bytearray(1 << 16))
            with pytest.raises(error):
                while reader.readinto(buf):
                    pass
        finally:
            os.close(fd)
