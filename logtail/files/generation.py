"""A generation is one life of a followed file, and a batch is a run of its lines.

A generation holds an open descriptor on one inode, so it can be read to its end after
the file was renamed or deleted. It ends (`final`) on deletion or truncation, and links to
the generation that came next, with the reason: that chain is what lets a stream cross a
rotation without losing or repeating a line.

A rename rotation does not end it at once: the writer may keep writing through its old
descriptor until it reopens the log (nginx's workers reopen one by one after USR1), so
the generation is first `retiring`: a newer one follows it, streams cross to that one,
and the follower still publishes what arrives here until the file stays quiet for
`watch.rotate_grace_s`. Then it is final.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from logtail.files.lines import Lines
from logtail.files.position import IdCodec, Identity, Position, check_at

__all__ = ["Batch", "Generation", "file_status", "open_generation", "placeholder",
           "unreadable_reason"]


class Generation:
    __slots__ = ("_final", "_next", "_reason", "_retiring", "_successor", "closed", "codec",
                 "fd", "identity", "lines", "on_close", "path", "published", "transient")

    def __init__(self, fd: int, identity: Identity, path: Path, codec: IdCodec,
                 published: int = 0) -> None:
        self.fd = fd
        self.identity = identity
        self.path = path
        self.codec = codec
        self.published = published  # offset up to which lines were published
        self.lines = 0  # lines published by this process (exact counts for `dropped`)
        self._final = False
        self._retiring = False
        self._next: Generation | None = None
        self._reason = ""
        self.closed = False
        # a rotated file opened for one stream alone (resume): closed as the stream leaves it
        self.transient = False
        # opens the generation after this one when a stream gets there (a resume through
        # rotated siblings holds one open at a time, not the whole chain)
        self._successor: Callable[[], Generation] | None = None
        self.on_close: Callable[[], None] | None = None

    # -- the chain: only the file layer retires and links generations ------------------------

    @property
    def final(self) -> bool:
        """No more bytes will be published here: the file was rotated, deleted or truncated."""
        return self._final

    @property
    def retiring(self) -> bool:
        """Rotated, yet still followed: late writes through old descriptors are published
        here while streams already read the generation after it."""
        return self._retiring and not self._final

    @property
    def ended(self) -> bool:
        """Final or retiring: a stream that has read it to `published` moves on to `next`."""
        return self._final or self._retiring

    @property
    def reason(self) -> str:
        """Why it ended: `replaced`, `deleted`, `truncated` or `missing`."""
        return self._reason

    @property
    def next(self) -> Generation | None:
        """The generation that came after this one (final or retiring), once known."""
        return self._next

    def retire(self, reason: str) -> None:
        self._final, self._reason = True, reason

    def begin_retiring(self, reason: str) -> None:
        """Rotated away, but the old descriptors may still write: `retire` ends it later."""
        self._retiring, self._reason = True, reason

    def link(self, nxt: Generation) -> None:
        """`nxt` came after this one (kept if a successor is already known)."""
        if self._next is None:
            self._next = nxt

    def link_lazily(self, make: Callable[[], Generation]) -> None:
        """The next generation is opened by `make` when a stream first needs it."""
        self._successor = make

    def read(self, offset: int, size: int) -> bytes:
        """Bytes at `offset`; b"" once the generation is closed or the data is gone."""
        if self.closed or size <= 0 or self.fd < 0:
            return b""
        return os.pread(self.fd, size, offset)

    def size(self) -> int:
        return -1 if self.closed or self.fd < 0 else os.fstat(self.fd).st_size

    def event_id(self, offset: int) -> str:
        return self.codec.format(self.identity, offset, self.check(offset))

    def position(self, offset: int) -> Position:
        return Position(self.identity, offset, self.check(offset))

    def check(self, offset: int) -> int:
        """Checksum of the bytes before `offset` (0 once closed)."""
        return 0 if self.closed or self.fd < 0 else check_at(self.fd, offset)

    def following(self) -> Generation | None:
        """The generation after this one, opened now if it is opened lazily."""
        if self._next is None and self._successor is not None:
            make, self._successor = self._successor, None
            self._next = make()
        return self._next

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.fd >= 0:
                os.close(self.fd)
            if self.on_close is not None:
                self.on_close()

    def __repr__(self) -> str:
        return f"<Generation {self.path.name} ino={self.identity.ino} at {self.published}>"


def placeholder(path: Path, codec: IdCodec, final: bool = True) -> Generation:
    """Stands for a file that does not exist yet: empty, final, and linked to the file
    once it appears, so streams cross into it like into any rotated file (or, not final,
    an empty file that stays so: a snapshot of a missing file)."""
    gen = Generation(-1, Identity(-1, -1), path, codec)
    if final:
        gen.retire("missing")
    return gen


def open_generation(path: Path, codec: IdCodec, *,
                    follow_links: bool = True) -> Generation | None:
    """Open `path` for reading, or None when it does not exist (yet) or is not a log file.

    A FIFO is never opened: its writer would get EPIPE when we closed it again. O_NONBLOCK
    still guards the open() against one swapped in after the stat.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.stat(path, follow_symlinks=follow_links).st_mode):
            return None
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        if unreadable_reason(fd) is not None:
            os.close(fd)
            return None
        return Generation(fd, Identity.of(os.fstat(fd)), path, codec)
    except OSError:
        os.close(fd)
        return None


def file_status(path: Path) -> tuple[os.stat_result | None, str | None]:
    """`stat` of a configured file (None if absent) and why it cannot be served, if so.
    Only a possible pseudo-file (a regular file of size 0) is opened to tell."""
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    if not stat.S_ISREG(st.st_mode):
        return st, "not a regular file"
    if st.st_size:
        return st, None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        return st, e.strerror or "cannot be opened"
    try:
        return st, unreadable_reason(fd)
    except OSError as e:
        return st, e.strerror or "cannot be read"
    finally:
        os.close(fd)


def unreadable_reason(fd: int) -> str | None:
    """Why an open file cannot be followed, or None for a regular file.

    A FIFO, device or directory is not a log. Neither is a pseudo-file (`/proc`, `/sys`):
    it says size 0 yet has content, which would read as a truncation every second."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0 and os.pread(fd, 1, 0) and os.fstat(fd).st_size == 0:
        return "a pseudo-file whose size is not its content"
    return None


@dataclass(slots=True, eq=False)
class Batch:
    """Lines [start, end) of a generation, encoded at most once per format for all streams."""

    gen: Generation
    start: int
    end: int
    lines: Lines
    first_line: int  # number of the first line within the generation, or -1 if unknown
    id: str
    _cache: dict[str, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.lines.text) + 64

    def encoded(self, key: str, make: Callable[[], bytes]) -> bytes:
        """The batch in one encoding, made once and shared by every stream that asks."""
        out = self._cache.get(key)
        if out is None:
            out = self._cache[key] = make()
        return out

    def is_encoded(self, key: str) -> bool:
        return key in self._cache
