"""Stream positions: the opaque SSE event id, signed so that no client can forge one.

An id names a file identity (device + inode), a byte offset in it, and a checksum of the
bytes just before that offset, then a MAC of all that under the server's secret key. It
depends on nothing in memory, so a client can resume after a server restart (the key is
kept on disk, see `logtail.files.secret`); the checksum tells a file that was truncated and
rewritten (or an inode number that was reused) from the one the client was reading; the
MAC means a client can only come back to positions this server handed out, never guess
its way to another inode.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import zlib
from dataclasses import dataclass

__all__ = ["CHECK_BYTES", "IdCodec", "Identity", "Position", "check_at"]

CHECK_BYTES = 32
MAC_BYTES = 12  # 96 bits: far beyond what anyone can try against a server
ID_RE = re.compile(
    r"^([0-9a-f]{1,16})-([0-9a-f]{1,16})-([0-9a-f]{1,16})-([0-9a-f]{8})-([0-9a-f]{24})$")


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


class IdCodec:
    """Formats and verifies event ids with one server key (keyed BLAKE2b)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the id key must be at least 16 bytes")
        self._key = key[:64]

    def _mac(self, body: str) -> str:
        return hashlib.blake2b(body.encode(), key=self._key, digest_size=MAC_BYTES).hexdigest()

    def format(self, identity: Identity, offset: int, check: int) -> str:
        body = f"{identity.dev:x}-{identity.ino:x}-{offset:x}-{check:08x}"
        return f"{body}-{self._mac(body)}"

    def parse(self, text: str) -> Position | None:
        """The position an id names, or None when this server did not make it."""
        m = ID_RE.match(text.strip())
        if not m:
            return None
        body = text.strip().rsplit("-", 1)[0]
        if not hmac.compare_digest(self._mac(body), m.group(5)):
            return None
        dev, ino, offset, check = (int(g, 16) for g in m.groups()[:4])
        return Position(Identity(dev, ino), offset, check)
