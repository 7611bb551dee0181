"""Server-Sent Events and plain-text framing: pure functions from lines to bytes.

CR, LF and CRLF all end an SSE line, so a CR left inside a log line (CRLF endings are
already gone) is shown as U+240D "␍" instead of breaking the frame. Plain text usually
lands in a terminal, so it is made terminal-safe (see `terminal`) unless asked for raw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from logtail import __version__
from logtail.streaming.terminal import terminal_bytes

__all__ = ["comment", "data_event", "id_only", "lines_data", "lines_event", "lines_head",
           "named_event", "notice", "opening", "tagged_lines", "text_lines"]

CR_SYMBOL = "\u240d"


def opening(retry_ms: int) -> bytes:
    """Sent at once: EventSource fires `open`, proxies flush headers."""
    return f": logtail {__version__}\nretry: {retry_ms}\n\n".encode()


def _data(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r", CR_SYMBOL)
    return "data: " + text.replace("\n", "\ndata: ")


def data_event(event_id: str, text: str | Sequence[str], line_ids: str | None = None) -> bytes:
    """One event for a batch: its id, then one `data:` per line; with `line_ids`, a
    `line-ids:` field too (where its lines are, see README "Line ids on streams"), which
    EventSource ignores."""
    if not isinstance(text, str):
        text = "\n".join(text)
    extra = f"line-ids: {line_ids}\n" if line_ids else ""
    return f"id: {event_id}\n{extra}{_data(text)}\n\n".encode()


def lines_event(event_id: str | None, name: str, lines: Sequence[str],
                line_ids: str | None = None) -> bytes:
    """One batch of a stream of several files: `event: lines`, the data is
    `{"file": name, "lines": [...]}` on one `data:` line."""
    return lines_head(event_id, line_ids) + lines_data(name, lines)


def lines_head(event_id: str | None, line_ids: str | None = None) -> bytes:
    """The fields of a `lines` event before its data (which streams share, see `lines_data`)."""
    head = f"event: lines\nid: {event_id}\n" if event_id else "event: lines\n"
    return (head + f"line-ids: {line_ids}\n" if line_ids else head).encode()


def lines_data(name: str, lines: Sequence[str]) -> bytes:
    data = json.dumps({"file": name, "lines": list(lines)}, ensure_ascii=False,
                      separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def tagged_lines(name: str, lines: Sequence[str], raw: bool = False) -> bytes:
    """Lines of a stream of several files for `format=text`, each as `<name>: <line>`."""
    return text_lines([f"{name}: {line}" for line in lines], raw)


def named_event(name: str, text: str, event_id: str | None = None) -> bytes:
    """A named event whose data is text (one line per `data:`), with an optional id."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"event: {name}\n{head}{_data(text)}\n\n".encode()


def id_only(event_id: str) -> bytes:
    """Moves the client's Last-Event-ID past lines a filter hid, without an event."""
    return f"id: {event_id}\n\n".encode()


def notice(name: str, data: dict[str, object], event_id: str | None = None,
           retry_ms: int | None = None) -> bytes:
    """A named event with JSON data; `retry_ms` also sets how long an EventSource waits
    before it reconnects (the `bye` of a shutdown uses it to wait out a restart)."""
    head = f"id: {event_id}\n" if event_id else ""
    if retry_ms is not None:
        head += f"retry: {retry_ms}\n"
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


def text_lines(text: str | Sequence[str], raw: bool = False) -> bytes:
    """Lines for `format=text`: terminal-safe, or exactly as logged with `raw`."""
    if not isinstance(text, str):
        text = "\n".join(text)
    return (text + "\n").encode() if raw else terminal_bytes(text + "\n")
