"""The Follower: one per configured file per worker, the only reader of its new bytes.

It wakes when the directory watcher (or the periodic safety net) pokes it, reads what
was appended with positional reads, publishes complete lines as one batch to every
subscribed stream, and notices rotation (the path names another inode), deletion and
truncation. It runs only while someone watches: with no subscribers it closes its
files and stops, so an unwatched log costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from logtail.files.generation import Batch, Generation, open_generation, placeholder
from logtail.files.lines import Lines, LineSplitter
from logtail.files.position import IdCodec, Identity, check_at
from logtail.files.tail import line_end

__all__ = ["Follower", "Subscriber"]

log = logging.getLogger("logtail.files.follow")

CHUNK = 1024 * 1024  # one read
BUDGET = 4 * 1024 * 1024  # read at most this much before letting other tasks run
MAX_RETIRED = 8  # rotated generations kept open for streams still reading them
FANOUT_MIN = 32  # from this many streams on, a follower waits a little to batch
FANOUT_WAIT_PER_SUB = 2e-6  # plus this per stream, for work done later in its task
FANOUT_MAX_WAIT = 0.05


class Subscriber(Protocol):
    def offer(self, batch: Batch) -> None: ...
    def notify(self) -> None: ...


class _Held:
    """Stands for a stream that is still working out where it starts."""

    def offer(self, batch: Batch) -> None:
        pass

    def notify(self) -> None:
        pass


class Follower:
    def __init__(self, name: str, path: Path, codec: IdCodec, max_line_bytes: int,
                 partial_line_s: float, idle_stop_s: float = 0.0) -> None:
        self.name = name
        self.path = path
        self.codec = codec
        self.max_line_bytes = max_line_bytes
        self.partial_line_s = partial_line_s
        self.idle_stop_s = idle_stop_s
        self.subs: set[Subscriber] = set()
        self.gen: Generation | None = None
        self.retired: deque[Generation] = deque()
        self.missing = False
        self.scan = 0  # offset in `gen` read up to (published + what the splitter holds)
        self.splitter = LineSplitter(max_line_bytes)
        self.partial_since = 0.0
        self.check = (0, 0)  # (offset, checksum of the bytes before it) last published
        self.rotations = 0
        self.publish_s = 0.0  # how long the last batch took to hand to every stream
        # told when the follower starts, stops, or its directories change (the watchers)
        self.on_watch_change: Callable[[Follower], None] | None = None
        self.dirs: frozenset[Path] = frozenset({path.parent})
        self.watch_names: frozenset[str] = frozenset({path.name})
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._ready = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self._task is not None

    async def subscribe(self, sub: Subscriber) -> None:
        """Add a stream; the first one starts following. Returns once the file was read."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.subs.add(sub)
        if self._task is None:
            self._start()
        await self._ready.wait()

    def attach(self, sub: Subscriber) -> None:
        """Add a stream to a follower that runs (inside `hold()`)."""
        assert self._task is not None, "attach() belongs inside hold()"
        self.subs.add(sub)

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Keep following while a new stream works out where it starts; leaving, even by
        cancellation, lets the idle timer stop the follower if no stream was attached."""
        placeholder = _Held()
        await self.subscribe(placeholder)
        try:
            yield
        finally:
            self.unsubscribe(placeholder)

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subs.discard(sub)
        if not self.subs and self._task is not None and self._idle is None:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self.idle_stop_s, self._stop_if_idle)

    def _stop_if_idle(self) -> None:
        self._idle = None
        if not self.subs and self._task is not None:
            asyncio.get_running_loop().create_task(self.stop())

    def _start(self) -> None:
        self._ready.clear()
        self._open_at_end()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"logtail-follow-{self.name}"
        )
        self._watch_changed()

    async def stop(self) -> None:
        """Stop following and close every file; safe to call twice."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for gen in (*self.retired, self.gen):
            if gen is not None:
                gen.close()
        self.retired.clear()
        self.gen = None
        self._watch_changed()
        self._notify_all()

    def poke(self) -> None:
        """Something may have changed: look at the file soon."""
        self._wake.set()

    # -- reading ---------------------------------------------------------------------------

    def _open_at_end(self) -> None:
        """Start following: new lines from the last complete line on."""
        self.gen = open_generation(self.path, self.codec)
        self.missing = self.gen is None
        self.splitter = LineSplitter(self.max_line_bytes)
        if self.gen is None:
            self.retired.append(placeholder(self.path, self.codec))
        else:
            end = line_end(self.gen.fd, self.gen.size())
            self.gen.published = self.scan = end
            self.check = (end, check_at(self.gen.fd, end))
            self._update_dirs()

    async def _run(self) -> None:
        try:
            self.sync()
        finally:
            self._ready.set()
        while True:
            timeout = None
            if self.splitter.pending:
                timeout = max(0.0, self.partial_since + self.partial_line_s - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                self._flush_partial()
            self._wake.clear()
            if len(self.subs) >= FANOUT_MIN:
                # many streams: gather what comes in the next moment into one batch, so
                # each stream wakes and writes once for many lines (latency when quiet,
                # batching when busy: the wait grows with the number of streams)
                await asyncio.sleep(min(FANOUT_MAX_WAIT, self.publish_s))
                self._wake.clear()
            try:
                more = self.sync()
            except OSError as e:
                log.warning("%s: cannot read %s: %s", self.name, self.path, e)
                more = False
            if more:
                self._wake.set()
                await asyncio.sleep(0)

    def sync(self) -> bool:
        """Read what is new; switch generations on rotation. True if more remains to read."""
        try:
            st: os.stat_result | None = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        gen = self.gen
        if gen is not None:
            if self._read(gen):
                return True
            if st is None or Identity.of(st) != gen.identity:
                self._retire(gen, "deleted" if st is None else "replaced")
        if self.gen is None:
            return self._open_next(st)
        return False

    def _read(self, gen: Generation) -> bool:
        if gen.size() < self.scan or not self._unchanged(gen):
            self._truncate(gen)
            gen = self.gen  # type: ignore[assignment]
            assert gen is not None
        budget = BUDGET
        while budget > 0:
            data = gen.read(self.scan, CHUNK)
            if not data:
                return False
            was_pending = self.splitter.pending
            self.scan += len(data)
            budget -= len(data)
            lines = self.splitter.feed(data)
            if lines is not None:
                self._publish(gen, lines, self.scan - self.splitter.pending)
            if self.splitter.pending and (lines is not None or not was_pending):
                self.partial_since = time.monotonic()
            if len(data) < CHUNK:
                return False
        return True

    def _unchanged(self, gen: Generation) -> bool:
        """The bytes before `published` are still those we read: a copytruncate followed by
        fast writes can regrow the file past our offset before we look at its size."""
        offset, check = self.check
        return offset != gen.published or offset == 0 or check_at(gen.fd, offset) == check

    def _publish(self, gen: Generation, lines: Lines, end: int) -> None:
        check = check_at(gen.fd, end)
        self.check = (end, check)
        batch = Batch(gen, gen.published, end, lines, gen.lines,
                      self.codec.format(gen.identity, end, check))
        gen.published = end
        gen.lines += lines.count
        t0 = time.perf_counter()
        for sub in self.subs:
            sub.offer(batch)
        # what handing a batch to every stream cost (direct writes included): the next
        # batch waits as long, so under load the loop spends at most half its time here
        self.publish_s = time.perf_counter() - t0 + len(self.subs) * FANOUT_WAIT_PER_SUB

    def _flush_partial(self) -> None:
        """A line that has waited `partial_line_s` for its newline goes out as it is."""
        if self.gen is not None and self.splitter.pending:
            lines = self.splitter.flush()
            if lines is not None:
                self._publish(self.gen, lines, self.scan)

    # -- generations -----------------------------------------------------------------------

    def _retire(self, gen: Generation, reason: str) -> None:
        lines = self.splitter.flush()
        if lines is not None:
            self._publish(gen, lines, self.scan)
        gen.retire(reason)
        self.retired.append(gen)
        while len(self.retired) > MAX_RETIRED:
            self.retired.popleft().close()
        self.gen = None
        self.rotations += 1
        log.info("%s: %s (%s)", self.name, reason, self.path)
        self._notify_all()

    def _truncate(self, gen: Generation) -> None:
        """copytruncate: same inode, new content from offset 0."""
        self.splitter = LineSplitter(self.max_line_bytes)
        gen.retire("truncated")
        nxt = Generation(os.dup(gen.fd), gen.identity, gen.path, self.codec)
        self.retired.append(gen)
        while len(self.retired) > MAX_RETIRED:
            self.retired.popleft().close()
        gen.link(nxt)
        self.gen, self.scan, self.check = nxt, 0, (0, 0)
        self.rotations += 1
        log.info("%s: truncated (%s)", self.name, self.path)
        self._notify_all()

    def _open_next(self, st: os.stat_result | None) -> bool:
        nxt = open_generation(self.path, self.codec) if st is not None else None
        if nxt is None:
            if not self.missing:
                self.missing = True
                self._notify_all()
            return False
        self.missing = False
        self.splitter = LineSplitter(self.max_line_bytes)
        self.scan, self.check = 0, (0, 0)
        if self.retired:
            self.retired[-1].link(nxt)
        self.gen = nxt
        self._update_dirs()
        self._notify_all()
        return self._read(nxt)

    def _update_dirs(self) -> None:
        """Watch the directory of a symlink's target too, so its writes are seen at once."""
        dirs, names = {self.path.parent}, {self.path.name}
        with contextlib.suppress(OSError):
            real = Path(os.path.realpath(self.path))
            dirs.add(real.parent)
            names.add(real.name)
        self.watch_names = frozenset(names)
        if dirs != self.dirs:
            self.dirs = frozenset(dirs)
            self._watch_changed()

    def _watch_changed(self) -> None:
        if self.on_watch_change is not None:
            self.on_watch_change(self)

    def _notify_all(self) -> None:
        for sub in self.subs:
            sub.notify()

    # -- for streams -----------------------------------------------------------------------

    def lag_bytes(self) -> int:
        """Bytes written to the file that the follower has not read yet."""
        if self.gen is None or self._task is None:
            return 0
        try:
            return max(0, self.gen.size() - self.scan)
        except OSError:
            return 0

    def generations(self) -> list[Generation]:
        """Every open generation, oldest first."""
        gens = [g for g in self.retired if not g.closed and g.fd >= 0]
        if self.gen is not None:
            gens.append(self.gen)
        return gens

    def latest(self) -> Generation:
        """Where a new stream starts: the current file, or the end of the last one."""
        if self.gen is not None:
            return self.gen
        return self.retired[-1]
