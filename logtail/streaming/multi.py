"""One stream of several files (`/api/stream?file=a&file=b`): one connection for them all.

Each file has its own Cursor, attached to that file's follower exactly as a single-file
stream's is, so each file keeps every guarantee of its own stream (catch-up reads, bounded
queues, rotation, truncation). The cursors share one wake-up event, and this stream's task
takes their items in turns, so a busy file cannot starve a quiet one. Every event says its
file; every id is composite (see `merge.composite_id`): the place in each file, so a
resume gives every file exactly what it missed. The backlog is merged by time
(`merge.merge_backlogs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from logtail.files.follow import Follower
from logtail.files.generation import Batch
from logtail.streaming.cursor import END, Cursor, Notice
from logtail.streaming.lineids import LineIds
from logtail.streaming.merge import (
    MERGE_MAX_BYTES,
    Merged,
    Part,
    composite_id,
    merge_backlogs,
    parse_composite,
)
from logtail.streaming.params import StreamParams
from logtail.streaming.scans import OneShot
from logtail.streaming.sse import (
    comment,
    id_only,
    lines_data,
    lines_event,
    lines_head,
    notice,
    opening,
    tagged_lines,
)
from logtail.streaming.stats import StreamStats
from logtail.streaming.stream import (
    COALESCE_BYTES,
    RawSocket,
    Send,
    StreamEnv,
    snapshot_cursor,
    start_cursor,
)

__all__ = ["OtherLines", "OtherSource", "file_id", "run_multi"]


@dataclass(slots=True)
class OtherLines:
    """Lines of an `OtherSource`, and its id after them."""

    lines: list[str]
    event_id: str


class OtherSource(Protocol):
    """A file of the stream that no follower reads (a shipped file, read from Redis)."""

    def opened(self) -> tuple[list[Notice], list[OtherLines]]:
        """Where it starts (found before the response, as it may fail): notices to send
        first, and the backlog, oldest first."""
        ...

    def event_id(self) -> str:
        """Its place now."""
        ...

    def attach(self, wake: asyncio.Event) -> None:
        """Follow (or read to the end, with `follow=0`); set `wake` when `poll` has more."""
        ...

    def poll(self) -> OtherLines | Notice | None:
        """What it has ready now; END once `follow=0` has read it all."""
        ...

    async def close(self) -> None: ...


class _Framer:
    """Batches and notices of several files as one stream's bytes."""

    def __init__(self, params: StreamParams, ids: dict[str, str]) -> None:
        self.sse = params.format == "sse"
        self.raw = params.raw
        self.filter = params.filter
        self.line_ids = LineIds() if params.ids and self.sse else None
        self.ids = ids  # every file's place: the composite id is made of them
        self.hidden = False  # a filter hid lines since the last id sent

    def batch(self, name: str, cursor: Cursor, b: Batch, stats: StreamStats,
              moved: bool = False) -> bytes:
        """`b` as bytes for this stream. `moved`: written before the cursor takes it (the
        direct path, which takes only batches of the cursor's one generation): its id is
        the batch's own."""
        if moved or (not cursor.older and b.gen is cursor.gen):
            self.ids[name] = b.id
        else:
            self.ids[name] = cursor.event_id()
        if self.filter is None:  # the lines' encoding is made once, for every stream
            stats.lines += b.lines.count
            if not self.sse:
                return b.encoded("multi-raw" if self.raw else "multi-text",
                                 lambda: tagged_lines(name, b.lines.split(), self.raw))
            extra = self.line_ids.field(b) if self.line_ids is not None else None
            return lines_head(composite_id(self.ids), extra) + \
                b.encoded("multi-data", lambda: lines_data(name, b.lines.split()))
        lines = self.filter.apply(b.lines)
        return self._shown(name, lines, stats, lambda: (
            self.line_ids.filtered(b, lines) if self.line_ids is not None else None))

    def other(self, name: str, item: OtherLines, stats: StreamStats) -> bytes:
        """Lines of an `OtherSource`."""
        self.ids[name] = item.event_id
        lines = item.lines if self.filter is None else self.filter.select(item.lines)
        return self._shown(name, lines, stats)

    def _shown(self, name: str, lines: list[str], stats: StreamStats,
               extra: Callable[[], str | None] = lambda: None) -> bytes:
        """The event (or text) for the lines of `name` a filter left; none when it left
        none (the id then waits for the next event sent)."""
        if not lines:
            self.hidden = True
            return b""
        self.hidden = False
        stats.lines += len(lines)
        if not self.sse:
            return tagged_lines(name, lines, self.raw)
        return lines_event(composite_id(self.ids), name, lines, extra())

    def notice(self, n: Notice, name: str = "") -> bytes:
        """A notice; one with an id (an `OtherSource`'s, which count as places) moves it."""
        if n.event_id and name:
            self.ids[name] = n.event_id
            return notice(n.name, n.data, composite_id(self.ids)) if self.sse else b""
        return notice(n.name, n.data) if self.sse else b""

    def heartbeat(self) -> bytes:
        if not self.sse:
            return b""
        if self.hidden:
            self.hidden = False
            return b": ping\n" + id_only(composite_id(self.ids))
        return comment("ping")


async def run_multi(files: Mapping[str, Follower | OtherSource], params: StreamParams,
                    env: StreamEnv, send: Send, stats: dict[str, StreamStats], ip: str,
                    sock: RawSocket | None = None) -> None:
    """Send one stream of several files until the client leaves, `follow=0` has sent
    each file to its end, or the server stops. `stats` has one entry per file."""
    cfg = env.cfg
    cursors: dict[str, Cursor] = {}
    others = {n: f for n, f in files.items() if not isinstance(f, Follower)}
    followers = {n: f for n, f in files.items() if isinstance(f, Follower)}
    try:
        resume = parse_composite(params.last_id) if params.last_id else None
        first_notices: list[tuple[str, Notice]] = []
        backlogs: list[tuple[str, OtherLines]] = []
        for name, other in others.items():
            notes, backlog = other.opened()
            first_notices += [(name, n) for n in notes]
            backlogs += [(name, b) for b in backlog]
        await _start(followers, params, env, ip, cursors, resume)
        ids = {name: (f.event_id() if not isinstance(f, Follower) else
                      cursors[name].event_id() if cursors[name].gen.fd >= 0
                      and not cursors[name].gen.closed else "")
               for name, f in files.items()}
        framer = _Framer(params, ids)
        first = opening(cfg.retry_ms) if framer.sse else b""
        if framer.sse and any(ids.values()):
            first += id_only(composite_id(ids))
        first_notices += [(name, n) for name, c in cursors.items() for n in c.take_notices()]
        for name, n in first_notices:
            first += framer.notice(n)
            _count_notice(stats[name], n)
        for name, b in backlogs:  # shipped files' backlogs: file by file, before the rest
            first += framer.other(name, b, stats[name])
        await send(first)
        for c in cursors.values():
            env.live.add(c)
        await _merged_backlog(cursors, params, env, ip, framer, send, stats)
        sources: dict[str, Cursor | OtherSource] = {
            name: cursors[name] if isinstance(f, Follower) else f for name, f in files.items()}
        await _pump(sources, framer, env, send, stats, sock if params.follow else None)
        if env.stopping.is_set() and framer.sse:
            await send(notice("bye", {"files": list(files), "reason": "server shutting down"},
                              retry_ms=cfg.restart_retry_ms))
    finally:
        for c in cursors.values():
            env.live.discard(c)
            c.close()
        for other in others.values():
            await other.close()


def file_id(last_id: str | None, name: str) -> str | None:
    """What a stream's resume id says of one of its files: its part of a composite id;
    the whole id when it is not one (the file gets `reset`); None for a file it does not
    name (the file starts afresh)."""
    if last_id is None:
        return None
    resume = parse_composite(last_id)
    return resume.get(name) if resume is not None else last_id


async def _start(followers: dict[str, Follower], params: StreamParams, env: StreamEnv,
                 ip: str, cursors: dict[str, Cursor], resume: dict[str, str] | None) -> None:
    """A cursor per file, at its resume position or its backlog's start, attached to its
    follower (each follower held until all are: none idles out meanwhile)."""
    async with contextlib.AsyncExitStack() as holds:
        for name, follower in followers.items():
            # a file the id does not name starts fresh; not a composite id: each is `reset`
            last_id = resume.get(name) if resume is not None else params.last_id
            one = replace(params, last_id=last_id)
            if not params.follow:
                cursors[name] = await snapshot_cursor(name, follower, one, env, ip)
                continue
            await holds.enter_async_context(follower.hold())
            cursor = cursors[name] = await start_cursor(name, follower, one, env, ip)
            follower.attach(cursor)
            if follower.missing and cursor.gen.final and cursor.gen.next is None:
                cursor.told_missing = True
                cursor.push(Notice("missing", {"file": name}))


async def _merged_backlog(cursors: dict[str, Cursor], params: StreamParams, env: StreamEnv,
                          ip: str, framer: _Framer, send: Send,
                          stats: dict[str, StreamStats]) -> None:
    """What each file has before its follower's end, merged by time (in the scan pool),
    as far as `MERGE_MAX_BYTES` allows; the rest comes file by file, read as it goes."""
    parts: list[Part] = []
    budget = MERGE_MAX_BYTES
    for name, c in cursors.items():
        gen = c.gen
        size = gen.published - c.offset
        if gen.fd < 0 or gen.closed or size <= 0 or size > budget or c.catching_up_older():
            continue
        budget -= size
        parts.append(Part(name, os.dup(gen.fd), gen.identity, c.offset, gen.published,
                          c.older_positions()))
    if not parts:
        return
    f = params.filter

    def merge() -> Merged:
        return merge_backlogs(parts, framer.ids, env.codec, max_line_bytes=env.cfg.max_line_bytes,
                              keep=f.match if f else None, sse=framer.sse, raw=framer.raw,
                              line_ids=framer.line_ids is not None)

    def close() -> None:
        for p in parts:
            os.close(p.fd)

    scan = OneShot(merge)
    await env.scans.run(ip, scan, close)
    merged = scan.result
    for p in parts:
        if p.sent_to >= 0:
            cursors[p.name].skip_to(p.sent_to, p.lines)
    framer.ids.update(merged.ids)
    for name, count in merged.shown.items():
        stats[name].lines += count
    for payload in merged.payloads:
        await send(payload)
        _count_bytes(stats, cursors, len(payload))


async def _pump(sources: dict[str, Cursor | OtherSource], framer: _Framer, env: StreamEnv,
                send: Send, stats: dict[str, StreamStats], sock: RawSocket | None) -> None:
    """Take the sources' items in turns; wait on their shared event when none has one.
    While it waits, a live batch that fits goes straight to a client that keeps up
    (`_direct`), as for a single-file stream."""
    wake = asyncio.Event()
    order = list(sources.items())
    cursors = {n: c for n, c in order if isinstance(c, Cursor)}
    now = _attach(order, cursors, wake, framer, stats, sock)
    # the heartbeat ticker reaches cursors only: a stream of other sources alone keeps time
    beat_s = env.cfg.heartbeat_s if framer.sse and len(cursors) < len(order) else None
    last_sent = now
    done: set[str] = set()
    turn = 0
    stopping = env.stopping
    while not stopping.is_set() and len(done) < len(order):
        payload, name = b"", ""
        item: Batch | Notice | OtherLines | None = None
        for k in range(len(order)):
            name, src = order[(turn + k) % len(order)]
            if name in done:
                continue
            item = src.poll()
            if item is not None:
                turn = (turn + k + 1) % len(order)
                break
        if item is None:
            due = beat_s is not None and time.monotonic() - last_sent >= beat_s
            if due or any(c.beat_due for c in cursors.values()):
                for c in cursors.values():
                    c.beat_due = False
                payload = framer.heartbeat()
                stats[order[0][0]].heartbeats += 1
            else:
                await _park(cursors, wake, stopping,
                            None if beat_s is None else last_sent + beat_s - time.monotonic())
                continue
        elif item is END:
            done.add(name)
            continue
        else:
            payload = _frame(name, item, framer, cursors, stats[name])
        if payload:
            await send(payload)
            _count_bytes(stats, cursors, len(payload))
            last_sent = time.monotonic()
        else:
            await asyncio.sleep(0)  # a filter hid it all: let other streams run


def _attach(order: list[tuple[str, Cursor | OtherSource]], cursors: dict[str, Cursor],
            wake: asyncio.Event, framer: _Framer, stats: dict[str, StreamStats],
            sock: RawSocket | None) -> float:
    """Every source sets `wake`; cursors may write live batches directly. Returns now."""
    now = time.monotonic()
    for name, src in order:
        if not isinstance(src, Cursor):
            src.attach(wake)
            continue
        src.join(wake)
        src.heartbeats = framer.sse
        src.last_sent = now
        if sock is not None:
            src.direct = _direct(name, src, cursors, framer, stats, sock)
            src.direct_beat = _direct_beat(cursors, framer, stats, sock) if framer.sse else None
    return now


def _frame(name: str, item: Batch | Notice | OtherLines, framer: _Framer,
           cursors: dict[str, Cursor], stats: StreamStats) -> bytes:
    if isinstance(item, Notice):
        _count_notice(stats, item)
        return framer.notice(item, name)
    if isinstance(item, OtherLines):
        stats.batches += 1
        return framer.other(name, item, stats)
    c = cursors[name]
    parts = [framer.batch(name, c, item, stats)]
    for more in c.take_ready(COALESCE_BYTES):
        parts.append(framer.batch(name, c, more, stats))
    stats.batches += len(parts)
    return b"".join(parts)


async def _park(cursors: dict[str, Cursor], wake: asyncio.Event, stopping: asyncio.Event,
                timeout: float | None) -> None:
    """Wait for any source; meanwhile each cursor counts as parked (its batches may go
    direct). With a `timeout` (other sources, which no ticker or stop reaches), wait for
    the stop too."""
    wake.clear()
    for c in cursors.values():
        c.parked = True
    try:
        if timeout is None:
            await wake.wait()
            return
        waits = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopping.wait())}
        try:
            await asyncio.wait(waits, timeout=max(0.0, timeout),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in waits:
                t.cancel()
    finally:
        for c in cursors.values():
            c.parked = False


def _direct(name: str, cursor: Cursor, cursors: dict[str, Cursor], framer: _Framer,
            stats: dict[str, StreamStats], sock: RawSocket) -> Callable[[Batch], bool]:
    """Write a live batch of `name` straight to a client that keeps up (see
    `stream._direct_writer`); the stream's task stays asleep."""
    file_stats = stats[name]

    def write(b: Batch) -> bool:
        if cursor.older or b.gen is not cursor.gen or not sock.ready():
            return False  # (a late line of a rotated file: its id is the cursor's to make)
        payload = framer.batch(name, cursor, b, file_stats, moved=True)
        if payload:
            sock.write(sock.frame(payload))
            _count_bytes(stats, cursors, len(payload))
        file_stats.batches += 1
        return True

    return write


def _direct_beat(cursors: dict[str, Cursor], framer: _Framer, stats: dict[str, StreamStats],
                 sock: RawSocket) -> Callable[[], bool]:
    """A heartbeat straight to a client that keeps up: one for the stream, not per file."""
    first = stats[next(iter(stats))]

    def write() -> bool:
        if not sock.ready():
            return False
        payload = framer.heartbeat()
        sock.write(sock.frame(payload))
        first.heartbeats += 1
        _count_bytes(stats, cursors, len(payload))
        return True

    return write


def _count_notice(stats: StreamStats, n: Notice) -> None:
    stats.notices[n.name] = stats.notices.get(n.name, 0) + 1
    if n.name == "dropped" and isinstance(n.data.get("lines"), int):
        stats.dropped += n.data["lines"]  # type: ignore[operator]


def _count_bytes(stats: dict[str, StreamStats], cursors: dict[str, Cursor], size: int) -> None:
    """Bytes sent count once, toward the stream's first file; every cursor has now sent."""
    stats[next(iter(stats))].bytes += size
    now = time.monotonic()
    for c in cursors.values():
        c.last_sent = now
