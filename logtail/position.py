"""Stream positions: the opaque SSE event id.

An id names a file identity (device + inode), a byte offset in it, and a checksum of the
bytes just before that offset. It depends on nothing in memory, so a client can resume
after a server restart; the checksum tells a file that was truncated and rewritten (or an
inode number that was reused) from the one the client was reading.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass

__all__ = ["CHECK_BYTES", "Identity", "Position", "check_at", "format_id", "parse_id"]

CHECK_BYTES = 32
ID_RE = re.compile(r"^([0-9a-f]{1,16})-([0-9a-f]{1,16})-([0-9a-f]{1,16})-([0-9a-f]{8})$")


@dataclass(frozen=True, slots=True)
class Identity:
    dev: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino)


@dataclass(frozen=True, slots=True)
class Position:
    identity: Identity
    offset: int
    check: int


def check_at(fd: int, offset: int) -> int:
    """Checksum of the bytes just before `offset` (fewer at the start of a file)."""
    start = max(0, offset - CHECK_BYTES)
    return zlib.crc32(os.pread(fd, offset - start, start))


def format_id(identity: Identity, offset: int, check: int) -> str:
    return f"{identity.dev:x}-{identity.ino:x}-{offset:x}-{check:08x}"


def parse_id(text: str) -> Position | None:
    """The position an id names, or None when it is not one of ours."""
    m = ID_RE.match(text.strip())
    if not m:
        return None
    dev, ino, offset, check = (int(g, 16) for g in m.groups())
    return Position(Identity(dev, ino), offset, check)
