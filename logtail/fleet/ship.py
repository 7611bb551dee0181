"""`logtail ship`: follow the config's files and append their lines to Redis Streams.

Each file is followed by the server's own Follower and read by a Cursor, as a stream reads
it: the same lines (partial lines flushed after `stream.partial_line_s`, long lines cut at
`stream.max_line_bytes`), the same notices (rotation, truncation, a missing file, lines
lost while far behind), the same rotated files still written to, and the same bounded
memory (a shipper that falls behind reads the file from its place, in bounded chunks).
What a stream would send, the shipper appends to the file's Redis stream; the key and
entry format are `logtail.fleet.keys`'.

Exactly once: the shipper's place in the file (`pos`) is written in the entries, by the
same script call that adds them, and that call first checks that the stream still ends
with the entry the shipper wrote last. So Redis always holds the lines up to the place it
holds, and no more: a shipper killed at any instant starts again from that place. When
the stream ends elsewhere (Redis restarted from an older snapshot, or lost everything, or
a second shipper writes the same key), the shipper goes on from what Redis holds. Only
when Redis holds no place does it start afresh: at the last `[ship] maxlen` lines of the
current file, with a `reset` notice that says why and how many bytes it skipped.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from logtail import __version__
from logtail.config import Config, ConfigError
from logtail.files.follow import Follower
from logtail.files.generation import Batch, Generation
from logtail.files.lines import Lines
from logtail.files.position import IdCodec, Position
from logtail.files.resume import FdBudget, resolve
from logtail.files.sources import SourceSet
from logtail.files.tail import find_start
from logtail.files.watch import WatchRegistry
from logtail.fleet.keys import (
    HOSTS_KEY,
    SHIP_STATS_KEY,
    format_id,
    format_positions,
    parse_entry,
    parse_id,
    parse_positions,
    stream_key,
    valid_host,
)
from logtail.fleet.link import BACKOFF_CAP_S, RedisLink, wait_or
from logtail.streaming.cursor import END, Cursor, Notice

__all__ = ["FileShipper", "Shipper", "run_ship", "ship_host"]

log = logging.getLogger("logtail.fleet.ship")

COMMIT_BYTES = 1024 * 1024  # lines sent in one script call, at most (about)
# one entry's lines, at most (a longer line goes whole): a big entry is a listpack of its
# own in Redis, and this keeps it just inside jemalloc's 32 KiB size class (64 KiB entries
# land in the 80 KiB class: 20 % more memory per line)
ENTRY_CHARS = 31 * 1024
START_SCAN_BYTES = 256 * 1024 * 1024  # a fresh start reads back this far at most
STOP_GRACE_S = 5.0  # on shutdown, a write in flight gets this long to finish
# A trickle of lines waits this long for more before it is written: a script call costs
# the shipper far more CPU than a line does (1,000 single-line writes a second took about
# half a core with a call each, a fifth with this wait: bench/ship.py's rate phase).
# Under load batches are big and never wait.
LINGER_S = 0.02
LINGER_BELOW = 64 * 1024  # a batch this big goes at once


def ship_host(setting: str) -> str:
    """This host's name in Redis keys: `[ship] host`, or else the machine's hostname."""
    host = setting or socket.gethostname()
    if not valid_host(host):
        raise ConfigError(f"ship.host: the hostname {host!r} cannot name Redis keys (1-253 "
                          "characters of A-Z a-z 0-9 . _ -): set [ship] host")
    return host


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Place:
    """Where a file's stream ends in Redis."""

    last_id: str  # the id of its last entry ("" when it has none)
    epoch: int  # of the ids to come
    next: int  # the number of the next item
    pos: str | None  # the shipper's place after the last entry; None when none is known
    why: str = ""  # when `pos` is None: why


class _Outcome(enum.Enum):
    STOP = 1
    RESYNC = 2  # Redis holds another place: go on from it


class FileShipper:
    """Ships one file: reads where Redis stands, follows from there, appends, repeats."""

    def __init__(self, name: str, follower: Follower, link: RedisLink, host: str,
                 config: Config, budget: FdBudget) -> None:
        self.name = name
        self.key = stream_key(host, name)
        self.follower = follower
        self.link = link
        self.maxlen = config.ship.maxlen
        self.stream_cfg = config.stream
        self.budget = budget
        self.stopping = asyncio.Event()
        self.cursor: Cursor | None = None
        self.lines = 0  # shipped by this process
        self.entries = 0

    def stop(self) -> None:
        self.stopping.set()
        if self.cursor is not None:
            self.cursor.stop()

    def lag_bytes(self) -> int:
        """Bytes written to the file that are not shipped yet (read, or not even read)."""
        cursor = self.cursor
        if cursor is None:
            return 0
        try:
            return max(0, cursor.gen.size() - cursor.offset)
        except OSError:
            return 0

    async def run(self) -> None:
        resync_delay = 0.0
        async with self.follower.hold():  # following, for as long as this runs
            while not self.stopping.is_set():
                place = await self._read_place()
                if place is None:
                    return
                cursor = self.cursor = await self._open(place)
                if self.stopping.is_set():
                    cursor.stop()
                self.follower.attach(cursor)
                shipped = self.entries
                try:
                    outcome = await self._pump(cursor, place)
                finally:
                    self.cursor = None
                    cursor.close()
                if outcome is _Outcome.STOP:
                    return
                # twice in a row without a write between: something else writes this key
                resync_delay = 0.0 if self.entries > shipped else \
                    min(BACKOFF_CAP_S, max(0.1, resync_delay * 2))
                if resync_delay:
                    await wait_or(self.stopping, resync_delay)

    # -- where Redis stands ----------------------------------------------------------------

    async def _read_place(self) -> Place | None:
        client = self.link.client
        ok, entries = await self.link.call(lambda: client.xrevrange(self.key, count=1),
                                           self.name, self.stopping)
        if not ok:
            return None
        if not entries:
            ok, top = await self.link.call(self._top_id, self.name, self.stopping)
            if not ok:
                return None
            # ids must pass whatever the stream had (XADD refuses lower ones)
            epoch = max(_now_ms(), (top or (0, 0))[0] + 1)
            return Place("", epoch, 0, None, "no place in Redis (a first run, or Redis "
                                              "lost this file's stream)")
        raw_id, fields = entries[0]
        return self._place_of(_text(raw_id), fields or {})

    async def _top_id(self) -> tuple[int, int] | None:
        """The last id an empty stream had, if the key exists."""
        if not await self.link.client.exists(self.key):
            return None
        info = await self.link.client.xinfo_stream(self.key)
        return parse_id(info.get("last-generated-id", b"0-0"))

    def _place_of(self, last_id: str, fields: Mapping[Any, Any]) -> Place:
        entry = parse_entry(last_id, fields)
        if entry is None:
            ident = parse_id(last_id) or (_now_ms(), 0)
            return Place(last_id, ident[0], ident[1] + 1, None,
                         "the stream's last entry is not a shipper's")
        return Place(last_id, entry.epoch, entry.next, entry.pos)

    # -- where the file is read from ---------------------------------------------------------

    async def _open(self, place: Place) -> Cursor:
        """A cursor at the place Redis holds, or starting afresh, with notices first."""
        follower = self.follower
        notices: list[Notice] = []
        gen, offset = follower.latest(), -1
        older: list[tuple[Generation, int]] | None = None
        why = place.why
        positions = parse_positions(place.pos) if place.pos is not None else None
        if place.pos is not None and positions is None:
            why = f"the stored place {place.pos!r} is not one this shipper wrote"
        elif positions == ():  # the file did not exist: all of it is new
            offset = 0
        elif positions is not None:
            found = resolve(positions, follower, self.budget)
            if isinstance(found, str):
                why = found
            else:
                gen, offset, older = found.gen, found.offset, found.older
                if found.gone:
                    notices.append(Notice("dropped", {
                        "lines": None, "bytes": None,
                        "reason": "a rotated file the shipper still read is gone: what was "
                                  "written to it after its place is not known"}))
                log.info("%s: resuming at byte %d of %s (%d bytes to catch up)", self.name,
                         offset, gen.path.name, found.pending_bytes)
        if offset < 0:
            offset = await self._fresh_start(gen)
            notices.append(Notice("reset", {"reason": why, "skipped_bytes": offset}))
            log.info("%s: starting afresh at byte %d of %s: %s", self.name, offset,
                     gen.path.name, why)
        cfg = self.stream_cfg
        cursor = Cursor(follower, gen, offset, None, max_line_bytes=cfg.max_line_bytes,
                        buffer_bytes=cfg.client_buffer_bytes, name=self.name, older=older)
        if positions == () and follower.missing and gen.final and gen.next is None:
            cursor.told_missing = True  # shipped before this restart
        for n in notices:
            cursor.push(n)
        return cursor

    async def _fresh_start(self, gen: Generation) -> int:
        """Where the last `maxlen` lines of the file begin (reading back a bounded way)."""
        if gen.fd < 0 or gen.closed:
            return 0
        fd = os.dup(gen.fd)  # the follower may close its own while the thread reads
        try:
            return await asyncio.to_thread(find_start, fd, gen.published, self.maxlen,
                                           self.stream_cfg.max_line_bytes, None,
                                           START_SCAN_BYTES)
        finally:
            os.close(fd)

    # -- shipping --------------------------------------------------------------------------

    async def _pump(self, cursor: Cursor, place: Place) -> _Outcome:
        epoch, number, expected = place.epoch, place.next, place.last_id
        while True:
            item = await cursor.next()
            if item is END or self.stopping.is_set():
                return _Outcome.STOP
            if item is None:
                continue
            items: list[Batch | Notice] = [item]
            if isinstance(item, Batch):
                if item.size < LINGER_BELOW:
                    await wait_or(self.stopping, LINGER_S)
                items.extend(cursor.take_ready(COMMIT_BYTES))
            pos = format_positions(_positions(cursor))
            t = str(_now_ms())
            args: list[str] = []
            last_id, lines = expected, 0
            for it in _merged(items):
                for kind, first, second, count in _entries(it):
                    last_id = format_id(epoch, number)
                    args += [last_id, kind, first, second, t, pos]
                    number += count
                    lines += count if kind == "l" else 0
            minid = format_id(epoch, max(0, number - self.maxlen))
            ok, done = await self.link.call(self.link.commit(self.key, expected, minid, args),
                                            self.name, self.stopping)
            if not ok or done is None:
                return _Outcome.STOP
            if not done.ok and done.last_id != last_id:  # (equal: an earlier try went in)
                holds = f"ends at {done.last_id}" if done.last_id else "is empty or gone"
                log.warning("%s: Redis's stream %s %s, not ending at %s as this shipper "
                            "wrote it (Redis lost writes, or another shipper writes this "
                            "key): going on from what Redis holds", self.name, self.key,
                            holds, expected or "nothing")
                return _Outcome.RESYNC
            expected = last_id
            self.entries += len(args) // 6
            self.lines += lines


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _positions(cursor: Cursor) -> list[Position]:
    """The cursor's place: in each older generation still written to, then its own."""
    out = [g.position(p.offset) for g, p in cursor.older.items() if g.fd >= 0 and not g.closed]
    if cursor.gen.fd >= 0 and not cursor.gen.closed:
        out.append(cursor.gen.position(cursor.offset))
    return out


def _merged(items: list[Batch | Notice]) -> Iterator[Lines | Notice]:
    """The items, with batches that follow one another as one run of lines: a trickle of
    one-line batches makes one entry, not one each."""
    run: list[Lines] = []
    for item in items:
        if isinstance(item, Batch):
            run.append(item.lines)
            continue
        if run:
            yield _join(run)
            run = []
        yield item
    if run:
        yield _join(run)


def _join(run: list[Lines]) -> Lines:
    if len(run) == 1:
        return run[0]
    return Lines("\n".join(lines.text for lines in run), sum(lines.count for lines in run))


def _entries(item: Lines | Notice) -> Iterator[tuple[str, str, str, int]]:
    """(kind, lines or notice, n or data, numbers taken) for each entry of an item."""
    if isinstance(item, Notice):
        data = {k: v for k, v in item.data.items() if k != "file"}
        yield "n", item.name, json.dumps(data, separators=(",", ":")), 1
        return
    text, count = item.text, item.count
    if len(text) <= ENTRY_CHARS:
        yield "l", text, str(count), count
        return
    start = 0
    while len(text) - start > ENTRY_CHARS:
        cut = text.rfind("\n", start, start + ENTRY_CHARS)
        if cut < 0:  # one line longer than an entry: it goes whole
            cut = text.find("\n", start + ENTRY_CHARS)
            if cut < 0:
                break
        n = text.count("\n", start, cut) + 1
        yield "l", text[start:cut], str(n), n
        start = cut + 1
    n = text.count("\n", start) + 1
    yield "l", text[start:], str(n), n


class Shipper:
    """Every file of the config (globs' matches as they come and go), one task each, and
    the host's heartbeat."""

    def __init__(self, config: Config, host: str) -> None:
        self.config = config
        self.host = host
        self.link = RedisLink(config.redis.url)
        self.budget = FdBudget()
        self.files: dict[str, tuple[FileShipper, asyncio.Task[None]]] = {}
        self.leaving: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> int:
        """Ship until `stop` is set; 0, or 1 if a file's task failed."""
        cfg = self.config
        registry = WatchRegistry(cfg.watch)
        codec = IdCodec(os.urandom(32))  # the followers' batch ids never leave this process
        sources = SourceSet.configured(cfg, codec, registry)
        names = ", ".join(f"{f.name}.*" if f.glob else f.name for f in cfg.files)
        log.info("logtail %s: shipping %s as host %s to %s (about %d lines kept per file)",
                 __version__, names, self.host, self.link.url, cfg.ship.maxlen)
        heartbeat = asyncio.create_task(self._heartbeat(stop), name="logtail-ship-heartbeat")
        failed = False
        try:
            sources.start()
            while not stop.is_set():
                self._reconcile(sources)
                failed = await self._wait(stop, sources) or failed
        finally:
            stop.set()
            await self._stop_all()
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await sources.close()
            await registry.close()
            await self.link.close()
        log.info("stopped: %s", ", ".join(f"{n} {fs.lines} lines"
                                          for n, (fs, _) in sorted(self.files.items())))
        return 1 if failed else 0

    def _reconcile(self, sources: SourceSet) -> None:
        """A shipper for every file listed now; none for those no longer listed."""
        for name, follower in sources.followers.items():
            current = self.files.get(name)
            if current is None or current[0].follower is not follower:
                if current is not None:
                    self._retire(name)
                fs = FileShipper(name, follower, self.link, self.host, self.config,
                                 self.budget)
                self.files[name] = (fs, asyncio.create_task(fs.run(), name=f"ship-{name}"))
        for name in [n for n in self.files if n not in sources.followers]:
            self._retire(name)

    def _retire(self, name: str) -> None:
        fs, task = self.files.pop(name)
        fs.stop()
        self.leaving.add(task)
        task.add_done_callback(self.leaving.discard)

    async def _wait(self, stop: asyncio.Event, sources: SourceSet) -> bool:
        """Until stopped, the list changes, or a file's task ends; whether one failed."""
        helpers = [asyncio.create_task(stop.wait()),
                   asyncio.create_task(sources.wait_change(sources.version))]
        try:
            await asyncio.wait([*helpers, *(t for _, t in self.files.values())],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for h in helpers:
                h.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        failed = False
        for name, (_, task) in list(self.files.items()):
            if task.done() and not stop.is_set():
                error = None if task.cancelled() else task.exception()
                log.error("%s: shipping stopped: %s", name, error or "it ended", exc_info=error)
                failed = True
                stop.set()
        return failed

    async def _stop_all(self) -> None:
        for fs, _ in self.files.values():
            fs.stop()
        tasks = [*(t for _, t in self.files.values()), *self.leaving]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in pending:
            task.cancel()  # a write in flight: Redis holds it or not, the script's check knows
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """`logtail:hosts` host -> now, every `heartbeat_s`: also how Redis going away
        is noticed while every file is quiet. With it, each file's counts for a server's
        /metrics (`SHIP_STATS_KEY`)."""
        client = self.link.client

        async def beat() -> None:
            stats = self.stats()
            async with client.pipeline(transaction=False) as p:
                p.hset(HOSTS_KEY, self.host, str(int(time.time())))
                for field, value in stats.items():
                    p.hset(SHIP_STATS_KEY, field, value)
                await p.execute()

        while True:
            await self.link.attempt(beat, "heartbeat")
            if await wait_or(stop, self.config.ship.heartbeat_s):
                return

    def stats(self) -> dict[str, str]:
        """`<host>:<name>` -> JSON of what this shipper did for the file since it started."""
        return {f"{self.host}:{name}": json.dumps({
            "entries": fs.entries, "lines": fs.lines, "lag_bytes": fs.lag_bytes(),
            "errors": self.link.errors.get(name, 0)}, separators=(",", ":"))
            for name, (fs, _) in self.files.items()}


async def _main(config: Config, host: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await Shipper(config, host).run(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run_ship(config: Config) -> int:
    """`logtail ship`: ship until SIGTERM or SIGINT; the exit code."""
    return asyncio.run(_main(config, ship_host(config.ship.host)))
