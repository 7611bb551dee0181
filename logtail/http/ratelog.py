"""Log lines about what clients send, safe to write however much they send.

Clients choose these messages' contents and their number: every byte that is not
printable ASCII is escaped (`\\xHH`, a backslash too), so nothing a client writes can move
a terminal's cursor or forge a line, and at most `per_second` lines are written a second;
the rest are counted and reported in one line when the second is over.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

__all__ = ["RateLimitedLog", "escape"]

_UNPRINTABLE = re.compile(rb"[^\x20-\x5b\x5d-\x7e]")  # all but printable ASCII, or "\\"


def escape(text: str | bytes, limit: int = 200) -> str:
    """`text` (bytes, or str as Sanic decodes heads) as printable ASCII, cut to `limit`."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    out = _UNPRINTABLE.sub(lambda m: b"\\x%02x" % m[0][0], text[:limit]).decode("ascii")
    return out + ("..." if len(text) > limit else "")


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, per_second: int = 5) -> None:
        self.logger = logger
        self.per_second = per_second
        self._window = 0.0
        self._count = 0
        self._suppressed = 0
        self._flush: asyncio.TimerHandle | None = None

    def warning(self, message: str) -> None:
        """Log `message` (already escaped) unless this second's lines are used up."""
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._summarise()
            self._window, self._count = now, 0
        if self._count < self.per_second:
            self._count += 1
            self.logger.warning(message)
            return
        self._suppressed += 1
        if self._flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._flush = loop.call_later(self._window + 1.0 - now, self._summarise)

    def _summarise(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._suppressed:
            self.logger.warning("%d more suppressed", self._suppressed)
            self._suppressed = 0
