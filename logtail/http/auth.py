"""HTTP Basic and Bearer authentication; password hashing for [auth.users] (salted scrypt).

scrypt is slow and memory-hard on purpose (~50 ms, 16 MiB), which makes it a lever for
anyone who can send passwords: so it runs on one thread of its own (never the default
pool, which backlog scans share), at most `MAX_PENDING` checks may wait for it (beyond
that: `AuthBusy`, and no hashing), and concurrent checks of the same credentials share
one hash. Failed attempts per client are limited by the caller (`Guard`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import time
from concurrent.futures import ThreadPoolExecutor

__all__ = ["AuthBusy", "Authenticator", "hash_password", "verify_password"]

N, R, P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    try:
        _, n, r, p, salt, digest = hashed.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class AuthBusy(Exception):
    """Too many password checks are waiting: answer 503 instead of queueing more."""


class Authenticator:
    """HTTP Basic (users with scrypt hashes) and Bearer tokens, checked in constant time.

    A successful check is remembered for a while by a SHA-256 of the credentials (never
    the password itself): a browser that reconnects its stream every few seconds costs
    one hash, not one per request.
    """

    CACHE_S = 300.0
    CACHE_MAX = 1024
    MAX_PENDING = 32  # checks running or waiting for the scrypt thread

    def __init__(self, users: tuple[tuple[str, str], ...], tokens: tuple[str, ...],
                 realm: str) -> None:
        self.users = dict(users)
        self.tokens = [t.encode() for t in tokens]
        self.realm = realm
        self._ok: dict[bytes, float] = {}
        self._running: dict[bytes, asyncio.Future[bool]] = {}
        self._pool: ThreadPoolExecutor | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.tokens)

    @property
    def challenge(self) -> str:
        if self.users:
            return f'Basic realm="{self.realm}", charset="UTF-8"'
        return f'Bearer realm="{self.realm}"'

    async def check(self, authorization: str | None) -> str | None:
        """The user name (or "token") if the header is valid credentials, else None.
        Raises `AuthBusy` when a password would have to wait behind too many others."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and self.tokens:
            given = value.encode()
            ok = False
            for tok in self.tokens:
                ok |= hmac.compare_digest(given, tok)
            return "token" if ok else None
        if scheme == "basic" and self.users:
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return user if await self._check_user(user, password) else None
        return None

    async def _check_user(self, user: str, password: str) -> bool:
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        seen = self._ok.get(key)
        if seen is not None and time.monotonic() - seen < self.CACHE_S:
            return True
        running = self._running.get(key)
        if running is None:
            if len(self._running) >= self.MAX_PENDING:
                raise AuthBusy
            # an unknown user costs the same hash as a known one: timing tells nobody who exists
            hashed = self.users.get(user, _DUMMY)
            running = asyncio.get_running_loop().run_in_executor(
                self._executor(), _paced_verify, password, hashed)
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        ok = await asyncio.shield(running) and user in self.users
        if ok:
            if len(self._ok) >= self.CACHE_MAX:
                self._ok.clear()
            self._ok[key] = time.monotonic()
        return ok

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logtail-scrypt")
        return self._pool

    def close(self) -> None:
        """Stop the scrypt thread; checks still queued are dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


PACE = 3.0  # rest this many times as long as a check took: a quarter of a core at most


def _paced_verify(password: str, hashed: str) -> bool:
    """`verify_password`, then rest: the scrypt thread uses at most a quarter of a core,
    however many logins are thrown at it, and the streams keep the rest. A flood of bad
    passwords meets `failed_auth_per_ip` and 503s; cached logins never wait here."""
    started = time.perf_counter()
    try:
        return verify_password(password, hashed)
    finally:
        time.sleep(PACE * (time.perf_counter() - started))


_DUMMY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
