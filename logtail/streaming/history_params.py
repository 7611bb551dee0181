"""Parameters of `search` and `lines`: parsed as strictly as a stream's, every bad value
named in a 400; counts over their bound are clamped to it, as a stream's `n` is."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from logtail.config import HistoryConfig
from logtail.streaming.filters import LineFilter
from logtail.streaming.params import DIGITS, ParamError, flag, line_filter, moment, one

__all__ = ["LinesParams", "SearchParams", "parse_lines_params", "parse_search_params"]

SEARCH_KNOWN = {"q", "regex", "case", "invert", "since", "until", "limit", "order", "format",
                "raw"}
LINES_KNOWN = {"at", "before", "after", "format", "raw"}
DEFAULT_LIMIT = 1000
DEFAULT_CONTEXT = 20
At = TypeVar("At")


@dataclass(frozen=True, slots=True)
class SearchParams:
    filter: LineFilter | None
    since: float | None
    until: float | None
    limit: int
    desc: bool
    format: str  # sse, text or ndjson
    raw: bool = False


@dataclass(frozen=True, slots=True)
class LinesParams(Generic[At]):
    at: At  # a local file's LineId; a shipped file's (epoch, number)
    before: int
    after: int
    format: str  # json or text
    raw: bool = False


def _known(args: Mapping[str, Sequence[str]], known: set[str]) -> None:
    unknown = sorted(set(args) - known)
    if unknown:
        raise ParamError(unknown[0][:40], f"unknown parameter (known: {', '.join(sorted(known))})")


def _count(args: Mapping[str, Sequence[str]], name: str, default: int, most: int,
           least: int = 0) -> int:
    raw = one(args, name)
    if raw is None or raw == "":
        return min(default, most)
    if not DIGITS.fullmatch(raw) or int(raw) < least:
        raise ParamError(name, f"must be a whole number >= {least}, got {raw[:40]!r}")
    return min(int(raw), most)


def _format(args: Mapping[str, Sequence[str]], allowed: tuple[str, ...]) -> str:
    fmt = one(args, "format") or allowed[0]
    if fmt not in allowed:
        raise ParamError("format", f"must be {', '.join(allowed[:-1])} or {allowed[-1]}, "
                                   f"got {fmt[:40]!r}")
    return fmt


def parse_search_params(args: Mapping[str, Sequence[str]], cfg: HistoryConfig) -> SearchParams:
    _known(args, SEARCH_KNOWN)
    order = one(args, "order") or "desc"
    if order not in ("desc", "asc"):
        raise ParamError("order", f"must be desc (newest first) or asc, got {order[:40]!r}")
    since, until = moment(args, "since"), moment(args, "until")
    if since is not None and until is not None and until <= since:
        raise ParamError("until", "must be later than since")
    return SearchParams(filter=line_filter(args), since=since, until=until,
                        limit=_count(args, "limit", DEFAULT_LIMIT, cfg.max_matches, least=1),
                        desc=order == "desc", format=_format(args, ("sse", "text", "ndjson")),
                        raw=flag(args, "raw", False))


def parse_lines_params(args: Mapping[str, Sequence[str]], cfg: HistoryConfig,
                       parse_at: Callable[[str], At | None]) -> LinesParams[At]:
    _known(args, LINES_KNOWN)
    raw_at = one(args, "at")
    if not raw_at:
        raise ParamError("at", "a line id is needed (from a search match, a permalink or a "
                               "stream's line-ids)")
    at = parse_at(raw_at) if len(raw_at) <= 64 else None
    if at is None:
        raise ParamError("at", f"not a line id, got {raw_at[:40]!r}")
    return LinesParams(at=at, before=_count(args, "before", DEFAULT_CONTEXT, cfg.max_context),
                       after=_count(args, "after", DEFAULT_CONTEXT, cfg.max_context),
                       format=_format(args, ("json", "text")), raw=flag(args, "raw", False))
