"""The lines around a permalink, across the generations of a log's history.

The generation is found by its content key wherever it now is (renamed, compressed);
the lines before it go on into the next older generation when its start is reached, the
lines after it into the next newer one: so "load earlier" pages upward through the whole
history, one request at a time. Like a search, it is a generator of work (bytes read)
that runs a slice at a time in the scan pool, bounded by `max_bytes`.
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from logtail.files.history import GZ_INDEX, Source, fd_chunks, fd_key, history, open_again
from logtail.files.linescan import (
    ForwardRegions,
    Line,
    Matcher,
    Region,
    backward_regions,
    line_start,
)
from logtail.files.permalink import LineId, line_id

__all__ = ["Context", "ContextScan"]

T = TypeVar("T")


@dataclass(slots=True)
class Context:
    lines: list[tuple[str, str]] = field(default_factory=list)  # (line id, text)
    at: int = 0  # index of the line `at` names
    more_before: bool = False
    more_after: bool = False
    gone: str | None = None  # why the line cannot be shown
    limited: bool = False  # max_bytes were read before all lines were found


class ContextScan:
    def __init__(self, log: Path, at: LineId, before: int, after: int, max_line: int,
                 max_bytes: int) -> None:
        self.log = log
        self.at = at
        self.before = before
        self.after = after
        self.max_line = max_line
        self.max_bytes = max_bytes
        self.read = 0
        self.result = Context()
        self._all = Matcher(max_line)

    def work(self) -> Generator[int, None, None]:
        sources = history(self.log)
        yield 4096
        found = yield from self._find(sources)
        if found is None:
            self.result.gone = "no generation of this file's history has this line (it " \
                               "was rotated out, deleted or rewritten)"
            return
        index, src, fd = found
        try:
            key = fd_key(fd, src.compressed)
            if src.compressed:
                got = yield from self._in_gz(fd)
            else:
                got = yield from self._in_plain(fd)
        finally:
            os.close(fd)
        if got is None:
            if not self.result.limited:
                self.result.gone = "this generation has no line at that offset any more"
            return
        before, after = got
        earlier = [(key, line) for line in before]
        later = [(key, line) for line in after]
        need = self.before + 1 - len(earlier)
        for src in sources[index + 1:]:  # older generations, for lines before
            if need <= 0 or self._spent():
                break
            lines = yield from self._from(src, last=need)
            earlier = lines + earlier
            need -= len(lines)
        need = self.after + 2 - len(later)
        for src in reversed(sources[:index]):  # newer generations, for lines after
            if need <= 0 or self._spent():
                break
            lines = yield from self._from(src, first=need)
            later += lines
            need -= len(lines)
        self._answer(earlier, later)

    def _answer(self, earlier: list[tuple[str, Line]], later: list[tuple[str, Line]]) -> None:
        r = self.result
        r.more_before = len(earlier) > self.before
        r.more_after = len(later) > self.after + 1
        earlier = earlier[max(0, len(earlier) - self.before):] if self.before else []
        later = later[: self.after + 1]
        r.at = len(earlier)
        r.lines = [(line_id(k, line.offset), line.text(self.max_line))
                   for k, line in earlier + later]

    def _spent(self) -> bool:
        if self.read >= self.max_bytes:
            self.result.limited = True
            return True
        return False

    def _find(self, sources: list[Source]
              ) -> Generator[int, None, tuple[int, Source, int] | None]:
        """The generation the id names, open."""
        k = self.at.key_bytes
        for i, src in enumerate(sources):
            if not src.compressed and src.size < k:
                continue
            try:
                src, fd = open_again(self.log, src)
            except OSError:
                continue
            try:
                matched = fd_key(fd, src.compressed, k) == self.at.key
            except (OSError, EOFError, zlib.error):  # a corrupt .gz is not this generation
                matched = False
            yield k
            if matched:
                return i, src, fd
            os.close(fd)
        return None

    def _in_plain(self, fd: int) -> Generator[int, None, tuple[list[Line], list[Line]] | None]:
        if self.at.offset >= os.fstat(fd).st_size:
            return None
        start = yield from line_start(fd, self.at.offset)
        after = yield from self._forward(fd, False, start, self.after + 2)
        before: list[Line] = []
        for region, read in backward_regions(fd, 0, start, self.max_line):
            self.read += read
            before = self._all.lines(region, self.before + 1 - len(before), last=True) + before
            yield read
            if len(before) > self.before or self._spent():
                break
        return before, after

    def _in_gz(self, fd: int) -> Generator[int, None, tuple[list[Line], list[Line]] | None]:
        """A .gz is read forwards, from its start or from a checkpoint `GZ_INDEX.lead` or
        more before the line (an earlier one if that leaves too few lines before it): the
        lines before the one asked for pass through a window of `before + 1` lines."""
        got = yield from self._from_checkpoints(
            fd, self.at.offset - GZ_INDEX.lead, lambda start: self._gz_from(fd, start),
            lambda got: got is None or (got is not _TOO_LATE and len(got[0]) > self.before))
        return None if got is _TOO_LATE else got

    def _from_checkpoints(self, fd: int, upto: int,
                          read: Callable[[int], Generator[int, None, T]],
                          enough: Callable[[T], bool]) -> Generator[int, None, T]:
        """`read` from the last checkpoint at or before `upto` (from the start if there is
        none); while what it found is not `enough`, again from the checkpoint before."""
        file = GZ_INDEX.identity(fd)
        while True:
            point = GZ_INDEX.before(file, upto) if upto > 0 else None
            start = point.out if point is not None else 0
            got = yield from read(start)
            if start == 0 or self._spent() or enough(got):
                return got
            upto = start - 1

    def _gz_from(self, fd: int, start: int
                 ) -> Generator[int, None, tuple[list[Line], list[Line]] | None]:
        """`_in_gz` from decompressed offset `start` (0, or a checkpoint in mid-line:
        the lines then start after its next newline). _TOO_LATE when the line asked for
        starts before the first line found."""
        at = self.at.offset
        before: deque[Line] = deque(maxlen=self.before + 1)
        after: list[Line] = []
        want = self.after + 2
        regions = ForwardRegions(0, self.max_line) if start == 0 else None
        for chunk in fd_chunks(fd, True, start, max(0, self.max_bytes - self.read)):
            self.read += len(chunk)
            if regions is None:
                regions, chunk, start = _first_line_after(chunk, start, self.max_line)
                if regions is not None and regions.offset > at:
                    return _TOO_LATE
            if regions is None:
                yield len(chunk)
                continue
            for r in regions.feed(chunk):
                if after:
                    after += self._all.lines(r, want - len(after))
                else:
                    self._split(r, at, before, after, want)
            yield len(chunk)
            if len(after) >= want:
                break
        else:
            if self._spent():
                return None
            if regions is None:
                return _TOO_LATE  # no line starts after `start`: the one asked for began before
            last = regions.finish()
            if last is not None:
                if after:
                    after += self._all.lines(last, want - len(after))
                else:
                    self._split(last, at, before, after, want)
            if not after:
                return None
        return list(before), after

    def _split(self, r: Region, at: int, before: deque[Line], after: list[Line],
               want: int) -> None:
        """Lines of `r` before the one holding `at` go to `before`; it and the next to
        `after`."""
        if r.size >= 0:
            (after if r.offset <= at <= r.end else before).append(
                Line(r.offset, r.data, r.size))
            return
        if r.end <= at:
            before.extend(self._all.lines(r, self.before + 1, last=True))
            return
        cut = r.data.rfind(b"\n", 0, at - r.offset) + 1
        before.extend(self._all.lines(Region(r.offset, r.data[:cut]), self.before + 1,
                                      last=True))
        after += self._all.lines(Region(r.offset + cut, r.data[cut:]), want)

    def _forward(self, fd: int, compressed: bool, start: int, count: int
                 ) -> Generator[int, None, list[Line]]:
        """The first `count` lines from `start` (a line start)."""
        out: list[Line] = []
        regions = ForwardRegions(start, self.max_line)
        for chunk in fd_chunks(fd, compressed, start, max(0, self.max_bytes - self.read)):
            self.read += len(chunk)
            for r in regions.feed(chunk):
                out += self._all.lines(r, count - len(out))
            yield len(chunk)
            if len(out) >= count or self._spent():
                return out
        last = regions.finish()
        if last is not None:
            out += self._all.lines(last, count - len(out))
        return out

    def _from(self, src: Source, first: int = 0, last: int = 0
              ) -> Generator[int, None, list[tuple[str, Line]]]:
        """The first `first` or last `last` lines of another generation."""
        try:
            src, fd = open_again(self.log, src)
        except OSError:
            return []
        try:
            key = fd_key(fd, src.compressed)
            if first:
                lines = yield from self._forward(fd, src.compressed, 0, first)
            elif src.compressed:
                lines = yield from self._last_of_gz(fd, last)
            else:
                lines = []
                for region, read in backward_regions(fd, 0, os.fstat(fd).st_size,
                                                     self.max_line):
                    self.read += read
                    lines = self._all.lines(region, last - len(lines), last=True) + lines
                    yield read
                    if len(lines) >= last or self._spent():
                        break
        except (OSError, EOFError, zlib.error):
            return []  # a corrupt or vanished generation ends the paging here
        finally:
            os.close(fd)
        return [(key, line) for line in lines]

    def _last_of_gz(self, fd: int, count: int) -> Generator[int, None, list[Line]]:
        """The last `count` lines: read from the last checkpoint (an earlier one while
        that leaves fewer lines), or from the start."""
        return (yield from self._from_checkpoints(
            fd, 1 << 62, lambda start: self._last_from(fd, start, count),
            lambda kept: len(kept) >= count))

    def _last_from(self, fd: int, start: int, count: int) -> Generator[int, None, list[Line]]:
        kept: deque[Line] = deque(maxlen=count)
        regions = ForwardRegions(0, self.max_line) if start == 0 else None
        for chunk in fd_chunks(fd, True, start, max(0, self.max_bytes - self.read)):
            self.read += len(chunk)
            if regions is None:
                regions, chunk, start = _first_line_after(chunk, start, self.max_line)
            if regions is not None:
                for r in regions.feed(chunk):
                    kept.extend(self._all.lines(r, count, last=True))
            yield len(chunk)
        if self._spent():
            return []  # not read to its end: its last lines are not known
        last = regions.finish() if regions is not None else None
        if last is not None:
            kept.extend(self._all.lines(last, count, last=True))
        return list(kept)


# the line asked for starts before the lines a read from a checkpoint found
_TOO_LATE: tuple[list[Line], list[Line]] = ([], [])


def _first_line_after(chunk: bytes, start: int, max_line: int
                      ) -> tuple[ForwardRegions | None, bytes, int]:
    """Bytes read from `start`, in mid-line: the lines begin after the first newline.
    Returns the regions from there and what of `chunk` is theirs, or (None, chunk,
    where the next chunk starts) while no newline has come."""
    nl = chunk.find(b"\n")
    if nl < 0:
        return None, chunk, start + len(chunk)
    return ForwardRegions(start + nl + 1, max_line), chunk[nl + 1:], start

