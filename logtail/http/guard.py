"""Per-IP request rates, failed logins per IP, concurrent streams per IP, and a global
cap on streams.

Rates use the `limits` library (moving window) with memory storage, or Redis when
`limits.storage` names it, so a limit holds across workers and hosts. Concurrent streams
are counted, not rated: taken when a stream starts, given back in `finally`. With Redis,
each stream is a member of a sorted set with an expiry that a refresher keeps moving, so
a crashed worker's streams age out instead of blocking a client forever.

Failed logins are counted per IP; past `limits.failed_auth_per_ip` every attempt from
that IP is refused until the window moves on, a correct password included: letting a
right guess through would tell the guesser it was right.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from logtail.config import LimitsConfig

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Guard", "Refusal"]

log = logging.getLogger("logtail.http.guard")
SLOT_TTL_S = 60.0
SLOT_REFRESH_S = 20.0


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str  # for metrics: "rate", "auth_failures", "streams_per_ip", "max_streams"
    message: str
    retry_after: int


class Guard:
    def __init__(self, cfg: LimitsConfig) -> None:
        self.cfg = cfg
        self.rate = parse(cfg.requests_per_ip)
        self.auth_rate = parse(cfg.failed_auth_per_ip)
        self.auth_pending: Counter[str] = Counter()  # checks under way, per IP
        uri = cfg.storage if cfg.storage.startswith("async+") else "async+" + cfg.storage
        self.storage = storage_from_string(uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.redis_url = cfg.storage if cfg.storage.startswith(("redis://", "rediss://")) \
            else None
        self.local: Counter[str] = Counter()
        self.total = 0
        self._redis: Redis | None = None
        self._slots: dict[str, str] = {}  # member -> ip (Redis mode)
        self._refresher: asyncio.Task[None] | None = None

    async def check_request(self, ip: str) -> Refusal | None:
        if await self.limiter.hit(self.rate, "req", ip):
            return None
        stats = await self.limiter.get_window_stats(self.rate, "req", ip)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        return Refusal(429, "rate", f"more than {self.cfg.requests_per_ip} requests from "
                       f"{ip}", retry)

    async def begin_auth(self, ip: str) -> Refusal | None:
        """Room for one more login attempt from `ip`, counting those still being checked
        as failures (so parallel guesses cannot overrun the limit); then `end_auth`."""
        stats = await self.limiter.get_window_stats(self.auth_rate, "authfail", ip)
        if stats.remaining - self.auth_pending[ip] <= 0:
            retry = max(1, math.ceil(stats.reset_time - time.time()))
            return Refusal(429, "auth_failures", f"more than {self.cfg.failed_auth_per_ip} "
                           f"failed logins from {ip}", retry)
        self.auth_pending[ip] += 1
        return None

    async def end_auth(self, ip: str, ok: bool) -> None:
        self.auth_pending[ip] -= 1
        if self.auth_pending[ip] <= 0:
            del self.auth_pending[ip]
        if not ok:
            await self.limiter.hit(self.auth_rate, "authfail", ip)

    async def acquire_stream(self, ip: str) -> str | Refusal:
        """Take a stream slot: a token for `release_stream`, or why not."""
        if self.redis_url is not None:
            return await self._acquire_redis(ip)
        if self.total >= self.cfg.max_streams:
            return self._full()
        if self.local[ip] >= self.cfg.streams_per_ip:
            return self._too_many(ip)
        self.local[ip] += 1
        self.total += 1
        return ip

    async def release_stream(self, token: str) -> None:
        if self.redis_url is not None:
            await self._release_redis(token)
            return
        self.total -= 1
        self.local[token] -= 1
        if self.local[token] <= 0:
            del self.local[token]

    def _full(self) -> Refusal:
        return Refusal(503, "max_streams",
                       f"server at capacity ({self.cfg.max_streams} streams)", 5)

    def _too_many(self, ip: str) -> Refusal:
        return Refusal(429, "streams_per_ip", f"more than {self.cfg.streams_per_ip} open "
                       f"streams from {ip}", 5)

    # -- Redis: sorted sets of stream members scored by expiry ------------------------------

    async def _client(self) -> Redis:
        if self._redis is None:
            import redis.asyncio as aioredis

            assert self.redis_url is not None
            self._redis = aioredis.from_url(self.redis_url)
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())
        return self._redis

    async def _acquire_redis(self, ip: str) -> str | Refusal:
        r = await self._client()
        now = time.time()
        member = uuid.uuid4().hex
        ip_key, all_key = f"logtail:streams:{ip}", "logtail:streams"
        async with r.pipeline(transaction=True) as p:
            p.zremrangebyscore(ip_key, 0, now)
            p.zremrangebyscore(all_key, 0, now)
            p.zadd(ip_key, {member: now + SLOT_TTL_S})
            p.zadd(all_key, {member: now + SLOT_TTL_S})
            p.zcard(ip_key)
            p.zcard(all_key)
            p.expire(ip_key, int(SLOT_TTL_S) * 2)
            res = await p.execute()
        per_ip, total = res[4], res[5]
        if per_ip > self.cfg.streams_per_ip or total > self.cfg.max_streams:
            await self._drop(r, ip, member)
            return (self._full() if total > self.cfg.max_streams
                          else self._too_many(ip))
        self._slots[member] = ip
        return member

    async def _release_redis(self, member: str) -> None:
        ip = self._slots.pop(member, None)
        if ip is not None and self._redis is not None:
            await self._drop(self._redis, ip, member)

    @staticmethod
    async def _drop(r: Redis, ip: str, member: str) -> None:
        async with r.pipeline(transaction=True) as p:
            p.zrem(f"logtail:streams:{ip}", member)
            p.zrem("logtail:streams", member)
            await p.execute()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(SLOT_REFRESH_S)
            if not self._slots or self._redis is None:
                continue
            expiry = time.time() + SLOT_TTL_S
            try:
                async with self._redis.pipeline(transaction=False) as p:
                    for member, ip in self._slots.items():
                        p.zadd(f"logtail:streams:{ip}", {member: expiry}, xx=True)
                        p.zadd("logtail:streams", {member: expiry}, xx=True)
                    await p.execute()
            except Exception as e:  # Redis away for a moment: slots just age
                log.warning("refreshing stream slots in Redis failed: %s", e)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._redis is not None:
            for member in list(self._slots):
                with contextlib.suppress(Exception):
                    await self._release_redis(member)
            await self._redis.aclose()
            self._redis = None
