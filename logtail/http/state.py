"""Everything one app owns, in one typed object, started and stopped in one place.

`build_state(config)` makes what needs no event loop (it runs in `create_app`, once per
worker); `start(state)` makes the rest when the server starts and registers each piece's
cleanup on one `AsyncExitStack`, so `close(state)` undoes them in reverse order and none
is forgotten. Handlers reach it as `state_of(request)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, cast

from sanic import Request, Sanic

from logtail.config import Config
from logtail.files.follow import Follower
from logtail.files.position import IdCodec
from logtail.files.resume import FdBudget
from logtail.files.secret import load_or_create_secret, secret_path
from logtail.files.sources import SourceSet
from logtail.files.watch import WatchRegistry
from logtail.fleet.serve import Fleet
from logtail.http.accesslog import AccessLog
from logtail.http.auth import Authenticator
from logtail.http.clientip import AddressSet, ClientIP
from logtail.http.guard import Guard
from logtail.http.hosts import HostCheck
from logtail.http.metrics import Metrics
from logtail.http.ratelog import RateLimitedLog
from logtail.http.scanslots import ScanSlots
from logtail.http.web import WebAssets
from logtail.streaming.cursor import Cursor
from logtail.streaming.scans import ScanGate
from logtail.streaming.stream import StreamEnv, heartbeat_ticker

__all__ = ["AppState", "build_state", "close", "start", "state_of"]


@dataclass(eq=False)
class AppState:
    config: Config
    web: WebAssets
    codec: IdCodec  # signs stream ids
    registry: WatchRegistry  # one directory watcher per directory
    sources: SourceSet  # the served files, one follower per name
    metrics: Metrics
    client_ip: ClientIP
    hosts: HostCheck
    metrics_allow: AddressSet
    auth: Authenticator
    cors: frozenset[str]
    bad_requests: RateLimitedLog
    budget: FdBudget  # descriptors for resumes through rotated files
    scans: ScanGate  # backlog and history scans: their own threads, in turns
    history_slots: ScanSlots
    live: set[Cursor] = field(default_factory=set)  # cursors of running streams
    streams: set[asyncio.Task[Any]] = field(default_factory=set)  # their tasks
    fleet: Fleet | None = None  # shipped files (`[fleet] enabled`), made by `start`
    # made by `start`, on the server's loop
    stopping: asyncio.Event = field(init=False)
    env: StreamEnv = field(init=False)
    guard: Guard = field(init=False)
    access: AccessLog = field(init=False)
    started: float = field(init=False)
    _stack: AsyncExitStack = field(init=False)

    @property
    def followers(self) -> dict[str, Follower]:
        return self.sources.followers


def build_state(config: Config) -> AppState:
    """What needs no event loop: made in `create_app`, once per worker."""
    registry = WatchRegistry(config.watch)
    base = config.source.parent if config.source else None
    codec = IdCodec(load_or_create_secret(secret_path(config.server.secret_file, base)))
    # the served files: fixed paths and the globs' current matches, one follower per name
    sources = SourceSet.configured(config, codec, registry)
    state = AppState(
        config=config,
        web=WebAssets.load(),
        codec=codec,
        registry=registry,
        sources=sources,
        metrics=Metrics(followers=sources.followers, watchers=registry),
        client_ip=ClientIP(config.server.trusted_proxies, config.server.forwarded_header),
        hosts=HostCheck(config.server.allowed_hosts, config.server.host),
        metrics_allow=AddressSet(config.server.metrics_allow),
        auth=Authenticator(config.auth.users, config.auth.tokens, config.auth.realm),
        cors=frozenset(config.server.cors_origins),
        bad_requests=RateLimitedLog(logging.getLogger("logtail.http")),
        budget=FdBudget(),
        scans=ScanGate(config.limits.scan_threads, config.limits.scans_per_ip),
        history_slots=ScanSlots(config.history.max_scans, config.history.scans_per_ip),
    )
    state.stopping = asyncio.Event()  # replaced on the server's loop by `start`
    return state


async def start(state: AppState) -> None:
    """Make what needs the running loop; each piece's cleanup goes on the stack."""
    cfg = state.config
    stack = state._stack = AsyncExitStack()
    state.stopping = asyncio.Event()
    state.started = time.time()
    state.env = StreamEnv(cfg.stream, state.codec, state.stopping, state.live,
                          state.budget, state.scans)
    state.guard = Guard(cfg.limits)
    stack.push_async_callback(state.guard.close)
    base = cfg.source.parent if cfg.source else None
    state.access = AccessLog.from_setting(cfg.server.access_log, base)
    stack.callback(state.access.close)
    stack.callback(state.auth.close)
    state.metrics.start()  # with workers > 1, shares totals with the other workers
    stack.push_async_callback(state.metrics.close)
    ticker = asyncio.get_running_loop().create_task(
        heartbeat_ticker(state.live, cfg.stream.heartbeat_s), name="logtail-heartbeats")
    stack.push_async_callback(_cancel, ticker)
    stack.callback(state.scans.close)
    stack.push_async_callback(state.registry.close)
    state.sources.start()  # the globs' directories are watched from now on
    stack.push_async_callback(state.sources.close)  # every follower, and the listings
    if cfg.fleet.enabled:
        fleet = state.fleet = Fleet(cfg)
        stack.push_async_callback(fleet.close)
        state.metrics.fleet = fleet.stats
        await fleet.start()


async def end_streams(state: AppState, grace_s: float = 1.0) -> None:
    """Every stream says `bye` and ends: told through its cursor, waited for up to
    `grace_s`, then cancelled. A stream runs in its connection's task, which outlives it
    on a keep-alive connection: wait for the streams to end (they leave `streams`), not
    for the tasks, or every stop would take the whole grace."""
    state.stopping.set()
    for cursor in list(state.live):
        cursor.stop()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while state.streams and (left := deadline - loop.time()) > 0:
        await asyncio.wait(list(state.streams), timeout=min(left, 0.01),
                           return_when=asyncio.FIRST_COMPLETED)
    pending = [t for t in state.streams if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=0.5)


async def close(state: AppState) -> None:
    """Stop everything `start` made, newest first."""
    await state._stack.aclose()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def state_of(source: Request | Sanic[Any, Any]) -> AppState:
    """The app's state, typed."""
    app = source.app if isinstance(source, Request) else source
    return cast(AppState, app.ctx)
