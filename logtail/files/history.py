"""A log's history: the file and its rotated siblings, newest first, and reading them.

The history of `app.log` is `app.log` itself, then the names logrotate gives it in the same
directory (`logtail.files.rotated`): nothing outside that directory, nothing else that
merely starts with the name, no symlink, only regular files. Compressed siblings (`.gz`)
are read as a stream, never decompressed whole into memory or onto disk. Reading one
from its start leaves checkpoints behind (`GzipIndex`), so that the context of a line deep
in it (a search result, a permalink) is read from shortly before that line, not from the
start.

A generation is known by its content, not only its inode: renamed, then compressed by
`delaycompress`, it is still the same generation. Its key is a hash of its first `k`
decompressed bytes, with `k` part of the key, so a key taken while the file was small
still names it once it has grown.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import stat
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from logtail.files.rotated import rotated_name

__all__ = ["CHUNK", "GZ_INDEX", "KEY_BYTES", "Checkpoint", "GzipIndex", "GzipReader",
           "PlainReader", "Source", "content_key", "fd_chunks", "fd_key", "head_key",
           "history", "matches_key", "open_again", "open_source", "read_chunks", "size_hint"]

KEY_BYTES = 4096  # at most this much of a generation's start names it
CHUNK = 1024 * 1024
GZ_IN = 16 * 1024  # compressed bytes read at a time
GZ_OUT = 32 * 1024  # decompressed bytes asked of zlib at a time
MAX_SIBLINGS = 1000
MAX_ENTRIES = 20_000


@dataclass(frozen=True, slots=True)
class Source:
    """One generation on disk."""

    path: Path
    compressed: bool
    size: int  # bytes on disk
    mtime_ns: int
    inode: int

    @property
    def name(self) -> str:
        return self.path.name


def history(log: Path) -> list[Source]:
    """`log` (if it is a regular file) then its rotated siblings, newest first."""
    out: list[Source] = []
    current = _source(log, compressed=False)
    if current is not None:
        out.append(current)
    found: list[tuple[tuple[int, int, int], Source]] = []
    try:
        with os.scandir(log.parent) as it:
            for i, entry in enumerate(it):
                if i >= MAX_ENTRIES:
                    break
                name = rotated_name(log.name, entry.name)
                if name is None:
                    continue
                src = _source(Path(entry.path), name.compressed)
                if src is not None:
                    scheme = 0 if name.age >= 0 else 1  # numbered, then dateext
                    found.append(((scheme, name.age, -src.mtime_ns), src))
    except OSError:
        return out
    found.sort(key=lambda f: f[0])
    out.extend(src for _, src in found[:MAX_SIBLINGS])
    return out


def _source(path: Path, compressed: bool) -> Source | None:
    try:
        st = os.stat(path, follow_symlinks=False)  # a symlink is never part of history
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return Source(path, compressed, st.st_size, st.st_mtime_ns, st.st_ino)


def read_chunks(src: Source, start: int = 0, limit: int | None = None,
                chunk: int = CHUNK) -> Iterator[bytes]:
    """The generation's (decompressed) bytes from `start`, in chunks of at most `chunk`,
    at most `limit` bytes in all. Blocking: run it in a thread, a chunk at a time.
    A corrupt `.gz` raises `zlib.error` (or EOFError when cut short) where it breaks."""
    fd = os.open(src.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        yield from fd_chunks(fd, src.compressed, start, limit, chunk)
    finally:
        os.close(fd)


def open_source(src: Source) -> int:
    """A descriptor on `src` itself: never through a symlink, and only while its name still
    names the same file (a rotation may have moved it on): OSError otherwise."""
    fd = os.open(src.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if st.st_ino != src.inode or not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(f"{src.name} was rotated away")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_again(log: Path, src: Source) -> tuple[Source, int]:
    """`src` of `log`'s history, opened; found again by its inode if a rotation renamed it
    since the history was listed. OSError if it is gone."""
    try:
        return src, open_source(src)
    except OSError:
        for again in history(log):
            if again.inode == src.inode and again.compressed == src.compressed:
                return again, open_source(again)
        raise


def fd_chunks(fd: int, compressed: bool, start: int = 0, limit: int | None = None,
              chunk: int = CHUNK) -> Iterator[bytes]:
    """`read_chunks` on a descriptor the caller owns (and closes)."""
    if not compressed:
        pos, remaining = start, limit if limit is not None else 1 << 62
        while remaining > 0:
            data = os.pread(fd, min(chunk, remaining), pos)
            if not data:
                return
            pos += len(data)
            remaining -= len(data)
            yield data
        return
    reader = GzipReader(fd, start, limit, GZ_INDEX)
    buf = bytearray(chunk)
    view = memoryview(buf)
    while n := reader.readinto(view):
        yield bytes(view[:n])


class PlainReader:
    """A plain generation's bytes from `start`, at most `limit`, read into a buffer the
    caller reuses (`linescan.LineBlocks`): a scan of gigabytes makes no object per block,
    and the copy from the page cache happens with the GIL let go. Blocking."""

    def __init__(self, fd: int, start: int = 0, limit: int | None = None) -> None:
        self.fd = fd
        self.pos = start
        self.remaining = limit if limit is not None else 1 << 62

    def readinto(self, view: memoryview) -> int:
        want = min(len(view), self.remaining)
        if want <= 0:
            return 0
        n = os.preadv(self.fd, [view[:want]], self.pos)  # the GIL is let go meanwhile
        self.pos += n
        self.remaining -= n
        return n


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A gzip stream's state after `out` decompressed bytes: where its input goes on
    (`pos`, with `pending` read and not yet inflated) and a copy of zlib's state (None
    between members). About 50 KB: zlib's 32 KiB window is most of it."""

    out: int
    pos: int
    pending: bytes
    state: zlib._Decompress | None

    @property
    def cost(self) -> int:
        return 48 * 1024 + len(self.pending)


class GzipIndex:
    """Checkpoints of the compressed generations read lately, every `spacing` decompressed
    bytes, at most `max_bytes` of them in all (the generations read least recently are
    forgotten first). A compressed generation never changes, so it is known by its file's
    identity (device, inode, size, modification time); a rewritten file is another one.
    One per process: the same file is the same bytes for every server in it. Readers in
    several threads use it; a lock guards it."""

    def __init__(self, spacing: int = 16 * 1024 * 1024, max_bytes: int = 32 * 1024 * 1024,
                 lead: int = 1024 * 1024) -> None:
        self.spacing = spacing
        self.max_bytes = max_bytes
        self.lead = lead  # the context of a line is read from a checkpoint this far before it
        self._files: OrderedDict[tuple[int, ...], list[Checkpoint]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self._bytes = 0

    @staticmethod
    def identity(fd: int) -> tuple[int, ...]:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns

    def before(self, file: tuple[int, ...], offset: int) -> Checkpoint | None:
        """The last checkpoint at or before decompressed `offset`, if any."""
        with self._lock:
            points = self._files.get(file)
            if not points:
                return None
            self._files.move_to_end(file)
            i = bisect.bisect_right(points, offset, key=lambda p: p.out)
            return points[i - 1] if i else None

    def next_due(self, file: tuple[int, ...]) -> int:
        """The decompressed offset of the next checkpoint to take for `file`."""
        with self._lock:
            points = self._files.get(file)
            return (points[-1].out if points else 0) + self.spacing

    def add(self, file: tuple[int, ...], point: Checkpoint) -> None:
        with self._lock:
            points = self._files.setdefault(file, [])
            self._files.move_to_end(file)
            if points and point.out <= points[-1].out:
                return  # another reader of the same file took it first
            points.append(point)
            self._bytes += point.cost
            while self._bytes > self.max_bytes and self._files:
                _, dropped = self._files.popitem(last=False)
                self._bytes -= sum(p.cost for p in dropped)

    @property
    def size(self) -> int:
        """Bytes the checkpoints take, about."""
        return self._bytes


GZ_INDEX = GzipIndex()


class GzipReader:
    """Decompressed bytes of a gzip file (several members too), GZ_OUT at a time: zlib
    lets the GIL go while it inflates, and the little it hands back (no more than GZ_OUT,
    from no more than GZ_IN of input) is copied into the caller's buffer. A gzip bomb
    costs time, bounded by the caller's `limit`, not memory. A corrupt `.gz` raises
    `zlib.error` where it breaks, one cut short EOFError.

    With an `index`, a read that starts deep in the file starts from the index's last
    checkpoint before `start` instead of from the file's start, and a read that passes
    where the index has no checkpoint yet leaves one there."""

    def __init__(self, fd: int, start: int = 0, limit: int | None = None,
                 index: GzipIndex | None = None) -> None:
        self.fd = fd
        self.skip = start
        self.remaining = limit if limit is not None else 1 << 62
        self.pos = 0  # in the compressed file
        self.pending = b""  # compressed bytes read and not yet given to zlib
        self.d: zlib._Decompress | None = None
        self.ended = False
        self.out = 0  # decompressed bytes the stream has given so far, skipped ones too
        self.index = index
        self.file: tuple[int, ...] = ()
        self.due = 1 << 62  # where the next checkpoint is to be taken
        if index is not None:
            self.file = index.identity(fd)
            point = index.before(self.file, start) if start else None
            if point is not None:
                self.out, self.pos, self.pending = point.out, point.pos, point.pending
                self.d = point.state.copy() if point.state is not None else None
                self.skip = start - point.out
            self.due = index.next_due(self.file)

    def readinto(self, view: memoryview) -> int:
        out, room = 0, min(len(view), self.remaining)
        while out < room and not self.ended:
            piece = self._next(min(GZ_OUT, room - out + self.skip))
            self.out += len(piece)
            if self.out >= self.due:
                self._checkpoint()
            if self.skip:
                cut = min(self.skip, len(piece))
                piece, self.skip = piece[cut:], self.skip - cut
            view[out: out + len(piece)] = piece
            out += len(piece)
        self.remaining -= out
        return out

    def _checkpoint(self) -> None:
        assert self.index is not None
        self.index.add(self.file, Checkpoint(self.out, self.pos, self.pending,
                                             self.d.copy() if self.d is not None else None))
        self.due = self.index.next_due(self.file)

    def _next(self, most: int) -> bytes:
        """The next decompressed bytes (at most `most`, maybe none); sets `ended`."""
        if not self.pending:
            self.pending = os.pread(self.fd, GZ_IN, self.pos)
            self.pos += len(self.pending)
            if not self.pending and self.d is None:
                self.ended = True
                return b""
        if self.d is None:  # at a member's start
            if not self.pending.strip(b"\0"):
                self.pending = b""  # padding after the last member
                return b""
            self.d = zlib.decompressobj(wbits=31)
        file_ended = not self.pending  # then zlib gives what it still holds, if anything
        piece = self.d.decompress(self.pending, most)
        if self.d.eof:
            self.pending, self.d = self.d.unused_data, None
        else:
            self.pending = self.d.unconsumed_tail
            if file_ended and not piece:
                raise EOFError("compressed data ends early")
        return piece


def content_key(src: Source, k: int = KEY_BYTES) -> str:
    """The generation's key: `k` and a hash of its first `k` decompressed bytes (fewer if
    it is shorter: `k` is then its length)."""
    head = b""
    for data in read_chunks(src, 0, k, chunk=max(k, 1)):
        head += data
    return head_key(head)


def head_key(head: bytes) -> str:
    """The key of a generation that starts with `head` (its first KEY_BYTES at most)."""
    return f"{len(head):x}.{hashlib.blake2b(head, digest_size=8).hexdigest()}"


def fd_key(fd: int, compressed: bool, k: int = KEY_BYTES) -> str:
    """`content_key` of the generation open on `fd`."""
    head = b""
    for data in fd_chunks(fd, compressed, 0, k, chunk=max(k, 1)):
        head += data
    return head_key(head)


def size_hint(fd: int, src: Source) -> int:
    """The decompressed size, for progress: exact for a plain file; for a `.gz`, what its
    trailer says (the last member's size mod 4 GiB: an estimate, never trusted)."""
    if not src.compressed:
        return src.size
    if src.size < 18:
        return 0
    tail = os.pread(fd, 4, src.size - 4)
    return int.from_bytes(tail, "little") if len(tail) == 4 else 0


def matches_key(src: Source, key: str) -> bool:
    """Whether `src` is the generation `key` names (its first k bytes hash the same)."""
    k_text, _, _ = key.partition(".")
    try:
        k = int(k_text, 16)
    except ValueError:
        return False
    if not src.compressed and src.size < k:
        return False
    return content_key(src, k) == key
