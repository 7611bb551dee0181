"""Splitting a byte stream into complete lines of text.

One splitter serves the live follower, the catch-up reader and the backlog, so every
path cuts, decodes and counts lines the same way and byte offsets always agree.
The hot path does no per-line Python work: a chunk of complete lines is decoded and
kept as one string; only chunks that may hold an over-long line are split.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LineSplitter", "Lines", "cut_line", "normalise"]

SLACK = 3  # bytes held past the limit, so a cut can see where a UTF-8 character ends


@dataclass(slots=True, frozen=True)
class Lines:
    """Complete lines as one text, joined by "\\n", without a final newline."""

    text: str
    count: int

    def split(self) -> list[str]:
        return self.text.split("\n")


def cut_line(head: bytes, total: int, limit: int) -> bytes:
    """The first `limit` bytes of a line (not splitting a UTF-8 character) and a visible mark."""
    end = min(limit, len(head))
    if end < len(head):
        back = end
        while back > 0 and end - back < 3 and (head[back] & 0xC0) == 0x80:
            back -= 1
        if (head[back] & 0xC0) != 0x80:
            end = back
    return head[:end] + f" [… line cut: {total} bytes]".encode()


def normalise(raw: bytes) -> str:
    """Decode (invalid UTF-8 becomes U+FFFD) and drop the CR of CRLF endings."""
    text = raw.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if text.endswith("\r"):
            text = text[:-1]
    return text


class LineSplitter:
    """Feed bytes that start at a line boundary; get back the lines they complete.

    An unfinished line is held, but never more than `limit` bytes of it: the rest is only
    counted, and the line is emitted cut, with a mark that says how long it was.
    """

    __slots__ = ("extra", "head", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = b""
        self.extra = 0

    @property
    def pending(self) -> int:
        """Bytes consumed that belong to the unfinished line."""
        return len(self.head) + self.extra

    def feed(self, data: bytes) -> Lines | None:
        last = data.rfind(b"\n")
        if last < 0:
            self._hold(data)
            return None
        parts: list[bytes] = []
        start = 0
        if self.head or self.extra:
            first = data.find(b"\n")
            parts.append(self._finish(data[:first]))
            start = first + 1
        if start <= last:
            body = data[start:last]
            if len(body) > self.limit:
                body = self._cut_long(body)
            parts.append(body)
        self._hold(data[last + 1 :])
        raw = parts[0] if len(parts) == 1 else b"\n".join(parts)
        return Lines(normalise(raw), raw.count(b"\n") + 1)

    def flush(self) -> Lines | None:
        """Emit the unfinished line as it is (a writer that never ended its last line)."""
        if not (self.head or self.extra):
            return None
        raw = self._finish(b"")
        return Lines(normalise(raw), raw.count(b"\n") + 1)

    def _hold(self, data: bytes) -> None:
        if not data:
            return
        room = self.limit + SLACK - len(self.head)
        if room > 0:
            self.head += data[:room]
        self.extra += max(0, len(data) - max(room, 0))

    def _finish(self, tail: bytes) -> bytes:
        total = len(self.head) + self.extra + len(tail)
        head = self.head
        if not self.extra:
            head += tail[: max(0, self.limit + SLACK - len(head))]
        self.head, self.extra = b"", 0
        if total > self.limit:
            return cut_line(head, total, self.limit)
        return head

    def _cut_long(self, body: bytes) -> bytes:
        if not _has_long_line(body, self.limit):
            return body
        lines = body.split(b"\n")
        limit = self.limit
        return b"\n".join(ln if len(ln) <= limit else cut_line(ln, len(ln), limit) for ln in lines)


def _has_long_line(body: bytes, limit: int) -> bool:
    """Whether a line of `body` is longer than `limit`, without splitting it into lines:
    from a line start, the last newline within the next `limit` + 1 bytes ends every line
    before it, each at most `limit` long; none there means the line is longer. About
    len(body) / limit C-level searches, instead of one bytes object per line."""
    pos, size = 0, len(body)
    while size - pos > limit:
        nl = body.rfind(b"\n", pos, pos + limit + 1)
        if nl < 0:
            return True
        pos = nl + 1
    return False
