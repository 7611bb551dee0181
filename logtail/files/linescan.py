"""The lines of one generation's bytes, with their offsets, read in blocks either way.

Searching a history and showing the lines around a position read generations forwards
(a `.gz` can only be read so) and plain files backwards too. Either way memory stays
bounded: a region is at most a block or two of whole lines, and of a line longer than
that only its head (`max_line` bytes and a little) is kept while the rest is counted.
With a block search (RE2 over many lines at once, without the GIL) there is Python work
per matching line only; without a filter, only the lines asked for are made objects.

A search reads gigabytes beside the event loop, in threads that share its GIL, so
`LineBlocks` and `backward_blocks` read into one reused buffer and hand out `Block`s, the
lines where they lie in it: no block is copied or made an object while the GIL is held
(a copy of a fresh MiB, page faults and all, took about a millisecond, and every live
stream waited for it). Only the lines found are copied out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from itertools import accumulate

from logtail.files.history import CHUNK
from logtail.files.lines import SLACK, cut_line, normalise
from logtail.files.tail import BLOCK, MAX_BLOCK, BlockSearch

__all__ = ["Block", "ForwardRegions", "Line", "LineBlocks", "Matcher", "Region",
           "backward_blocks", "backward_regions", "line_start", "scan_buffer_size"]

TESTED_PIECE = 64 * 1024  # lines tested one by one are split and decoded this much at once


@dataclass(frozen=True, slots=True)
class Line:
    offset: int  # where it starts in the generation's (decompressed) bytes
    raw: bytes  # its bytes without the newline, at most a little over max_line
    size: int  # its whole length without the newline

    def text(self, max_line: int) -> str:
        """As streams show it: decoded, without a CRLF's CR, cut visibly when too long."""
        return normalise(cut_line(self.raw, self.size, max_line) if self.size > max_line
                         else self.raw)


@dataclass(frozen=True, slots=True)
class Region:
    """Whole lines at `offset` (the last one may lack its newline), or, with `size` set,
    the head of one line `size` bytes long."""

    offset: int
    data: bytes
    size: int = -1

    @property
    def end(self) -> int:
        return self.offset + (self.size if self.size >= 0 else len(self.data))


@dataclass(frozen=True, slots=True)
class Block:
    """Whole lines (the last one may lack its newline) at `offset`, lying in `buf[start:end]`
    of a reader's reused buffer: valid until that reader reads again."""

    offset: int
    buf: bytearray
    start: int
    end_in_buf: int

    @property
    def end(self) -> int:
        return self.offset + self.end_in_buf - self.start

    def region(self) -> Region:
        """A copy that stays valid (for code that wants `Region`s)."""
        return Region(self.offset, bytes(memoryview(self.buf)[self.start: self.end_in_buf]))


class Matcher:
    """Which lines of a region match a filter (every line without one)."""

    def __init__(self, max_line: int, search: BlockSearch | None = None,
                 match: Callable[[str], bool] | None = None) -> None:
        self.max_line = max_line
        self.keep = max_line + SLACK
        self.search = search
        self.match = match
        self.everything = search is None and match is None

    def lines(self, r: Region | Block, count: int | None = None, last: bool = False
              ) -> list[Line]:
        """The matching lines of `r`, in order; with `count`, only the first (or `last`)
        `count` of them."""
        if count is not None and count <= 0:
            return []
        if isinstance(r, Block):
            data: bytes | bytearray = r.buf
            lo, hi = r.start, r.end_in_buf
        elif r.size >= 0:
            line = Line(r.offset, r.data[: self.keep], r.size)
            return [line] if self._one(line) else []
        else:
            data, lo, hi = r.data, 0, len(r.data)
        if self.everything and count is not None:
            spans = (_last_spans(data, lo, hi, count) if last
                     else _first_spans(data, lo, hi, count))
        elif self.search is not None:
            spans = self._searched(data, lo, hi, None if last else count)
        elif self.match is not None:
            spans = self._tested(data, lo, hi)
        else:
            spans = _spans(data, lo, hi)
        if count is not None:
            spans = spans[-count:] if last else spans[:count]
        keep, base, view = self.keep, r.offset - lo, memoryview(data)
        return [Line(base + a, view[a: min(b, a + keep)].tobytes(), b - a) for a, b in spans]

    def _one(self, line: Line) -> bool:
        if self.everything:
            return True
        if self.search is not None:
            return self.search(line.raw, 0) is not None
        assert self.match is not None
        return self.match(normalise(line.raw[: self.max_line]))

    def _tested(self, data: bytes | bytearray, lo: int, hi: int) -> list[tuple[int, int]]:
        """Each line tested on its own (`invert`, anchored patterns), TESTED_PIECE of
        whole lines at a time: each split and decode holds the GIL that long only."""
        out: list[tuple[int, int]] = []
        view = memoryview(data)
        a = lo
        while a < hi:
            b = hi if hi - a <= TESTED_PIECE else data.find(b"\n", a + TESTED_PIECE - 1, hi) + 1
            if b <= 0:
                b = hi
            out += [(a + x, a + y) for x, y in self._tested_piece(view[a:b].tobytes())]
            a = b
        return out

    def _tested_piece(self, data: bytes) -> list[tuple[int, int]]:
        """With as little Python per line as can be: the piece is decoded and split once
        (a newline never falls inside a UTF-8 sequence, so the text has the same lines),
        and offsets are worked out for the matching lines only."""
        match, limit = self.match, self.max_line
        assert match is not None
        raw_lines = data.split(b"\n")
        text = data.decode("utf-8", "replace")
        texts = text.split("\n")
        if data.endswith(b"\n"):
            raw_lines.pop()
            texts.pop()
        if "\r" in text:
            texts = [t.removesuffix("\r") for t in texts]
        if len(data) > limit and max(map(len, raw_lines)) > limit:
            texts = [normalise(r[:limit]) if len(r) > limit else t
                     for r, t in zip(raw_lines, texts, strict=True)]
        hits = [i for i, t in enumerate(texts) if match(t)]
        if not hits:
            return []
        before = [0, *accumulate(map(len, raw_lines))]  # bytes of the lines before, no \n
        return [(before[i] + i, before[i] + i + len(raw_lines[i])) for i in hits]

    def _searched(self, data: bytes | bytearray, lo: int, hi: int, count: int | None
                  ) -> list[tuple[int, int]]:
        """RE2 over the lines in place (a view of them, no copy), the GIL let go while it
        runs; Python work per matching line only."""
        out: list[tuple[int, int]] = []
        search = self.search
        assert search is not None
        text = data if lo == 0 and hi == len(data) and isinstance(data, bytes) \
            else memoryview(data)[lo:hi]
        ends_nl = hi > lo and data[hi - 1] == NL
        pos, size = 0, hi - lo
        while pos < size:
            m = search(text, pos)  # type: ignore[arg-type]  # RE2 takes any buffer
            if m is None:
                break
            at = lo + m.start()  # type: ignore[attr-defined]
            if at >= hi and ends_nl:
                break  # an empty match after the last newline: no line is there
            begin = data.rfind(b"\n", lo, at) + 1 or lo
            nl = data.find(b"\n", at, hi)
            end = hi if nl < 0 else nl
            out.append((begin, end))
            if count is not None and len(out) >= count:
                break
            pos = end + 1 - lo
        return out


NL = ord("\n")


def _spans(data: bytes | bytearray, lo: int, hi: int) -> list[tuple[int, int]]:
    return _first_spans(data, lo, hi, hi - lo + 1)


def _first_spans(data: bytes | bytearray, lo: int, hi: int, count: int
                 ) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos = lo
    while pos < hi and len(out) < count:
        nl = data.find(b"\n", pos, hi)
        end = hi if nl < 0 else nl
        out.append((pos, end))
        pos = end + 1
    return out


def _last_spans(data: bytes | bytearray, lo: int, hi: int, count: int
                ) -> list[tuple[int, int]]:
    """The last `count` lines, found from the end: no work for the lines before them."""
    out: list[tuple[int, int]] = []
    end = hi - 1 if hi > lo and data[hi - 1] == NL else hi
    while len(out) < count and end >= lo and hi > lo:
        begin = data.rfind(b"\n", lo, end) + 1 or lo
        out.append((begin, end))
        if begin == lo:
            break
        end = begin - 1
    out.reverse()
    return out


class ForwardRegions:
    """Cuts bytes read forwards, from `offset`, into regions of whole lines."""

    def __init__(self, offset: int, max_line: int) -> None:
        self.keep = max_line + SLACK
        self.offset = offset  # where the held line starts
        self.head = b""
        self.extra = 0  # bytes of the held line not kept

    def feed(self, data: bytes) -> list[Region]:
        out: list[Region] = []
        last = data.rfind(b"\n")
        if last < 0:
            self._hold(data)
            return out
        start = 0
        if self.extra:  # a long line ends here: only its head was kept
            first = data.find(b"\n")
            self._hold(data[:first])
            out.append(Region(self.offset, self.head, len(self.head) + self.extra))
            self.offset += len(self.head) + self.extra + 1
            self.head, self.extra, start = b"", 0, first + 1
        if start <= last:
            body = self.head + data[start: last + 1] if self.head else data[start: last + 1]
            out.append(Region(self.offset, body))
            self.offset += len(body)
            self.head = b""
        self._hold(data[last + 1:])
        return out

    def finish(self) -> Region | None:
        """The last line, if it has no newline."""
        if not self.head and not self.extra:
            return None
        r = Region(self.offset, self.head, len(self.head) + self.extra)
        self.offset += r.size
        self.head, self.extra = b"", 0
        return r

    def _hold(self, data: bytes) -> None:
        if not data:
            return
        if self.extra or len(self.head) + len(data) > self.keep:
            room = max(0, self.keep - len(self.head))
            self.head += data[:room]
            self.extra += len(data) - room
        else:
            self.head += data


class LineBlocks:
    """`ForwardRegions` without copies: bytes are read straight into one buffer after the
    line held from the block before (`space()`, then `filled(n)`), and come out as
    `Block`s of whole lines where they lie. The held line is moved to the buffer's head
    just before the next read (the Blocks handed out are used by then), and only while it
    is at most `max_line` bytes and a little; of a longer one only that head is kept and
    the rest is counted, and it comes out as a `Region` of its head."""

    def __init__(self, offset: int, max_line: int, block: int = CHUNK,
                 buf: bytearray | None = None) -> None:
        self.keep = max_line + SLACK
        self.block = block
        self.buf = buf if buf is not None else bytearray(scan_buffer_size(max_line, block))
        assert len(self.buf) >= self.keep + block
        self.view = memoryview(self.buf)
        self.offset = offset  # where the held line starts
        self.at = 0  # where the kept head of the held line lies in the buffer
        self.held = 0  # its bytes kept
        self.extra = 0  # its bytes not kept

    def space(self) -> memoryview:
        """Where the next bytes go (`block` of them at most): after the held line."""
        if self.at:
            self.view[: self.held] = self.view[self.at: self.at + self.held]  # memmove
            self.at = 0
        return self.view[self.held: self.held + self.block]

    def filled(self, n: int) -> list[Region | Block]:
        """The lines completed by the `n` bytes just read into `space()`, valid until the
        next `space()`."""
        out: list[Region | Block] = []
        buf, start, stop = self.buf, self.held, self.held + n
        last = buf.rfind(b"\n", start, stop)
        if last < 0:
            self._hold(start, stop)
            return out
        begin = 0  # the held line's head is at 0, and what was read follows it
        if self.extra:  # a long line ends here: only its head was kept
            first = buf.find(b"\n", start, stop)
            size = self.held + self.extra + first - start
            out.append(Region(self.offset, bytes(self.view[: self.held]), size))
            self.offset += size + 1
            self.extra, begin = 0, first + 1
        if begin <= last:
            out.append(Block(self.offset, buf, begin, last + 1))
            self.offset += last + 1 - begin
        self.held = 0
        self._hold(last + 1, stop)
        return out

    def finish(self) -> Region | None:
        """The last line, if it has no newline."""
        if not self.held and not self.extra:
            return None
        r = Region(self.offset, bytes(self.view[self.at: self.at + self.held]),
                   self.held + self.extra)
        self.offset += r.size
        self.at, self.held, self.extra = 0, 0, 0
        return r

    def _hold(self, a: int, b: int) -> None:
        """`buf[a:b]`, the start of a line or more of the held one, is held."""
        if a >= b:
            return
        if not self.held:
            self.at = a
        take = min(max(0, self.keep - self.held), b - a)
        self.held += take
        self.extra += b - a - take


def scan_buffer_size(max_line: int, block: int = CHUNK) -> int:
    """A buffer this long serves `LineBlocks` and `backward_blocks` alike: a scan of many
    generations allocates one (a fresh MiB costs a millisecond of page faults under the
    GIL) and hands it to each in turn."""
    return max(max_line + SLACK + block, MAX_BLOCK + 1)


def backward_blocks(fd: int, lo: int, hi: int, max_line: int, buf: bytearray | None = None
                    ) -> Iterator[tuple[Region | Block, int]]:
    """`backward_regions` read into one reused buffer: its lines are handed out where they
    lie, each `Block` valid until the next is asked for."""
    keep = max_line + SLACK
    if buf is None:
        buf = bytearray(MAX_BLOCK + 1)
    assert len(buf) >= MAX_BLOCK + 1
    view = memoryview(buf)
    scan, block = hi, BLOCK
    while scan > lo:
        a = max(lo, scan - block)
        rd = a - 1 if a > lo else a  # one byte more: is `a` itself a line start?
        n = os.preadv(fd, [view[: scan - rd]], rd)
        block = min(MAX_BLOCK, block * 2)
        if n < scan - rd:
            return  # the file shrank under us
        if a == lo:
            yield Block(lo, buf, 0, n), n
            return
        first = buf.find(b"\n", 0, n)
        if 0 <= first < n - 1:
            yield Block(rd + first + 1, buf, first + 1, n), n
            scan = rd + first + 1
            continue
        # no line starts in (rd, scan): a line longer than the block; find its start
        ends_nl = buf[n - 1] == NL
        start, read = _long_line_start(fd, lo, rd, buf)
        size = scan - start - (1 if ends_nl else 0)
        head = os.pread(fd, min(size, keep), start)
        yield Region(start, head, size), n + read + len(head)
        scan = start


def backward_regions(fd: int, lo: int, hi: int, max_line: int
                     ) -> Iterator[tuple[Region, int]]:
    """Regions of [lo, hi) of a plain file, last first, each with the bytes read for it.
    `lo` is a line start; `hi` a line end, or the end of a last line without newline."""
    for r, read in backward_blocks(fd, lo, hi, max_line):
        yield (r.region() if isinstance(r, Block) else r), read


LONG_LINE_HUNT = 64 * 1024 * 1024  # read back at most this far for one line's start


def _long_line_start(fd: int, lo: int, pos: int, buf: bytearray) -> tuple[int, int]:
    """The start of the line that holds `pos` (not before `lo`), and the bytes read
    (into `buf`, at least MAX_BLOCK long). A line longer than LONG_LINE_HUNT is taken in
    pieces of that size (each shown as a cut line): a file of gigabytes without a newline
    is scanned in steps that can be stopped and reported on, never in one read."""
    read = 0
    view = memoryview(buf)
    while pos > lo and read < LONG_LINE_HUNT:
        b = max(lo, pos - MAX_BLOCK)
        n = os.preadv(fd, [view[: pos - b]], b)
        read += n
        nl = buf.rfind(b"\n", 0, n)
        if nl >= 0:
            return b + nl + 1, read
        pos = b
    return pos, read  # `lo`, or where the hunt stopped in a line of gigabytes


def line_start(fd: int, pos: int) -> Generator[int, None, int]:
    """The start of the line that holds `pos`, reading backwards; yields the bytes read
    as it goes (`start = yield from line_start(fd, pos)`)."""
    while pos > 0:
        a = max(0, pos - BLOCK)
        data = os.pread(fd, pos - a, a)
        yield len(data)
        i = data.rfind(b"\n")
        if i >= 0:
            return a + i + 1
        pos = a
    return 0
