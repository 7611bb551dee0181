"""Every place logtail leans on a part of Sanic that is not its documented API.

Each use says what it relies on and why; `missing_internals()` lists any of them that
a Sanic upgrade took away, and a test fails loudly on that list. Code elsewhere should
reach Sanic's insides only through this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
import socket
import time
from typing import Any, cast

from sanic import Request, Sanic
from sanic.application.state import ApplicationState
from sanic.exceptions import BadURL
from sanic.helpers import STATUS_CODES
from sanic.http import Http, Stage
from sanic.server.protocols.http_protocol import HttpProtocol
from sanic.signals import Event

__all__ = [
    "HEAD_COMPLETE",
    "ChunkedSocket",
    "HeadTimeoutProtocol",
    "LenientRequest",
    "LogtailSanic",
    "drop_connection",
    "head_complete",
    "is_error_placeholder",
    "malformed_target",
    "missing_internals",
    "set_response_timeout",
    "stop_listening",
]

HEAD_COMPLETE = "http.lifecycle.request"  # Sanic's signal: a request head was parsed
_UNSAFE = re.compile(rb"[^\x21-\x7e]")

# Sanic writes a status line's reason phrase from this table, "UNKNOWN" for codes it lacks;
# 421 (RFC 9110), which the Host check answers, is one of them. Adds, never replaces.
STATUS_CODES.setdefault(421, b"Misdirected Request")


class HeadTimeoutProtocol(HttpProtocol):
    """A request head must arrive whole within `REQUEST_TIMEOUT` of its first byte.

    Sanic's own request timeout restarts with every byte received, so a client dripping
    a byte every few seconds holds a connection (and a task) forever. This deadline is
    armed by the first byte of a head and disarmed when Sanic has parsed it (the
    `http.lifecycle.request` signal, see `head_complete`); a late head gets a 408 and
    the connection is closed. Bytes that arrive while a request is being handled (a
    pipelined next request) arm nothing; the next byte after that does.

    Internals: `data_received`/`connection_lost` are asyncio's protocol callbacks, which
    we extend and pass on; `self.http.stage` (Sanic's `Http` and `Stage`) tells a head
    being read (IDLE, REQUEST) from a request being handled.
    """

    __slots__ = ("_head_deadline",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self._reading_head():
            timeout = self.app.config.REQUEST_TIMEOUT
            self._head_deadline = asyncio.get_running_loop().call_later(
                timeout, self._head_too_slow, timeout)
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_complete()
        super().connection_lost(exc)  # type: ignore[no-untyped-call]  # Sanic: unannotated

    def head_complete(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _reading_head(self) -> bool:
        http = self.http  # None until Sanic's connection task has started
        return http is None or http.stage in (Stage.IDLE, Stage.REQUEST)

    def _head_too_slow(self, timeout: float) -> None:
        self._head_deadline = None
        transport = self.transport
        if transport is None or transport.is_closing() or not self._reading_head():
            return
        body = (b'{"error":"request head not received within %gs","status":408}' % timeout)
        transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                        b"x-content-type-options: nosniff\r\nconnection: close\r\n"
                        b"content-length: %d\r\n\r\n%s" % (len(body), body))
        transport.close()


async def head_complete(request: Request) -> None:
    """The `http.lifecycle.request` signal handler: disarms the head deadline."""
    protocol = request.transport.get_protocol()
    if isinstance(protocol, HeadTimeoutProtocol):
        protocol.head_complete()


class LogtailSanic(Sanic[Any, Any]):
    """Sanic, serving with `HeadTimeoutProtocol` unless told otherwise, whichever way it
    is started (`run`/`prepare` for the CLI and workers, `create_server` for tests).
    Both methods and their `protocol` argument are public; only the default changes."""

    def prepare(self, *args: Any, protocol: Any = None, **kwargs: Any) -> None:
        super().prepare(*args, protocol=protocol or HeadTimeoutProtocol, **kwargs)

    async def create_server(self, *args: Any, protocol: Any = None, **kwargs: Any) -> Any:
        return await super().create_server(*args, protocol=protocol or HeadTimeoutProtocol,
                                           **kwargs)


class LenientRequest(Request):
    """A request whose target httptools rejects (a raw control byte such as NUL or ESC)
    is built anyway, with the offending bytes percent-escaped, and marked `malformed`.

    Sanic raises `BadURL` from `Request.__init__` for those, then builds its error
    placeholder request from the same bytes, which raises again: the client gets no
    answer and stderr gets ~40 lines of traceback, raw escape bytes included. Marked
    instead, the request reaches our middleware, which answers 400 and logs one line.
    Internal: the constructor's first argument is `url_bytes` (as Sanic calls it).
    """

    __slots__ = ("malformed",)

    def __init__(self, url_bytes: bytes, *args: Any, **kwargs: Any) -> None:
        self.malformed: bytes | None = None
        try:
            super().__init__(url_bytes, *args, **kwargs)
        except BadURL:
            super().__init__(_UNSAFE.sub(lambda m: b"%%%02X" % m[0][0], url_bytes),
                             *args, **kwargs)
            self.malformed = url_bytes


def malformed_target(request: Request) -> bytes | None:
    """The raw request target if it was malformed (see `LenientRequest`), else None."""
    return getattr(request, "malformed", None)


def is_error_placeholder(request: Request) -> bool:
    """Whether `request` is the stand-in Sanic builds to answer a request whose head it
    could not read (bad, too large, too slow): method "NONE", no headers, no head bytes.
    Middleware must let Sanic's 400/408/413 through rather than judge an empty request.
    Internal: `Http.create_empty_request`."""
    return request.method == "NONE" and not request.head


def set_response_timeout(request: Request, seconds: float) -> None:
    """Sanic's response timeout for this connection, counted from the last write that
    got into the socket's buffer. Internal: `HttpProtocol.response_timeout`."""
    protocol = cast(HttpProtocol, request.transport.get_protocol())
    protocol.response_timeout = seconds


class ChunkedSocket:
    """A stream's connection, for writes that skip `response.send` (see
    `logtail.streaming.stream.RawSocket`): the bytes of one HTTP/1.1 chunk written on the
    transport, and Sanic's timeout clock told of it. Internals: the response is sent with
    chunked transfer encoding (no content length, HTTP/1.1), and `HttpProtocol._time`."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._protocol = cast(HttpProtocol, transport.get_protocol())

    @classmethod
    def of(cls, request: Request) -> ChunkedSocket | None:
        """For a GET streamed over HTTP/1.1 (chunked), else None: use `send`."""
        if request.method != "GET" or request.version != "1.1":
            return None
        return cls(cast(asyncio.Transport, request.transport))

    def ready(self) -> bool:
        return not self._transport.is_closing() and not self._transport.get_write_buffer_size()

    def frame(self, payload: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(payload), payload)

    def write(self, framed: bytes) -> None:
        self._transport.write(framed)
        self._protocol._time = time.monotonic()  # the clock Sanic's timeouts use


def drop_connection(request: Request) -> None:
    """Close the request's connection at once, with no response. The handler then raises
    `asyncio.CancelledError`, and Sanic's connection task ends with one line at INFO
    instead of trying an error response on the dead connection. Internals:
    `HttpProtocol.abort()` (what Sanic's own shutdown uses on the connections left at the
    end) also unsets the protocol's transport, which `Http.http1` checks after a
    cancellation to tell a closed connection from one to answer."""
    protocol = request.transport.get_protocol()
    if isinstance(protocol, HttpProtocol):
        protocol.abort()  # type: ignore[no-untyped-call]
    else:
        request.transport.close()


def stop_listening(app: Sanic[Any, Any]) -> bool:
    """Refuse new connections from now on; False when there is no socket of ours to stop.

    Sanic closes its listening socket only after the `before_server_stop` listeners have
    run, so until then a new connection is accepted and answered. An EventSource that
    reconnects then and gets any status but 200 gives up for good; a refused connection
    is a network error, which it retries. `shutdown()` acts on the socket, not on this
    descriptor, so the port refuses at once. asyncio's accept callback is removed first (it
    would log the failing accept on every pass of the loop); uvloop's listener sees the
    error and closes its handle quietly. Sanic's own close later closes the descriptor.

    Internal: `app.state.sock` (`ApplicationState.sock`), the socket passed as `sock=` to
    `run`/`prepare`/`create_server`. It is None where Sanic bound the socket itself, as in
    the worker processes of `workers > 1`: there Sanic's order stays (see README)."""
    sock = getattr(app.state, "sock", None)
    if not isinstance(sock, socket.socket) or sock.fileno() < 0:
        return False
    asyncio.get_running_loop().remove_reader(sock.fileno())
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False  # not listening (already shut down, or never was)
    return True


def missing_internals() -> list[str]:
    """The Sanic internals above that this Sanic lacks (empty when all is well)."""
    missing = []
    if not isinstance(STATUS_CODES, dict):
        missing.append("sanic.helpers.STATUS_CODES")
    for name in ("data_received", "connection_lost", "http", "transport", "app",
                 "response_timeout", "_time"):  # class attributes, set in __init__ too
        if not hasattr(HttpProtocol, name):
            missing.append(f"HttpProtocol.{name}")
    for stage in ("IDLE", "REQUEST"):
        if not hasattr(Stage, stage):
            missing.append(f"Stage.{stage}")
    if HEAD_COMPLETE not in {e.value for e in Event}:
        missing.append(f"signal {HEAD_COMPLETE}")
    for method in (Sanic.prepare, Sanic.create_server):
        if "protocol" not in inspect.signature(method).parameters:
            missing.append(f"Sanic.{method.__name__}(protocol=)")
    if not hasattr(Request, "head"):
        missing.append("Request.head")
    params = list(inspect.signature(Request.__init__).parameters)
    if params[1:2] != ["url_bytes"]:
        missing.append("Request.__init__(url_bytes, ...)")
    if '"NONE"' not in inspect.getsource(Http.create_empty_request):
        missing.append('Http.create_empty_request (method "NONE")')
    return missing + _missing_for_shutdown()


def _missing_for_shutdown() -> list[str]:
    """Those of `drop_connection` and `stop_listening`."""
    missing = []
    if not hasattr(HttpProtocol, "abort"):
        missing.append("HttpProtocol.abort")
    if "not self.protocol.transport" not in inspect.getsource(Http.http1):
        missing.append("Http.http1 (a cancelled request on a closed transport ends quietly)")
    if "sock" not in {f.name for f in dataclasses.fields(ApplicationState)}:
        missing.append("ApplicationState.sock")
    return missing
