"""The shipper's link to Redis: one client, one script that appends a file's entries and
moves its place atomically, and one log line per change of Redis's state.

Every call is tried once by redis-py (its own retries are off: a write that timed out may
have happened, and only the script's check can tell), then again here with capped
exponential backoff. Redis being down, refusing writes for lack of memory, or coming back
is logged once per change, never once per retry or per file; a refusal that concerns one
key (a key of another type, a missing permission) is logged once per file and message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aredis
from redis.backoff import NoBackoff
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    OutOfMemoryError,
    ResponseError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)
from redis.retry import Retry

from logtail.config import redact_url

__all__ = ["BACKOFF_CAP_S", "COMMIT_SCRIPT", "Committed", "RedisLink", "wait_or"]

log = logging.getLogger("logtail.fleet.link")

T = TypeVar("T")
BACKOFF_FIRST_S = 0.1
BACKOFF_CAP_S = 5.0
CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 15.0  # a stalled Redis must not hold a file forever; a write is ms

# KEYS[1]: the stream. ARGV[1]: the id of its last entry as the shipper knows it ("" for
# none); ARGV[2]: the MINID threshold; then 6 values per entry: id, "l" (lines) or "n"
# (notice), lines or notice name, n or data, t, pos. The entries are added only if the
# stream's last entry is the one the shipper expects; else the last entry is returned so
# the shipper can go on from what Redis holds. A script's writes are not rolled back on an
# error, so every check comes before the first write (and Redis refuses a script's first
# write when out of memory, never a later one).
COMMIT_SCRIPT = """
local key = KEYS[1]
local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
local have = ''
if last[1] then have = last[1][1] end
if have ~= ARGV[1] then
  if have == '' then return {0} end
  return {0, have, last[1][2]}
end
local i = 3
while i <= #ARGV do
  if ARGV[i + 1] == 'l' then
    redis.call('XADD', key, 'MINID', '~', ARGV[2], ARGV[i], 'lines', ARGV[i + 2],
               'n', ARGV[i + 3], 't', ARGV[i + 4], 'pos', ARGV[i + 5])
  else
    redis.call('XADD', key, 'MINID', '~', ARGV[2], ARGV[i], 'notice', ARGV[i + 2],
               'data', ARGV[i + 3], 't', ARGV[i + 4], 'pos', ARGV[i + 5])
  end
  i = i + 6
end
return {1}
"""


class Committed:
    """What a commit found: done, or the stream's last entry (None: the stream is empty)."""

    __slots__ = ("fields", "last_id", "ok")

    def __init__(self, ok: bool, last_id: str | None = None,
                 fields: dict[bytes, bytes] | None = None) -> None:
        self.ok = ok
        self.last_id = last_id
        self.fields = fields or {}


async def wait_or(event: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less if `event` is set; whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


class RedisLink:
    def __init__(self, url: str) -> None:
        self.url = redact_url(url)
        self.client: aredis.Redis = aredis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0), client_name="logtail-ship")
        self._commit = self.client.register_script(COMMIT_SCRIPT)
        self.state = "new"  # then "ok", "down" or "oom"
        self._since = time.monotonic()
        self._up = asyncio.Event()  # set while Redis answers: wakes everyone backing off
        self._refused: dict[str, str] = {}  # what -> the refusal last logged for it
        self.errors: dict[str, int] = {}  # what -> failed calls (for the shipper's stats)

    async def close(self) -> None:
        await self.client.aclose()

    # -- calls -----------------------------------------------------------------------------

    async def attempt(self, op: Callable[[], Awaitable[T]], what: str) -> tuple[bool, T | None]:
        """Run `op` once: (True, result), or (False, None) with the failure noted."""
        ok, result, _ = await self._attempt(op, what)
        return ok, result

    async def _attempt(self, op: Callable[[], Awaitable[T]],
                       what: str) -> tuple[bool, T | None, asyncio.Event | None]:
        """(ok, result, an event set once Redis is seen to answer again, if it did not)."""
        try:
            result = await op()
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as e:
            self.errors[what] = self.errors.get(what, 0) + 1
            self._change("down", e)
            return False, None, self._up
        except ResponseError as e:
            self.errors[what] = self.errors.get(what, 0) + 1
            if isinstance(e, OutOfMemoryError) or str(e).startswith("OOM"):
                self._change("oom", e)
                return False, None, self._up
            self._change("ok")  # Redis answers; this key or command is the problem
            if self._refused.get(what) != str(e):
                self._refused[what] = str(e)
                log.error("%s: redis refused a write: %s; retrying with backoff", what, e)
            return False, None, None
        self._change("ok")
        if self._refused.pop(what, None) is not None:
            log.info("%s: redis accepts this file's writes again", what)
        return True, result, None

    async def call(self, op: Callable[[], Awaitable[T]], what: str,
                   stop: asyncio.Event) -> tuple[bool, T | None]:
        """Run `op` until it succeeds, backing off between tries: (False, None) if
        `stop` was set first."""
        delay = BACKOFF_FIRST_S
        while not stop.is_set():
            ok, result, up = await self._attempt(op, what)
            if ok:
                return True, result
            if await _wait_any(stop, up, delay):
                delay = BACKOFF_FIRST_S  # Redis answers again: no need to wait out the backoff
            else:
                delay = min(BACKOFF_CAP_S, delay * 2)
        return False, None

    def commit(self, key: str, expected: str, minid: str,
               args: list[str]) -> Callable[[], Awaitable[Committed]]:
        """The script call that appends a file's entries if its stream ends at `expected`."""

        async def run() -> Committed:
            reply: Any = await self._commit(keys=[key], args=[expected, minid, *args])
            if int(reply[0]) == 1:
                return Committed(True)
            if len(reply) < 3:
                return Committed(False)
            flat = reply[2]
            fields = {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}
            return Committed(False, _text(reply[1]), fields)

        return run

    # -- state -----------------------------------------------------------------------------

    def _change(self, state: str, error: BaseException | None = None) -> None:
        old = self.state
        if state == old:
            return
        now = time.monotonic()
        took = now - self._since
        self.state, self._since = state, now
        if state == "ok":
            self._up.set()
        elif self._up.is_set():
            self._up = asyncio.Event()
        if state == "down":
            log.warning("redis: cannot reach %s (%s); retrying with backoff (at most %g s "
                        "apart), every file keeps its place", self.url, _why(error),
                        BACKOFF_CAP_S)
        elif state == "oom":
            log.warning("redis: out of memory, writes refused (%s); retrying with backoff, "
                        "every file keeps its place (raise maxmemory, or lower "
                        "[ship] maxlen)", _why(error))
        elif old == "new":
            log.info("redis: connected to %s", self.url)
        elif old == "down":
            log.info("redis: reachable again after %.1f s; shipping resumes", took)
        else:
            log.info("redis: accepting writes again after %.1f s; shipping resumes", took)


async def _wait_any(stop: asyncio.Event, up: asyncio.Event | None, seconds: float) -> bool:
    """Sleep `seconds`, or until `stop` or `up` is set; whether one was."""
    if up is None:
        return await wait_or(stop, seconds)
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(up.wait())]
    try:
        done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    return bool(done)


def _why(error: BaseException | None) -> str:
    text = str(error) if error is not None else ""
    return text or type(error).__name__


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
