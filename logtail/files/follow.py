"""The Follower: one per configured file per worker, the only reader of its new bytes.

It wakes when the directory watcher (or the periodic safety net) pokes it, reads what
was appended with positional reads, publishes complete lines as one batch to every
subscribed stream, and notices rotation (the path names another inode), deletion and
truncation. It runs only while someone watches: with no subscribers it closes its
files and stops, so an unwatched log costs nothing.

The rotation gap: after a rename rotation (logrotate's `create`), the writer goes on
writing through its old descriptor until it reopens the log, and a server whose workers
reopen one by one (nginx after USR1) writes to both files for a while. So the old
generation is not final at once but `retiring`: the follower keeps reading it through its
own descriptor (on every poke, at least every `RETIRING_POLL_S`, and the watcher is told
the file's new name) and publishes its late lines as batches of that generation, while it
follows the new file too. Once no byte has arrived for `rotate_grace_s`, it is final.
At most `MAX_RETIRING` generations per file are retiring at a time.

Each batch's id names the stream's place in every live generation (see
`logtail.files.position`): a stream that keeps up has read exactly what was published
before the batch, so one id per batch serves every such stream. A read round takes the
new file's size first, then reads the retiring files, then the new file up to that size:
a line written to the old file before one written to the new file is published first.
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
from logtail.files.position import IdCodec, Identity, Position, check_at
from logtail.files.tail import line_end

__all__ = ["Follower", "Subscriber"]

log = logging.getLogger("logtail.files.follow")

CHUNK = 1024 * 1024  # one read
BUDGET = 4 * 1024 * 1024  # read at most this much before letting other tasks run
MAX_RETIRED = 8  # rotated generations kept open for streams still reading them
MAX_RETIRING = 3  # rotated generations still followed for late writes, per file
RETIRING_POLL_S = 0.5  # look at retiring files at least this often
MAX_NAME_ENTRIES = 10_000  # directory entries looked at to find a retiring file's name
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


class _Tail:
    """The follower's reading state in one generation."""

    __slots__ = ("check", "gen", "grown", "partial_since", "scan", "splitter")

    def __init__(self, gen: Generation, scan: int, check: int, max_line_bytes: int) -> None:
        self.gen = gen
        self.scan = scan  # read up to here (published + what the splitter holds)
        self.check = check  # checksum of the bytes before `gen.published`
        self.splitter = LineSplitter(max_line_bytes)
        self.partial_since = 0.0
        self.grown = time.monotonic()  # when bytes last arrived (a retiring file's grace)


class Follower:
    def __init__(self, name: str, path: Path, codec: IdCodec, max_line_bytes: int,
                 partial_line_s: float, idle_stop_s: float = 0.0, *,
                 rotate_grace_s: float = 0.0) -> None:
        self.name = name
        self.path = path
        self.codec = codec
        self.max_line_bytes = max_line_bytes
        self.partial_line_s = partial_line_s
        self.idle_stop_s = idle_stop_s
        self.rotate_grace_s = rotate_grace_s
        self.subs: set[Subscriber] = set()
        self.cur: _Tail | None = None  # the file the path names now
        self.retiring: list[_Tail] = []  # rotated files still written to, oldest first
        self.retired: deque[Generation] = deque()  # every earlier generation kept open
        self.missing = False
        self.rotations = 0
        self.publish_s = 0.0  # how long the last batch took to hand to every stream
        # told when the follower starts, stops, or its directories change (the watchers)
        self.on_watch_change: Callable[[Follower], None] | None = None
        self.dirs: frozenset[Path] = frozenset({path.parent})
        self.watch_names: frozenset[str] = frozenset({path.name})
        self._names: frozenset[str] = self.watch_names  # the path's own (and its target's)
        self._budget = BUDGET
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._ready = asyncio.Event()

    @property
    def gen(self) -> Generation | None:
        """The generation the path names now (None while the file is missing)."""
        return self.cur.gen if self.cur is not None else None

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
                if gen.retiring:
                    gen.retire(gen.reason)  # nobody follows it any more
                gen.close()
        self.retired.clear()
        self.retiring.clear()
        self.cur = None
        self._set_names()
        self._watch_changed()
        self._notify_all()

    def poke(self) -> None:
        """Something may have changed: look at the file soon."""
        self._wake.set()

    # -- reading ---------------------------------------------------------------------------

    def _open_at_end(self) -> None:
        """Start following: new lines from the last complete line on."""
        gen = open_generation(self.path, self.codec)
        self.missing = gen is None
        self.retiring.clear()
        if gen is None:
            self.cur = None
            self.retired.append(placeholder(self.path, self.codec))
        else:
            end = line_end(gen.fd, gen.size())
            gen.published = end
            self.cur = _Tail(gen, end, check_at(gen.fd, end), self.max_line_bytes)
            self._update_dirs()

    async def _run(self) -> None:
        try:
            self.sync()
        finally:
            self._ready.set()
        while True:
            try:
                async with asyncio.timeout(self._timeout()):
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

    def _timeout(self) -> float | None:
        """Until an unfinished line is due, or the retiring files are looked at again."""
        due: list[float] = [t.partial_since + self.partial_line_s
                            for t in self._tails() if t.splitter.pending]
        now = time.monotonic()
        if self.retiring:
            due.append(now + RETIRING_POLL_S)
            due.extend(t.grown + self.rotate_grace_s for t in self.retiring)
        return max(0.0, min(due) - now) if due else None

    def _tails(self) -> list[_Tail]:
        return [*self.retiring, self.cur] if self.cur is not None else list(self.retiring)

    def sync(self) -> bool:
        """Read what is new; switch generations on rotation. True if more remains to read."""
        self._budget = BUDGET
        try:
            st: os.stat_result | None = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if self.cur is not None:
            if self._read_all(self.cur):
                return True
            cur = self.cur  # (a new one, if it was truncated)
            if st is None or Identity.of(st) != cur.gen.identity:
                self._retire(cur, "replaced" if st is not None or _linked(cur.gen) else "deleted")
        elif self._read_retiring():
            return True
        if self.cur is None:
            return self._open_next(st)
        return False

    def _read_all(self, cur: _Tail) -> bool:
        """The retiring files, then the current one up to the size it had before them."""
        if cur.gen.size() < cur.scan or not self._unchanged(cur):
            cur = self._truncate(cur)
        if not self.retiring:
            return self._read(cur)
        limit = cur.gen.size()
        return self._read_retiring() or self._read(cur, limit) or cur.gen.size() > cur.scan

    def _read_retiring(self) -> bool:
        """Late lines of rotated files; a file quiet for the grace period ends."""
        now = time.monotonic()
        for tail in list(self.retiring):
            if self._read(tail):
                return True
            if now - tail.grown >= self.rotate_grace_s:
                self._end_retiring(tail)
        return False

    def _read(self, tail: _Tail, limit: int | None = None) -> bool:
        gen = tail.gen
        while self._budget > 0:
            size = CHUNK if limit is None else min(CHUNK, limit - tail.scan)
            data = gen.read(tail.scan, size)
            if not data:
                return False
            was_pending = tail.splitter.pending
            tail.scan += len(data)
            self._budget -= len(data)
            tail.grown = time.monotonic()
            lines = tail.splitter.feed(data)
            if lines is not None:
                self._publish(tail, lines, tail.scan - tail.splitter.pending)
            if tail.splitter.pending and (lines is not None or not was_pending):
                tail.partial_since = tail.grown
            if len(data) < CHUNK:
                return False
        return True

    def _unchanged(self, tail: _Tail) -> bool:
        """The bytes before `published` are still those we read: a copytruncate followed by
        fast writes can regrow the file past our offset before we look at its size."""
        offset = tail.gen.published
        return offset == 0 or check_at(tail.gen.fd, offset) == tail.check

    def _publish(self, tail: _Tail, lines: Lines, end: int) -> None:
        gen = tail.gen
        tail.check = check_at(gen.fd, end)
        batch = Batch(gen, gen.published, end, lines, gen.lines, self._batch_id(tail, end))
        gen.published = end
        gen.lines += lines.count
        t0 = time.perf_counter()
        for sub in self.subs:
            sub.offer(batch)
        # what handing a batch to every stream cost (direct writes included): the next
        # batch waits as long, so under load the loop spends at most half its time here
        self.publish_s = time.perf_counter() - t0 + len(self.subs) * FANOUT_WAIT_PER_SUB

    def _batch_id(self, tail: _Tail, end: int) -> str:
        """Where a stream that has read everything published so far stands after the batch:
        in every live generation, when some are retiring."""
        if not self.retiring:
            return self.codec.format(tail.gen.identity, end, tail.check)
        return self.codec.format_all([
            Position(t.gen.identity, end if t is tail else t.gen.published, t.check)
            for t in self._tails()])

    def _flush_partial(self) -> None:
        """A line that has waited `partial_line_s` for its newline goes out as it is."""
        now = time.monotonic()
        for tail in self._tails():
            if tail.splitter.pending and now >= tail.partial_since + self.partial_line_s:
                self._flush(tail)

    def _flush(self, tail: _Tail) -> None:
        lines = tail.splitter.flush()
        if lines is not None:
            self._publish(tail, lines, tail.scan)

    # -- generations -----------------------------------------------------------------------

    def _retire(self, tail: _Tail, reason: str) -> None:
        gen = tail.gen
        self.cur = None
        if reason == "replaced" and self.rotate_grace_s > 0 and not gen.closed:
            # renamed: its writer may not have reopened the log yet
            gen.begin_retiring(reason)
            tail.grown = time.monotonic()
            self.retiring.append(tail)
            if len(self.retiring) > MAX_RETIRING:
                self._end_retiring(self.retiring[0])
        else:
            self._flush(tail)
            gen.retire(reason)
        self._keep(gen)
        self._set_names()
        self.rotations += 1
        log.info("%s: %s (%s)", self.name, reason, self.path)
        self._notify_all()

    def _end_retiring(self, tail: _Tail) -> None:
        """Quiet for the grace period (or one retiring file too many): final now."""
        self._flush(tail)
        self.retiring.remove(tail)
        tail.gen.retire(tail.gen.reason)
        self._set_names()
        self._notify_all()

    def _keep(self, gen: Generation) -> None:
        self.retired.append(gen)
        while len(self.retired) > MAX_RETIRED:
            old = self.retired.popleft()
            for tail in self.retiring:
                if tail.gen is old:
                    self._end_retiring(tail)
                    break
            old.close()

    def _truncate(self, tail: _Tail) -> _Tail:
        """copytruncate: same inode, new content from offset 0."""
        gen = tail.gen
        gen.retire("truncated")
        nxt = Generation(os.dup(gen.fd), gen.identity, gen.path, self.codec)
        self._keep(gen)
        gen.link(nxt)
        self.cur = _Tail(nxt, 0, 0, self.max_line_bytes)
        self.rotations += 1
        log.info("%s: truncated (%s)", self.name, self.path)
        self._notify_all()
        return self.cur

    def _open_next(self, st: os.stat_result | None) -> bool:
        nxt = open_generation(self.path, self.codec) if st is not None else None
        if nxt is None:
            if not self.missing:
                self.missing = True
                self._notify_all()
            return False
        self.missing = False
        if self.retired:
            self.retired[-1].link(nxt)
        self.cur = _Tail(nxt, 0, 0, self.max_line_bytes)
        self._update_dirs()
        self._notify_all()
        return self._read_all(self.cur)

    def _update_dirs(self) -> None:
        """Watch the directory of a symlink's target too, so its writes are seen at once."""
        dirs, names = {self.path.parent}, {self.path.name}
        with contextlib.suppress(OSError):
            real = Path(os.path.realpath(self.path))
            dirs.add(real.parent)
            names.add(real.name)
        self._names = frozenset(names)
        self._set_names()
        if dirs != self.dirs:
            self.dirs = frozenset(dirs)
            self._watch_changed()

    def _set_names(self) -> None:
        """The watcher pokes for these names: the path's, and the names the retiring files
        have now (`app.log.1`), found by inode; those not found are polled."""
        names = set(self._names)
        if self.retiring:
            wanted = {t.gen.identity for t in self.retiring}
            for directory in self.dirs:
                names.update(_names_of(directory, wanted))
        self.watch_names = frozenset(names)

    def _watch_changed(self) -> None:
        if self.on_watch_change is not None:
            self.on_watch_change(self)

    def _notify_all(self) -> None:
        for sub in self.subs:
            sub.notify()

    # -- for streams -----------------------------------------------------------------------

    def lag_bytes(self) -> int:
        """Bytes written to the followed files that the follower has not read yet."""
        if self._task is None:
            return 0
        try:
            return sum(max(0, t.gen.size() - t.scan) for t in self._tails())
        except OSError:
            return 0

    def generations(self) -> list[Generation]:
        """Every open generation, oldest first."""
        gens = [g for g in self.retired if not g.closed and g.fd >= 0]
        if self.gen is not None:
            gens.append(self.gen)
        return gens

    def retiring_generations(self) -> list[Generation]:
        """Rotated generations still followed for late writes, oldest first."""
        return [t.gen for t in self.retiring]

    def latest(self) -> Generation:
        """Where a new stream starts: the current file, or the end of the last one."""
        if self.cur is not None:
            return self.cur.gen
        return self.retired[-1]


def _linked(gen: Generation) -> bool:
    """The file still has a name somewhere: moved away (rotated), not deleted."""
    try:
        return os.fstat(gen.fd).st_nlink > 0
    except OSError:
        return False


def _names_of(directory: Path, wanted: set[Identity]) -> set[str]:
    """Names in `directory` of the files with these identities (a bounded look)."""
    inodes = {i.ino for i in wanted}
    found: set[str] = set()
    with contextlib.suppress(OSError), os.scandir(directory) as it:
        for i, entry in enumerate(it):
            if i >= MAX_NAME_ENTRIES:
                break
            if entry.inode() in inodes:
                with contextlib.suppress(OSError):
                    if Identity.of(entry.stat(follow_symlinks=False)) in wanted:
                        found.add(entry.name)
    return found
