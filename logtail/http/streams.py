"""The streaming routes: a file's stream, and the list of files, once or as a stream.

Each takes a stream slot (`limits.streams_per_ip`, `limits.max_streams`) for as long as it
runs, is logged when it ends, and ends with `bye` when the server stops. While stopping, a
request that still reaches one gets no answer at all (see `stream_route`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import cast

from redis.exceptions import RedisError
from sanic import HTTPResponse, Request
from sanic.response import json as json_response

from logtail.files.follow import Follower
from logtail.files.sources import describe
from logtail.fleet.catalog import Shipped
from logtail.fleet.serve import ShippedSource, run_shipped_stream, start_shipped
from logtail.http.guard import Refusal
from logtail.http.middleware import access, error, refusal
from logtail.http.sanic_compat import ChunkedSocket, drop_connection, set_response_timeout
from logtail.http.state import AppState
from logtail.streaming.multi import OtherSource, file_id, run_multi
from logtail.streaming.params import ParamError, StreamParams, parse_stream_params
from logtail.streaming.sse import comment, notice, opening
from logtail.streaming.stats import StreamStats
from logtail.streaming.stream import Send, run_stream, since_problem

__all__ = ["STREAM_HEADERS", "file_list", "files_route", "multi_stream_route",
           "stream_route"]

STREAM_HEADERS = {"cache-control": "no-cache, no-transform", "x-accel-buffering": "no"}
WATCH_GAP_S = 0.25  # a watched file list is sent at most this often
MAX_MULTI_ID = 16 * 1024  # a longer id cannot be one this server made: it gets `reset`


async def files_route(state: AppState, request: Request) -> HTTPResponse | None:
    """The list of served files now; with `watch=1`, a stream of it (`_watch_files`)."""
    args = {k: list(v) for k, v in request.get_args(keep_blank_values=True).items()}
    unknown = sorted(set(args) - {"watch"})
    if unknown:
        return error(400, "unknown parameter", param=unknown[0][:100])
    watch = args.get("watch", ["0"])
    if len(watch) != 1 or watch[0] not in ("0", "1"):
        return error(400, "watch must be 0 or 1, given once", param="watch")
    if watch == ["1"]:
        return await _watch_files(state, request)
    return json_response(await file_list(state))


async def file_list(state: AppState) -> dict[str, object]:
    """`/api/files`: each file's state now (stats in a thread: a glob may list
    thousands); `dynamic` says the list can change (some glob is served);
    `max_files_per_stream`, how many of them one `/api/stream` may follow."""
    sources = state.sources
    files = await asyncio.to_thread(describe, sources.entries(),
                                    state.config.server.show_paths)
    dynamic = sources.dynamic
    if state.fleet is not None:  # shipped files come and go
        files += state.fleet.catalog.entries()
        dynamic = True
    return {"files": files, "dynamic": dynamic,
            "max_files_per_stream": state.config.limits.max_files_per_stream}


async def _watch_files(state: AppState, request: Request) -> HTTPResponse | None:
    """SSE: the list at once as a `files` event, again whenever it changes (at most every
    WATCH_GAP_S), heartbeats in between, `bye` on shutdown. It holds a stream slot
    (`limits.streams_per_ip`, `limits.max_streams`) like a log stream."""
    cfg = state.config.stream
    if state.stopping.is_set():  # as for log streams: no answer, so the client retries
        access(request, 444, 0)
        drop_connection(request)
        raise asyncio.CancelledError
    token = await state.guard.acquire_stream(request.ctx.client_ip)
    if isinstance(token, Refusal):
        state.metrics.reject(token.reason)
        return refusal(token)
    request.ctx.stream = True
    task = asyncio.current_task()
    assert task is not None
    state.streams.add(task)
    stopping = state.stopping
    sent = 0
    try:
        response = await request.respond(content_type="text/event-stream; charset=utf-8",
                                         headers=STREAM_HEADERS)
        set_response_timeout(request, max(cfg.stall_timeout_s, cfg.heartbeat_s * 2 + 1))
        payload = opening(cfg.retry_ms)
        while not stopping.is_set():
            version, last = _version(state), time.monotonic()
            payload += notice("files", await file_list(state))
            while payload:
                await response.send(payload)
                sent += len(payload)
                payload = b""
                if not await _changed_or_stopping(state, version, cfg.heartbeat_s):
                    payload = comment("ping")
            if not stopping.is_set():
                await asyncio.sleep(max(0.0, last + WATCH_GAP_S - time.monotonic()))
        payload = notice("bye", {"reason": "server shutting down"})
        await response.send(payload)
        sent += len(payload)
        await response.eof()
    finally:
        state.streams.discard(task)
        await state.guard.release_stream(token)
        access(request, 200, sent, time.monotonic() - request.ctx.started)
    return None


def _version(state: AppState) -> tuple[int, int]:
    """The file list's version: the local files', and the shipped files'."""
    return state.sources.version, state.fleet.catalog.version if state.fleet else 0


async def _changed_or_stopping(state: AppState, version: tuple[int, int],
                               timeout: float) -> bool:
    """Wait until the list changes or the server stops (True), or `timeout` (False)."""
    waits = {asyncio.ensure_future(state.sources.wait_change(version[0])),
             asyncio.ensure_future(state.stopping.wait())}
    if state.fleet is not None:
        waits.add(asyncio.ensure_future(state.fleet.catalog.wait_change(version[1])))
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in waits:
            t.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    return bool(done)


async def stream_route(state: AppState, request: Request, name: str) -> HTTPResponse | None:
    """Check the name and parameters, take a stream slot, then stream."""
    follower = state.followers.get(name)
    shipped = state.fleet.find(name) if state.fleet is not None and follower is None else None
    if follower is None and shipped is None:
        return error(404, "unknown file", file=name[:100])
    try:
        args = {k: list(v) for k, v in request.get_args(keep_blank_values=True).items()}
        params = parse_stream_params(args, request.headers.get("last-event-id"),
                                     state.config.stream)
    except ParamError as e:
        return error(400, e.message, param=e.param)
    if shipped is not None:
        return await shipped_stream(state, request, shipped, params)
    assert follower is not None
    return await _with_slot(state, request, params,
                            lambda: _local(state, request, {name: follower}, params))


async def multi_stream_route(state: AppState, request: Request) -> HTTPResponse | None:
    """`/api/stream?file=a&file=b`: several files over one connection, one stream slot."""
    args = {k: list(v) for k, v in request.get_args(keep_blank_values=True).items()}
    names = list(dict.fromkeys(args.pop("file", [])))  # the same file twice: served once
    if not names or "" in names:
        return error(400, "name the files to stream: file=<name>, once per file",
                     param="file")
    cap = state.config.limits.max_files_per_stream
    if len(names) > cap:
        return error(400, f"at most {cap} files per stream (limits.max_files_per_stream)",
                     param="file")
    last_id = (args.pop("last_id", None) or [request.headers.get("last-event-id") or ""])
    try:
        params = parse_stream_params(args, None, state.config.stream)
    except ParamError as e:
        return error(400, e.message, param=e.param)
    if len(last_id) != 1:
        return error(400, "given more than once", param="last_id")
    params = replace(params, last_id=last_id[0][:MAX_MULTI_ID] or None)
    files: dict[str, Follower | OtherSource] = {}
    for name in names:
        follower = state.followers.get(name)
        shipped = state.fleet.find(name) if state.fleet is not None and follower is None else None
        if follower is None and shipped is None:
            return error(404, "unknown file", file=name[:100])
        if follower is not None:
            files[name] = follower
        else:
            assert state.fleet is not None and shipped is not None
            files[name] = ShippedSource(state.fleet, shipped, params)

    async def serve() -> HTTPResponse | None:
        for name, f in files.items():
            if isinstance(f, ShippedSource):
                try:
                    await f.open(file_id(params.last_id, name))
                except (RedisError, OSError) as e:
                    return _redis_down(name, e)
        return await _local(state, request, files, params, several=True)

    return await _with_slot(state, request, params, serve)


async def _with_slot(state: AppState, request: Request, params: StreamParams,
                     serve: Callable[[], Awaitable[HTTPResponse | None]]) -> HTTPResponse | None:
    """Run `serve` holding a stream slot."""
    if state.stopping.is_set():
        # Only a request on a connection opened before the stop gets here (new ones are
        # refused). It gets no answer at all: an EventSource gives up for good on any
        # status but 200 (a 503 here ended every dashboard at each restart), while a
        # dropped connection is a network error, which it and the viewer retry. Logged
        # as 444, nginx's status for a connection closed without a response.
        access(request, 444, 0)
        drop_connection(request)
        raise asyncio.CancelledError
    token = await state.guard.acquire_stream(request.ctx.client_ip)
    if isinstance(token, Refusal):
        state.metrics.reject(token.reason)
        return refusal(token)
    try:
        return await serve()
    finally:
        await state.guard.release_stream(token)


async def _local(state: AppState, request: Request,
                 followers: Mapping[str, Follower | OtherSource], params: StreamParams,
                 several: bool = False) -> HTTPResponse | None:
    """The stream of one file (`run_stream`), or of several (`run_multi`: its events say
    their file, even when the set has one; shipped files may be among them)."""
    ip = request.ctx.client_ip
    for name, follower in followers.items():
        if not isinstance(follower, Follower):
            continue
        problem = await since_problem(follower, params, state.env, ip)
        if problem is not None:
            return error(422, problem, param="since", file=name)

    async def run(send: Send, stats: dict[str, StreamStats]) -> None:
        if not several:
            [(name, follower)] = followers.items()
            assert isinstance(follower, Follower)
            await run_stream(name, follower, params, state.env, send, stats[name], ip,
                             ChunkedSocket.of(request))
        else:
            await run_multi(followers, params, state.env, send, stats, ip,
                            ChunkedSocket.of(request))

    await _serve_stream(state, request, list(followers), params, run)
    return None


async def shipped_stream(state: AppState, request: Request, shipped: Shipped,
                         params: StreamParams) -> HTTPResponse | None:
    """A shipped file's stream (`[fleet]`), read from Redis."""
    fleet = state.fleet
    assert fleet is not None

    async def serve() -> HTTPResponse | None:
        try:
            start = await start_shipped(fleet, shipped, params)
        except (RedisError, OSError) as e:
            return _redis_down(shipped.full_name, e)

        async def run(send: Send, stats: dict[str, StreamStats]) -> None:
            await run_shipped_stream(fleet, shipped, start, params, state.config.stream,
                                     state.stopping, send, stats[shipped.full_name])

        await _serve_stream(state, request, [shipped.full_name], params, run)
        return None

    return await _with_slot(state, request, params, serve)


def _redis_down(name: str, e: BaseException) -> HTTPResponse:
    return error(503, "shipped files cannot be read now: Redis does not answer", file=name,
                 detail=type(e).__name__)


async def _serve_stream(state: AppState, request: Request, names: list[str],
                        params: StreamParams,
                        run: Callable[[Send, dict[str, StreamStats]], Awaitable[None]]) -> None:
    """Start the response, then `run` the stream; its stats count per file."""
    config = state.config
    ctype = ("text/event-stream; charset=utf-8" if params.format == "sse"
             else "text/plain; charset=utf-8")
    request.ctx.stream = True
    response = await request.respond(content_type=ctype, headers=STREAM_HEADERS)
    send = response.send
    stall_s = config.stream.stall_timeout_s
    if params.format == "sse":
        # Sanic's response timeout counts from the last write that got into the socket's
        # buffer; heartbeats keep a quiet stream writing, so only a stalled client hits it
        set_response_timeout(request, max(stall_s, config.stream.heartbeat_s * 2 + 1))
    else:
        set_response_timeout(request, math.inf)  # no heartbeat possible: guarded here
        send = _stall_guarded(response.send, stall_s, cast(asyncio.Transport, request.transport))
    resumed = params.last_id is not None
    stats = {name: StreamStats(resumed=resumed) for name in names}
    task = asyncio.current_task()
    assert task is not None
    state.streams.add(task)
    for name, s in stats.items():
        state.metrics.stream_started(name, s)
    try:
        await run(send, stats)
        await response.eof()
    finally:
        state.streams.discard(task)
        for name, s in stats.items():
            state.metrics.stream_ended(name, s)
        access(request, 200, sum(s.bytes for s in stats.values()),
               time.monotonic() - request.ctx.started)


def _stall_guarded(send: Callable[[bytes], Awaitable[None]], stall_s: float,
                   transport: asyncio.Transport) -> Callable[[bytes], Awaitable[None]]:
    """`send` that gives up on a client that took nothing for `stall_s`: the connection is
    aborted, so what was buffered for it is freed at once (a close would wait to flush)."""

    async def guarded(data: bytes) -> None:
        try:
            async with asyncio.timeout(stall_s):
                await send(data)
        except TimeoutError:
            transport.abort()
            raise

    return guarded
