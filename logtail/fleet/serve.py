"""Serving a shipped file (`<host>:<name>`) as a stream, from Redis.

The stream is the one a local file gets (same parameters, framing, filters, notices and
heartbeats); only its source differs. The backlog comes from XREVRANGE, the rest from the
file's one reader in this worker (`logtail.fleet.reader`). Its ids are Redis's: `<epoch>-
<number>`, the number of the next line to send (see `logtail.fleet.keys`), so any server
reading the same Redis resumes any client exactly. They need no signature: an id only
names a place in a stream the client may read anyway, and a place that is not one gets
`reset`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import cast

import redis.asyncio as aredis
from redis.exceptions import RedisError

from logtail.config import Config, StreamConfig
from logtail.fleet.catalog import FleetCatalog, Shipped, connect
from logtail.fleet.keys import Entry, format_id, parse_entry, parse_id
from logtail.fleet.reader import RETRY_S, Raw, ShippedCursor, ShippedReader, Step
from logtail.streaming.cursor import END, Notice
from logtail.streaming.multi import OtherLines
from logtail.streaming.params import StreamParams
from logtail.streaming.sse import comment, data_event, id_only, notice, opening, text_lines
from logtail.streaming.stats import StreamStats

__all__ = ["Fleet", "ShippedSource", "Start", "run_shipped_stream", "start_shipped"]

log = logging.getLogger("logtail.fleet")

Send = Callable[[bytes], Awaitable[None]]
Events = list[tuple[list[str], str]]  # (lines, id after them)
Notes = list[tuple[str, dict[str, object]]]  # (notice, data)
Start = tuple[ShippedCursor, Events, Notes]
BACKLOG_ENTRIES = 10_000  # entries a backlog reads back at most (a filter that rarely matches)
BACK_COUNT = 128  # entries per XREVRANGE of a backlog


class Fleet:
    """What one worker has for shipped files: a Redis client, the list, the readers."""

    def __init__(self, config: Config) -> None:
        self.client: aredis.Redis = connect(config.redis.url)
        self.catalog = FleetCatalog(self.client, config.fleet, config.redis.url)
        self.readers: dict[str, ShippedReader] = {}
        self.cursor_bad_entries = 0  # skipped by streams reading Redis themselves

    async def start(self) -> None:
        await self.catalog.start()

    async def close(self) -> None:
        for reader in list(self.readers.values()):
            await reader.close()
        await self.catalog.close()
        await self.client.aclose()

    def find(self, name: str) -> Shipped | None:
        return self.catalog.files.get(name)

    def reader(self, key: str) -> ShippedReader:
        found = self.readers.get(key)
        if found is None:
            found = self.readers[key] = ShippedReader(self.client, key)
        return found

    @property
    def bad_entries(self) -> int:
        return sum(r.bad_entries for r in self.readers.values()) + self.cursor_bad_entries

    def stats(self) -> dict[str, object]:
        """This worker's fleet values for /metrics."""
        cat = self.catalog
        return {"files": len(cat.files), "readers": sum(r.active for r in self.readers.values()),
                "up": int(cat.problem is None),
                "redis_errors": cat.errors + sum(r.errors for r in self.readers.values()),
                "bad_entries": self.bad_entries, "bad_keys": cat.bad_keys,
                "hosts": dict(cat.hosts), "shippers": cat.shippers}


async def start_shipped(fleet: Fleet, shipped: Shipped, params: StreamParams) -> Start:
    """Where the stream starts (before the response: Redis may not answer)."""
    return await _start(fleet.client, shipped, params)


async def run_shipped_stream(fleet: Fleet, shipped: Shipped, start: Start,
                             params: StreamParams, cfg: StreamConfig, stopping: asyncio.Event,
                             send: Send, stats: StreamStats) -> None:
    """Send one shipped file's stream until the client leaves, `follow=0` reaches the end,
    or the server stops."""
    cursor, backlog, notes = start
    out = _Framer(params, stats)
    first = opening(cfg.retry_ms) + id_only(cursor.event_id) if out.sse else b""
    for n, data in notes:
        first += out.notice(n, data)
    for lines, event_id in backlog:
        first += out.lines(lines, event_id)
    await send(first)
    stats.bytes += len(first)
    reader = fleet.reader(shipped.key)
    if params.follow:
        reader.subscribe(cursor)
    try:
        await _pump(cursor, out, params.follow, cfg.heartbeat_s, stopping, send, shipped.key)
        if stopping.is_set() and out.sse:
            await send(notice("bye", {"file": shipped.full_name,
                                      "reason": "server shutting down"},
                              retry_ms=cfg.restart_retry_ms))
    finally:
        fleet.cursor_bad_entries += cursor.bad_entries
        if params.follow:
            await reader.unsubscribe(cursor)


class _Framer:
    def __init__(self, params: StreamParams, stats: StreamStats) -> None:
        self.sse = params.format == "sse"
        self.raw = params.raw
        self.filter = params.filter
        self.stats = stats
        self.hidden = False  # a filter hid lines since the last id sent

    def lines(self, lines: list[str], event_id: str) -> bytes:
        if self.filter is not None:
            lines = self.filter.select(lines)
        if not lines:
            self.hidden = True
            return b""
        self.hidden = False
        self.stats.lines += len(lines)
        return data_event(event_id, lines) if self.sse else text_lines(lines, self.raw)

    def notice(self, name: str, data: dict[str, object], event_id: str | None = None) -> bytes:
        self.stats.notices[name] = self.stats.notices.get(name, 0) + 1
        if name == "dropped" and isinstance(data.get("lines"), int):
            self.stats.dropped += cast(int, data["lines"])
        return notice(name, data, event_id) if self.sse else b""

    def step(self, s: Step) -> bytes:
        if s.lines is not None:
            return self.lines(s.lines, s.event_id)
        assert s.notice is not None
        return self.notice(s.notice, s.data, s.event_id)

    def heartbeat(self, cursor: ShippedCursor) -> bytes:
        if self.hidden:
            self.hidden = False
            return b": ping\n" + id_only(cursor.event_id)
        return comment("ping")


async def _pump(cursor: ShippedCursor, out: _Framer, follow: bool, heartbeat_s: float,
                stopping: asyncio.Event, send: Send, key: str) -> None:
    stats = out.stats
    last_sent = time.monotonic()
    while not stopping.is_set():
        try:
            steps = await cursor.steps()
        except (RedisError, OSError) as e:
            log.warning("fleet: reading %s: %s: %s", key, type(e).__name__, e)
            steps = []
            await _wait(cursor.wake, stopping, RETRY_S)
        payload = b"".join(out.step(s) for s in steps)
        if payload:
            await send(payload)
            stats.bytes += len(payload)
            stats.batches += 1
            last_sent = time.monotonic()
            continue
        if cursor.lagging:
            continue
        if not follow:
            return
        cursor.wake.clear()
        if cursor.queue:
            continue
        left = max(0.0, last_sent + heartbeat_s - time.monotonic())
        if not await _wait(cursor.wake, stopping, left) and out.sse:
            beat = out.heartbeat(cursor)
            await send(beat)
            stats.heartbeats += 1
            stats.bytes += len(beat)
            last_sent = time.monotonic()


async def _wait(event: asyncio.Event, stopping: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` or the stop, at most `timeout`: whether either came."""
    waits = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopping.wait())}
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in waits:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waits, return_exceptions=True)
    return bool(done)


async def _start(client: aredis.Redis, shipped: Shipped, params: StreamParams) -> Start:
    """The stream's place (resume id, or the end after its backlog), its backlog as
    (lines, id) oldest first, and notices to send first."""
    name = shipped.full_name
    top = await _entries(client.xrevrange(shipped.key, "+", "-", count=1))
    epoch, end, end_id = (top[0].epoch, top[0].next, format_id(top[0].epoch, top[0].number)) \
        if top else (0, 0, "0-0")
    notes: Notes = []
    if params.last_id is not None:
        place = parse_id(params.last_id)
        if place is None:
            notes.append(("reset", {"file": name, "reason": "not an id of a shipped stream"}))
        elif place[0] != epoch:
            notes.append(("reset", {"file": name, "reason":
                                    "the shipped stream began again since (Redis lost it)"}))
        elif place[1] > end:
            notes.append(("reset", {"file": name, "reason": "not a place in this stream"}))
        else:
            first = await _entries(client.xrange(shipped.key, "-", "+", count=1))
            cursor = ShippedCursor(client, shipped.key, name, epoch, place[1], "0-0")
            if first and first[0].number > place[1]:
                notes.append(("dropped", {
                    "file": name, "lines": first[0].number - place[1], "bytes": None,
                    "reason": "trimmed from Redis ([ship] maxlen) before the resume"}))
                cursor.number = first[0].number
            else:  # read from the entry that holds the place on
                holder = await _entries(client.xrevrange(
                    shipped.key, format_id(epoch, place[1]), "-", count=1))
                if holder:
                    cursor.after = format_id(holder[0].epoch, holder[0].number - 1) \
                        if holder[0].number > 0 else "0-0"
                    if holder[0].number == 0 and epoch > 0:
                        cursor.after = f"{epoch - 1}-18446744073709551615"
            return cursor, [], notes
    backlog = await _backlog(client, shipped, params, end_id)
    return ShippedCursor(client, shipped.key, name, epoch, end, end_id), backlog, notes


async def _backlog(client: aredis.Redis, shipped: Shipped, params: StreamParams,
                   end_id: str) -> Events:
    """The last `n` lines (that match, with a filter) before `end_id`, or with `since`
    every line shipped since then, as events oldest first. Reads at most BACKLOG_ENTRIES
    entries back."""
    want = params.n if params.since is None else BACKLOG_ENTRIES * 1000
    if want <= 0 or end_id == "0-0":
        return []
    events: Events = []
    count = 0
    read = 0
    upper = end_id
    since_ms = None if params.since is None else params.since * 1000
    f = params.filter
    while count < want and read < BACKLOG_ENTRIES:
        got = await _entries(client.xrevrange(shipped.key, upper, "-", count=BACK_COUNT))
        if not got:
            break
        for e in got:
            read += 1
            if since_ms is not None and e.t < since_ms:
                return _oldest_first(events, want)
            if e.lines is None:
                continue
            lines = e.lines if f is None else f.select(e.lines)
            if lines:
                events.append((lines, format_id(e.epoch, e.next)))
                count += len(lines)
        last = got[-1]
        if last.number == 0:
            break
        upper = f"({format_id(last.epoch, last.number)}"
    return _oldest_first(events, want)


def _oldest_first(events: Events, want: int) -> Events:
    """Events newest first, cut to the last `want` lines, oldest first."""
    out: Events = []
    left = want
    for lines, event_id in events:
        if left <= 0:
            break
        out.append((lines[-left:], event_id))
        left -= len(out[-1][0])
    out.reverse()
    return out


async def _entries(call: Awaitable[object]) -> list[Entry]:
    raw = cast(Raw, await call)
    return [e for entry_id, fields in raw if (e := parse_entry(entry_id, fields)) is not None]



class ShippedSource:
    """A shipped file in a stream of several files (`logtail.streaming.multi.OtherSource`):
    its steps are read by a task of its own into a short queue the stream polls."""

    QUEUE_STEPS = 64  # steps read ahead at most

    def __init__(self, fleet: Fleet, shipped: Shipped, params: StreamParams) -> None:
        self.fleet = fleet
        self.shipped = shipped
        self.params = params
        self.cursor: ShippedCursor | None = None
        self._backlog: Events = []
        self._notes: Notes = []
        self.ready: deque[OtherLines | Notice] = deque()
        self.finished = False
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    async def open(self, last_id: str | None) -> None:
        """Find the start (may raise RedisError: before the response, for a 503)."""
        params = replace(self.params, last_id=last_id)
        self.cursor, self._backlog, self._notes = await _start(self.fleet.client,
                                                                self.shipped, params)

    def opened(self) -> tuple[list[Notice], list[OtherLines]]:
        return ([Notice(n, data) for n, data in self._notes],
                [OtherLines(lines, event_id) for lines, event_id in self._backlog])

    def event_id(self) -> str:
        assert self.cursor is not None
        return self.cursor.event_id

    def attach(self, wake: asyncio.Event) -> None:
        assert self.cursor is not None
        self._wake = wake
        if self.params.follow:
            self.fleet.reader(self.shipped.key).subscribe(self.cursor)
        self._task = asyncio.get_running_loop().create_task(
            self._read(), name=f"logtail-shipped-{self.shipped.key}")

    def poll(self) -> OtherLines | Notice | None:
        if self.ready:
            item = self.ready.popleft()
            self._room.set()
            return item
        return END if self.finished else None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.cursor is not None:
            self.fleet.cursor_bad_entries += self.cursor.bad_entries
            if self.params.follow:
                await self.fleet.reader(self.shipped.key).unsubscribe(self.cursor)

    async def _read(self) -> None:
        cursor = self.cursor
        assert cursor is not None and self._wake is not None
        while True:
            while len(self.ready) >= self.QUEUE_STEPS:
                self._room.clear()
                await self._room.wait()
            try:
                steps = await cursor.steps()
            except (RedisError, OSError) as e:
                log.warning("fleet: reading %s: %s: %s", self.shipped.key, type(e).__name__, e)
                await asyncio.sleep(RETRY_S)
                continue
            for st in steps:
                self.ready.append(OtherLines(st.lines, st.event_id) if st.lines is not None
                                  else Notice(st.notice or "", st.data, st.event_id))
            if steps:
                self._wake.set()
                continue
            if cursor.lagging:
                continue
            if not self.params.follow:
                self.finished = True
                self._wake.set()
                return
            cursor.wake.clear()
            if not cursor.queue:
                await cursor.wake.wait()
