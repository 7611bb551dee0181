"""The lines of a generation read forwards that were written in [since, until).

A plain file finds `since` and `until` by binary search (`timestamps.find_time`); a
`.gz` can only be read forwards, so its regions are clipped as they come. Like
`find_time`, this takes a log's times to grow: a region whose last time is before `since`
is skipped whole without looking at its other lines, and one whose last time is before
`until` is kept whole, so only the one or two regions holding a bound are read line by
line. A line without a time belongs with the line before it (stack traces).
"""

from __future__ import annotations

from logtail.files.linescan import Region
from logtail.files.timestamps import line_time

__all__ = ["TimeWindow", "first_time"]

TAIL_LINES = 64  # lines looked at from a region's end for its last time


class TimeWindow:
    def __init__(self, since: float | None, until: float | None) -> None:
        self.since = since
        self.until = until
        self.started = since is None
        self.ended = False  # a line at or after `until` was seen: nothing more is kept
        self.before = False  # a line before `since` was seen
        self.last: float | None = None  # the latest time seen
        self._below = False

    def clip(self, r: Region) -> Region | None:
        """The part of `r` inside the window (None if nothing)."""
        if self.ended:
            return None
        if r.size >= 0:
            return self._long(r)
        data, offset = r.data, r.offset
        if not self.started:
            assert self.since is not None
            i = self._bound(data, self.since)
            self.before = self.before or self._below
            if i is None:
                return None
            data, offset, self.started = data[i:], offset + i, True
        if self.until is not None:
            j = self._bound(data, self.until)
            if j is not None:
                self.ended = True
                data = data[:j]
        return Region(offset, data) if data else None

    def _bound(self, data: bytes, moment: float) -> int | None:
        """Where in `data` the first line written at or after `moment` starts (None if
        there is none); `_below` tells whether a line before it showed a time."""
        self._below = False
        last = _last_time(data)
        if last is not None and last < moment:
            self.last = last
            self._below = True
            return None
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            end = len(data) if nl < 0 else nl
            t = line_time(data[pos:end])
            if t is not None:
                self.last = t
                if t >= moment:
                    return pos
                self._below = True
            pos = end + 1
        return None

    def _long(self, r: Region) -> Region | None:
        t = line_time(r.data)
        if t is not None:
            self.last = t
        t = self.last
        if not self.started:
            assert self.since is not None
            if t is None or t < self.since:
                self.before = self.before or t is not None
                return None
            self.started = True
        if self.until is not None and t is not None and t >= self.until:
            self.ended = True
            return None
        return r


def _last_time(data: bytes) -> float | None:
    """The time of the last of the last TAIL_LINES lines of `data` that shows one."""
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(TAIL_LINES):
        if end < 0:
            break
        begin = data.rfind(b"\n", 0, end) + 1
        t = line_time(data[begin:end])
        if t is not None:
            return t
        if begin == 0:
            break
        end = begin - 1
    return None


def first_time(data: bytes) -> float | None:
    """The time of the first line of `data` that shows one."""
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl
        t = line_time(data[pos:end])
        if t is not None:
            return t
        pos = end + 1
    return None
