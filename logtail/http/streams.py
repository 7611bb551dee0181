"""The streaming routes: a file's stream, and the list of files, once or as a stream.

Each takes a stream slot (`limits.streams_per_ip`, `limits.max_streams`) for as long as it
runs, is logged when it ends, and ends with `bye` when the server stops. While stopping, a
request that still reaches one gets no answer at all (see `stream_route`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import cast

from sanic import HTTPResponse, Request
from sanic.response import json as json_response

from logtail.files.follow import Follower
from logtail.files.sources import SourceSet, describe
from logtail.http.guard import Refusal
from logtail.http.middleware import access, error, refusal
from logtail.http.sanic_compat import ChunkedSocket, drop_connection, set_response_timeout
from logtail.http.state import AppState
from logtail.streaming.params import ParamError, StreamParams, parse_stream_params
from logtail.streaming.sse import comment, notice, opening
from logtail.streaming.stats import StreamStats
from logtail.streaming.stream import run_stream, since_problem

__all__ = ["STREAM_HEADERS", "file_list", "files_route", "stream_route"]

STREAM_HEADERS = {"cache-control": "no-cache, no-transform", "x-accel-buffering": "no"}
WATCH_GAP_S = 0.25  # a watched file list is sent at most this often


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
    thousands); `dynamic` says the list can change (some glob is served)."""
    sources = state.sources
    files = await asyncio.to_thread(describe, sources.entries(),
                                    state.config.server.show_paths)
    return {"files": files, "dynamic": sources.dynamic}


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
    sources = state.sources
    stopping = state.stopping
    sent = 0
    try:
        response = await request.respond(content_type="text/event-stream; charset=utf-8",
                                         headers=STREAM_HEADERS)
        set_response_timeout(request, max(cfg.stall_timeout_s, cfg.heartbeat_s * 2 + 1))
        payload = opening(cfg.retry_ms)
        while not stopping.is_set():
            version, last = sources.version, time.monotonic()
            payload += notice("files", await file_list(state))
            while payload:
                await response.send(payload)
                sent += len(payload)
                payload = b""
                if not await _changed_or_stopping(sources, version, stopping, cfg.heartbeat_s):
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


async def _changed_or_stopping(sources: SourceSet, version: int, stopping: asyncio.Event,
                               timeout: float) -> bool:
    """Wait until the list changes or the server stops (True), or `timeout` (False)."""
    waits = {asyncio.ensure_future(sources.wait_change(version)),
             asyncio.ensure_future(stopping.wait())}
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
    config = state.config
    follower = state.followers.get(name)
    if follower is None:
        return error(404, "unknown file", file=name[:100])
    try:
        args = {k: list(v) for k, v in request.get_args(keep_blank_values=True).items()}
        params = parse_stream_params(args, request.headers.get("last-event-id"), config.stream)
    except ParamError as e:
        return error(400, e.message, param=e.param)
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
        problem = await since_problem(follower, params, state.env, request.ctx.client_ip)
        if problem is not None:
            return error(422, problem, param="since")
        await _serve_stream(state, request, name, follower, params)
    finally:
        await state.guard.release_stream(token)
    return None


async def _serve_stream(state: AppState, request: Request, name: str, follower: Follower,
                        params: StreamParams) -> None:
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
    stats = StreamStats(resumed=params.last_id is not None)
    task = asyncio.current_task()
    assert task is not None
    state.streams.add(task)
    state.metrics.stream_started(name, stats)
    try:
        await run_stream(name, follower, params, state.env, send, stats,
                         request.ctx.client_ip, ChunkedSocket.of(request))
        await response.eof()
    finally:
        state.streams.discard(task)
        state.metrics.stream_ended(name, stats)
        access(request, 200, stats.bytes, time.monotonic() - request.ctx.started)


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
