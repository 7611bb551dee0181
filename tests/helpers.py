"""Test harness: a real logtail server on an ephemeral port, and a real SSE client.

sanic-testing's clients buffer whole bodies and hang on endless streams, so streams are
read with httpx against a server listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from logtail.config import parse_config
from logtail.http.app import create_app

ROOT = Path(__file__).resolve().parent.parent


RELAXED = '[limits]\nrequests_per_ip = "100000/minute"\nstreams_per_ip = 1000\n'


def make_config(tmp: Path, files: dict[str, str] | None = None, extra: str = "") -> Any:
    """A Config for files in `tmp` (name -> relative path), plus extra TOML.

    Rate limits are relaxed unless `extra` has a [limits] table: most tests reconnect a lot.
    """
    files = files or {"app": "app.log"}
    if "[limits]" not in extra:
        extra = RELAXED + extra
    text = extra + "\n" + "".join(
        f'[[files]]\nname = "{n}"\npath = "{p}"\n' for n, p in files.items()
    )
    return parse_config(tomllib.loads(text), tmp)


def toml_config(tmp: Path, files: dict[str, str] | None = None, extra: str = "") -> Path:
    files = files or {"app": "app.log"}
    if "[limits]" not in extra:
        extra = RELAXED + extra
    path = tmp / "config.toml"
    path.write_text(extra + "\n" + "".join(
        f'[[files]]\nname = "{n}"\npath = "{p}"\n' for n, p in files.items()))
    return path


@contextlib.asynccontextmanager
async def live_server(config: Any) -> AsyncIterator[str]:
    """Run the app in this event loop on 127.0.0.1:<free port>; yield its base URL."""
    app = create_app(config)
    app.config.TOUCHUP = False  # touch-up rewrites Sanic's classes once per process, not per app
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # Sanic reads port 0 as "default 8000": bind it ourselves
    sock.listen(1024)
    server = await app.create_server(sock=sock, return_asyncio_server=True, access_log=False)
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    port = sock.getsockname()[1]
    app.ctx.test_port = port
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.before_stop()
        await server.close()
        await server.after_stop()


@dataclass
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None

    @property
    def lines(self) -> list[str]:
        return self.data.split("\n") if self.event == "message" else []

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSE:
    """Reads one SSE response in a background task; events and comments come from a queue,
    so a timed-out wait does not cancel (and so end) the response's byte iterator."""

    response: httpx.Response
    comments: list[str] = field(default_factory=list)
    last_id: str | None = None
    _queue: asyncio.Queue[Event | BaseException] | None = None
    _task: asyncio.Task[None] | None = None

    def _start(self) -> asyncio.Queue[Event | BaseException]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._read())
        return self._queue

    async def next_event(self, timeout: float = 10.0) -> Event:
        queue = self._start()
        item = await asyncio.wait_for(queue.get(), timeout)
        if isinstance(item, BaseException):
            queue.put_nowait(item)
            raise item
        return item

    async def _read(self) -> None:
        assert self._queue is not None
        ev, data, has_field = Event(), [], False
        try:
            async for line in _sse_lines(self.response):
                if line == "":
                    if data or (has_field and ev.event != "message"):
                        ev.data = "\n".join(data)
                        self._queue.put_nowait(ev)
                    ev, data, has_field = Event(), [], False
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                has_field = True
                if name == "data":
                    data.append(value)
                elif name == "event":
                    ev.event = value
                elif name == "id":
                    ev.id = value
                    self.last_id = value
            self._queue.put_nowait(EOFError("stream ended"))
        except Exception as e:
            self._queue.put_nowait(EOFError(f"stream ended: {e!r}"))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def collect(self, count: int, timeout: float = 15.0,
                      notices: list[Event] | None = None) -> list[str]:
        """The next `count` log lines (notices go to `notices`, if given)."""
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            ev = await self.next_event(max(0.01, deadline - time.monotonic()))
            if ev.event == "message":
                out.extend(ev.lines)
            elif notices is not None:
                notices.append(ev)
        return out

    async def until_end(self, timeout: float = 15.0) -> tuple[list[str], list[Event]]:
        lines: list[str] = []
        notices: list[Event] = []
        with contextlib.suppress(EOFError):
            while True:
                ev = await self.next_event(timeout)
                if ev.event == "message":
                    lines.extend(ev.lines)
                else:
                    notices.append(ev)
        return lines, notices


async def _sse_lines(response: httpx.Response) -> AsyncIterator[str]:
    """Lines as SSE defines them (CR, LF, CRLF), unlike str.splitlines, which also splits
    on form feeds, vertical tabs and U+2028 that a log line may legitimately contain."""
    buf = b""
    async for chunk in response.aiter_bytes():
        buf += chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace")


@contextlib.asynccontextmanager
async def sse_on(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None,
                 expect: int = 200) -> AsyncIterator[SSE]:
    """An SSE reader for `url` on an existing client (its connections, its address)."""
    async with client.stream("GET", url, headers=headers or {}) as resp:
        assert resp.status_code == expect, (resp.status_code, await resp.aread())
        reader = SSE(resp)
        try:
            yield reader
        finally:
            reader.close()


@contextlib.asynccontextmanager
async def sse(base: str, path: str, headers: dict[str, str] | None = None,
              expect: int = 200) -> AsyncIterator[SSE]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client, \
            sse_on(client, base + path, headers, expect) as reader:
        yield reader


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(interval)


def append(path: Path, *lines: str, raw: bytes | None = None) -> None:
    with open(path, "ab") as f:
        f.write(raw if raw is not None else "".join(f"{ln}\n" for ln in lines).encode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_output(proc: subprocess.Popen[bytes]) -> str:
    """What a child process has printed so far, without waiting for more."""
    if proc.stdout is None:
        return ""
    with contextlib.suppress(Exception):
        os.set_blocking(proc.stdout.fileno(), False)
        return (proc.stdout.read() or b"").decode(errors="replace")
    return ""


class ServerProcess:
    """`python -m logtail serve` as a child process, for signals and restarts."""

    def __init__(self, args: list[str], port: int, cwd: Path | None = None) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "logtail", "serve", "--port", str(port), *args],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise TimeoutError("server did not start")

    def output(self) -> str:
        return child_output(self.proc)

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
