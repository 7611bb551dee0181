"""Restarts keep native EventSource clients: nothing a stopping server says is fatal to one.

An EventSource gives up for good on any answer but 200, and retries a network error. So a
stopping server first closes its port (a reconnect is refused), drops stream requests that
still reach it on open keep-alive connections, and ends each stream with `bye` and a
`retry:` long enough to wait out a restart.

A client that stopped reading keeps a stopping server busy for about a second and a half
(the streams' grace, then their cancellation), and its connection open for Sanic's graceful
timeout after that: the tests hold one open so that the stopping phase is long enough to
look at, as it was whenever a reconnect used to get 503.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ServerProcess, append, free_port, make_config, toml_config
from playwright.async_api import async_playwright
from viewer_support import launch

from logtail.http.app import create_app

pytestmark = pytest.mark.timeout(120)

BIG_LINES = 10_000  # 20 MB of backlog: well over what the socket buffers on both ends hold


def big_file(tmp: Path) -> None:
    with open(tmp / "big.log", "w") as f:
        f.writelines(f"{i:06d} {'x' * 1992}\n" for i in range(BIG_LINES))


def stalled_stream(port: int) -> socket.socket:
    """A stream client that stopped reading: its backlog fills both socket buffers and the
    server's `send` waits on it, so shutdown waits for it too (about 1.5 s)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /api/files/big/stream?n={BIG_LINES} HTTP/1.1\r\n"
              f"Host: 127.0.0.1:{port}\r\n\r\n".encode())
    return s


def request(sock: socket.socket, port: int, target: str) -> None:
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())


def read_until(sock: socket.socket, marker: bytes, timeout: float = 10.0) -> bytes:
    """Bytes from `sock` up to the end of the SSE event that holds `marker`."""
    sock.settimeout(timeout)
    buf = b""
    while (at := buf.find(marker)) < 0 or b"\n\n" not in buf[at:]:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(buf[-300:])
        buf += chunk
    return buf


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a content-length: its status line."""
    sock.settimeout(10)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next(int(h.split(b":", 1)[1]) for h in head.split(b"\r\n")
                  if h.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head.split(b"\r\n")[0]


def fresh_connection(port: int) -> str:
    """What a new connection asking for a stream gets: "refused", "dropped" (no answer)
    or the status line it was answered with."""
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        request(s, port, "/api/files/app/stream?n=0")
        head = s.recv(200)
        return head.split(b"\r\n")[0].decode() if head else "dropped"
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "dropped"
    finally:
        s.close()


def test_stopping_server_refuses_new_connections_and_drops_streams_on_open_ones(tmp_path):
    """Between SIGTERM and exit: `bye` carries `stream.restart_retry_ms`; a new connection
    is refused; a stream request on a keep-alive connection opened before gets no answer
    (all of which EventSource retries), where it used to get 503 (which it never does)."""
    append(tmp_path / "app.log", "x")
    big_file(tmp_path)
    cfg = toml_config(tmp_path, {"app": "app.log", "big": "big.log"},
                      '[server]\naccess_log = "access.log"\n[stream]\nrestart_retry_ms = 1234\n')
    port = free_port()
    server = ServerProcess(["-c", str(cfg)], port)
    stream = idle = stalled = None
    try:
        server.wait_ready()
        stream = socket.create_connection(("127.0.0.1", port))
        request(stream, port, "/api/files/app/stream?n=1")
        read_until(stream, b"data: x")
        idle = socket.create_connection(("127.0.0.1", port))  # keep-alive, idle when stopping
        request(idle, port, "/healthz")
        assert read_response(idle) == b"HTTP/1.1 200 OK"
        stalled = stalled_stream(port)
        time.sleep(1.0)  # its buffers fill up

        server.terminate()
        bye = read_until(stream, b"event: bye")
        bye = bye[bye.rfind(b"\n\n", 0, bye.find(b"event: bye")) + 2:]
        seen = {"bye": [f for f in bye.split(b"\n") if f.startswith(b"retry:")],
                "new connection": fresh_connection(port)}
        request(idle, port, "/api/files/app/stream?n=0")
        try:
            answer = idle.recv(200)
        except ConnectionResetError:
            answer = b""
        seen["stream request on an open connection"] = (
            answer.split(b"\r\n")[0].decode() if answer else "dropped")
        seen["later connections"] = []
        for _ in range(5):
            seen["later connections"].append(fresh_connection(port))
            time.sleep(0.05)
        assert server.proc.poll() is None  # all of the above while it was still stopping
        assert seen == {"bye": [b"retry: 1234"], "new connection": "refused",
                        "stream request on an open connection": "dropped",
                        "later connections": ["refused"] * 5}
        server.proc.wait(15)
        assert server.proc.returncode == 0, server.output()
        access = (tmp_path / "access.log").read_text()
        assert '"GET /api/files/app/stream?n=0 HTTP/1.1" 444 0 ' in access, access
    finally:
        for s in (stream, idle, stalled):
            if s is not None:
                s.close()
        server.stop()


async def test_plain_asyncio_loop_stops_listening_quietly(tmp_path, caplog):
    """The same order where Sanic serves on the running asyncio loop (as in most tests), not
    uvloop: refused as soon as `before_server_stop` has run, and no accept errors logged."""
    append(tmp_path / "app.log", "x")
    app = create_app(make_config(tmp_path))
    app.config.TOUCHUP = False
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    port = sock.getsockname()[1]
    server = await app.create_server(sock=sock, return_asyncio_server=True, access_log=False)
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    try:
        assert (await asyncio.to_thread(fresh_connection, port)).endswith("200 OK")
        await server.before_stop()
        for _ in range(3):
            assert await asyncio.to_thread(fresh_connection, port) == "refused"
            await asyncio.sleep(0.05)  # the loop runs on: nothing may complain meanwhile
    finally:
        await server.close()
        await server.after_stop()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


class Writer:
    """Appends a numbered line every few milliseconds, named after the phase of the
    restart it was written in."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.phase = "before"
        self.written: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            line = f"{self.phase} {i:05d}"
            append(self.log, line)
            self.written.append(line)
            i += 1
            time.sleep(0.02)

    @property
    def phases(self) -> set[str]:
        return {line.split()[0] for line in self.written}

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


OPEN_EVENTSOURCE = """(url) => {
  window.got = []; window.byes = []; window.errors = []; window.opens = 0;
  const es = window.es = new EventSource(url);
  es.onopen = () => { window.opens += 1; };
  es.onmessage = (e) => { window.got.push(...e.data.split("\\n")); };
  es.addEventListener("bye", (e) => { window.byes.push(e.data); });
  es.onerror = () => { window.errors.push(es.readyState); };
}"""


@pytest.fixture
def restart_server(tmp_path: Path) -> Iterator[tuple[Path, list[ServerProcess]]]:
    """The test's folder, and the server processes the test starts: all stopped at the end."""
    servers: list[ServerProcess] = []
    yield tmp_path, servers
    for s in servers:
        s.stop()


async def test_native_eventsource_survives_a_restart_with_every_line_once(restart_server):
    """Chromium's own EventSource across SIGTERM and a new process on the same port: the
    lines written before, while stopping, while down and after all arrive, each once.

    `restart_retry_ms` is short here, so the browser's reconnects also meet the stopping
    server (kept stopping by a stalled client) and the closed port in between."""
    tmp, servers = restart_server
    log = tmp / "app.log"
    log.touch()
    big_file(tmp)
    cfg = toml_config(tmp, {"app": "app.log", "big": "big.log"},
                      "[stream]\nretry_ms = 500\nrestart_retry_ms = 300\n")
    port = free_port()
    servers.append(ServerProcess(["-c", str(cfg)], port))
    await asyncio.to_thread(servers[0].wait_ready)
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await browser.new_page()
            await page.goto(servers[0].base + "/healthz")  # any page of the origin will do
            await page.evaluate(OPEN_EVENTSOURCE, "api/files/app/stream?n=0")
            await page.wait_for_function("() => window.opens === 1", timeout=15_000)
            with Writer(log) as writer:
                await page.wait_for_function("() => window.got.length >= 10", timeout=15_000)
                stalled = stalled_stream(port)
                try:
                    await asyncio.sleep(1.0)  # its buffers fill up
                    writer.phase = "stopping"
                    servers[0].terminate()
                    await page.wait_for_function("() => window.byes.length === 1", timeout=15_000)
                    await asyncio.to_thread(servers[0].proc.wait, 15)
                finally:
                    stalled.close()
                writer.phase = "down"
                await asyncio.sleep(0.5)
                servers.append(ServerProcess(["-c", str(cfg)], port))
                await asyncio.to_thread(servers[1].wait_ready)
                writer.phase = "after"
                await page.wait_for_function(
                    "() => window.es.readyState === 2"
                    " || window.got.some(l => l.startsWith('after'))",
                    timeout=30_000)
                await asyncio.sleep(0.3)
            state = await page.evaluate("window.es.readyState")
            errors = await page.evaluate("window.errors")
            assert state != 2, f"the EventSource gave up; readyState at each error: {errors}"
            written = writer.written
            await page.wait_for_function("n => window.got.length >= n", arg=len(written),
                                         timeout=30_000)
            await asyncio.sleep(0.3)  # anything extra (a duplicate) would arrive by now
            got = await page.evaluate("window.got")
            state = await page.evaluate("window.es.readyState")
            opens = await page.evaluate("window.opens")
        finally:
            await browser.close()
    assert servers[0].proc.returncode == 0, servers[0].output()
    assert writer.phases == {"before", "stopping", "down", "after"}
    assert got == written
    assert state == 1  # OPEN: it never gave up
    assert opens >= 2
