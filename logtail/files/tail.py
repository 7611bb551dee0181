"""Finding the last lines of a file by reading blocks backwards from its end.

The cost depends on how many lines are asked for (and how long they are), never on the
size of the file: a 5 GB log answers as fast as a 5 KB one. And it is bounded: a scan
reads at most `max_bytes` back, so a rare filter match or a file without newlines cannot
turn one request into a read of gigabytes. A scan runs in steps, so a scheduler can
interleave many clients' scans fairly. These only find where the backlog starts; the
stream then reads it forwards like any other range.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from logtail.files.lines import normalise

__all__ = ["BLOCK", "BacklogScan", "BlockSearch", "find_start", "line_end"]

BLOCK = 64 * 1024
MAX_BLOCK = 1024 * 1024
# finds a match in `buf` at or after `pos`; its .start() is where (RE2's search, on bytes)
BlockSearch = Callable[[bytes, int], object]
LINE_END_SCAN = 4 * 1024 * 1024


def line_end(fd: int, size: int) -> int:
    """The offset just after the last newline before `size` (0 if none).

    An unfinished last line longer than LINE_END_SCAN is not searched through to its start:
    following begins inside it, rather than reading gigabytes of one line.
    """
    pos = size
    while pos > 0 and size - pos < LINE_END_SCAN:
        start = max(0, pos - BLOCK)
        data = os.pread(fd, pos - start, start)
        i = data.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return pos


class BacklogScan:
    """Where the last `n` lines before `end` begin (the last `n` matching lines, with a
    filter), reading backwards at most `max_bytes`.

    `end` is a line boundary. Each step reads whole blocks and only looks at complete
    lines: a block's first, partial line is read again with the next block. With a
    `search` over whole blocks (RE2 releases the GIL while it runs), there is Python work
    per matching line only; `match` tests one line at a time otherwise.
    When the bound is reached first, `limited` is set and the backlog starts at the
    oldest complete line that was read (with a filter: the oldest match, so the stream
    does not read again what the scan found nothing in).
    """

    def __init__(self, fd: int, end: int, n: int, max_line_bytes: int,
                 match: Callable[[str], bool] | None = None,
                 max_bytes: int = 1 << 62, search: BlockSearch | None = None) -> None:
        self.fd = fd
        self.end = end
        self.need = n
        self.max_line = max_line_bytes
        self.match = match
        self.search = search
        self.floor = max(0, end - max_bytes)
        self.scan = end  # [scan, end) is read, and `scan` is a line start
        self.start = end  # the answer so far
        self.block = BLOCK
        self.limited = False
        self.done = n <= 0 or end <= 0

    def step(self, budget: int) -> bool:
        """Read about `budget` bytes more; True once the start is known."""
        while not self.done and budget > 0:
            budget -= self._block()
        return self.done

    def _block(self) -> int:
        a = max(self.floor, self.scan - self.block)
        lo = a - 1 if a > 0 else 0  # one byte more: is `a` itself a line start?
        data = os.pread(self.fd, self.scan - lo, lo)
        self.block = min(MAX_BLOCK, self.block * 2)
        if len(data) < self.scan - lo:
            self.done = True  # the file shrank under us
            return len(data) or 1
        first = data.find(b"\n")
        if a == 0:
            lines_from = 0
        elif 0 <= first < len(data) - 1:
            lines_from = first + 1
        else:
            return len(data) + self._long_line(lo)
        region_start = lo + lines_from
        self._look_at(data[lines_from:], region_start)
        self._moved_to(region_start)
        return len(data)

    def _long_line(self, pos: int) -> int:
        """No line starts in [pos, scan): find where this one does (searching, not keeping,
        what lies before), then count or match its head. Returns the bytes read."""
        read = 0
        while pos > 0:
            if pos <= self.floor:  # the bound falls inside this line: nothing older shown
                self.limited = self.done = True
                return read
            b = max(self.floor - 1, pos - MAX_BLOCK, 0)
            chunk = os.pread(self.fd, pos - b, b)
            read += len(chunk)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                pos = b + nl + 1
                break
            pos = b
        if pos < self.floor:
            self.limited = self.done = True
            return read
        head = os.pread(self.fd, min(self.scan - pos, self.max_line), pos)
        self._look_at(head if head.endswith(b"\n") else head + b"\n", pos)
        self._moved_to(pos)
        return read + len(head)

    def _moved_to(self, line_start: int) -> None:
        if self.done:
            return
        self.scan = line_start
        if self.match is None:
            self.start = line_start  # with a filter, `start` is the oldest match found
        if line_start <= self.floor:
            self.limited = line_start > 0
            self.done = True

    def _look_at(self, region: bytes, offset: int) -> None:
        """Count (or match) the complete lines of `region`, last first."""
        if self.match is None:
            count = region.count(b"\n") + (0 if region.endswith(b"\n") else 1)
            if count < self.need:
                self.need -= count
                return
            i = len(region) - (1 if region.endswith(b"\n") else 0)
            for _ in range(self.need):
                i = region.rfind(b"\n", 0, i)
            self.start = offset + i + 1
            self.done = True
            return
        starts = self._matching_starts(region)
        if len(starts) < self.need:
            self.need -= len(starts)
            if starts:
                self.start = offset + starts[0]
            return
        self.start = offset + starts[-self.need]
        self.done = True

    def _matching_starts(self, region: bytes) -> list[int]:
        out: list[int] = []
        if self.search is not None:
            pos, size = 0, len(region)
            while pos < size:
                m = self.search(region, pos)
                if m is None:
                    break
                at = m.start()  # type: ignore[attr-defined]
                if at == size and region.endswith(b"\n"):
                    break  # an empty match after the last newline: no line is there
                begin = region.rfind(b"\n", 0, at) + 1
                out.append(begin)
                nl = region.find(b"\n", at)
                pos = size if nl < 0 else nl + 1
            return out
        assert self.match is not None
        begin = 0
        for line in region.split(b"\n"):
            if begin >= len(region):
                break
            if self.match(normalise(line[: self.max_line])):
                out.append(begin)
            begin += len(line) + 1
        return out


def find_start(fd: int, end: int, n: int, limit: int,
               match: Callable[[str], bool] | None = None, scan_bytes: int = 1 << 62) -> int:
    """Where the last `n` (matching) lines before `end` begin, in one go."""
    scan = BacklogScan(fd, end, n, limit, match, scan_bytes)
    scan.step(1 << 62)
    return scan.start
