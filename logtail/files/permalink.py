"""A line's permanent address: `<generation key>:<byte offset, hex>`.

The key is the generation's content key (`history.content_key`: the length and a hash
of its first bytes, up to 4 KiB, decompressed), the offset where the line starts in its
decompressed bytes. So an id survives renames and compression, needs no server state,
and names nothing outside the log's history: it carries no MAC, because it resolves only
within the history of the file named next to it, which whoever may read that file can
search anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LineId", "line_id", "parse_line_id"]

ID_RE = re.compile(r"([0-9a-f]{1,4})\.([0-9a-f]{16}):([0-9a-f]{1,16})")


@dataclass(frozen=True, slots=True)
class LineId:
    key: str
    offset: int

    @property
    def key_bytes(self) -> int:
        """How many leading bytes the key hashes."""
        return int(self.key.partition(".")[0], 16)


def line_id(key: str, offset: int) -> str:
    return f"{key}:{offset:x}"


def parse_line_id(text: str) -> LineId | None:
    m = ID_RE.fullmatch(text)
    if m is None:
        return None
    return LineId(f"{m[1]}.{m[2]}", int(m[3], 16))
