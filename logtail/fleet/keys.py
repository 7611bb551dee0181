"""What shippers write to Redis: key names, entry ids, the entry format, a stored place.

This is the contract between `logtail ship` and whatever reads the streams back (the
server's fleet view, `redis-cli`, scripts), so it is written down here and in README.md
("Shipping to Redis"), and nothing else in Redis is logtail's.

Keys, in the database the URL names; found with `SCAN 0 MATCH logtail:* TYPE stream`:
- `logtail:<host>:<name>`: one stream per shipped file. `host` is 1-253 characters of
  `A-Za-z0-9._-` (not `.` or `..`), `name` a `[[files]]` name (1-64 of the same). Neither
  holds a `:`, so a key splits at its colons into exactly three parts; a key that does not,
  or whose parts break these rules, is not a shipper's stream (`parse_stream_key`).
- `logtail:hosts`: a hash, host -> when that shipper last reached Redis (Unix seconds,
  integer text), written every `[ship] heartbeat_s`.

Entry ids are chosen by the shipper, not by Redis (`*`): `<epoch>-<number>`. Each line and
each notice of a stream has a number, counted from 0 when the stream began; an entry's id
holds the number of its first item, so the line k (0-based) of entry `E-S` is line
`E-(S+k)`, and the entry that holds line `E-L` is `XREVRANGE key E-L - COUNT 1` (when
`S <= L < S + n`). `epoch` is when the stream began (Unix ms): it changes only when the
stream is begun again from nothing (Redis lost it), so ids only ever grow. Numbers, not
times: a line keeps its number even when Redis restarts from an older snapshot and the
shipper sends the lines Redis lost again. Trimming counts lines: each XADD carries
`MINID ~ E-(next - maxlen)`.

Entry fields (all values are text):
- lines: `lines` (the lines joined by "\\n", no final newline, UTF-8; exactly as a server
  streams them: invalid bytes as U+FFFD, the CR of CRLF dropped, over-long lines cut with
  a visible mark), `n` (how many lines, >= 1), `t` (Unix ms when the shipper read them),
  `pos` (the shipper's place after this entry: `format_positions`, opaque to readers).
- notice: `notice` (`rotated`, `truncated`, `missing`, `dropped`, `reset`), `data` (a JSON
  object, as a server's notice of that name without `file`), `t`, `pos`. A notice takes
  one number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from logtail.config import NAME_RE, SHIP_HOST_RE
from logtail.files.position import Identity, Position

__all__ = ["HOSTS_KEY", "NO_FILE", "PREFIX", "SHIP_STATS_KEY", "Entry", "format_id",
           "format_positions", "parse_entry", "parse_id", "parse_positions", "parse_stream_key",
           "stream_key", "valid_host", "valid_name"]

PREFIX = "logtail:"
HOSTS_KEY = "logtail:hosts"
SHIP_STATS_KEY = "logtail:ship-stats"  # hash, "<host>:<name>" -> JSON of a shipper's counts
NOTICES = frozenset({"rotated", "truncated", "missing", "dropped", "reset"})
NO_FILE = "-"  # the place of a shipper whose file did not exist: all of its next file is new
_POS = re.compile(r"^[0-9a-f]{1,16}-[0-9a-f]{1,16}-[0-9a-f]{1,16}-[0-9a-f]{1,8}$")
_ID = re.compile(r"^([0-9]{1,20})-([0-9]{1,20})$")
MAX_POSITIONS = 8


def valid_host(host: str) -> bool:
    return bool(SHIP_HOST_RE.match(host)) and host not in (".", "..")


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name)) and name not in (".", "..")


def stream_key(host: str, name: str) -> str:
    if not valid_host(host) or not valid_name(name):
        raise ValueError(f"not a shippable host and file name: {host!r}, {name!r}")
    return f"{PREFIX}{host}:{name}"


def parse_stream_key(key: str | bytes) -> tuple[str, str] | None:
    """(host, name) of a shipper's stream key, or None for any other key."""
    if isinstance(key, bytes):
        try:
            key = key.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not key.startswith(PREFIX):
        return None
    parts = key[len(PREFIX):].split(":")
    if len(parts) != 2 or not valid_host(parts[0]) or not valid_name(parts[1]):
        return None
    return parts[0], parts[1]


def format_id(epoch: int, number: int) -> str:
    return f"{epoch}-{number}"


def parse_id(text: str | bytes) -> tuple[int, int] | None:
    """(epoch, number) of an entry id."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    m = _ID.match(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def format_positions(positions: Sequence[Position]) -> str:
    """A place in one or more generations (oldest first): `dev-ino-offset-check` in hex,
    joined by `.`, like a server's stream id without its MAC; `-` for no file."""
    if not positions:
        return NO_FILE
    return ".".join(f"{p.identity.dev:x}-{p.identity.ino:x}-{p.offset:x}-{p.check:x}"
                    for p in positions)


def parse_positions(text: str) -> tuple[Position, ...] | None:
    """The positions `format_positions` made (() for no file), or None if it did not."""
    if text == NO_FILE:
        return ()
    parts = text.split(".")
    if not text or len(parts) > MAX_POSITIONS or not all(_POS.match(p) for p in parts):
        return None
    out = []
    for part in parts:
        dev, ino, offset, check = (int(x, 16) for x in part.split("-"))
        out.append(Position(Identity(dev, ino), offset, check))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry, read back."""

    epoch: int
    number: int  # of its first item
    lines: list[str] | None  # a lines entry, or
    notice: str | None  # a notice entry
    data: dict[str, object] = field(default_factory=dict)
    t: int = 0  # Unix ms when the shipper read it
    pos: str = ""

    @property
    def count(self) -> int:
        """Numbers it takes: its lines, or one for a notice."""
        return len(self.lines) if self.lines is not None else 1

    @property
    def next(self) -> int:
        """The number of the item after it."""
        return self.number + self.count


def _decoded(fields: Mapping[Any, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in fields.items():
        key = k.decode("utf-8", "replace") if isinstance(k, bytes) else k
        out[key] = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return out


def parse_entry(entry_id: str | bytes, fields: Mapping[Any, Any]) -> Entry | None:
    """An entry as XRANGE gives it (with or without decode_responses), or None when it is
    not a shipper's entry."""
    ident = parse_id(entry_id)
    if ident is None:
        return None
    f = _decoded(fields)
    t = int(f["t"]) if f.get("t", "").isdigit() else 0
    pos = f.get("pos", "")
    lines, n = f.get("lines"), f.get("n", "")
    if lines is not None and n.isdigit():
        split = lines.split("\n")
        if len(split) != int(n):
            return None
        return Entry(ident[0], ident[1], split, None, {}, t, pos)
    notice = f.get("notice")
    if notice is None:
        return None
    try:
        data = json.loads(f.get("data") or "{}")
    except ValueError:
        data = {}
    return Entry(ident[0], ident[1], None, notice, data if isinstance(data, dict) else {}, t, pos)
