"""Password hashing for [auth.users] (stdlib scrypt, salted, constant-time check)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

__all__ = ["Authenticator", "hash_password", "verify_password"]

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


class Authenticator:
    """HTTP Basic (users with scrypt hashes) and Bearer tokens, checked in constant time.

    scrypt is slow on purpose (~50 ms), so it runs in a thread, and a successful check is
    remembered for a while by a digest of the credentials: a browser that reconnects its
    stream every few seconds costs one hash, not one per request.
    """

    CACHE_S = 300.0
    CACHE_MAX = 1024

    def __init__(self, users: tuple[tuple[str, str], ...], tokens: tuple[str, ...],
                 realm: str) -> None:
        self.users = dict(users)
        self.tokens = [t.encode() for t in tokens]
        self.realm = realm
        self._ok: dict[bytes, float] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.tokens)

    @property
    def challenge(self) -> str:
        if self.users:
            return f'Basic realm="{self.realm}", charset="UTF-8"'
        return f'Bearer realm="{self.realm}"'

    async def check(self, authorization: str | None) -> str | None:
        """The user name (or "token") if the header is valid credentials, else None."""
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
        import asyncio
        import time

        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        now = time.monotonic()
        seen = self._ok.get(key)
        if seen is not None and now - seen < self.CACHE_S:
            return True
        hashed = self.users.get(user)
        if hashed is None:
            # the same work as for a real user, so timing does not tell who exists
            await asyncio.to_thread(verify_password, password, _DUMMY)
            return False
        if not await asyncio.to_thread(verify_password, password, hashed):
            return False
        if len(self._ok) >= self.CACHE_MAX:
            self._ok.clear()
        self._ok[key] = now
        return True


_DUMMY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
