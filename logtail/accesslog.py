"""logtail's own access log, in the Combined Log Format, to a file, stderr, or nowhere.

Streams are logged when they end, with their duration and bytes sent, so one line says
how long someone watched and how much they got.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TextIO

__all__ = ["AccessLog"]

log = logging.getLogger("logtail.access")


class AccessLog:
    def __init__(self, out: TextIO | None) -> None:
        self.out = out

    @classmethod
    def from_setting(cls, setting: str, base: Path | None = None) -> AccessLog:
        """`off`, `stderr`, or a file path (relative to the config file's folder)."""
        if setting == "off":
            return cls(None)
        if setting == "stderr":
            return cls(sys.stderr)
        path = Path(setting)
        if not path.is_absolute() and base is not None:
            path = base / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(open(path, "a", buffering=1, encoding="utf-8"))

    def write(self, ip: str, user: str | None, method: str, target: str, status: int,
              size: int, referer: str | None, agent: str | None,
              duration_s: float | None = None) -> None:
        if self.out is None:
            return
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
        line = (f'{ip} - {user or "-"} [{stamp}] "{_q(method)} {_q(target)} HTTP/1.1" '
                f'{status} {size} "{_q(referer or "-")}" "{_q(agent or "-")}"')
        if duration_s is not None:
            line += f" {duration_s:.3f}"
        try:
            self.out.write(line + "\n")
        except (OSError, ValueError) as e:
            log.warning("access log write failed: %s", e)

    def close(self) -> None:
        if self.out is not None and self.out is not sys.stderr:
            self.out.close()


def _q(text: str) -> str:
    """Keep one request on one line, whatever the client sent."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
