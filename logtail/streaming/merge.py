"""The backlog of several files as one sequence, merged by the time each line shows.

A stream of several files starts with each file's backlog (or what it missed, on a
resume). Sent file by file, the reader would see the app's last hundred lines, then the
database's, and have to line them up by eye. Here each file's range is read once (in the
scan pool: it may hold 16 files of 10,000 lines), each line gets the time it shows (a line
without one, such as a stack trace, keeps the time of the line before it), and the files
are merged by that time. Each file's own order never changes, and lines that show no time
before any that does come first, file by file.

The merged lines go out as runs: consecutive lines of one file are one event, whose id
names every file's place just after it, so a client that leaves in the middle of the
backlog resumes each file exactly where it stopped.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from logtail.files.history import fd_key
from logtail.files.lines import LineSplitter
from logtail.files.position import IdCodec, Identity, Position, check_at
from logtail.files.timestamps import line_time
from logtail.streaming.lineids import join_ids
from logtail.streaming.sse import id_only, lines_event, tagged_lines

__all__ = ["MERGE_MAX_BYTES", "Merged", "Part", "composite_id", "merge_backlogs",
           "parse_composite"]

MERGE_MAX_BYTES = 16 * 1024 * 1024  # all files together; past it, the rest is sent file by
# file as it is read (a `since` far back, a long resume)
RUN_BYTES = 256 * 1024  # merged events are handed to the socket in pieces of about this
TIME_HEAD = 256  # bytes of a line that may hold its timestamp (a JSON line: all of it)
NAME_SEP, PAIR_SEP = "=", "~"


def composite_id(ids: Mapping[str, str]) -> str:
    """One id for a place in several files: `<name>=<id>~<name>=<id>...`. Each file's id
    is signed on its own, so a pair that is altered or moved to another file resolves to
    nothing (that file gets `reset`) and the others still resume."""
    return PAIR_SEP.join(f"{name}{NAME_SEP}{i}" for name, i in ids.items() if i)


def parse_composite(text: str) -> dict[str, str] | None:
    """The per-file ids of a composite id, or None when it is not one."""
    out: dict[str, str] = {}
    for pair in text.strip().split(PAIR_SEP):
        name, sep, one = pair.partition(NAME_SEP)
        if not sep or not name or not one or name in out:
            return None
        out[name] = one
    return out or None


@dataclass(slots=True)
class Part:
    """One file's range to merge: `fd` is the stream's own descriptor (the caller closes
    it after the merge); the range ends where the follower had published."""

    name: str
    fd: int
    identity: Identity
    start: int
    end: int
    older: list[Position] = field(default_factory=list)  # places in older generations
    sent_to: int = -1  # after the merge: where the stream stands (-1: not merged)
    lines: int = 0  # ... having passed this many lines


@dataclass(slots=True)
class Merged:
    payloads: list[bytes]  # to send in order
    shown: dict[str, int]  # lines sent, by file
    ids: dict[str, str]  # every file's id after the backlog


@dataclass(slots=True, eq=False)
class _File:
    part: Part
    data: bytes
    texts: list[str]
    starts: list[int]  # where each line starts in `data`
    ends: list[int]  # ... and ends, after its newline


def _read(part: Part, max_line_bytes: int) -> _File | None:
    """The part's lines with where they are; None if the file changed under the read."""
    size = part.end - part.start
    data = os.pread(part.fd, size, part.start) if size > 0 else b""
    if len(data) != size:
        return None
    splitter = LineSplitter(max_line_bytes)
    lines = splitter.feed(data)
    texts = lines.split() if lines is not None else []
    tail = splitter.flush()  # an unfinished last line the follower published (see Cursor)
    if tail is not None:
        texts.extend(tail.split())
    starts, ends, pos = [], [], 0
    while pos < size:
        nl = data.find(b"\n", pos)
        end = size if nl < 0 else nl + 1
        starts.append(pos)
        ends.append(end)
        pos = end
    if len(starts) != len(texts):
        return None
    return _File(part, data, texts, starts, ends)


def _times(f: _File, k: int) -> Iterator[tuple[float, int, int]]:
    """(time shown, file, index) per line; a line without a time has the one before it."""
    last = -math.inf
    data = f.data
    for i, (start, end) in enumerate(zip(f.starts, f.ends, strict=True)):
        when = line_time(data[start:end] if data[start] == 0x7B else data[start:start + TIME_HEAD])
        if when is not None:
            last = when
        yield last, k, i


def merge_backlogs(parts: list[Part], ids: dict[str, str], codec: IdCodec, *,
                   max_line_bytes: int, keep: Callable[[str], bool] | None, sse: bool,
                   raw: bool, line_ids: bool) -> Merged:
    """Read and merge `parts` (blocking: run it in the scan pool). `ids` holds every
    file's id now, in the stream's order; `keep` is the stream's filter, if any."""
    files = [f for part in parts if (f := _read(part, max_line_bytes)) is not None]
    runs = _Runs(files, ids, codec, sse=sse, raw=raw, line_ids=line_ids)
    for _, k, i in heapq.merge(*(_times(f, k) for k, f in enumerate(files))):
        f = files[k]
        text = f.texts[i]
        runs.add(f, i, text, keep is None or keep(text))
    return runs.finish()


class _Runs:
    """The merged lines as events: one per run of consecutive lines of one file."""

    def __init__(self, files: list[_File], ids: dict[str, str], codec: IdCodec, *,
                 sse: bool, raw: bool, line_ids: bool) -> None:
        self.ids = dict(ids)
        self.codec = codec
        self.sse, self.raw = sse, raw
        self.keys = {f.part.name: fd_key(f.part.fd, False) for f in files} \
            if line_ids and sse else {}
        self.payloads: list[bytes] = []
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.shown: dict[str, int] = {}
        self.moved: set[_File] = set()  # places that moved past the last id sent
        self.run: _File | None = None
        self.lines: list[str] = []
        self.offsets: list[int] = []
        for f in files:
            f.part.sent_to = f.part.start

    def add(self, f: _File, i: int, text: str, visible: bool) -> None:
        if visible and self.run is not None and self.run is not f:
            self._flush()
        f.part.sent_to = f.part.start + f.ends[i]
        f.part.lines += 1
        self.moved.add(f)
        if visible:
            self.run = f
            self.lines.append(text)
            self.offsets.append(f.part.start + f.starts[i])

    def finish(self) -> Merged:
        if self.run is not None:
            self._flush()
        if self.moved:  # the filter hid the last lines: the id moves past them all the same
            self._update_ids()
            if self.sse:
                self.pending.append(id_only(composite_id(self.ids)))
        if self.pending:
            self.payloads.append(b"".join(self.pending))
        return Merged(self.payloads, self.shown, self.ids)

    def _update_ids(self) -> None:
        for f in self.moved:
            p = f.part
            pos = Position(p.identity, p.sent_to, check_at(p.fd, p.sent_to))
            self.ids[p.name] = self.codec.format_all([*p.older, pos]) if p.older else \
                self.codec.format(pos.identity, pos.offset, pos.check)
        self.moved.clear()

    def _flush(self) -> None:
        assert self.run is not None
        self._update_ids()
        name = self.run.part.name
        if self.sse:
            key = self.keys.get(name)
            out = lines_event(composite_id(self.ids), name, self.lines,
                              join_ids(key, self.offsets) if key else None)
        else:
            out = tagged_lines(name, self.lines, self.raw)
        self.shown[name] = self.shown.get(name, 0) + len(self.lines)
        self.pending.append(out)
        self.pending_bytes += len(out)
        if self.pending_bytes >= RUN_BYTES:
            self.payloads.append(b"".join(self.pending))
            self.pending.clear()
            self.pending_bytes = 0
        self.run, self.lines, self.offsets = None, [], []
