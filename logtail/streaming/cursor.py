"""A Cursor is one stream's place in a file, and decides what that stream sends next.

The file is the source of truth; the queue of shared batches is only a fast path. While
a stream keeps up, it sends the follower's batches as they come. When it falls behind
(its queue would pass `buffer_bytes`, or it starts from a backlog or a resume id), the
queue is dropped and the stream reads the file itself from its own offset until it is
level again. So a slow client costs bounded memory, never stalls anyone else, and loses
nothing that is still on disk; when data is gone, it is told exactly how much.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from logtail.files.generation import Batch, Generation
from logtail.files.lines import Lines, LineSplitter

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


class Cursor:
    def __init__(self, follower: Follower | None, gen: Generation, offset: int,
                 line_no: int | None, *, max_line_bytes: int, buffer_bytes: int,
                 name: str) -> None:
        self.follower = follower
        self.gen = gen
        self.offset = offset
        self.line_no = line_no
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
        self._scan = offset
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
                and batch.gen is self.gen and batch.start == self.offset
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
            if b.gen is not self.gen or b.start != self.offset:
                break
            self.queue.popleft()
            self.queued -= b.size
            self._advance(b)
            out.append(b)
            size += b.size
        return out

    def _advance(self, b: Batch) -> None:
        self.offset = self._scan = b.end
        if b.first_line >= 0:
            self.line_no = b.first_line + b.lines.count
        elif self.line_no is not None:
            self.line_no += b.lines.count

    def _step(self) -> Batch | Notice | None:
        if self.stopped:
            return END
        if self._pending:
            return self._pending.popleft()
        gen = self.gen
        while self.queue:
            b = self.queue.popleft()
            self.queued -= b.size
            if b.gen is gen:
                if b.start == self.offset:
                    self._advance(b)
                    return b
                if b.end <= self.offset:
                    continue  # already read from the file
            elif gen.final and self.offset >= gen.published:
                self.queue.appendleft(b)  # after the notice that crosses to its generation
                self.queued += b.size
                break
            self.queue.clear()
            self.queued = 0
            self.lagging = True
            break
        if self.offset < gen.published:
            return self._read_file()
        if gen.final:
            return self._cross() if gen.following() is not None else self._at_end_of_final()
        if self.follower is None:
            return END
        if self.lagging:
            self.lagging = False
            if gen.lines and self.line_no is None:
                self.line_no = gen.lines
        return None

    def _read_file(self) -> Batch | Notice | None:
        gen = self.gen
        target = gen.published
        start = self.offset
        while self._scan < target:
            data = gen.read(self._scan, min(READ_CHUNK, target - self._scan))
            if not data:
                return self._gone()
            self._scan += len(data)
            lines = self._splitter.feed(data)
            if self._scan == target and self._splitter.pending:
                tail = self._splitter.flush()
                lines = tail if lines is None else _join(lines, tail)
            if lines is not None:
                end = self._scan - self._splitter.pending
                batch = Batch(gen, start, end, lines, -1, gen.event_id(end))
                self.offset = end
                if self.line_no is not None:
                    self.line_no += lines.count
                return batch
        return None

    def _gone(self) -> Notice:
        """The bytes this stream still had to read no longer exist (truncated, or closed)."""
        gen = self.gen
        lost_bytes = gen.published - self.offset
        lines = gen.lines - self.line_no if self.line_no is not None and gen.lines else None
        self.offset = self._scan = gen.published
        self._splitter = LineSplitter(self.max_line_bytes)
        self.line_no = gen.lines if gen.lines else None
        reason = "truncated" if gen.reason == "truncated" else "rotated away"
        return Notice("dropped", {"file": self.name, "lines": lines, "bytes": lost_bytes,
                                  "reason": reason})

    def _cross(self) -> Notice:
        old, new = self.gen, self.gen.next
        assert new is not None
        self.gen, self.offset, self._scan, self.line_no = new, 0, 0, 0
        if old.transient:
            old.close()  # opened for this stream alone, which has left it
        self._splitter = LineSplitter(self.max_line_bytes)
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
        if self.gen.transient:
            self.gen.close()
        self.queue.clear()
        self._wake.set()


def _join(a: Lines, b: Lines) -> Lines:
    return Lines(a.text + "\n" + b.text, a.count + b.count)
