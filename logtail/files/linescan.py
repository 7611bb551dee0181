"""The lines of one generation's bytes, with their offsets, read in blocks either way.

Searching a history and showing the lines around a position read generations forwards
(a `.gz` can only be read so) and plain files backwards too. Either way memory stays
bounded: a region is at most a block or two of whole lines, and of a line longer than
that only its head (`max_line` bytes and a little) is kept while the rest is counted.
With a block search (RE2 over many lines at once, without the GIL) there is Python work
per matching line only; without a filter, only the lines asked for are made objects.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from itertools import accumulate

from logtail.files.lines import SLACK, cut_line, normalise
from logtail.files.tail import BLOCK, MAX_BLOCK, BlockSearch

__all__ = ["ForwardRegions", "Line", "Matcher", "Region", "backward_regions", "line_start"]


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


class Matcher:
    """Which lines of a region match a filter (every line without one)."""

    def __init__(self, max_line: int, search: BlockSearch | None = None,
                 match: Callable[[str], bool] | None = None) -> None:
        self.max_line = max_line
        self.keep = max_line + SLACK
        self.search = search
        self.match = match
        self.everything = search is None and match is None

    def lines(self, r: Region, count: int | None = None, last: bool = False) -> list[Line]:
        """The matching lines of `r`, in order; with `count`, only the first (or `last`)
        `count` of them."""
        if count is not None and count <= 0:
            return []
        if r.size >= 0:
            line = Line(r.offset, r.data[: self.keep], r.size)
            return [line] if self._one(line) else []
        if self.everything and count is not None:
            spans = _last_spans(r.data, count) if last else _first_spans(r.data, count)
        elif self.search is not None:
            spans = self._searched(r.data, None if last else count)
        elif self.match is not None:
            spans = self._tested(r.data)
        else:
            spans = _spans(r.data)
        if count is not None:
            spans = spans[-count:] if last else spans[:count]
        keep = self.keep
        return [Line(r.offset + a, r.data[a: min(b, a + keep)], b - a) for a, b in spans]

    def _one(self, line: Line) -> bool:
        if self.everything:
            return True
        if self.search is not None:
            return self.search(line.raw, 0) is not None
        assert self.match is not None
        return self.match(normalise(line.raw[: self.max_line]))

    def _tested(self, data: bytes) -> list[tuple[int, int]]:
        """Each line tested on its own (`invert`, anchored patterns), with as little
        Python per line as can be: the region is decoded and split once (a newline never
        falls inside a UTF-8 sequence, so the text has the same lines), and offsets are
        worked out for the matching lines only."""
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

    def _searched(self, data: bytes, count: int | None) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        search = self.search
        assert search is not None
        pos, size = 0, len(data)
        while pos < size:
            m = search(data, pos)
            if m is None:
                break
            at = m.start()  # type: ignore[attr-defined]
            if at >= size and data.endswith(b"\n"):
                break  # an empty match after the last newline: no line is there
            begin = data.rfind(b"\n", 0, at) + 1
            nl = data.find(b"\n", at)
            end = size if nl < 0 else nl
            out.append((begin, end))
            if count is not None and len(out) >= count:
                break
            pos = end + 1
        return out


def _spans(data: bytes) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos = 0
    for raw in data.split(b"\n"):
        out.append((pos, pos + len(raw)))
        pos += len(raw) + 1
    if data.endswith(b"\n") or not data:
        out.pop()
    return out


def _first_spans(data: bytes, count: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos, size = 0, len(data)
    while pos < size and len(out) < count:
        nl = data.find(b"\n", pos)
        end = size if nl < 0 else nl
        out.append((pos, end))
        pos = end + 1
    return out


def _last_spans(data: bytes, count: int) -> list[tuple[int, int]]:
    """The last `count` lines, found from the end: no work for the lines before them."""
    out: list[tuple[int, int]] = []
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    while len(out) < count and end >= 0 and data:
        begin = data.rfind(b"\n", 0, end) + 1
        out.append((begin, end))
        if begin == 0:
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


def backward_regions(fd: int, lo: int, hi: int, max_line: int
                     ) -> Iterator[tuple[Region, int]]:
    """Regions of [lo, hi) of a plain file, last first, each with the bytes read for it.
    `lo` is a line start; `hi` a line end, or the end of a last line without newline."""
    keep = max_line + SLACK
    scan, block = hi, BLOCK
    while scan > lo:
        a = max(lo, scan - block)
        rd = a - 1 if a > lo else a  # one byte more: is `a` itself a line start?
        data = os.pread(fd, scan - rd, rd)
        block = min(MAX_BLOCK, block * 2)
        if len(data) < scan - rd:
            return  # the file shrank under us
        if a == lo:
            yield Region(lo, data), len(data)
            return
        first = data.find(b"\n")
        if 0 <= first < len(data) - 1:
            yield Region(rd + first + 1, data[first + 1:]), len(data)
            scan = rd + first + 1
            continue
        # no line starts in (rd, scan): a line longer than the block; find its start
        start, read = _long_line_start(fd, lo, rd)
        size = scan - start - (1 if data.endswith(b"\n") else 0)
        head = os.pread(fd, min(size, keep), start)
        yield Region(start, head, size), len(data) + read + len(head)
        scan = start


LONG_LINE_HUNT = 64 * 1024 * 1024  # read back at most this far for one line's start


def _long_line_start(fd: int, lo: int, pos: int) -> tuple[int, int]:
    """The start of the line that holds `pos` (not before `lo`), and the bytes read. A
    line longer than LONG_LINE_HUNT is taken in pieces of that size (each shown as a cut
    line): a file of gigabytes without a newline is scanned in steps that can be stopped
    and reported on, never in one read."""
    read = 0
    while pos > lo and read < LONG_LINE_HUNT:
        b = max(lo, pos - MAX_BLOCK)
        chunk = os.pread(fd, pos - b, b)
        read += len(chunk)
        nl = chunk.rfind(b"\n")
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
