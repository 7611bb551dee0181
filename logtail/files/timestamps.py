"""When a line was written, read from the line itself, and finding a time in a file.

Recognised at a line's start (after an optional `[`): RFC 3339 / ISO 8601 with or without
`T`, fraction and zone (`2026-12-01T13:52:00Z`, `2026-12-01 13:52:00,123`); syslog
(`Dec  1 13:52:21`, the year taken so the time is not in the future); epoch seconds or
milliseconds. Anywhere in the first 200 bytes: Apache/nginx (`[01/Dec/2026:13:52:21 +0000]`).
In a JSON line: its `ts`, `time`, `timestamp` or `@timestamp` field, in any of those forms.
A time without a zone is local time, as the writer's clock showed it.

Finding a time in a file is a binary search over byte offsets: each probe reads forward
from a point to the next line that has a time, so a 4 GB file costs a few dozen small
reads, about what a 1 MB one does.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["TIME_PROBE", "TimeError", "find_time", "line_time", "next_line_start",
           "parse_moment", "shows_time", "since_offset"]

MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
ISO = re.compile(
    rb"\[?(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    rb"\s?(Z|[+-]\d{2}:?\d{2})?(?![\d-])")
SYSLOG = re.compile(rb"([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\b")
CLF = re.compile(rb"\[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\]")
EPOCH = re.compile(rb"(\d{10}|\d{13})(?:\.(\d{1,6}))?(?!\d)")
JSON_KEYS = ("ts", "time", "timestamp", "@timestamp")
PROBE_BYTES = 64 * 1024  # how far a probe reads for a line with a time
TIME_PROBE = 1024 * 1024  # a file whose first MiB shows no time is taken to have none
DURATION = re.compile(r"(\d{1,9})([smhdw])")
DURATIONS = re.compile(r"(?:\d{1,9}[smhdw])+")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class TimeError(ValueError):
    """Not a time this module understands; the message says what is accepted."""


def _zone(raw: bytes | None) -> timezone | None:
    if not raw:
        return None
    if raw == b"Z":
        return UTC
    sign = -1 if raw[:1] == b"-" else 1
    digits = raw[1:].replace(b":", b"")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


def _epoch(y: int, mo: int, d: int, h: int, mi: int, s: int, frac: bytes | None,
           zone: timezone | None) -> float | None:
    try:
        dt = datetime(y, mo, d, h, mi, s, tzinfo=zone)
    except ValueError:
        return None
    seconds = dt.timestamp()  # local time when there is no zone
    if frac:
        seconds += int(frac) / 10 ** len(frac)
    return seconds


def _iso(m: re.Match[bytes]) -> float | None:
    y, mo, d, h, mi, s, frac, zone = m.groups()
    return _epoch(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), frac,
                  _zone(zone))


def _syslog(m: re.Match[bytes], now: float) -> float | None:
    mon = MONTHS.get(m[1].decode().lower())
    if mon is None:
        return None
    year = time.localtime(now).tm_year
    for y in (year, year - 1):  # no year in syslog: the latest one not in the future
        t = _epoch(y, mon, int(m[2]), int(m[3]), int(m[4]), int(m[5]), m[6], None)
        if t is not None and t <= now + 86400:
            return t
    return None


def _clf(m: re.Match[bytes]) -> float | None:
    mon = MONTHS.get(m[2].decode().lower())
    if mon is None:
        return None
    return _epoch(int(m[3]), mon, int(m[1]), int(m[4]), int(m[5]), int(m[6]), None,
                  _zone(m[7]))


def _json(line: bytes) -> float | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    for key in JSON_KEYS:
        value = obj.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value / 1000 if value > 1e11 else float(value)
        if isinstance(value, str):
            return line_time(value.encode(), allow_json=False)
    return None


def line_time(line: bytes, now: float | None = None, allow_json: bool = True) -> float | None:
    """The time `line` was written (epoch seconds), or None if it shows none."""
    head = line[:200]
    stripped = head.lstrip()
    if allow_json and stripped.startswith(b"{"):
        return _json(line[:65536])
    if m := ISO.match(stripped):
        return _iso(m)
    if m := SYSLOG.match(stripped):
        return _syslog(m, time.time() if now is None else now)
    if m := CLF.search(head):
        return _clf(m)
    if m := EPOCH.match(stripped):
        value = int(m[1])
        seconds = value / 1000 if len(m[1]) == 13 else float(value)
        if m[2] and len(m[1]) == 10:
            seconds += int(m[2]) / 10 ** len(m[2])
        return seconds
    return None


def parse_moment(text: str, now: float | None = None) -> float:
    """`since`/`until`: RFC 3339 / ISO 8601 (a date alone is its midnight, local) or a
    duration back from now (`90s`, `15m`, `2h`, `7d`, `1w`, or `1h30m`)."""
    now = time.time() if now is None else now
    compact = text.strip().replace(" ", "").lower()
    if compact and DURATIONS.fullmatch(compact):
        return now - sum(int(n) * UNITS[u] for n, u in DURATION.findall(compact))
    m = ISO.fullmatch(text.strip().encode())
    if m is not None and (t := _iso(m)) is not None:
        return t
    raise TimeError(f"{text[:40]!r} is neither an ISO 8601 time (2026-12-01T13:52:00Z, "
                    "2026-12-01) nor a duration (90s, 15m, 2h, 7d)")


def find_time(fd: int, start: int, end: int, moment: float,
              when: Callable[[bytes], float | None] = line_time) -> int | None:
    """The offset of the first line in [start, end) written at or after `moment` (a line
    without a time counts as written with the line before it): `end` if none was, None if
    no line shows a time. A binary search: O(log(size)) reads of PROBE_BYTES."""
    first = _next_time(fd, start, end, when)
    if first is None:
        return None
    if first[1] >= moment:
        return start
    lo, hi = first[0], end  # lo: a line written before `moment`; the answer is in (lo, hi]
    while hi - lo > PROBE_BYTES:
        mid = (lo + hi) // 2
        probe = _next_time(fd, mid, hi, when)
        if probe is None:  # no time shown in [mid, hi): err towards more lines, not fewer
            hi = min(hi, _line_start(fd, mid, hi))
        elif probe[1] >= moment:
            hi = probe[0]
        else:
            lo = probe[0]
    pos = lo
    for line in os.pread(fd, hi - lo, lo).split(b"\n"):
        if pos >= hi:
            break
        t = when(line) if line else None
        if t is not None and t >= moment:
            return pos
        pos += len(line) + 1
    return hi


def _next_time(fd: int, pos: int, end: int, when: Callable[[bytes], float | None]
               ) -> tuple[int, float] | None:
    """(offset, time) of the first line starting at or after `pos` that shows a time,
    reading forward up to `end`; None if there is none."""
    pos = _line_start(fd, pos, end)
    while pos < end:
        data = os.pread(fd, min(PROBE_BYTES, end - pos), pos)
        if not data:
            return None
        i = 0
        while (j := data.find(b"\n", i)) >= 0:
            t = when(data[i:j])
            if t is not None:
                return pos + i, t
            i = j + 1
        if i == 0:  # one line longer than a probe: judge its head, then skip it
            t = when(data)
            if t is not None:
                return pos, t
            return _next_time(fd, pos + len(data), end, when)
        pos += i
    return None


def _line_start(fd: int, pos: int, end: int) -> int:
    """The first line start at or after `pos` (`end` if none)."""
    if pos <= 0 or os.pread(fd, 1, pos - 1) == b"\n":
        return max(pos, 0)
    while pos < end:
        chunk = os.pread(fd, min(PROBE_BYTES, end - pos), pos)
        if not chunk:
            break
        nl = chunk.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(chunk)
    return end


def shows_time(fd: int, end: int) -> bool | None:
    """Whether a line in the first TIME_PROBE bytes of [0, end) shows a time; None when
    there is no line there at all (an empty file is not one without timestamps). Bounded:
    deciding that a huge file has no timestamps does not read all of it."""
    if end <= 0:
        return None
    return _next_time(fd, 0, min(end, TIME_PROBE), line_time) is not None


def since_offset(fd: int, end: int, moment: float, max_bytes: int) -> tuple[int, int]:
    """Where reading [0, end) from `moment` on starts, and the bytes skipped to keep it
    within `max_bytes` of `end` (the start then moves up to the first line start past
    `end - max_bytes`). A file without times starts at its beginning."""
    found = find_time(fd, 0, end, moment) if shows_time(fd, end) else None
    start = 0 if found is None else found
    if end - start <= max_bytes:
        return start, 0
    bound = next_line_start(fd, end - max_bytes, end)
    return bound, bound - start


def next_line_start(fd: int, pos: int, end: int) -> int:
    """The first line start at or after `pos` (`end` if none before it)."""
    return _line_start(fd, pos, end)
