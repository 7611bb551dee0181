"""Routes for a log's whole history: `search` (matching lines, streamed as they are found)
and `lines` (the lines around a line id: permalinks and "load earlier").

Both read in the scan pool, a slice at a time, in turns with backlog scans (`ScanGate`),
and hold a history slot (`ScanSlots`) until their thread is done. A search whose client
leaves stops at its next block; one whose client stops reading is cut after
`stream.stall_timeout_s`, like a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import unquote

from redis.exceptions import RedisError
from sanic import HTTPResponse, Request, Sanic
from sanic.response import json as json_response
from sanic.response import raw

from logtail import __version__
from logtail.config import Config
from logtail.files.context import ContextScan
from logtail.files.follow import Follower
from logtail.files.permalink import LineId, parse_line_id
from logtail.fleet.catalog import Shipped
from logtail.fleet.history import ShippedSearch, context, parse_line
from logtail.fleet.keys import format_id
from logtail.http.guard import Refusal
from logtail.http.middleware import error
from logtail.http.sanic_compat import set_response_timeout
from logtail.http.scanslots import ScanSlots
from logtail.http.state import state_of
from logtail.streaming.history_params import (
    LinesParams,
    SearchParams,
    parse_lines_params,
    parse_search_params,
)
from logtail.streaming.params import ParamError
from logtail.streaming.scans import GeneratorScan, ScanGate
from logtail.streaming.search import Match, Search, SearchSpec, SourceError
from logtail.streaming.sse import comment, named_event, notice, text_lines

__all__ = ["register"]

AccessLog = Callable[[Request, int, int, float | None], None]
PROGRESS_S = 0.2  # progress events at least this often while scanning (the contract: 250 ms)
CONTENT_TYPES = {"sse": "text/event-stream; charset=utf-8", "text": "text/plain; charset=utf-8",
                 "ndjson": "application/x-ndjson"}
HEADERS = {"cache-control": "no-cache, no-transform", "x-accel-buffering": "no"}


def register(app: Sanic[Any, Any], access: AccessLog) -> None:
    """Add the history routes; `access` writes a streamed response's access-log line."""
    @app.get("/api/files/<name>/search")
    async def history_search(request: Request, name: str) -> HTTPResponse | None:
        return await _search(app, request, unquote(name), access)  # see app.stream

    @app.get("/api/files/<name>/lines")
    async def history_lines(request: Request, name: str) -> HTTPResponse:
        return await _lines(app, request, unquote(name))


def _refused(app: Sanic[Any, Any], r: Refusal) -> HTTPResponse:
    state_of(app).metrics.reject(r.reason)
    return error(r.status, r.message, headers={"retry-after": str(r.retry_after)},
                  reason=r.reason, retry_after=r.retry_after)


def _args(request: Request) -> dict[str, list[str]]:
    return {k: list(v) for k, v in request.get_args(keep_blank_values=True).items()}


def _admit(app: Sanic[Any, Any], request: Request, name: str
           ) -> Follower | Shipped | HTTPResponse:
    state = state_of(app)
    follower: Follower | Shipped | None = state.followers.get(name)
    if follower is None and state.fleet is not None:
        follower = state.fleet.find(name)
    if follower is None:
        return error(404, "unknown file", file=name[:100])
    if state_of(app).stopping.is_set():
        return error(503, "server shutting down", headers={"retry-after": "2"})
    return follower


async def _scan(app: Sanic[Any, Any], ip: str, kind: str, scan: GeneratorScan,
                between: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run `scan` in the scan pool, holding a history slot (taken by the caller) until no
    thread works for it any more. A client's searches take turns with each other, not
    with its line lookups (a click on a match is not held up by the search still
    running) nor with its streams' backlogs; everyone's take turns for the threads."""
    slots: ScanSlots = state_of(app).history_slots
    gate: ScanGate = state_of(app).scans

    def done() -> None:
        scan.close()
        slots.release(ip)

    try:
        await gate.run(f"{ip} {kind}", scan, done, between=between)
    finally:
        scan.stop()


# -- search ------------------------------------------------------------------------------

class _Out:
    """The search's response, opened when there is something to say (so a 422 can still
    be answered); sends are serialised (the progress ticker writes too) and cut after
    `stall_s` without progress, as a stalled stream is."""

    def __init__(self, request: Request, fmt: str, stall_s: float) -> None:
        self.request = request
        self.fmt = fmt
        self.stall_s = stall_s
        self.response: Any = None
        self.sent = 0
        self.lock = asyncio.Lock()

    async def send(self, data: bytes) -> None:
        if not data:
            return
        async with self.lock:
            if self.response is None:
                self.request.ctx.stream = True  # logged when it ends
                self.response = await self.request.respond(
                    content_type=CONTENT_TYPES[self.fmt], headers=HEADERS)
            try:
                async with asyncio.timeout(self.stall_s):
                    await self.response.send(data)
            except TimeoutError:
                cast(asyncio.Transport, self.request.transport).abort()
                raise
            self.sent += len(data)

    async def end(self) -> None:
        async with self.lock:
            if self.response is not None:
                await self.response.eof()


def _framed(found: list[Match | SourceError], p: SearchParams) -> bytes:
    if not found:
        return b""
    if p.format == "text":
        lines = [m.line for m in found if isinstance(m, Match)]
        return text_lines(lines, p.raw) if lines else b""
    out: list[bytes] = []
    for m in found:
        if p.format == "sse":
            out.append(named_event("match", m.line, m.id) if isinstance(m, Match)
                       else notice("source_error", {"source": m.source, "error": m.error}))
        elif isinstance(m, Match):
            out.append(_ndjson({"id": m.id, "source": m.source, "line": m.line}))
        else:
            out.append(_ndjson({"source": m.source, "error": m.error}))
    return b"".join(out)


def _ndjson(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _progress(search: Search) -> bytes:
    return notice("progress", {"scanned_bytes": search.scanned, "total_bytes": search.total,
                               "source": search.source})


async def _ticker(out: _Out, search: Search) -> None:
    with contextlib.suppress(Exception):
        while True:
            await asyncio.sleep(PROGRESS_S)
            await out.send(_progress(search))


async def _search(app: Sanic[Any, Any], request: Request, name: str, access: AccessLog
                  ) -> HTTPResponse | None:
    cfg: Config = state_of(app).config
    admitted = _admit(app, request, name)
    if isinstance(admitted, HTTPResponse):
        return admitted
    try:
        p = parse_search_params(_args(request), cfg.history)
    except ParamError as e:
        return error(400, e.message, param=e.param)
    if isinstance(admitted, Shipped):
        return await _search_shipped(app, request, admitted, p, access)
    return await _search_local(app, request, admitted, p, access)


async def _search_local(app: Sanic[Any, Any], request: Request, admitted: Follower,
                        p: SearchParams, access: AccessLog) -> HTTPResponse | None:
    cfg: Config = state_of(app).config
    ip = request.ctx.client_ip
    refused = state_of(app).history_slots.acquire(ip)
    if refused is not None:
        return _refused(app, refused)
    search = Search(admitted.path, SearchSpec(
        p.filter, p.since, p.until, p.limit, p.desc, cfg.history.max_scan_bytes,
        cfg.stream.max_line_bytes))
    scan = GeneratorScan(search.work())
    # a search that finds nothing for minutes is not a stalled response: bounded by
    # max_scan_bytes, and its sends by the stall guard in `_Out`
    set_response_timeout(request, math.inf)
    out = _Out(request, p.format, cfg.stream.stall_timeout_s)
    ticker: asyncio.Task[None] | None = None
    stopping: asyncio.Event = state_of(app).stopping

    async def between() -> None:
        nonlocal ticker
        if not search.planned or search.no_times:
            return
        if out.response is None:
            await out.send(comment(f"logtail {__version__} search") if p.format == "sse"
                           else b"")
        if ticker is None and p.format == "sse":
            ticker = asyncio.get_running_loop().create_task(_ticker(out, search))
        await out.send(_framed(search.take(), p))
        if stopping.is_set():
            scan.stop()

    task = asyncio.current_task()
    assert task is not None
    state_of(app).streams.add(task)
    try:
        await _scan(app, ip, "search", scan, between)
        if search.no_times:
            param = "since" if p.since is not None else "until"
            return error(422, "no line of this file's history shows a recognisable "
                               "timestamp (its first MiB, in each generation)", param=param)
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        if stopping.is_set() and not scan.finished:  # no `done`: the client sees it cut short
            return None if out.response is not None else \
                error(503, "server shutting down", headers={"retry-after": "2"})
        return await _finish(out, search, p)
    finally:
        if ticker is not None:
            ticker.cancel()
        state_of(app).streams.discard(task)
        if out.response is not None:
            access(request, 200, out.sent, time.monotonic() - request.ctx.started)


async def _finish(out: _Out, search: Search, p: SearchParams) -> HTTPResponse | None:
    """What is left, then `done` (SSE, ndjson)."""
    tail = _framed(search.take(), p)
    summary: dict[str, object] = {"matches": search.matches, "scanned_bytes": search.scanned,
                                  "limited": search.limited}
    if p.format == "sse":
        tail = (comment(f"logtail {__version__} search") if out.response is None
                else b"") + tail + _progress(search) + notice("done", summary)
    elif p.format == "ndjson":
        tail += _ndjson(summary)
    if not tail and out.response is None:  # text, nothing found: an empty body
        return raw(b"", content_type=CONTENT_TYPES[p.format], headers=HEADERS)
    await out.send(tail)
    await out.end()
    return None


# -- lines around a position ---------------------------------------------------------------

async def _lines(app: Sanic[Any, Any], request: Request, name: str) -> HTTPResponse:
    cfg: Config = state_of(app).config
    admitted = _admit(app, request, name)
    if isinstance(admitted, HTTPResponse):
        return admitted
    if isinstance(admitted, Shipped):
        return await _lines_shipped(app, request, admitted)
    try:
        p: LinesParams[LineId] = parse_lines_params(_args(request), cfg.history, parse_line_id)
    except ParamError as e:
        return error(400, e.message, param=e.param)
    ip = request.ctx.client_ip
    refused = state_of(app).history_slots.acquire(ip)
    if refused is not None:
        return _refused(app, refused)
    ctx = ContextScan(admitted.path, p.at, p.before, p.after, cfg.stream.max_line_bytes,
                      cfg.history.max_scan_bytes)
    await _scan(app, ip, "lines", GeneratorScan(ctx.work()))
    r = ctx.result
    at = request.args.get("at", "")[:64]
    if r.gone is not None:
        return error(410, r.gone, at=at)
    if not r.lines:
        return error(422, "the line lies further into a compressed generation than "
                           "history.max_scan_bytes reads", at=at)
    return _lines_answer(p, name, r.lines, r.at, r.more_before, r.more_after, r.limited)


# -- shipped files (`[fleet]`): what Redis holds -------------------------------------------

async def _search_shipped(app: Sanic[Any, Any], request: Request, shipped: Shipped,
                          p: SearchParams, access: AccessLog) -> HTTPResponse | None:
    """The same search over what Redis holds of a shipped file (`since`/`until` by when
    each entry was shipped); its matches' ids are the lines' ids in the stream."""
    state = state_of(app)
    assert state.fleet is not None
    cfg = state.config
    f = p.filter
    search = ShippedSearch(state.fleet.client, shipped.key, f.match if f else None,
                           None if p.since is None else p.since * 1000,
                           None if p.until is None else p.until * 1000, p.limit, p.desc,
                           max_entries=cfg.history.max_scan_bytes // 100)
    out = _Out(request, p.format, cfg.stream.stall_timeout_s)
    source = shipped.full_name
    ip = request.ctx.client_ip
    refused = state.history_slots.acquire(ip)
    if refused is not None:
        return _refused(app, refused)
    try:
        if p.format == "sse":
            await out.send(comment(f"logtail {__version__} search"))
        async for found in search.pages():
            await out.send(_framed([Match(i, source, line) for i, line in found], p))
            if p.format == "sse":
                await out.send(notice("progress", {"scanned_bytes": search.scanned,
                                                   "total_bytes": search.total,
                                                   "source": source}))
    except (RedisError, OSError) as e:
        if out.response is None:
            return error(503, "shipped files cannot be read now: Redis does not answer",
                         file=source, detail=type(e).__name__)
        if p.format == "sse":
            await out.send(notice("source_error", {"source": source,
                                                   "error": type(e).__name__}))
    finally:
        state.history_slots.release(ip)
        if out.response is not None:
            access(request, 200, out.sent, time.monotonic() - request.ctx.started)
    summary: dict[str, object] = {"matches": search.matches,
                                  "scanned_bytes": search.scanned, "limited": search.limited}
    if p.format == "sse":
        await out.send(notice("done", summary))
    elif p.format == "ndjson":
        await out.send(_ndjson(summary))
    if out.response is None:
        return raw(b"", content_type=CONTENT_TYPES[p.format], headers=HEADERS)
    await out.end()
    return None


async def _lines_shipped(app: Sanic[Any, Any], request: Request, shipped: Shipped
                         ) -> HTTPResponse:
    """The lines around a shipped line (`at=<epoch>-<number>`), as for a local file."""
    state = state_of(app)
    assert state.fleet is not None
    try:
        p = parse_lines_params(_args(request), state.config.history, parse_line)
    except ParamError as e:
        return error(400, e.message, param=e.param)
    at_text = format_id(*p.at)
    try:
        ctx = await context(state.fleet.client, shipped.key, *p.at, p.before, p.after)
    except (RedisError, OSError) as e:
        return error(503, "shipped files cannot be read now: Redis does not answer",
                     file=shipped.full_name, detail=type(e).__name__)
    if not ctx.found:
        return error(410, "that line is no longer held in Redis (trimmed, or the stream "
                          "began again)", at=at_text)
    at = next(i for i, (line, _) in enumerate(ctx.lines) if line == at_text)  # it was found
    return _lines_answer(p, shipped.full_name, ctx.lines, at, ctx.more_before,
                         ctx.more_after, False)


def _lines_answer(p: LinesParams[Any], name: str, lines: list[tuple[str, str]], at: int,
                  more_before: bool, more_after: bool, limited: bool) -> HTTPResponse:
    """A `lines` answer: the lines as text, or as JSON with their ids and where they are."""
    if p.format == "text":
        return raw(text_lines([line for _, line in lines], p.raw),
                   content_type=CONTENT_TYPES["text"])
    return json_response({"file": name, "lines": [{"id": i, "line": t} for i, t in lines],
                          "at": at, "more_before": more_before, "more_after": more_after,
                          "limited": limited})
