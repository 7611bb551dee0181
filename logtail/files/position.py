"""Stream positions: the opaque SSE event id, signed so that no client can forge one.

An id names a file identity (device + inode), a byte offset in it, and a checksum of the
bytes just before that offset, then a MAC of all that under the server's secret key. It
depends on nothing in memory, so a client can resume after a server restart (the key is
kept on disk, see `logtail.files.secret`); the checksum tells a file that was truncated and
rewritten (or an inode number that was reused) from the one the client was reading; the
MAC means a client can only come back to positions this server handed out, never guess
its way to another inode.

During a rotation's grace period a stream follows two (or a few) generations at once, the
renamed file still being written and the new one, so its id then names a position in
each, oldest first, under one MAC: `pos.pos-mac`, where each `pos` is `dev-inode-offset-
check`. An id with one position is the common case and looks as it always did.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CHECK_BYTES", "MAX_POSITIONS", "IdCodec", "Identity", "Position", "check_at"]

CHECK_BYTES = 32
MAC_BYTES = 12  # 96 bits: far beyond what anyone can try against a server
MAX_POSITIONS = 8  # positions one id may name (a stream's live generations)
_POS = r"[0-9a-f]{1,16}-[0-9a-f]{1,16}-[0-9a-f]{1,16}-[0-9a-f]{8}"
ID_RE = re.compile(rf"^({_POS}(?:\.{_POS}){{0,{MAX_POSITIONS - 1}}})-([0-9a-f]{{24}})$")


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

    def format_all(self, positions: Sequence[Position]) -> str:
        """One id for a place in several generations, oldest first."""
        body = ".".join(f"{p.identity.dev:x}-{p.identity.ino:x}-{p.offset:x}-{p.check:08x}"
                        for p in positions)
        return f"{body}-{self._mac(body)}"

    def parse_all(self, text: str) -> tuple[Position, ...] | None:
        """The positions an id names, oldest first, or None when this server did not make it."""
        m = ID_RE.match(text.strip())
        if not m:
            return None
        body = m.group(1)
        if not hmac.compare_digest(self._mac(body), m.group(2)):
            return None
        out: list[Position] = []
        for part in body.split("."):
            dev, ino, offset, check = (int(g, 16) for g in part.split("-"))
            out.append(Position(Identity(dev, ino), offset, check))
        return tuple(out)

    def parse(self, text: str) -> Position | None:
        """The position a one-position id names, or None (not made here, or several)."""
        found = self.parse_all(text)
        return found[0] if found is not None and len(found) == 1 else None
