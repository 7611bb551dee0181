"""Stream query parameters: parsed strictly, every bad value named in a 400."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from logtail.config import StreamConfig
from logtail.files.timestamps import TimeError, parse_moment
from logtail.streaming.filters import FilterError, LineFilter

__all__ = ["KNOWN", "ParamError", "StreamParams", "flag", "line_filter", "moment", "one",
           "parse_stream_params"]

KNOWN = {"n", "follow", "q", "regex", "case", "invert", "format", "last_id", "raw", "since",
         "ids"}
FLAGS = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}
MAX_ID = 200
DIGITS = re.compile(r"[0-9]{1,12}")


class ParamError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True, slots=True)
class StreamParams:
    n: int
    follow: bool
    filter: LineFilter | None
    format: str
    last_id: str | None
    raw: bool = False  # format=text: bytes as logged, escapes and all
    since: float | None = None  # start at the first line written at or after this (epoch s)
    ids: bool = False  # SSE: each batch says where its lines are (`line-ids:`)


def one(args: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The parameter's one value (None if absent); given twice is an error."""
    values = args.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ParamError(name, "given more than once")
    return values[0]


def flag(args: Mapping[str, Sequence[str]], name: str, default: bool) -> bool:
    raw = one(args, name)
    if raw is None or raw == "":
        return default
    try:
        return FLAGS[raw.lower()]
    except KeyError:
        raise ParamError(name, f"must be 1 or 0, got {raw[:40]!r}") from None


def parse_stream_params(args: Mapping[str, Sequence[str]], last_event_id: str | None,
                        cfg: StreamConfig) -> StreamParams:
    unknown = sorted(set(args) - KNOWN)
    if unknown:
        raise ParamError(unknown[0][:40], f"unknown parameter (known: {', '.join(sorted(KNOWN))})")
    raw_n = one(args, "n")
    if raw_n is None or raw_n == "":
        n = cfg.backlog_lines
    else:
        if not DIGITS.fullmatch(raw_n):  # not isdigit(): "²" is a digit int() refuses
            raise ParamError("n", f"must be a whole number >= 0, got {raw_n[:40]!r}")
        n = min(int(raw_n), cfg.max_backlog_lines)
    fmt = one(args, "format") or "sse"
    if fmt not in ("sse", "text"):
        raise ParamError("format", f"must be sse or text, got {fmt[:40]!r}")
    last_id = one(args, "last_id") or last_event_id or None
    if last_id is not None and len(last_id) > MAX_ID:
        last_id = last_id[:MAX_ID]  # cannot be ours: it will get a `reset`
    return StreamParams(n=n, follow=flag(args, "follow", True), filter=line_filter(args),
                        format=fmt, last_id=last_id, raw=flag(args, "raw", False),
                        since=moment(args, "since"), ids=flag(args, "ids", False))


def line_filter(args: Mapping[str, Sequence[str]]) -> LineFilter | None:
    """`q` with `regex`, `case` and `invert`: None without `q`."""
    q = one(args, "q")
    regex, case, invert = (flag(args, k, False) for k in ("regex", "case", "invert"))
    if not q:
        return None
    try:
        return LineFilter(q, regex=regex, case=case, invert=invert)
    except FilterError as e:
        raise ParamError("q", f"bad {'regular expression' if regex else 'filter'}: {e}") \
            from None


def moment(args: Mapping[str, Sequence[str]], name: str) -> float | None:
    """`since`/`until`: ISO 8601 or a duration back from now, as epoch seconds."""
    raw = one(args, name)
    if raw is None or raw == "":
        return None
    try:
        return parse_moment(raw)
    except TimeError as e:
        raise ParamError(name, str(e)) from None
