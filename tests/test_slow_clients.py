"""Slow clients, long lines, garbage: bounded memory, nobody stalled, nothing lost."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import httpx
import pytest
from helpers import ServerProcess, append, free_port, live_server, make_config, sse, toml_config
from prometheus_client.parser import text_string_to_metric_families


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_stalled_client_costs_bounded_memory_and_gets_everything(tmp_path):
    log = tmp_path / "app.log"
    log.touch()
    cfg = toml_config(tmp_path, extra="[stream]\nclient_buffer_bytes = 1048576\n")
    port = free_port()
    server = ServerProcess(["-c", str(cfg)], port)
    try:
        server.wait_ready()
        slow_client = httpx.Client(timeout=30)
        slow_cm = slow_client.stream("GET", server.base + "/api/files/app/stream?n=0")
        slow = slow_cm.__enter__()  # opened, then not read from: a stalled client
        assert slow.status_code == 200
        time.sleep(0.5)
        before = rss_kb(server.proc.pid)

        async def fast_client_and_writer() -> int:
            peak = before
            async with sse(server.base, "/api/files/app/stream?n=0") as fast:
                line = "x" * 95
                chunk = "".join(f"{i:08d} {line}\n" for i in range(5000)).encode()  # ~520 KB
                for _ in range(100):  # ~50 MB in all
                    append(log, raw=chunk)
                    await asyncio.sleep(0.01)
                    peak = max(peak, rss_kb(server.proc.pid))
                append(log, "marker for the fast client")
                got = 0
                while True:
                    ev = await fast.next_event(timeout=60)
                    got += len(ev.lines)
                    if ev.lines and ev.lines[-1] == "marker for the fast client":
                        break
                assert got == 500_001
            return peak

        peak = asyncio.run(fast_client_and_writer())
        growth_mb = (peak - before) / 1024
        assert growth_mb < 40, f"server RSS grew by {growth_mb:.1f} MB while 50 MB were written"
        # the stalled client now reads: every line, in order, or an exact `dropped` count
        data, events = [], []
        for line in slow.iter_lines():
            if line.startswith("data: "):
                data.append(line[6:])
                if data[-1] == "marker for the fast client":
                    break
            elif line.startswith("event: "):
                events.append(line[7:])
        slow_cm.__exit__(None, None, None)
        slow_client.close()
        assert events == []
        assert len(data) == 500_001
        assert [int(d[:8]) for d in data[:500_000]] == list(range(5000)) * 100
    finally:
        server.stop()


STALL = "[stream]\nheartbeat_s = 0.3\nstall_timeout_s = 1\n"  # SSE: cut after 1.6 s


async def open_streams(base: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(base + "/metrics")).text
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "logtail_streams_open")


async def test_quiet_stream_outlives_the_stall_timeout_thanks_to_heartbeats(tmp_path):
    log = tmp_path / "app.log"
    log.touch()
    async with live_server(make_config(tmp_path, extra=STALL)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            with pytest.raises(asyncio.TimeoutError):
                await s.next_event(timeout=6)  # nearly four stall timeouts of nothing
            assert s.comments.count("ping") >= 10
            append(log, "still here")
            assert await s.collect(1) == ["still here"]


def stalled_client(port: int, path: str) -> socket.socket:
    """A client that asks for a stream and then never reads (a tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def read_to_eof(sock: socket.socket, timeout: float) -> int:
    """Bytes until the server's close; raises TimeoutError if it never closes."""
    sock.settimeout(timeout)
    total = 0
    while chunk := sock.recv(1 << 16):
        total += len(chunk)
    return total


@pytest.mark.parametrize("fmt", ["sse", "text"])
async def test_stalled_client_is_closed_and_others_go_on(tmp_path, fmt):
    log = tmp_path / "app.log"
    log.touch()
    async with live_server(make_config(tmp_path, extra=STALL)) as base:
        port = int(base.rsplit(":", 1)[1])
        stalled = stalled_client(port, f"/api/files/app/stream?n=0&format={fmt}")
        try:
            async with sse(base, "/api/files/app/stream?n=0") as fast:

                async def read_all() -> int:  # the other client reads all along
                    got = 0
                    while True:
                        ev = await fast.next_event(timeout=60)
                        got += len(ev.lines)
                        if ev.lines and ev.lines[-1] == "marker":
                            return got

                reader = asyncio.create_task(read_all())
                await asyncio.sleep(0.3)
                assert await open_streams(base) == 2
                chunk = "".join(f"{i:06d} {'y' * 993}\n" for i in range(256)).encode()  # 256 KB
                written = 0
                deadline = time.monotonic() + 60
                while await open_streams(base) > 1:  # until the server gives up on it
                    assert time.monotonic() < deadline, "the stalled stream was never closed"
                    if written < 200:  # 50 MB at most: far more than any socket buffers
                        append(log, raw=chunk)
                        written += 1
                    await asyncio.sleep(0.05)
                append(log, "marker")
                assert await reader == written * 256 + 1  # every line, stall or not
            await asyncio.to_thread(read_to_eof, stalled, 30)  # closed by the server
        finally:
            stalled.close()


async def test_ten_megabyte_line_is_cut_visibly(tmp_path):
    log = tmp_path / "app.log"
    log.touch()
    config = make_config(tmp_path, extra="[stream]\nmax_line_bytes = 1000\n")
    async with live_server(config) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            await asyncio.sleep(0.2)
            with open(log, "ab") as f:
                for _ in range(10):
                    f.write(b"B" * (1024 * 1024))
                f.write(b"\nafter\n")
            got = await s.collect(2, timeout=30)
    assert got[0] == "B" * 1000 + f" [… line cut: {10 * 1024 * 1024} bytes]"
    assert got[1] == "after"


async def test_binary_garbage_keeps_framing(tmp_path):
    log = tmp_path / "app.log"
    garbage = bytes(range(256)) * 40
    log.write_bytes(b"start\n")
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            await asyncio.sleep(0.2)
            append(log, raw=garbage + b"\nend\n")
            lines = await s.collect(garbage.count(b"\n") + 2)
    assert lines[-1] == "end"
    assert all("\r" not in ln for ln in lines)
    joined = "".join(lines)
    assert "\ufffd" in joined and "\u240d" in joined


async def test_unfinished_line_is_flushed_after_a_delay_and_not_repeated(tmp_path):
    log = tmp_path / "app.log"
    log.touch()
    config = make_config(tmp_path, extra="[stream]\npartial_line_s = 0.5\n")
    async with live_server(config) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            await asyncio.sleep(0.2)
            append(log, raw=b"last words of a crashed writer")
            assert await s.collect(1, timeout=10) == ["last words of a crashed writer"]
            flushed_id = s.last_id
            append(log, raw=b" (finished)\nnext\n")
            assert await s.collect(2) == [" (finished)", "next"]
        # resuming after the flushed part does not repeat it
        async with sse(base, f"/api/files/app/stream?last_id={flushed_id}&follow=0") as s:
            lines, _ = await s.until_end()
        assert lines == [" (finished)", "next"]
        # a backlog shows the file as it is now: the line is whole
        async with sse(base, "/api/files/app/stream?n=2&follow=0") as s:
            lines, _ = await s.until_end()
        assert lines == ["last words of a crashed writer (finished)", "next"]


@pytest.mark.parametrize("fmt", ["sse", "text"])
async def test_many_opens_and_closes_leave_no_tasks_or_fds(tmp_path, fmt):
    append(tmp_path / "app.log", *(f"l{i}" for i in range(100)))
    async with live_server(make_config(tmp_path)) as base:
        port = int(base.rsplit(":", 1)[1])

        async def one() -> None:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(f"GET /api/files/app/stream?n=5&format={fmt} HTTP/1.1\r\n"
                    "Host: 127.0.0.1\r\n\r\n".encode())
            await r.readuntil(b"l99\n")
            w.close()
            await w.wait_closed()

        for _ in range(20):  # warm up
            await one()
        await asyncio.sleep(0.3)
        fds, tasks = len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks())
        for _ in range(500):
            await one()
        await asyncio.sleep(0.5)
        assert len(os.listdir("/proc/self/fd")) <= fds + 2
        assert len(asyncio.all_tasks()) <= tasks + 2
