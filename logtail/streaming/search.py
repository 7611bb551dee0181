"""Searching a log's whole history: the file and its rotated siblings, newest or oldest first.

The scan is written as one generator (see `scans.GeneratorScan`) that runs in the scan
pool a slice at a time and yields after every block; what it finds waits in `take()` for
the event loop to send between slices, so a slow client slows only its own search and a
client that leaves stops it within a block. The scan thread shares the GIL with the event
loop, so blocks are read into one reused buffer and searched where they lie
(`linescan.LineBlocks`, `backward_blocks`): the GIL is let go for the reads, the inflating
and RE2, and held for no copy of a block, so live streams barely wait for a search.

- Newest first: a plain file is read backwards in blocks; a `.gz` can only be read
  forwards, so its last `remaining` matches are kept (in a bounded buffer) and sent,
  newest first, once it is read.
- `since`/`until`: a plain file's bounds are found by binary search, never a scan; a
  `.gz` is skipped whole when its mtime (an upper bound of its last line's time) is
  before `since`, and otherwise clipped as it is read. Since a log's times grow, the scan
  stops at the first generation that reaches back past `since` (newest first) or on
  past `until` (oldest first).
- Every read counts towards `max_scan_bytes` (decompressed): a gzip bomb costs that much
  time at most, and `done` then says `limited`.
- A generation that cannot be read (a corrupt or cut `.gz`, a file deleted meanwhile)
  gets a `SourceError`, and the scan goes on with the next one.
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from logtail.files.history import (
    GZ_INDEX,
    GzipReader,
    PlainReader,
    Source,
    fd_chunks,
    fd_key,
    history,
    open_again,
    size_hint,
)
from logtail.files.linescan import (
    Block,
    Line,
    LineBlocks,
    Matcher,
    Region,
    backward_blocks,
    scan_buffer_size,
)
from logtail.files.permalink import line_id
from logtail.files.tail import line_end
from logtail.files.timestamps import TIME_PROBE, find_time, shows_time
from logtail.files.timewindow import TimeWindow, first_time
from logtail.streaming.filters import LineFilter

__all__ = ["Match", "Search", "SearchSpec", "SourceError"]

MATCH_BUFFER_BYTES = 32 * 1024 * 1024  # a .gz's newest matches waiting to be sent, at most
PROBE = 64 * 1024  # bytes counted for one binary search


@dataclass(frozen=True, slots=True)
class SearchSpec:
    filter: LineFilter | None
    since: float | None
    until: float | None
    limit: int
    desc: bool
    max_scan_bytes: int
    max_line: int


@dataclass(frozen=True, slots=True)
class Match:
    id: str
    source: str
    line: str


@dataclass(frozen=True, slots=True)
class SourceError:
    source: str
    error: str


class Search:
    def __init__(self, log: Path, spec: SearchSpec) -> None:
        self.log = log
        self.spec = spec
        f = spec.filter
        self.matcher = Matcher(spec.max_line, f.block_search() if f else None,
                               f.match if f else None)
        self.planned = False  # the history is listed and checked: answers may start
        self.no_times = False  # since/until asked, and no generation shows a time
        self.total = 0  # decompressed bytes of the history (a .gz's is its trailer's word)
        self.scanned = 0
        self.source = ""
        self.matches = 0
        self.limited = False
        self._out: list[Match | SourceError] = []
        self._buf: bytearray | None = None  # one read buffer for every generation

    def _buffer(self) -> bytearray:
        if self._buf is None:
            self._buf = bytearray(scan_buffer_size(self.spec.max_line))
        return self._buf

    def take(self) -> list[Match | SourceError]:
        """What was found since the last call (call it between slices only)."""
        out, self._out = self._out, []
        return out

    @property
    def remaining(self) -> int:
        return self.spec.limit - self.matches

    def _budget(self) -> int:
        return self.spec.max_scan_bytes - self.scanned

    # -- the scan -------------------------------------------------------------------------

    def work(self) -> Generator[int, None, None]:
        sources = history(self.log)
        yield 4096
        yield from self._plan(sources)
        self.planned = True
        if self.no_times:
            return
        order = sources if self.spec.desc else list(reversed(sources))
        for src in order:
            if self.remaining <= 0:
                return
            if self._budget() <= 0:
                self.limited = True
                return
            self.source = src.name
            try:
                src, fd = open_again(self.log, src)
            except OSError:
                self._out.append(SourceError(src.name, "gone: rotated away or deleted "
                                                       "during the search"))
                continue
            live = not src.compressed and src.path == self.log
            try:
                stop = yield from (self._gz(fd, src) if src.compressed
                                   else self._plain(fd, src, live))
            except (OSError, EOFError, zlib.error) as e:
                self._out.append(SourceError(src.name, _describe(e)))
                stop = False
            finally:
                os.close(fd)
            if stop:
                return

    def _plan(self, sources: list[Source]) -> Generator[int, None, None]:
        """Total size for progress; with since/until, whether any generation shows a time
        (newest first, stopping at the first that does)."""
        timed = self.spec.since is None and self.spec.until is None
        untimed = False
        for src in sources:
            if not src.compressed:
                self.total += src.size
                if timed:
                    continue
            try:
                src, fd = open_again(self.log, src)
            except OSError:
                continue
            try:
                if src.compressed:
                    self.total += size_hint(fd, src)
                if not timed:
                    found = yield from self._shows_time(fd, src)
                    timed = found is True
                    untimed = untimed or found is False
            except (OSError, EOFError, zlib.error):
                pass
            finally:
                os.close(fd)
            yield 4096
        self.no_times = not timed and untimed

    @staticmethod
    def _shows_time(fd: int, src: Source) -> Generator[int, None, bool | None]:
        if not src.compressed:
            yield PROBE
            return shows_time(fd, os.fstat(fd).st_size)
        head = b""
        for chunk in fd_chunks(fd, True, 0, TIME_PROBE):
            head += chunk
            yield len(chunk)
        if not head:
            return None
        return first_time(head) is not None

    def _plain(self, fd: int, src: Source, live: bool) -> Generator[int, None, bool]:
        """Scan one plain generation; True when the generations after it in scan order
        cannot hold what is asked (the limit is reached, or they lie outside the times)."""
        spec = self.spec
        size = os.fstat(fd).st_size
        end = line_end(fd, size) if live else size  # the live file: not its unfinished line
        lo, hi = 0, end
        if spec.since is not None or spec.until is not None:
            yield PROBE
            if not shows_time(fd, end):
                return False  # cannot be placed in time
            if spec.since is not None:
                lo = find_time(fd, 0, end, spec.since) or 0
            if spec.until is not None:
                hi = find_time(fd, lo, end, spec.until) or lo
            yield PROBE
        if lo < hi:
            key = fd_key(fd, False)
            scan = self._backward if spec.desc else self._forward
            if (yield from scan(fd, key, src, lo, hi)):
                return True
        if spec.desc:
            return spec.since is not None and lo > 0
        return hi < end

    def _backward(self, fd: int, key: str, src: Source, lo: int, hi: int
                  ) -> Generator[int, None, bool]:
        at = hi
        for region, read in backward_blocks(fd, lo, hi, self.spec.max_line, self._buffer()):
            self.scanned += at - region.offset  # bytes covered (blocks overlap a little)
            at = region.offset
            self._emit(key, src, self.matcher.lines(region, self.remaining, last=True),
                       newest_first=True)
            yield read
            if self.remaining <= 0:
                return True
            if self._budget() <= 0:
                self.limited = True
                return True
        return False

    def _forward(self, fd: int, key: str, src: Source, lo: int, hi: int
                 ) -> Generator[int, None, bool]:
        regions = LineBlocks(lo, self.spec.max_line, buf=self._buffer())
        reader = PlainReader(fd, lo, min(hi - lo, self._budget()))
        read = 0
        while n := reader.readinto(regions.space()):
            read += n
            self.scanned += n
            for region in regions.filled(n):
                self._emit(key, src, self.matcher.lines(region, self.remaining))
            yield n
            if self.remaining <= 0:
                return True
        if read < hi - lo and self._budget() <= 0:
            self.limited = True
            return True
        if read == hi - lo and (last := regions.finish()) is not None:
            self._emit(key, src, self.matcher.lines(last, self.remaining))
        return False

    def _gz(self, fd: int, src: Source) -> Generator[int, None, bool]:
        spec = self.spec
        if spec.since is not None and src.mtime_ns / 1e9 < spec.since:
            return spec.desc  # written before `since`: so are the older ones
        window = (TimeWindow(spec.since, spec.until)
                  if spec.since is not None or spec.until is not None else None)
        key = fd_key(fd, True)
        regions = LineBlocks(0, spec.max_line, buf=self._buffer())
        kept: deque[Line] = deque()
        kept_bytes = 0
        gap = False
        complete = True
        budget = self._budget()
        reader = GzipReader(fd, 0, budget, GZ_INDEX)
        read = 0
        while n := reader.readinto(regions.space()):
            read += n
            self.scanned += n
            found: list[Line] = []
            for region in regions.filled(n):
                found += self._gz_lines(region, window)
            if spec.desc:
                for line in found:
                    kept.append(line)
                    kept_bytes += len(line.raw)
                    while len(kept) > self.remaining or kept_bytes > MATCH_BUFFER_BYTES:
                        gap = gap or len(kept) <= self.remaining
                        kept_bytes -= len(kept.popleft().raw)
            else:
                self._emit(key, src, found)
            yield n
            if (window is not None and window.ended) or self.remaining <= 0:
                complete = False
                break
        else:
            if read >= budget:
                self.limited = True
            elif (last := regions.finish()) is not None:
                found = self._gz_lines(last, window)
                if spec.desc:
                    kept.extend(found)
                else:
                    self._emit(key, src, found)
        if spec.desc:
            self._emit(key, src, list(kept), newest_first=True)
            if gap:
                self.limited = True  # older matches of this file were let go: stop here
            return gap or self.limited or (window is not None and window.before)
        return self.limited or (window is not None and window.ended) or not complete

    def _gz_lines(self, region: Region | Block, window: TimeWindow | None) -> list[Line]:
        if window is not None:
            clipped = window.clip(region.region() if isinstance(region, Block) else region)
            if clipped is None:
                return []
            region = clipped
        if self.spec.desc:
            return self.matcher.lines(region, self.remaining, last=True)
        return self.matcher.lines(region, self.remaining)

    def _emit(self, key: str, src: Source, lines: list[Line], newest_first: bool = False
              ) -> None:
        if newest_first:
            lines = lines[::-1]
        for line in lines[: self.remaining]:
            self._out.append(Match(line_id(key, line.offset), src.name,
                                   line.text(self.spec.max_line)))
        self.matches += min(len(lines), self.remaining)


def _describe(e: BaseException) -> str:
    if isinstance(e, zlib.error):
        return f"corrupt gzip data: {e}"
    if isinstance(e, EOFError):
        return "gzip data cut short"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)
