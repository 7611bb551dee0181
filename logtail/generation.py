"""A generation is one life of a followed file, and a batch is a run of its lines.

A generation holds an open descriptor on one inode, so it can be read to its end after
the file was renamed or deleted. It ends (`final`) on rotation, deletion or truncation,
and links to the generation that came next, with the reason: that chain is what lets a
stream cross a rotation without losing or repeating a line.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from logtail.lines import Lines
from logtail.position import Identity, check_at, format_id

__all__ = ["Batch", "Generation", "open_generation", "placeholder"]


class Generation:
    __slots__ = ("closed", "fd", "final", "identity", "lines", "next", "path", "published",
                 "reason")

    def __init__(self, fd: int, identity: Identity, path: Path, published: int = 0) -> None:
        self.fd = fd
        self.identity = identity
        self.path = path
        self.published = published  # offset up to which lines were published
        self.lines = 0  # lines published by this process (exact counts for `dropped`)
        self.final = False
        self.next: Generation | None = None
        self.reason = ""
        self.closed = False

    def read(self, offset: int, size: int) -> bytes:
        """Bytes at `offset`; b"" once the generation is closed or the data is gone."""
        if self.closed or size <= 0 or self.fd < 0:
            return b""
        return os.pread(self.fd, size, offset)

    def size(self) -> int:
        return -1 if self.closed or self.fd < 0 else os.fstat(self.fd).st_size

    def event_id(self, offset: int) -> str:
        check = 0 if self.closed or self.fd < 0 else check_at(self.fd, offset)
        return format_id(self.identity, offset, check)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.fd >= 0:
                os.close(self.fd)

    def __repr__(self) -> str:
        return f"<Generation {self.path.name} ino={self.identity.ino} at {self.published}>"


def placeholder(path: Path) -> Generation:
    """Stands for a file that does not exist yet: empty, final, and linked to the file
    once it appears, so streams cross into it like into any rotated file."""
    gen = Generation(-1, Identity(-1, -1), path)
    gen.final, gen.reason = True, "missing"
    return gen


def open_generation(path: Path) -> Generation | None:
    """Open `path` for reading, or None when it does not exist (yet) or is not a regular file.

    O_NONBLOCK keeps a FIFO configured by mistake from blocking the event loop in open().
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return Generation(fd, Identity.of(st), path)


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
