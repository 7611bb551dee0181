"""The Sanic application, built by `create_app(config)`: its state, lifecycle and routes.

Nothing is built at import time: each app owns one typed `AppState` (`logtail.http.state`)
as its `ctx`, so tests can build as many apps as they like, and each worker its own. What
every request goes through is in `middleware`, the streaming routes in `streams`, the
history routes in `history_routes`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any
from urllib.parse import unquote

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json as json_response
from sanic.response import raw

from logtail import __version__
from logtail.config import Config
from logtail.files.sources import describe
from logtail.http import middleware, state
from logtail.http.history_routes import register as register_history
from logtail.http.metrics import CONTENT_TYPE
from logtail.http.middleware import access, credentials, error
from logtail.http.sanic_compat import (
    HEAD_COMPLETE,
    LenientRequest,
    LogtailSanic,
    head_complete,
    stop_listening,
)
from logtail.http.state import AppState, state_of
from logtail.http.streams import files_route, multi_stream_route, stream_route

__all__ = ["create_app"]

_names = itertools.count(1)


def create_app(config: Config, name: str | None = None) -> Sanic[Any, AppState]:
    # strict slashes: /metrics/ is not /metrics, so a proxy rule for one path covers it
    app: Sanic[Any, AppState] = LogtailSanic(
        name or f"logtail_{os.getpid()}_{next(_names)}", ctx=state.build_state(config),
        strict_slashes=True, request_class=LenientRequest)
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = 3.0
    # a request head must arrive whole within request_timeout_s (counted from its first
    # byte by sanic_compat.HeadTimeoutProtocol): slowloris clients are cut
    app.config.KEEP_ALIVE_TIMEOUT = config.server.keepalive_timeout_s
    app.config.REQUEST_TIMEOUT = config.server.request_timeout_s
    app.config.REQUEST_MAX_SIZE = 64 * 1024
    app.config.REQUEST_MAX_HEADER_SIZE = 16 * 1024
    app.config.NOISY_EXCEPTIONS = False

    app.before_server_start(_before_start)
    app.before_server_stop(_before_stop)
    app.after_server_stop(_after_stop)
    app.on_request(middleware.guard_request)
    app.signal(HEAD_COMPLETE)(head_complete)
    app.register_middleware(middleware.finish_response, "response")
    _routes(app)
    register_history(app, access)
    return app


async def _before_start(app: Sanic[Any, AppState]) -> None:
    await state.start(app.ctx)


async def _before_stop(app: Sanic[Any, AppState]) -> None:
    """Refuse new connections, then every stream says `bye` and ends. The port closes
    first: a client that reconnects after `bye` must find it refused (a network error,
    which EventSource retries), never answered by a server on its way out. Sanic itself
    closes it only after this listener."""
    stop_listening(app)
    await state.end_streams(app.ctx)


async def _after_stop(app: Sanic[Any, AppState]) -> None:
    await state.close(app.ctx)


def _routes(app: Sanic[Any, AppState]) -> None:
    s = app.ctx

    @app.get("/")
    async def index(request: Request) -> HTTPResponse:
        return s.web.response("index.html", request)

    @app.get("/static/<path:path>")
    async def static(request: Request, path: str) -> HTTPResponse:
        if path not in s.web.files:
            return error(404, "no such asset", asset=path[:100])
        return s.web.response(path, request)

    @app.get("/api/files")
    async def files(request: Request) -> HTTPResponse | None:
        return await files_route(s, request)

    @app.get("/api/stream")
    async def multi_stream(request: Request) -> HTTPResponse | None:
        return await multi_stream_route(s, request)

    @app.get("/api/files/<name>/stream")
    async def stream(request: Request, name: str) -> HTTPResponse | None:
        # (Sanic leaves a path parameter %-encoded: a shipped file's `host:name` comes
        # as `host%3Aname` from a browser's encodeURIComponent)
        return await stream_route(s, request, unquote(name))

    @app.get("/healthz")
    async def healthz(request: Request) -> HTTPResponse:
        return await _healthz(state_of(request), request)

    @app.get("/metrics")
    async def metrics(request: Request) -> HTTPResponse:
        if request.ctx.client_ip not in s.metrics_allow:
            return error(403, "metrics are not served to this address (server.metrics_allow)")
        return raw(s.metrics.render(), content_type=CONTENT_TYPE,
                   headers={"cache-control": "no-store"})


async def _healthz(s: AppState, request: Request) -> HTTPResponse:
    """`ok`; `degraded` (still 200: local files stream) while Redis, which the shipped
    files come from, does not answer; 503 `failing` while a directory watcher is dead in
    any worker. Only
    `metrics_allow` addresses and authenticated users see more than the status: file
    names, version and PID are a map for whoever is probing."""
    dead = s.metrics.dead_watchers()
    fleet_problem = s.fleet.catalog.problem if s.fleet is not None else None
    status = "failing" if dead else "degraded" if fleet_problem else "ok"
    body: dict[str, object] = {"status": status}
    if fleet_problem:  # local files still stream: a probe must not take the server out
        body["reason"] = f"shipped files: {fleet_problem}"
    if request.ctx.client_ip in s.metrics_allow or (
            s.auth.enabled and isinstance(await credentials(request), str)):
        listed = await asyncio.to_thread(describe, s.sources.entries(), False)
        missing = [e["name"] for e in listed if not e["exists"]]
        body.update(version=__version__,
                    files={"present": len(listed) - len(missing), "missing": len(missing)},
                    missing=missing, warnings=s.sources.warnings(),
                    streams=s.metrics.open_streams(), dead_watchers=dead, pid=os.getpid())
        if s.fleet is not None:
            cat = s.fleet.catalog
            body["fleet"] = {"files": len(cat.files), "hosts": len(cat.hosts),
                             "quiet_hosts": sorted(h for h in cat.hosts if cat.quiet(h)),
                             "bad_keys": cat.bad_keys, "bad_entries": s.fleet.bad_entries}
    return json_response(body, status=503 if status == "failing" else 200,
                         headers={"cache-control": "no-store"})
