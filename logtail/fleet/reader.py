"""Following shipped files: one Redis reader per file per worker, fanning out to streams.

A `ShippedReader` runs one `XREAD BLOCK` loop for one stream key while any stream of this
worker follows it, and offers each batch of entries to those streams, as a Follower offers
batches. Each stream (`ShippedCursor`) keeps its own place, `(epoch, number)`: the number of
the next line or notice it has to send (see `logtail.fleet.keys`). It takes offered entries
while it keeps up; when it falls behind (its queue would pass its bound) or starts from a
backlog or a resume id, it reads Redis itself with XRANGE from its place until it is level
again, so a slow client costs bounded memory and loses nothing Redis still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aredis
from redis.exceptions import RedisError

from logtail.fleet.keys import Entry, format_id, parse_entry, parse_id

__all__ = ["BLOCK_MS", "ShippedCursor", "ShippedReader", "Step"]

log = logging.getLogger("logtail.fleet")

BLOCK_MS = 5000  # one XREAD waits this long for new entries
Raw = list[tuple[bytes, dict[bytes, bytes]]]  # entries as redis-py gives them (no decoding)
READ_COUNT = 256  # entries per XREAD / XRANGE call
RETRY_S = 1.0  # after a Redis error


@dataclass(slots=True)
class Step:
    """What a stream sends next: lines, or a notice, with its place after it."""

    lines: list[str] | None
    notice: str | None
    data: dict[str, object]
    epoch: int
    number: int  # of the next item after it

    @property
    def event_id(self) -> str:
        return format_id(self.epoch, self.number)


class ShippedReader:
    """The one XREAD loop of a shipped file in this worker."""

    def __init__(self, client: aredis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self.streams: set[ShippedCursor] = set()
        self.bad_entries = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscribe(self, sub: ShippedCursor) -> None:
        self.streams.add(sub)
        if not self.active:
            self._task = asyncio.get_running_loop().create_task(
                self._run(sub.after), name=f"logtail-fleet-{self.key}")

    async def unsubscribe(self, sub: ShippedCursor) -> None:
        self.streams.discard(sub)
        if not self.streams:
            await self.close()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, after: str) -> None:
        """Read new entries after `after` (an entry id) and offer them to every stream."""
        while self.streams:
            try:
                got = await self.client.xread({self.key: after}, count=READ_COUNT, block=BLOCK_MS)
            except (RedisError, OSError) as e:
                self.errors += 1
                for sub in self.streams:
                    sub.trouble(f"{type(e).__name__}: {e}")
                await asyncio.sleep(RETRY_S)
                continue
            except Exception:  # never a dead reader: its streams would wait for good
                log.exception("fleet: reading %s", self.key)
                self.errors += 1
                await asyncio.sleep(RETRY_S)
                continue
            entries: list[Entry] = []
            for _, items in cast(list[tuple[bytes, Raw]], got or []):
                for entry_id, fields in items:
                    after = entry_id.decode()
                    entry = parse_entry(entry_id, fields)
                    if entry is None:
                        self.bad_entries += 1
                        continue
                    entries.append(entry)
            if entries:
                for sub in list(self.streams):
                    sub.offer(entries)


class ShippedCursor:
    """One stream's place in a shipped file, and what it sends next."""

    def __init__(self, client: aredis.Redis, key: str, name: str, epoch: int, number: int,
                 after: str, *, buffer_entries: int = 1024) -> None:
        self.client = client
        self.key = key
        self.name = name
        self.epoch = epoch
        self.number = number  # the number of the next item to send
        self.after = after  # the id of the last entry read up to (XREAD/XRANGE start)
        self.queue: deque[Entry] = deque()
        self.buffer_entries = buffer_entries
        self.lagging = True  # read Redis until level with the reader
        self.missed = False  # entries were offered while it read Redis itself
        self.wake = asyncio.Event()
        self.problem: str | None = None
        self.bad_entries = 0

    @property
    def event_id(self) -> str:
        """This stream's place, as an SSE id."""
        return format_id(self.epoch, self.number)

    # -- called by the reader ------------------------------------------------------------

    def offer(self, entries: list[Entry]) -> None:
        if self.lagging:
            self.missed = True  # maybe not in the read under way: read once more after it
        else:
            if len(self.queue) + len(entries) > self.buffer_entries:
                self.queue.clear()
                self.lagging = True
            else:
                self.queue.extend(entries)
        self.wake.set()

    def trouble(self, why: str) -> None:
        self.problem = why
        self.wake.set()

    # -- called by the stream ------------------------------------------------------------

    async def steps(self) -> list[Step]:
        """What is ready to send now (maybe nothing): queued entries, or a read of Redis."""
        if not self.lagging:
            entries = list(self.queue)
            self.queue.clear()
            out, gap = self._take(entries, read=False)
            if gap:  # missed while it read Redis itself: read again from its place
                self.lagging = True
            return out
        self.missed = False
        got = cast(Raw, await self.client.xrange(self.key, min=f"({self.after}", max="+",
                                                 count=READ_COUNT))
        entries = []
        for entry_id, fields in got:
            self.after = entry_id.decode()
            entry = parse_entry(entry_id, fields)
            if entry is None:
                self.bad_entries += 1
                place = parse_id(entry_id)
                if place is not None:  # it takes its number all the same: no gap to report
                    entries.append(Entry(place[0], place[1], None, None))
            else:
                entries.append(entry)
        if len(got) < READ_COUNT and not self.missed:
            self.lagging = False  # level: the reader's batches come after this read
        return self._take(entries, read=True)[0]

    def _take(self, entries: list[Entry], read: bool) -> tuple[list[Step], bool]:
        """Steps for `entries`, and whether a gap stopped them. From a read of Redis
        (`read`), a gap means trimmed away (`dropped`) or begun again (`reset`); in offered
        entries it means the stream missed some while it read: it stops there."""
        out: list[Step] = []
        for e in entries:
            if e.epoch != self.epoch:  # the stream was begun again (Redis lost it)
                if not read:
                    return out, True
                out.append(Step(None, "reset", {
                    "file": self.name,
                    "reason": "the shipped stream began again (Redis lost it): from its start"},
                    e.epoch, e.number))
                self.epoch, self.number = e.epoch, e.number
            if e.next <= self.number:
                continue  # sent already
            if e.number > self.number:
                if not read:
                    return out, True
                out.append(Step(None, "dropped", {
                    "file": self.name, "lines": e.number - self.number, "bytes": None,
                    "reason": "trimmed from Redis ([ship] maxlen) before it was read"},
                    self.epoch, e.number))
                self.number = e.number
            skip = self.number - e.number
            if e.lines is None and e.notice is None:
                pass  # not a shipper's entry (skipped and counted)
            elif e.lines is not None:
                out.append(Step(e.lines[skip:], None, {}, self.epoch, e.next))
            else:
                out.append(Step(None, e.notice, {**e.data, "file": self.name}, self.epoch,
                                e.next))
            self.number = e.next
            self.after = format_id(e.epoch, e.number)
        return out, False
