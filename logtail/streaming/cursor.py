"""A Cursor is one stream's place in a file, and decides what that stream sends next.

The file is the source of truth; the queue of shared batches is only a fast path. While
a stream keeps up, it sends the follower's batches as they come. When it falls behind
(its queue would pass `buffer_bytes`, or it starts from a backlog or a resume id), the
queue is dropped and the stream reads the file itself from its own offset until it is
level again. So a slow client costs bounded memory, never stalls anyone else, and loses
nothing that is still on disk; when data is gone, it is told exactly how much.

After a rename rotation the old generation may still be written to for a while (it is
`retiring`, see `logtail.files.follow`). The stream does not wait for it: it crosses to
the new generation as soon as it has read the old one to `published`, and keeps its place
in the old one in `older`, a small map generation → place. Late lines of the old file
then come to it like any batch (a batch fits when it starts where the stream stands in
its generation), each file's lines in order, and its ids name its place in every
generation it still follows, so a resume goes on in each. An older generation is
forgotten once it is final and read to its end. When behind, the stream reads the older
generations' files first, then its current one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from logtail.files.generation import Batch, Generation
from logtail.files.lines import Lines, LineSplitter
from logtail.files.position import Position

if TYPE_CHECKING:
    from logtail.files.follow import Follower

__all__ = ["END", "Cursor", "Notice"]

READ_CHUNK = 256 * 1024


@dataclass(slots=True)
class Notice:
    name: str
    data: dict[str, object] = field(default_factory=dict)
    event_id: str | None = None


END = Notice("end")


@dataclass(slots=True)
class _Place:
    """Where a stream stands in an older generation that is still written to."""

    offset: int
    line_no: int | None


class Cursor:
    def __init__(self, follower: Follower | None, gen: Generation, offset: int,
                 line_no: int | None, *, max_line_bytes: int, buffer_bytes: int,
                 name: str, older: Sequence[tuple[Generation, int]] | None = None) -> None:
        """`older`: places in retiring generations before `gen` (from a resume id); None
        for a fresh start: the ends of those the follower has now."""
        self.follower = follower
        self.gen = gen
        self.offset = offset
        self.line_no = line_no
        if older is None:
            retiring = follower.retiring_generations() if follower is not None else []
            older = [(g, g.published) for g in retiring if g is not gen]
        self.older: dict[Generation, _Place] = {
            g: _Place(off, g.lines if off == g.published and g.lines else None)
            for g, off in older}
        self.name = name
        self.buffer_bytes = buffer_bytes
        self.max_line_bytes = max_line_bytes
        self.queue: deque[Batch] = deque()
        self.queued = 0
        self.lagging = True  # read the file until level with the follower
        self.told_missing = False
        self.stopped = False
        self.beat_due = False
        self.last_sent = 0.0  # monotonic time of the stream's last write
        self.heartbeats = True  # False for text streams: they have no way to send one
        self._scan_gen: Generation | None = None  # a file read in progress: in this one,
        self._scan = offset  # read up to here, with what the splitter holds
        self._splitter = LineSplitter(max_line_bytes)
        self._wake = asyncio.Event()
        self._pending: deque[Notice] = deque()
        # fast path: while the stream waits level with the follower, a new batch is written
        # to its socket at once by `direct`, without waking the stream's task
        self.direct: Callable[[Batch], bool] | None = None
        self.direct_beat: Callable[[], bool] | None = None  # the same for a heartbeat
        self.parked = False

    # -- called by the follower (synchronously, on the event loop) ---------------------------

    def offer(self, batch: Batch) -> None:
        if self.lagging:
            self._wake.set()
            return
        if (self.parked and self.direct is not None and not self.queue and not self._pending
                and (batch.start == self.offset if batch.gen is self.gen
                     else self._fits(batch))
                and self.direct(batch)):
            self._advance(batch)
            return
        if self.queued + batch.size > self.buffer_bytes:
            self.queue.clear()
            self.queued = 0
            self.lagging = True
        else:
            self.queue.append(batch)
            self.queued += batch.size
        self._wake.set()

    def notify(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """The server is stopping: the stream ends at its next step."""
        self.stopped = True
        self._wake.set()

    def push(self, notice: Notice) -> None:
        """A notice to send before anything else (resume outcomes)."""
        self._pending.append(notice)

    # -- called by the stream ----------------------------------------------------------------

    async def next(self) -> Batch | Notice | None:
        """The next thing to send; None when a heartbeat is due (see `beat`)."""
        while True:
            item = self._step()
            if item is not None:
                return item
            if self.beat_due:
                self.beat_due = False
                return None
            self._wake.clear()
            self.parked = True
            try:
                await self._wake.wait()
            finally:
                self.parked = False

    def poll(self) -> Batch | Notice | None:
        """The next thing to send, if there is one now: for a stream that waits on several
        cursors at once (see `join`), instead of `next`."""
        return self._step()

    def join(self, wake: asyncio.Event) -> None:
        """Set `wake` instead of this cursor's own event: several cursors feed one stream."""
        self._wake = wake

    def take_notices(self) -> list[Notice]:
        """The notices pushed so far (resume outcomes), to send before anything else."""
        out = list(self._pending)
        self._pending.clear()
        return out

    def skip_to(self, end: int, count: int) -> None:
        """The stream sent the current generation's `count` lines up to `end` itself (a
        merged backlog): read on from there."""
        self._scan_gen = None
        self._move(self.gen, end, count)

    def catching_up_older(self) -> bool:
        """Whether an older generation still has lines for this stream to read."""
        return any(place.offset < g.published for g, place in self.older.items())

    def beat(self, now: float) -> None:
        """Called by the app's heartbeat ticker: one timer for all streams, none per wake.
        A parked stream with nothing to do gets its heartbeat written at once, without
        waking its task (10,000 quiet streams then cost a write each, not a task switch)."""
        if (self.parked and not self._wake.is_set() and self.direct_beat is not None
                and self.direct_beat()):
            self.last_sent = now
            return
        self.beat_due = True
        self._wake.set()

    def take_ready(self, max_bytes: int) -> list[Batch]:
        """More live batches that are ready now, to send in the same write."""
        out: list[Batch] = []
        size = 0
        while self.queue and size < max_bytes and not self._pending:
            b = self.queue[0]
            if not self._fits(b):
                break
            self.queue.popleft()
            self.queued -= b.size
            self._advance(b)
            out.append(b)
            size += b.size
        return out

    def _fits(self, b: Batch) -> bool:
        """`b` starts where this stream stands in its generation."""
        if b.gen is self.gen:
            return b.start == self.offset
        place = self.older.get(b.gen) if self.older else None
        return place is not None and place.offset == b.start

    def _at(self, gen: Generation) -> int | None:
        """Where this stream stands in `gen`, if it follows it."""
        if gen is self.gen:
            return self.offset
        place = self.older.get(gen)
        return place.offset if place is not None else None

    def _advance(self, b: Batch) -> None:
        self._scan_gen = None
        self._move(b.gen, b.end, b.lines.count, b.first_line)

    def _move(self, gen: Generation, end: int, count: int, first_line: int = -1) -> None:
        """The stream has sent `gen`'s lines up to `end`."""
        if gen is self.gen:
            self.offset = end
            if first_line >= 0:
                self.line_no = first_line + count
            elif self.line_no is not None:
                self.line_no += count
            return
        place = self.older[gen]
        place.offset = end
        if first_line >= 0:
            place.line_no = first_line + count
        elif place.line_no is not None:
            place.line_no += count

    def event_id(self) -> str:
        """This stream's place: in `gen`, and in each older generation still written to."""
        gen = self.gen
        if not self.older:
            return gen.event_id(self.offset)
        return gen.codec.format_all([*self.older_positions(), gen.position(self.offset)])

    def older_positions(self) -> list[Position]:
        """Where this stream stands in each older generation still open, oldest first."""
        return [g.position(p.offset) for g, p in self.older.items()
                if g.fd >= 0 and not g.closed]

    def _forget_done(self) -> None:
        """Older generations that are final and read to their end."""
        for g, place in list(self.older.items()):
            if g.final and place.offset >= g.published:
                del self.older[g]
                if g.transient:
                    g.close()

    def _step(self) -> Batch | Notice | None:
        if self.stopped:
            return END
        if self._pending:
            return self._pending.popleft()
        if self.older:
            self._forget_done()
        if self.queue and (b := self._from_queue()) is not None:
            return b
        gen = self.gen
        for g, place in self.older.items():
            if place.offset < g.published:
                return self._read_file(g, place.offset)
        if self.offset < gen.published:
            return self._read_file(gen, self.offset)
        if gen.ended:
            return self._cross() if gen.following() is not None else self._at_end_of_final()
        if self.follower is None:
            return END
        if self.lagging:
            self.lagging = False
            if gen.lines and self.line_no is None:
                self.line_no = gen.lines
        return None

    def _from_queue(self) -> Batch | None:
        """The next queued batch, if it fits; a gap drops the queue (the file is read)."""
        gen = self.gen
        while self.queue:
            b = self.queue.popleft()
            self.queued -= b.size
            at = self._at(b.gen)
            if at is not None:
                if b.start == at:
                    self._advance(b)
                    return b
                if b.end <= at:
                    continue  # already read from the file
            elif gen.ended and self.offset >= gen.published:
                self.queue.appendleft(b)  # after the notice that crosses to its generation
                self.queued += b.size
                return None
            self.queue.clear()
            self.queued = 0
            self.lagging = True
        return None

    def _read_file(self, gen: Generation, start: int) -> Batch | Notice | None:
        if self._scan_gen is not gen:
            self._scan_gen, self._scan = gen, start
            self._splitter = LineSplitter(self.max_line_bytes)
        target = gen.published
        while self._scan < target:
            data = gen.read(self._scan, min(READ_CHUNK, target - self._scan))
            if not data:
                return self._gone(gen)
            self._scan += len(data)
            lines = self._splitter.feed(data)
            if self._scan == target and self._splitter.pending:
                tail = self._splitter.flush()
                if tail is not None:
                    lines = tail if lines is None else _join(lines, tail)
            if lines is not None:
                end = self._scan - self._splitter.pending
                self._move(gen, end, lines.count)
                return Batch(gen, start, end, lines, -1, self.event_id())
        return None

    def _gone(self, gen: Generation) -> Notice:
        """The bytes this stream still had to read no longer exist (truncated, or closed)."""
        at = self._at(gen)
        assert at is not None
        line_no = self.line_no if gen is self.gen else self.older[gen].line_no
        lost_bytes = gen.published - at
        lines = gen.lines - line_no if line_no is not None and gen.lines else None
        self._scan_gen = None
        if gen is self.gen:
            self.offset = gen.published
            self.line_no = gen.lines if gen.lines else None
        else:
            self.older[gen] = _Place(gen.published, gen.lines if gen.lines else None)
        reason = "truncated" if gen.reason == "truncated" else "rotated away"
        return Notice("dropped", {"file": self.name, "lines": lines, "bytes": lost_bytes,
                                  "reason": reason})

    def _cross(self) -> Notice:
        old, new = self.gen, self.gen.next
        assert new is not None
        if old.retiring:  # still written to: its late lines come after this notice
            self.older[old] = _Place(self.offset, self.line_no)
        elif old.transient:
            old.close()  # opened for this stream alone, which has left it
        self.gen, self.offset, self.line_no = new, 0, 0
        self._scan_gen = None
        self.told_missing = False
        if old.reason == "truncated":
            return Notice("truncated", {"file": self.name})
        reason = {"deleted": "recreated", "missing": "created"}.get(old.reason, old.reason)
        return Notice("rotated", {"file": self.name, "reason": reason})

    def _at_end_of_final(self) -> Notice | None:
        follower = self.follower
        if follower is None:
            return END
        if follower.missing and not self.told_missing:
            self.told_missing = True
            return Notice("missing", {"file": self.name})
        return None

    def close(self) -> None:
        if self.follower is not None:
            self.follower.unsubscribe(self)
        for g in (*self.older, self.gen):
            if g.transient:
                g.close()
        self.older.clear()
        self.queue.clear()
        self._wake.set()


def _join(a: Lines, b: Lines) -> Lines:
    return Lines(a.text + "\n" + b.text, a.count + b.count)
