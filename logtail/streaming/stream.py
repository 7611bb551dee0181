"""One stream: start position (backlog or resume), then batches, notices and heartbeats.

The handler only wires parts together: the Cursor decides what comes next, `sse`
frames it, and Sanic's `send()` applies backpressure to this stream alone.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from logtail.config import StreamConfig
from logtail.files.follow import Follower
from logtail.files.generation import Batch, Generation, open_generation, placeholder
from logtail.files.position import IdCodec
from logtail.files.resume import FdBudget, matches, resolve
from logtail.files.tail import BacklogScan, line_end
from logtail.files.timestamps import shows_time, since_offset
from logtail.streaming.cursor import END, Cursor, Notice
from logtail.streaming.lineids import LineIds
from logtail.streaming.params import StreamParams
from logtail.streaming.scans import OneShot, ScanGate
from logtail.streaming.sse import comment, data_event, id_only, notice, opening, text_lines
from logtail.streaming.stats import StreamStats

__all__ = ["COALESCE_BYTES", "RawSocket", "Send", "StreamEnv", "heartbeat_ticker", "run_stream",
           "since_problem", "snapshot_cursor", "start_cursor"]

COALESCE_BYTES = 256 * 1024
COUNT_MAX_BYTES = 16 * 1024 * 1024  # a skipped gap larger than this is not counted in lines
Send = Callable[[bytes], Awaitable[None]]


@dataclass(slots=True, eq=False)
class StreamEnv:
    """What the streams of one app share."""

    cfg: StreamConfig
    codec: IdCodec
    stopping: asyncio.Event
    live: set[Cursor]  # cursors of running streams: shutdown and heartbeats reach them
    budget: FdBudget
    scans: ScanGate


class RawSocket(Protocol):
    """The connection under a stream, for writes that skip the response's own `send`: the
    server layer provides it, since it knows the framing and its own timeout clock."""

    def ready(self) -> bool:
        """Open, with nothing buffered: the client keeps up."""
        ...

    def frame(self, payload: bytes) -> bytes:
        """`payload` as it goes on the wire (an HTTP/1.1 chunk)."""
        ...

    def write(self, framed: bytes) -> None:
        """Write it, and tell the server the response made progress."""
        ...


class Framer:
    """Turns batches and notices into bytes for one stream's format and filter."""

    def __init__(self, params: StreamParams) -> None:
        self.sse = params.format == "sse"
        self.raw = params.raw
        self.filter = params.filter
        self.hidden_id: str | None = None  # id past lines the filter hid, not yet sent
        self.ids = LineIds() if params.ids and self.sse else None  # `line-ids:` per batch
        self.kind = ("sse-ids" if self.ids else "sse") if self.sse \
            else "raw" if self.raw else "text"

    def batch(self, b: Batch, stats: StreamStats) -> bytes:
        if self.filter is None:
            ids = self.ids
            payload = b.encoded(self.kind, lambda: text_lines(b.lines.text, self.raw)
                                if not self.sse else data_event(b.id, b.lines.text)
                                if ids is None else data_event(b.id, b.lines.text, ids.field(b)))
            stats.lines += b.lines.count
            return payload
        lines = self.filter.apply(b.lines)
        if not lines:
            self.hidden_id = b.id
            return b""
        self.hidden_id = None
        stats.lines += len(lines)
        if not self.sse:
            return text_lines(lines, self.raw)
        return data_event(b.id, lines, self.ids.filtered(b, lines) if self.ids else None)

    def chunk(self, b: Batch, stats: StreamStats, frame: Callable[[bytes], bytes]) -> bytes:
        """The batch framed for the socket, built once per batch for all unfiltered streams."""
        if self.filter is None:
            key = self.kind + "-chunk"
            if b.is_encoded(key):
                stats.lines += b.lines.count
                return b.encoded(key, bytes)
            payload = self.batch(b, stats)
            return b.encoded(key, lambda: frame(payload))
        payload = self.batch(b, stats)
        return frame(payload) if payload else b""

    def notice(self, n: Notice) -> bytes:
        if not self.sse:
            return b""
        return notice(n.name, n.data, n.event_id)

    def heartbeat(self) -> bytes:
        if not self.sse:
            return b""
        if self.hidden_id is not None:
            hidden, self.hidden_id = self.hidden_id, None
            return b": ping\n" + id_only(hidden)
        return comment("ping")


async def _backlog_start(gen: Generation, end: int, params: StreamParams, env: StreamEnv,
                         ip: str) -> tuple[int, bool]:
    """Where the backlog starts, and whether `max_backlog_bytes` cut it short. The scan
    runs in the scan pool, in turns with other clients' scans (see `logtail.streaming.scans`)."""
    if params.n <= 0 or end <= 0 or gen.fd < 0:
        return end, False
    fd = os.dup(gen.fd)  # the generation may be closed while a thread reads
    f = params.filter
    scan = BacklogScan(fd, end, params.n, env.cfg.max_line_bytes, f.match if f else None,
                       env.cfg.max_backlog_bytes, f.block_search() if f else None)
    await env.scans.run(ip, scan, lambda: os.close(fd))
    return scan.start, scan.limited


async def _fresh_start(name: str, gen: Generation, end: int, params: StreamParams,
                       env: StreamEnv, ip: str) -> tuple[int, Notice | None]:
    """Where a stream without a resume position starts: at the first line written at or
    after `since` (found by binary search in the scan pool; never before the current
    file's start, and at most `max_resume_bytes` back from `end`), else at its backlog."""
    since = params.since
    if since is None:
        offset, limited = await _backlog_start(gen, end, params, env, ip)
        return offset, _limited(name, params, env.cfg) if limited else None
    if end <= 0 or gen.fd < 0:
        return end, None
    fd = os.dup(gen.fd)  # the generation may be closed while a thread reads
    bound = env.cfg.max_resume_bytes
    scan = OneShot(lambda: since_offset(fd, end, since, bound))
    await env.scans.run(ip, scan, lambda: os.close(fd))
    offset, skipped = scan.result
    if not skipped:
        return offset, None
    return offset, Notice("dropped", {
        "file": name, "lines": None, "bytes": skipped,
        "reason": "since is more than stream.max_resume_bytes back: the stream starts that "
                  "far before the end"})


async def since_problem(follower: Follower, params: StreamParams, env: StreamEnv,
                        ip: str) -> str | None:
    """Why a stream cannot start at `since` (for a 422 before the response starts): the
    file has lines, and none in its first MiB shows a recognisable timestamp."""
    if params.since is None or params.last_id is not None:
        return None

    def probe() -> bool | None:
        gen = open_generation(follower.path, env.codec)
        if gen is None:
            return None
        try:
            return shows_time(gen.fd, line_end(gen.fd, gen.size()))
        finally:
            gen.close()

    scan = OneShot(probe)
    await env.scans.run(ip, scan, lambda: None)
    if scan.result is False:
        return "no line of this file shows a recognisable timestamp (in its first MiB)"
    return None


def _count_lines(gen: Generation, start: int, end: int) -> int | None:
    """Lines in a skipped gap, if it is small enough to count in passing."""
    if end - start > COUNT_MAX_BYTES:
        return None
    return gen.read(start, end - start).count(b"\n")


def _limited(name: str, params: StreamParams, cfg: StreamConfig) -> Notice:
    return Notice("limited", {
        "file": name, "n": params.n, "max_backlog_bytes": cfg.max_backlog_bytes,
        "reason": "the backlog reads at most stream.max_backlog_bytes back; older lines "
                  "are not in it"})


async def start_cursor(name: str, follower: Follower, params: StreamParams, env: StreamEnv,
                        ip: str) -> Cursor:
    """Where the stream begins: a resume position, or the start of the backlog."""
    cfg = env.cfg
    notices: list[Notice] = []
    gen, offset, line_no = follower.latest(), -1, None
    older: list[tuple[Generation, int]] | None = None  # None: from the follower (fresh start)
    if params.last_id is not None:
        pos = env.codec.parse_all(params.last_id)
        found = (resolve(pos, follower, env.budget) if pos is not None
                 else "not an id this server made")
        if isinstance(found, str):
            notices.append(Notice("reset", {"file": name, "reason": found}))
        elif found.pending_bytes > cfg.max_resume_bytes:
            skipped = found.gen.published - found.offset
            try:
                lines = (await asyncio.to_thread(_count_lines, found.gen, found.offset,
                                                 found.gen.published)
                         if found.gen is gen else None)
            finally:
                found.close()
            notices.append(Notice("dropped", {
                "file": name, "lines": lines, "bytes": skipped,
                "reason": "resume gap over stream.max_resume_bytes"}))
        else:
            gen, offset, older = found.gen, found.offset, found.older
            if found.gone:
                notices.append(Notice("dropped", {
                    "file": name, "lines": None, "bytes": None,
                    "reason": "a rotated file this id names is gone: what was written to "
                              "it after the id is not known"}))
    if offset < 0:
        end = gen.published
        offset, note = await _fresh_start(name, gen, end, params, env, ip)
        line_no = gen.lines if offset == end else None
        if note is not None:
            notices.append(note)
    cursor = Cursor(follower if params.follow else None, gen, offset, line_no,
                    max_line_bytes=cfg.max_line_bytes, buffer_bytes=cfg.client_buffer_bytes,
                    name=name, older=older)
    for n in notices:
        cursor.push(n)
    return cursor


async def snapshot_cursor(name: str, follower: Follower, params: StreamParams,
                           env: StreamEnv, ip: str) -> Cursor:
    """follow=0: the file as it is now, read on its own descriptor; no follower runs."""
    cfg = env.cfg
    gen = open_generation(follower.path, env.codec)
    if gen is None:
        cursor = Cursor(None, _empty(follower), 0, None, max_line_bytes=cfg.max_line_bytes,
                        buffer_bytes=cfg.client_buffer_bytes, name=name)
        cursor.push(Notice("missing", {"file": name}))
        return cursor
    gen.transient = True  # the cursor closes it
    try:
        gen.published = line_end(gen.fd, gen.size())
        notices: list[Notice] = []
        offset = -1
        if params.last_id is not None:
            pos = env.codec.parse(params.last_id)
            if (pos is not None and pos.identity == gen.identity
                    and pos.offset <= gen.published and matches(gen.fd, pos)):
                offset = pos.offset
            if offset < 0:
                notices.append(Notice("reset", {"file": name, "reason": "cannot resume this id"}))
        if offset < 0:
            offset, note = await _fresh_start(name, gen, gen.published, params, env, ip)
            if note is not None:
                notices.append(note)
    except BaseException:
        gen.close()
        raise
    cursor = Cursor(None, gen, offset, None, max_line_bytes=cfg.max_line_bytes,
                    buffer_bytes=cfg.client_buffer_bytes, name=name)
    for n in notices:
        cursor.push(n)
    return cursor


def _empty(follower: Follower) -> Generation:
    return placeholder(follower.path, follower.codec, final=False)


async def run_stream(name: str, follower: Follower, params: StreamParams, env: StreamEnv,
                     send: Send, stats: StreamStats, ip: str,
                     sock: RawSocket | None = None) -> None:
    """Send one stream until the client leaves, `follow=0` ends, or the server stops.

    `ip` is the client's address: its backlog scans take turns with its other scans."""
    cfg, stopping, live = env.cfg, env.stopping, env.live
    framer = Framer(params)
    cursor: Cursor | None = None
    try:
        if params.follow:
            async with follower.hold():  # following, while the start is worked out
                cursor = await start_cursor(name, follower, params, env, ip)
                follower.attach(cursor)
            if follower.missing and cursor.gen.final and cursor.gen.next is None:
                cursor.told_missing = True
                cursor.push(Notice("missing", {"file": name}))
        else:
            cursor = await snapshot_cursor(name, follower, params, env, ip)
        # headers go out now, after the position is fixed: every line written after the
        # client sees the response is in the stream (text streams send no body yet)
        # (an SSE stream also gets its starting position as an id-only event, so a client
        # that drops before the first line still resumes exactly, without a fresh backlog)
        if params.format == "sse":
            start = b""
            if cursor.gen.fd >= 0 and not cursor.gen.closed:
                start = id_only(cursor.event_id())
            await send(opening(cfg.retry_ms) + start)
        else:
            await send(b"")
        live.add(cursor)
        if sock is not None and params.follow:
            cursor.direct = _direct_writer(framer, stats, sock)
            cursor.direct_beat = _direct_heartbeat(framer, stats, sock)
        await _pump(cursor, framer, cfg, send, stopping, stats)
        if stopping.is_set() and params.format == "sse":
            # the port already refuses connections (see logtail.http.app._before_stop): the
            # `retry:` makes an EventSource wait out a restart instead of the usual retry_ms
            await send(notice("bye", {"file": name, "reason": "server shutting down"},
                              retry_ms=cfg.restart_retry_ms))
    finally:
        if cursor is not None:
            live.discard(cursor)
            cursor.close()


async def _pump(cursor: Cursor, framer: Framer, cfg: StreamConfig, send: Send,
                stopping: asyncio.Event, stats: StreamStats) -> None:
    cursor.last_sent = time.monotonic()
    cursor.heartbeats = framer.sse
    while not stopping.is_set():
        item = await cursor.next()
        if stopping.is_set():
            return
        if item is None:
            payload = framer.heartbeat()
            stats.heartbeats += 1
        elif item is END:
            return
        elif isinstance(item, Notice):
            payload = framer.notice(item)
            stats.notices[item.name] = stats.notices.get(item.name, 0) + 1
            if item.name == "dropped" and isinstance(item.data.get("lines"), int):
                stats.dropped += item.data["lines"]  # type: ignore[operator]
        else:
            parts = [framer.batch(item, stats)]
            for more in cursor.take_ready(COALESCE_BYTES):
                parts.append(framer.batch(more, stats))
            stats.batches += len(parts)
            payload = parts[0] if len(parts) == 1 else b"".join(parts)
        if payload:
            await send(payload)
            stats.bytes += len(payload)
            cursor.last_sent = time.monotonic()
        else:
            # a filter hid it all: `next()` read the file without suspending, so let the
            # other streams run before reading on (a long range must not hold the loop)
            await asyncio.sleep(0)


def _direct_writer(framer: Framer, stats: StreamStats,
                   sock: RawSocket) -> Callable[[Batch], bool]:
    """Write a live batch straight to a client that keeps up (nothing buffered for it).
    Anything else (backpressure, notices, catch-up reads) goes the normal way, by `send`.
    `last_sent` is left alone on purpose: a heartbeat still goes out every `heartbeat_s`."""

    def write(b: Batch) -> bool:
        if not sock.ready():
            return False
        framed = framer.chunk(b, stats, sock.frame)
        if framed:
            sock.write(framed)
            stats.bytes += len(framed)
        stats.batches += 1
        return True

    return write


def _direct_heartbeat(framer: Framer, stats: StreamStats,
                      sock: RawSocket) -> Callable[[], bool] | None:
    """Write a heartbeat straight to a client that keeps up (text streams have none)."""
    if not framer.sse:
        return None

    def write() -> bool:
        if not sock.ready():
            return False
        payload = framer.heartbeat()
        sock.write(sock.frame(payload))
        stats.heartbeats += 1
        stats.bytes += len(payload)
        return True

    return write


async def heartbeat_ticker(live: set[Cursor], heartbeat_s: float) -> None:
    """Wake the streams that were quiet for `heartbeat_s`: one timer for all of them."""
    tick = min(1.0, heartbeat_s / 4)
    while True:
        await asyncio.sleep(tick)
        now = time.monotonic()
        due = now - heartbeat_s
        for cursor in live:
            if cursor.heartbeats and cursor.last_sent <= due and not cursor.beat_due:
                cursor.beat(now)

