"""The history of a shipped file: what Redis still holds of it, searched or around a line.

A line of a shipped file is named by its number: `<epoch>-<number>` (see
`logtail.fleet.keys`), the same id a stream of it resumes from. Reads go a page of
entries at a time (XREVRANGE newest first, XRANGE oldest first); the matching runs on the
event loop between pages, a page at most `PAGE` entries, so it holds the loop for about a
millisecond at a time.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

import redis.asyncio as aredis

from logtail.fleet.keys import Entry, format_id, parse_entry
from logtail.fleet.reader import Raw

__all__ = ["Context", "ShippedSearch", "context", "parse_line"]

PAGE = 128  # entries per read
LINE_RE = re.compile(r"^([0-9]{1,20})-([0-9]{1,20})$")


def parse_line(text: str) -> tuple[int, int] | None:
    """(epoch, number) of a shipped line's id."""
    m = LINE_RE.match(text)
    return (int(m[1]), int(m[2])) if m else None


async def _page(client: aredis.Redis, key: str, desc: bool, bound: str) -> list[Entry]:
    raw = cast(Raw, await (client.xrevrange(key, bound, "-", count=PAGE) if desc
                           else client.xrange(key, bound, "+", count=PAGE)))
    return [e for i, f in raw if (e := parse_entry(i, f)) is not None]


@dataclass
class ShippedSearch:
    """A search over one shipped stream; `scanned`, `total` and `matches` for progress."""

    client: aredis.Redis
    key: str
    keep: Callable[[str], bool] | None
    since_ms: float | None
    until_ms: float | None
    limit: int
    desc: bool
    max_entries: int
    scanned: int = 0  # bytes of lines read
    total: int = 0  # an estimate: entries in the stream times the mean entry size so far
    matches: int = 0
    limited: bool = False
    entries: int = field(default=0)

    async def pages(self) -> AsyncIterator[list[tuple[str, str]]]:
        """(line id, line) of the matches, a page at a time."""
        length = await self.client.xlen(self.key)
        bound = "+" if self.desc else "-"
        while self.matches < self.limit:
            if self.entries >= self.max_entries:
                self.limited = True
                return
            page = await _page(self.client, self.key, self.desc, bound)
            if not page:
                return
            found: list[tuple[str, str]] = []
            for e in page:
                self.entries += 1
                if e.lines is None or not self._in_window(e.t):
                    continue
                order = range(len(e.lines) - 1, -1, -1) if self.desc else range(len(e.lines))
                for k in order:
                    line = e.lines[k]
                    self.scanned += len(line) + 1
                    if self.keep is None or self.keep(line):
                        found.append((format_id(e.epoch, e.number + k), line))
            found = found[:self.limit - self.matches]
            self.matches += len(found)
            self.total = max(self.scanned, self.scanned * length // max(1, self.entries))
            yield found
            if self._past_window(page[-1].t):
                return
            last = page[-1]
            bound = f"({format_id(last.epoch, last.number)}"
        self.limited = self.limited or self.matches >= self.limit

    def _in_window(self, t: int) -> bool:
        return (self.since_ms is None or t >= self.since_ms) and \
            (self.until_ms is None or t < self.until_ms)

    def _past_window(self, t: int) -> bool:
        """Whether every entry further on lies outside `since`/`until` (times only grow)."""
        if self.desc:
            return self.since_ms is not None and t < self.since_ms
        return self.until_ms is not None and t >= self.until_ms


@dataclass
class Context:
    lines: list[tuple[str, str]]  # (line id, line), oldest first
    found: bool  # the line itself is still held
    more_before: bool
    more_after: bool


async def context(client: aredis.Redis, key: str, epoch: int, number: int, before: int,
                  after: int) -> Context:
    """The line `epoch-number` with `before` lines before it and `after` after it."""
    older: list[tuple[str, str]] = []
    newer: list[tuple[str, str]] = []
    found = False
    bound = format_id(epoch, number)
    start = bound  # where lines after it begin: the entry that holds it
    while len(older) < before + 2:  # the line, `before`, and one to know there are more
        page = await _page(client, key, True, bound)
        if not page:
            break
        for e in page:
            if e.lines is None or e.epoch != epoch:
                continue
            for k in range(len(e.lines) - 1, -1, -1):
                n = e.number + k
                if n > number:
                    continue
                if n == number:
                    found = True
                    start = format_id(e.epoch, e.number)
                older.append((format_id(e.epoch, n), e.lines[k]))
        last = page[-1]
        bound = f"({format_id(last.epoch, last.number)}"
    more_before = len(older) > before + 1
    older = older[:before + 1]
    bound = start
    while len(newer) < after + 1:
        page = await _page(client, key, False, bound)
        if not page:
            break
        for e in page:
            if e.lines is None or e.epoch != epoch:
                continue
            for k, line in enumerate(e.lines):
                if e.number + k > number:
                    newer.append((format_id(e.epoch, e.number + k), line))
        last = page[-1]
        bound = f"({format_id(last.epoch, last.number)}"
    more_after = len(newer) > after
    newer = newer[:after]
    older.reverse()
    return Context(older + newer, found, more_before, more_after)
