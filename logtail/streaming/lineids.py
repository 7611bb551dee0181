"""Where a stream's lines are, so every line shown can have a permalink (`ids=1`).

A batch event then carries a `line-ids:` field: `<key>:<offset>[,<offset>...]` (hex),
the content key of the batch's generation and where its lines start. One offset names
the first line, and each next line starts at the previous one's offset plus its UTF-8
length as received plus one; that holds exactly when the batch's lines are consecutive
and their text is their bytes. Otherwise (a filter hid lines, or a line was cut, had
invalid UTF-8, a CRLF or a lone CR) there is one offset per line. `<key>:<offset>` is the
line id that `lines?at=` resolves, the same a search gives.

The key is computed from the generation's descriptor, once per generation (again only
while the file is shorter than the 4 KiB a key hashes), a small positional read.
"""

from __future__ import annotations

from collections.abc import Sequence

from logtail.files.generation import Batch, Generation
from logtail.files.history import KEY_BYTES, fd_key

__all__ = ["LineIds", "join_ids"]

CUT_MARK = " line cut: "  # what `lines.cut_line` adds to a cut line
KEYS_KEPT = 4


class LineIds:
    def __init__(self) -> None:
        self._keys: list[tuple[Generation, str, int]] = []  # most recent last

    def key(self, gen: Generation) -> str | None:
        """The content key of `gen`, or None once it cannot be read."""
        if gen.fd < 0 or gen.closed:
            return None
        known = next((e for e in self._keys if e[0] is gen), None)
        if known is not None and (known[2] >= KEY_BYTES or gen.published <= known[2]):
            return known[1]  # (a key taken while the file was small is renewed as it grows)
        try:
            key = fd_key(gen.fd, False)
        except OSError:
            return None
        kept = [e for e in self._keys if e[0] is not gen][-(KEYS_KEPT - 1):]
        self._keys = [*kept, (gen, key, int(key.partition(".")[0], 16))]
        return key

    def field(self, b: Batch) -> str | None:
        """The `line-ids` value for all the lines of `b`."""
        key = self.key(b.gen)
        if key is None:
            return None
        if _plain(b):
            return f"{key}:{b.start:x}"
        offsets = _offsets(b)
        return None if offsets is None else join_ids(key, offsets)

    def filtered(self, b: Batch, shown: Sequence[str]) -> str | None:
        """The `line-ids` value for `shown`, the lines of `b` a filter let through."""
        key = self.key(b.gen)
        if key is None or not shown:
            return None
        lines = b.lines.split()
        if _plain(b):
            offsets, pos = [], b.start
            for line in lines:
                offsets.append(pos)
                pos += len(line.encode()) + 1
        else:
            found = _offsets(b)
            if found is None:
                return None
            offsets = found
        picked, j = [], 0
        for line, offset in zip(lines, offsets, strict=False):
            if j < len(shown) and line == shown[j]:  # the same text matches the same way
                picked.append(offset)
                j += 1
        return join_ids(key, picked) if j == len(shown) else None


def _plain(b: Batch) -> bool:
    """Whether every line's bytes are its text plus a newline."""
    text = b.lines.text
    return ("\r" not in text and "\ufffd" not in text and CUT_MARK not in text
            and len(text.encode()) + 1 == b.end - b.start)


def _offsets(b: Batch) -> list[int] | None:
    """Where each line of `b` starts, from the bytes themselves (None if they are gone)."""
    size = b.end - b.start
    raw = b.gen.read(b.start, size)
    if len(raw) != size:
        return None
    out = [b.start]
    pos = raw.find(b"\n")
    while 0 <= pos < size - 1 and len(out) < b.lines.count:
        out.append(b.start + pos + 1)
        pos = raw.find(b"\n", pos + 1)
    return out if len(out) == b.lines.count else None


def join_ids(key: str, offsets: Sequence[int]) -> str:
    """The `line-ids` value for lines at `offsets` of the generation with `key`."""
    return f"{key}:" + ",".join(f"{o:x}" for o in offsets)
