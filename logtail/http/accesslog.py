"""logtail's own access log, in the Combined Log Format, to a file, stderr, or nowhere.

Each line is nginx's `combined` format followed by the request time in seconds, exactly
what `log_format` with `... "$http_user_agent" $request_time` writes, so the usual
tools read it. Streams are logged when they end, with their duration and bytes sent, so
one line says how long someone watched and how much they got.

A file is opened for appending and each line goes out in one `write()`, so several
workers can share one file without tearing lines. When logrotate moves the file away,
the next line (at most a second later) goes to a new file at the configured path.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import TextIO

__all__ = ["AccessLog"]

log = logging.getLogger("logtail.access")
REOPEN_CHECK_S = 1.0
_ESCAPE = re.compile(r'[\x00-\x1f\x7f"\\]')


class AccessLog:
    def __init__(self, out: TextIO | None = None, path: Path | None = None) -> None:
        self.out = out  # a text stream (stderr), or None when writing to `path` or off
        self.path = path
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._checked = 0.0
        if path is not None:
            self._open()

    @classmethod
    def from_setting(cls, setting: str, base: Path | None = None) -> AccessLog:
        """`off`, `stderr`, or a file path (relative to the config file's folder)."""
        if setting == "off":
            return cls()
        if setting == "stderr":
            return cls(out=sys.stderr)
        path = Path(setting).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path=path)

    @property
    def enabled(self) -> bool:
        return self.out is not None or self.path is not None

    def write(self, ip: str, user: str | None, method: str, target: str, protocol: str,
              status: int, size: int, referer: str | None, agent: str | None,
              duration_s: float) -> None:
        if not self.enabled:
            return
        line = format_line(ip, user, method, target, protocol, status, size, referer, agent,
                           duration_s, time.time())
        try:
            if self.path is not None:
                self._reopen_if_moved()
                if self._fd is not None:
                    os.write(self._fd, line.encode("utf-8", "backslashreplace"))
            elif self.out is not None:
                self.out.write(line)
                self.out.flush()
        except (OSError, ValueError) as e:
            log.warning("access log write failed: %s", e)

    def _open(self) -> None:
        assert self.path is not None
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o640)
            st = os.fstat(self._fd)
            self._ident = (st.st_dev, st.st_ino)
        except OSError as e:
            self._fd = None
            log.warning("cannot open access log %s: %s", self.path, e)

    def _reopen_if_moved(self) -> None:
        now = time.monotonic()
        if now - self._checked < REOPEN_CHECK_S and self._fd is not None:
            return
        self._checked = now
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
            moved = (st.st_dev, st.st_ino) != self._ident
        except FileNotFoundError:
            moved = True
        if moved or self._fd is None:
            self.close()
            self._open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def format_line(ip: str, user: str | None, method: str, target: str, protocol: str,
                status: int, size: int, referer: str | None, agent: str | None,
                duration_s: float, when: float) -> str:
    """One line: `combined` plus the request time, e.g.
    `127.0.0.1 - - [22/Nov/2026:05:23:17 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8.0" 0.002`
    """
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(when))
    return (f'{_q(ip)} - {_q(user) if user else "-"} [{stamp}] '
            f'"{_q(method)} {_q(target)} {_q(protocol)}" {status} {size} '
            f'"{_q(referer or "-")}" "{_q(agent or "-")}" {duration_s:.3f}\n')


def _q(text: str) -> str:
    """Keep one request on one line and inside its quotes, whatever the client sent:
    escape `"`, backslash and control characters as `\\xHH`, as nginx does."""
    return _ESCAPE.sub(lambda m: f"\\x{ord(m.group()):02X}", text)
