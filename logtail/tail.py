"""Finding the last lines of a file by reading blocks backwards from its end.

The cost depends on how many lines are asked for (and how long they are), never on the
size of the file: a 5 GB log answers as fast as a 5 KB one. These functions only find
where the backlog starts; the stream then reads it forwards like any other range.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from logtail.lines import cut_line, normalise

__all__ = ["BLOCK", "find_start", "line_end"]

BLOCK = 64 * 1024
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


def find_start(
    fd: int,
    end: int,
    n: int,
    limit: int,
    match: Callable[[str], bool] | None = None,
    scan_bytes: int = 1 << 62,
) -> int:
    """Where the last `n` lines before `end` begin (the last `n` matching lines with `match`).

    `end` is a line boundary. With a filter, at most `scan_bytes` are searched: a rare match
    in a huge file must not turn one request into a read of the whole file.
    """
    if n <= 0 or end <= 0:
        return end
    if match is None:
        return _start_of_last(fd, end, n)
    found = 0
    start = end
    for line_start, head, total in _reverse_lines(fd, end, limit):
        if end - line_start > scan_bytes:
            break
        text = normalise(cut_line(head, total, limit) if total > limit else head)
        start = line_start
        if match(text):
            found += 1
            if found == n:
                break
    return start


def _start_of_last(fd: int, end: int, n: int) -> int:
    """Count newlines backwards; no line is looked at."""
    pos = end
    if os.pread(fd, 1, end - 1) == b"\n":
        pos = end - 1  # the newline ending the last line is not a separator
    need = n
    while pos > 0:
        start = max(0, pos - BLOCK)
        data = os.pread(fd, pos - start, start)
        count = data.count(b"\n")
        if count < need:
            need -= count
            pos = start
            continue
        i = len(data)
        for _ in range(need):
            i = data.rfind(b"\n", 0, i)
        return start + i + 1
    return 0


def _reverse_lines(fd: int, end: int, limit: int) -> Iterator[tuple[int, bytes, int]]:
    """(start offset, first `limit`+ bytes, length) of each line before `end`, last first."""
    pos = end
    if os.pread(fd, 1, end - 1) == b"\n":
        pos = end - 1
    carry, carry_len = b"", 0  # the right part of a line whose start is not read yet
    while pos > 0:
        start = max(0, pos - BLOCK)
        data = os.pread(fd, pos - start, start)
        if len(data) < pos - start:
            return  # the file shrank under us
        parts = data.split(b"\n")
        offsets = [start]
        for part in parts[:-1]:
            offsets.append(offsets[-1] + len(part) + 1)
        last = len(parts) - 1
        for i in range(last, 0, -1):
            if i == last:
                head, total = parts[i] + carry, len(parts[i]) + carry_len
            else:
                head, total = parts[i], len(parts[i])
            yield offsets[i], head, total
        if last > 0:
            carry, carry_len = parts[0], len(parts[0])
        else:
            carry, carry_len = parts[0] + carry, len(parts[0]) + carry_len
        if len(carry) > 2 * limit:
            carry = carry[: limit + 3]
        pos = start
    yield 0, carry, carry_len
