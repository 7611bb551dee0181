"""The Sanic application: routes and lifecycle, built by `create_app(config)`.

Nothing is built at import time: every runtime object hangs off `app.ctx`, so tests can
build as many apps as they like, and each worker process builds its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json as json_response
from sanic.response import raw

from logtail import __version__
from logtail.config import Config
from logtail.files.follow import Follower
from logtail.files.generation import file_status
from logtail.files.position import IdCodec
from logtail.files.resume import FdBudget
from logtail.files.secret import load_or_create_secret, secret_path
from logtail.files.watch import WatchRegistry
from logtail.http.accesslog import AccessLog
from logtail.http.auth import AuthBusy, Authenticator
from logtail.http.clientip import AddressSet, ClientIP
from logtail.http.guard import Guard, Refusal
from logtail.http.hosts import HostCheck
from logtail.http.metrics import CONTENT_TYPE, Metrics
from logtail.http.ratelog import RateLimitedLog, escape
from logtail.http.sanic_compat import (
    HEAD_COMPLETE,
    ChunkedSocket,
    LenientRequest,
    LogtailSanic,
    head_complete,
    is_error_placeholder,
    malformed_target,
    set_response_timeout,
)
from logtail.http.web import WebAssets
from logtail.streaming.params import ParamError, StreamParams, parse_stream_params
from logtail.streaming.scans import ScanGate
from logtail.streaming.stats import StreamStats
from logtail.streaming.stream import StreamEnv, heartbeat_ticker, run_stream

__all__ = ["create_app"]

log = logging.getLogger("logtail")
_names = itertools.count(1)
STREAM_HEADERS = {"cache-control": "no-cache, no-transform", "x-accel-buffering": "no"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
                    "x-frame-options": "DENY"}
OPEN_PATHS = frozenset({"/healthz"})


def error(status: int, message: str, headers: dict[str, str] | None = None,
          **extra: object) -> HTTPResponse:
    return json_response({"error": message, "status": status, **extra}, status=status,
                         headers=headers)


def refusal(r: Refusal) -> HTTPResponse:
    return error(r.status, r.message, headers={"retry-after": str(r.retry_after)},
                 reason=r.reason, retry_after=r.retry_after)


def create_app(config: Config, name: str | None = None) -> Sanic:
    # strict slashes: /metrics/ is not /metrics, so a proxy rule for one path covers it
    app = LogtailSanic(name or f"logtail_{os.getpid()}_{next(_names)}", strict_slashes=True,
                       request_class=LenientRequest)
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = 3.0
    # a request head must arrive whole within request_timeout_s (counted from its first
    # byte by sanic_compat.HeadTimeoutProtocol): slowloris clients are cut
    app.config.KEEP_ALIVE_TIMEOUT = config.server.keepalive_timeout_s
    app.config.REQUEST_TIMEOUT = config.server.request_timeout_s
    app.config.REQUEST_MAX_SIZE = 64 * 1024
    app.config.REQUEST_MAX_HEADER_SIZE = 16 * 1024
    app.config.NOISY_EXCEPTIONS = False
    app.ctx.config = config
    app.ctx.stopping = asyncio.Event()
    app.ctx.live = set()
    app.ctx.streams = set()
    app.ctx.web = WebAssets.load()
    app.ctx.registry = WatchRegistry(config.watch)
    base = config.source.parent if config.source else None
    app.ctx.codec = IdCodec(load_or_create_secret(secret_path(config.server.secret_file, base)))
    app.ctx.budget = FdBudget()
    app.ctx.scans = ScanGate(config.limits.scan_threads, config.limits.scans_per_ip)
    app.ctx.client_ip = ClientIP(config.server.trusted_proxies, config.server.forwarded_header)
    app.ctx.hosts = HostCheck(config.server.allowed_hosts, config.server.host)
    app.ctx.metrics_allow = AddressSet(config.server.metrics_allow)
    app.ctx.bad_requests = RateLimitedLog(logging.getLogger("logtail.http"))
    app.ctx.auth = Authenticator(config.auth.users, config.auth.tokens, config.auth.realm)
    app.ctx.cors = frozenset(config.server.cors_origins)
    app.ctx.followers = {}
    for fc in config.files:
        f = Follower(fc.name, fc.path, app.ctx.codec, config.stream.max_line_bytes,
                     config.stream.partial_line_s, config.watch.idle_stop_s)
        f.on_watch_change = app.ctx.registry.update
        app.ctx.followers[fc.name] = f
    app.ctx.metrics = Metrics(followers=app.ctx.followers, watchers=app.ctx.registry)

    app.before_server_start(_before_start)
    app.before_server_stop(_before_stop)
    app.after_server_stop(_after_stop)
    app.on_request(_guard_request)
    app.signal(HEAD_COMPLETE)(head_complete)
    app.on_response(_finish_response)
    _routes(app)
    return app


async def _before_start(app: Sanic) -> None:
    app.ctx.stopping = asyncio.Event()
    app.ctx.env = StreamEnv(app.ctx.config.stream, app.ctx.codec, app.ctx.stopping,
                            app.ctx.live, app.ctx.budget, app.ctx.scans)
    app.ctx.started = time.time()
    app.ctx.guard = Guard(app.ctx.config.limits)
    base = app.ctx.config.source.parent if app.ctx.config.source else None
    app.ctx.access = AccessLog.from_setting(app.ctx.config.server.access_log, base)
    app.ctx.ticker = asyncio.get_running_loop().create_task(
        heartbeat_ticker(app.ctx.live, app.ctx.config.stream.heartbeat_s),
        name="logtail-heartbeats")
    app.ctx.metrics.start()  # with workers > 1, shares totals with the other workers


async def _before_stop(app: Sanic) -> None:
    """Tell every stream to say `bye` and end, then stop followers and watchers."""
    app.ctx.stopping.set()
    app.ctx.ticker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await app.ctx.ticker
    for cursor in list(app.ctx.live):
        cursor.stop()
    tasks = [t for t in app.ctx.streams if not t.done()]
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=1.0)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=0.5)
    await asyncio.gather(*(f.stop() for f in app.ctx.followers.values()))
    await app.ctx.registry.close()
    app.ctx.scans.close()


async def _after_stop(app: Sanic) -> None:
    app.ctx.auth.close()
    await app.ctx.guard.close()
    app.ctx.access.close()
    await app.ctx.metrics.close()


# -- middleware ------------------------------------------------------------------------------

async def _guard_request(request: Request) -> HTTPResponse | None:
    """Before any route: the target and Host, the per-IP request rate, CORS preflight,
    credentials. Malformed and misdirected requests are refused first and not counted:
    a DNS-rebinding page must not spend the rate of the browser it runs in."""
    app = request.app
    if is_error_placeholder(request):
        return None  # Sanic answers a head it could not read (400, 408, 413) itself
    request.ctx.started = time.monotonic()
    request.ctx.user = None
    ip = request.ctx.client_ip = app.ctx.client_ip.resolve(request.ip, request.headers)
    if (target := malformed_target(request)) is not None:
        app.ctx.bad_requests.warning(f"malformed request from {ip}: "
                                     f"{escape(request.method, 20)} {escape(target)}")
        return error(400, "malformed request target (control characters)")
    hosts = request.headers.getall("host", [])
    if len(hosts) > 1 or not app.ctx.hosts.allows(hosts[0] if hosts else None):
        app.ctx.metrics.reject("host")
        return error(421, "this server does not answer for this host (server.allowed_hosts)",
                     host=escape(", ".join(hosts), 100))
    # probes are never rate-limited: a load balancer that gets a 429 takes us out of rotation
    probe = request.method in ("GET", "HEAD") and (
        request.path == "/healthz" or (request.path == "/metrics" and ip in app.ctx.metrics_allow))
    if not probe:
        refused = await app.ctx.guard.check_request(ip)
        if refused is not None:
            app.ctx.metrics.reject(refused.reason)
            return refusal(refused)
    if request.method == "OPTIONS":
        return _preflight(request)
    auth: Authenticator = app.ctx.auth
    if auth.enabled and request.path not in OPEN_PATHS:
        found = await _credentials(request)
        if isinstance(found, HTTPResponse):
            return found
        if found is None:
            app.ctx.metrics.reject("auth")
            return error(401, "authentication required",
                         headers={"www-authenticate": auth.challenge})
        request.ctx.user = found
    return None


async def _credentials(request: Request) -> str | HTTPResponse | None:
    """The user the request's credentials name, None without valid ones, or a refusal:
    429 past `limits.failed_auth_per_ip` failures from this client (no password is
    checked then), 503 while too many password checks wait."""
    header = request.headers.get("authorization")
    if not header:
        return None
    app = request.app
    ip = request.ctx.client_ip
    refused = await app.ctx.guard.begin_auth(ip)
    if refused is not None:
        app.ctx.metrics.reject(refused.reason)
        return refusal(refused)
    ok = True  # a check cut short (client gone) is not a failure
    try:
        user = await app.ctx.auth.check(header)
        ok = user is not None
        return user
    except AuthBusy:
        ok = False  # counts toward failed_auth_per_ip: a flood meets its limit, not a queue
        app.ctx.metrics.reject("auth_busy")
        return error(503, "too many logins being checked", headers={"retry-after": "1"},
                     reason="auth_busy", retry_after=1)
    finally:
        await app.ctx.guard.end_auth(ip, ok)


def _preflight(request: Request) -> HTTPResponse:
    origin = request.headers.get("origin")
    if origin is None or origin not in request.app.ctx.cors:
        return error(403, "CORS origin not allowed")
    return HTTPResponse(status=204, headers={
        "access-control-allow-methods": "GET, OPTIONS",
        "access-control-allow-headers": "Authorization, Last-Event-ID",
        "access-control-max-age": "600",
    })


def _security_headers(request: Request, headers: dict[str, str] | object) -> None:
    h = headers  # Sanic's Header (a multidict) or a plain dict
    for k, v in SECURITY_HEADERS.items():
        h[k] = v  # type: ignore[index]
    h["content-security-policy"] = CSP  # type: ignore[index]
    origin = request.headers.get("origin")
    if origin is not None and origin in request.app.ctx.cors:
        h["access-control-allow-origin"] = origin  # type: ignore[index]
        h["access-control-allow-credentials"] = "true"  # type: ignore[index]
        h["vary"] = "Origin"  # type: ignore[index]


async def _finish_response(request: Request, response: HTTPResponse) -> None:
    _security_headers(request, response.headers)
    if getattr(request.ctx, "stream", False):
        return  # logged when the stream ends
    _access(request, response.status, len(response.body or b""))


def _access(request: Request, status: int, size: int, duration: float | None = None) -> None:
    route = request.route.name.rsplit(".", 1)[-1] if request.route else "none"
    request.app.ctx.metrics.request(route, status)
    access = getattr(request.app.ctx, "access", None)
    if access is None:
        return
    if duration is None:
        duration = time.monotonic() - getattr(request.ctx, "started", time.monotonic())
    target = request.path + (f"?{request.query_string}" if request.query_string else "")
    access.write(getattr(request.ctx, "client_ip", request.ip), getattr(request.ctx, "user", None),
                 request.method, target, f"HTTP/{request.version}", status, size,
                 request.headers.get("referer"), request.headers.get("user-agent"), duration)


# -- routes ----------------------------------------------------------------------------------

def _routes(app: Sanic) -> None:
    config: Config = app.ctx.config

    @app.get("/")
    async def index(request: Request) -> HTTPResponse:
        return app.ctx.web.response("index.html", request)

    @app.get("/static/<path:path>")
    async def static(request: Request, path: str) -> HTTPResponse:
        if path not in app.ctx.web.files:
            return error(404, "no such asset", asset=path[:100])
        return app.ctx.web.response(path, request)

    @app.get("/api/files")
    async def files(request: Request) -> HTTPResponse:
        out = []
        for fc in config.files:
            entry: dict[str, object] = {"name": fc.name, "title": fc.title}
            st, unreadable = file_status(fc.path)
            if st is None:
                entry.update(size=None, mtime=None, exists=False, readable=False)
            else:
                entry.update(size=st.st_size, mtime=st.st_mtime, exists=True,
                             readable=unreadable is None)
                if unreadable is not None:
                    entry["error"] = unreadable
            if config.server.show_paths:
                entry["path"] = str(fc.path)
            out.append(entry)
        return json_response({"files": out})

    @app.get("/api/files/<name>/stream")
    async def stream(request: Request, name: str) -> HTTPResponse | None:
        return await _stream_route(app, request, name)

    @app.get("/healthz")
    async def healthz(request: Request) -> HTTPResponse:
        """`ok`, or 503 `failing` while a directory watcher is dead in any worker. Only
        `metrics_allow` addresses and authenticated users see more than the status: file
        names, version and PID are a map for whoever is probing."""
        dead = app.ctx.metrics.dead_watchers()
        status = "ok" if not dead else "failing"
        body: dict[str, object] = {"status": status}
        if request.ctx.client_ip in app.ctx.metrics_allow or (
                app.ctx.auth.enabled and isinstance(await _credentials(request), str)):
            files = {fc.name: fc.path.exists() for fc in config.files}
            present = sum(files.values())
            body.update(version=__version__,
                        files={"present": present, "missing": len(files) - present},
                        missing=[n for n, ok in files.items() if not ok],
                        streams=app.ctx.metrics.open_streams(), dead_watchers=dead,
                        pid=os.getpid())
        return json_response(body, status=200 if status == "ok" else 503,
                             headers={"cache-control": "no-store"})

    @app.get("/metrics")
    async def metrics(request: Request) -> HTTPResponse:
        if request.ctx.client_ip not in app.ctx.metrics_allow:
            return error(403, "metrics are not served to this address (server.metrics_allow)")
        return raw(app.ctx.metrics.render(), content_type=CONTENT_TYPE,
                   headers={"cache-control": "no-store"})


async def _stream_route(app: Sanic, request: Request, name: str) -> HTTPResponse | None:
    """Check the name and parameters, take a stream slot, then stream."""
    config: Config = app.ctx.config
    follower: Follower | None = app.ctx.followers.get(name)
    if follower is None:
        return error(404, "unknown file", file=name[:100])
    try:
        args = {k: list(v) for k, v in request.get_args(keep_blank_values=True).items()}
        params = parse_stream_params(args, request.headers.get("last-event-id"), config.stream)
    except ParamError as e:
        return error(400, e.message, param=e.param)
    if app.ctx.stopping.is_set():
        return error(503, "server shutting down", headers={"retry-after": "2"})
    token, refused = await app.ctx.guard.acquire_stream(request.ctx.client_ip)
    if refused is not None:
        app.ctx.metrics.reject(refused.reason)
        return refusal(refused)
    try:
        await _serve_stream(app, request, name, follower, params)
    finally:
        await app.ctx.guard.release_stream(token)
    return None


async def _serve_stream(app: Sanic, request: Request, name: str, follower: Follower,
                        params: StreamParams) -> None:
    config: Config = app.ctx.config
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
        send = _stall_guarded(response.send, stall_s, request.transport)
    stats = StreamStats(resumed=params.last_id is not None)
    task = asyncio.current_task()
    app.ctx.streams.add(task)
    app.ctx.metrics.stream_started(name, stats)
    try:
        await run_stream(name, follower, params, app.ctx.env, send, stats,
                         request.ctx.client_ip, ChunkedSocket.of(request))
        await response.eof()
    finally:
        app.ctx.streams.discard(task)
        app.ctx.metrics.stream_ended(name, stats)
        _access(request, 200, stats.bytes, time.monotonic() - request.ctx.started)


def _stall_guarded(send: Callable[[bytes], Awaitable[None]], stall_s: float,
                   transport: asyncio.BaseTransport) -> Callable[[bytes], Awaitable[None]]:
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
