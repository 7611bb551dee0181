"""The files shippers publish, as one server sees them (`[fleet] enabled`).

Every `list_s` the server lists the shippers' streams (`SCAN ... TYPE stream`, see
`logtail.fleet.keys`) and the hosts' last-seen times. A key that is not a valid
`logtail:<host>:<name>` is ignored and counted, never served. While Redis cannot be
reached the last list stays (its files' streams wait and retry), `problem` says why, and
`/healthz` says `degraded`; local files are not touched by any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aredis
from redis.exceptions import RedisError

from logtail.config import FleetConfig, redact_url
from logtail.fleet.keys import HOSTS_KEY, PREFIX, SHIP_STATS_KEY, parse_stream_key

__all__ = ["MAX_KEYS", "FleetCatalog", "Shipped", "connect"]

log = logging.getLogger("logtail.fleet")

MAX_KEYS = 10_000  # streams listed at most (a bound on one SCAN's work and the list's size)
CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 30.0  # longer than a blocking XREAD (see `logtail.fleet.reader`)


def connect(url: str) -> aredis.Redis:
    """One client (a connection pool) per worker for everything fleet reads."""
    return aredis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                           socket_timeout=SOCKET_TIMEOUT_S, health_check_interval=30)


@dataclass(frozen=True, slots=True)
class Shipped:
    """One shipped file: served as `<host>:<name>`."""

    host: str
    name: str
    key: str

    @property
    def full_name(self) -> str:
        return f"{self.host}:{self.name}"


class FleetCatalog:
    def __init__(self, client: aredis.Redis, cfg: FleetConfig, url: str) -> None:
        self.client = client
        self.cfg = cfg
        self.url = redact_url(url)
        self.files: dict[str, Shipped] = {}
        self.hosts: dict[str, float] = {}  # host -> last seen (Unix seconds)
        self.problem: str | None = "not listed yet"
        self.shippers: dict[str, dict[str, dict[str, float]]] = {}  # host -> file -> values
        self.bad_keys = 0  # keys under the prefix that are not a shipper's stream (last list)
        self.errors = 0  # failed lists (Redis unreachable, refused)
        self.version = 0
        self._changed = asyncio.Event()
        self._listed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="logtail-fleet")
        with contextlib.suppress(TimeoutError):  # the first list, if Redis answers soon
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self._listed.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def quiet(self, host: str, now: float | None = None) -> bool:
        """Whether `host`'s shipper has not been seen for `quiet_s`."""
        seen = self.hosts.get(host)
        return seen is None or (now or time.time()) - seen > self.cfg.quiet_s

    def entries(self) -> list[dict[str, object]]:
        """`/api/files` entries of the shipped files."""
        now = time.time()
        return [{"name": s.full_name, "title": s.full_name, "host": s.host,
                 "last_seen": self.hosts.get(s.host), "quiet": self.quiet(s.host, now),
                 "shipped": True, "exists": True, "readable": True, "size": None,
                 "mtime": None}
                for s in sorted(self.files.values(), key=lambda s: (s.host, s.name))]

    async def wait_change(self, version: int) -> None:
        while self.version == version:
            self._changed.clear()
            await self._changed.wait()

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
                if self.problem is not None:
                    log.info("fleet: Redis at %s answers; %d shipped files", self.url,
                             len(self.files))
                    self.problem = None
                    self._bump()
            except (RedisError, OSError) as e:
                self.errors += 1
                why = f"Redis at {self.url} unreachable: {type(e).__name__}: {e}"[:300]
                if self.problem != why:
                    log.warning("fleet: %s (shipped files are served again once it answers)",
                                why)
                    self.problem = why
                    self._bump()
            self._listed.set()
            await asyncio.sleep(self.cfg.list_s)

    async def refresh(self) -> None:
        found: dict[str, Shipped] = {}
        bad = 0
        async for key in self.client.scan_iter(match=f"{PREFIX}*", count=1000, _type="stream"):
            parsed = parse_stream_key(key)
            if parsed is None:
                bad += 1
                continue
            host, name = parsed
            s = Shipped(host, name, f"{PREFIX}{host}:{name}")
            found[s.full_name] = s
            if len(found) >= MAX_KEYS:
                break
        self.shippers = _shipper_stats(cast(dict[bytes, bytes],
                                            await self.client.hgetall(SHIP_STATS_KEY)))
        raw = cast(dict[bytes, bytes], await self.client.hgetall(HOSTS_KEY))
        hosts: dict[str, float] = {}
        for k, v in raw.items():
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                hosts[k.decode()] = float(v)
        if bad != self.bad_keys:
            log.warning("fleet: %d keys under %r are not a shipper's stream; ignored", bad,
                        PREFIX)
        self.bad_keys = bad
        if found.keys() != self.files.keys() or self._quiet_set(hosts) != self._quiet_set():
            self.files = found
            self.hosts = hosts
            self._bump()
        else:
            self.hosts = hosts

    def _quiet_set(self, hosts: dict[str, float] | None = None) -> frozenset[str]:
        now = time.time()
        seen = self.hosts if hosts is None else hosts
        return frozenset(h for h, t in seen.items() if now - t > self.cfg.quiet_s)

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()


def _shipper_stats(raw: dict[bytes, bytes]) -> dict[str, dict[str, dict[str, float]]]:
    """What shippers report (`SHIP_STATS_KEY`), for /metrics; anything else is skipped."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for field_, value in raw.items():
        with contextlib.suppress(ValueError, UnicodeDecodeError, AttributeError):
            parsed = parse_stream_key(PREFIX + field_.decode())
            values = json.loads(value)
            if parsed is None or not isinstance(values, dict):
                continue
            host, name = parsed
            out.setdefault(host, {})[name] = {
                k: float(v) for k, v in values.items()
                if isinstance(k, str) and isinstance(v, int | float)}
    return out
