"""`[server] workers = 2`: real worker processes from `python -m logtail serve`.

A client learns which worker holds its connection from /healthz (`pid`), then opens a
stream on that same keep-alive connection, so each test knows it uses both workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
from helpers import SSE, ServerProcess, append, free_port, sse_on, toml_config
from prometheus_client.parser import text_string_to_metric_families

ACCESS_LINE = re.compile(r'^\S+ - \S+ \[[^\]]+\] "[^"]*" \d{3} \d+ "[^"]*" "[^"]*" \d+\.\d{3}$')


@contextlib.contextmanager
def two_workers(tmp: Path, extra: str = "",
                files: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    files = files or {"app": "app.log"}
    for path in files.values():
        (tmp / path).touch()
    config = toml_config(tmp, files, '[server]\nworkers = 2\naccess_log = "access.log"\n'
                                     + extra)
    server = ServerProcess(["-c", str(config)], free_port())
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        if server.proc.stdout is not None:
            server.proc.stdout.close()


class Pinned:
    """An HTTP client with one connection, so every request goes to the same worker."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=httpx.Timeout(30.0))
        self.pid = 0

    async def connect(self) -> int:
        health = await self.client.get(self.base + "/healthz")
        self.pid = health.json()["pid"]
        return self.pid

    @contextlib.asynccontextmanager
    async def stream(self, path: str, expect: int = 200,
                     headers: dict[str, str] | None = None) -> AsyncIterator[SSE]:
        async with sse_on(self.client, self.base + path, headers, expect) as reader:
            yield reader


async def pinned_to_each_worker(base: str, per_worker: int) -> dict[int, list[Pinned]]:
    """`per_worker` single-connection clients on each of the two workers."""
    by_pid: dict[int, list[Pinned]] = {}
    for _ in range(200):
        p = Pinned(base)
        pid = await p.connect()
        if len(by_pid.setdefault(pid, [])) < per_worker:
            by_pid[pid].append(p)
        else:
            await p.client.aclose()
        if len(by_pid) == 2 and all(len(v) == per_worker for v in by_pid.values()):
            return by_pid
    raise AssertionError(f"connections did not reach both workers: {list(by_pid)}")


async def close_all(groups: dict[int, list[Pinned]]) -> None:
    for clients in groups.values():
        for p in clients:
            await p.client.aclose()


async def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(base + "/metrics")).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def scrape_until(base: str, want: dict[tuple[str, tuple[tuple[str, str], ...]], float],
                       timeout: float = 15.0) -> dict:
    """Scrape until one scrape shows every wanted value (other workers' values arrive
    within about a second); return that scrape."""
    deadline = time.monotonic() + timeout
    while True:
        got = await scrape(base)
        if all(got.get(k) == v for k, v in want.items()):
            return got
        if time.monotonic() > deadline:
            raise AssertionError({k: (got.get(k), v) for k, v in want.items()})
        await asyncio.sleep(0.1)


def f(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


async def test_every_worker_serves_streams_metrics_add_up_and_resume_crosses_workers(
        tmp_path):
    files = {"app": "app.log", "db": "db.log"}
    with two_workers(tmp_path, files=files) as server:
        groups = await pinned_to_each_worker(server.base, 2)
        try:
            async with contextlib.AsyncExitStack() as stack:
                streams: list[tuple[str, SSE]] = []
                app_streams: dict[int, SSE] = {}
                for pid, clients in groups.items():  # on each worker: one stream per file
                    for p, name in zip(clients, files, strict=True):
                        s = await stack.enter_async_context(
                            p.stream(f"/api/files/{name}/stream?n=0"))
                        streams.append((name, s))
                        if name == "app":
                            app_streams[pid] = s
                await asyncio.sleep(0.3)
                for i in range(20):
                    append(tmp_path / "app.log", f"app {i}")
                    append(tmp_path / "db.log", f"db {i}")
                for name, s in streams:
                    assert await s.collect(20) == [f"{name} {i}" for i in range(20)]
                got = await scrape_until(server.base, {
                    f("logtail_workers"): 2,
                    f("logtail_streams_open", file="app"): 2,
                    f("logtail_streams_open", file="db"): 2,
                    f("logtail_lines_sent_total", file="app"): 40,
                    f("logtail_lines_sent_total", file="db"): 40,
                    f("logtail_follower_active", file="app"): 1,
                })
                assert got[f("logtail_batches_sent_total", file="app")] >= 2
                assert got[f("logtail_watchers")] == 2  # one directory, watched in each worker
            # all streams closed: totals stay, open streams drop, in one scrape
            await scrape_until(server.base, {
                f("logtail_streams_open", file="app"): 0,
                f("logtail_streams_open", file="db"): 0,
                f("logtail_lines_sent_total", file="app"): 40,
                f("logtail_lines_sent_total", file="db"): 40,
            })
            # a reconnect that lands on the other worker resumes exactly where it was
            append(tmp_path / "app.log", "missed 1", "missed 2")
            fresh = await pinned_to_each_worker(server.base, 1)
            try:
                for pid, (p,) in fresh.items():
                    [other] = [s for w, s in app_streams.items() if w != pid]
                    assert other.last_id
                    async with p.stream("/api/files/app/stream",
                                        headers={"Last-Event-ID": other.last_id}) as s:
                        assert await s.collect(2) == ["missed 1", "missed 2"]
            finally:
                await close_all(fresh)
        finally:
            await close_all(groups)
        lines = (tmp_path / "access.log").read_text().splitlines()
    assert sum("/stream?n=0" in line for line in lines) == 4
    assert all(ACCESS_LINE.match(line) for line in lines), lines  # no torn lines


async def test_stream_limits_hold_across_workers_with_redis(tmp_path):
    with redis_server(tmp_path) as url, two_workers(
            tmp_path, f'[limits]\nstorage = "{url}"\nstreams_per_ip = 2\n'
                      'requests_per_ip = "100000/minute"\n') as server:
        groups = await pinned_to_each_worker(server.base, 2)
        (a1, a2), (b1, b2) = groups.values()
        path = "/api/files/app/stream?n=0"
        try:
            async with a1.stream(path), b1.stream(path):  # one stream on each worker
                for extra in (a2, b2):  # a third is refused, whichever worker gets it
                    r = await extra.client.get(server.base + path)
                    assert r.status_code == 429
                    assert r.json()["reason"] == "streams_per_ip"
                await scrape_until(server.base, {
                    f("logtail_rejections_total", reason="streams_per_ip"): 2,
                    f("logtail_streams_open", file="app"): 2,
                })
            async with contextlib.AsyncExitStack() as stack:  # slots are given back
                for p in (a2, b2):
                    await open_when_free(stack, p, path)
                await scrape_until(server.base, {f("logtail_streams_open", file="app"): 2})
        finally:
            await close_all(groups)


async def open_when_free(stack: contextlib.AsyncExitStack, p: Pinned, path: str) -> None:
    """Open a stream, retrying while the slot a closed stream held is being given back."""
    deadline = time.monotonic() + 10
    while True:
        inner = contextlib.AsyncExitStack()
        resp = await inner.enter_async_context(p.client.stream("GET", p.base + path))
        if resp.status_code == 200:
            stack.push_async_exit(inner)
            return
        await inner.aclose()
        assert resp.status_code == 429 and time.monotonic() < deadline, resp.status_code
        await asyncio.sleep(0.1)


async def test_sigterm_stops_every_worker_quickly_leaving_no_process_behind(tmp_path):
    with two_workers(tmp_path) as server:
        groups = await pinned_to_each_worker(server.base, 1)
        workers = list(groups)
        shared = _environ(workers[0]).get("LOGTAIL_SHARED_DIR")
        assert shared and Path(shared).is_dir()
        children = _children(server.proc.pid)
        assert set(workers) <= set(children)
        try:
            async with contextlib.AsyncExitStack() as stack:
                streams = [await stack.enter_async_context(p.stream("/api/files/app/stream"))
                           for (p,) in groups.values()]
                await asyncio.sleep(0.3)
                append(tmp_path / "app.log", "last words")
                for s in streams:
                    assert await s.collect(1) == ["last words"]
                started = time.monotonic()
                server.terminate(signal.SIGTERM)
                for s in streams:  # each stream is told, then ends
                    _, notices = await s.until_end(timeout=10)
                    assert [n.event for n in notices] == ["bye"]
                code = server.proc.wait(10)
                took = time.monotonic() - started
        finally:
            await close_all(groups)
        assert code == 0, server.output()
        print(f"2 workers stopped in {took:.2f} s")
        for _ in range(50):
            if not [pid for pid in children if _running(pid)]:
                break
            time.sleep(0.1)
        assert not [pid for pid in children if _running(pid)], "processes left behind"
        assert not Path(shared).exists()


# -- helpers -------------------------------------------------------------------------------

@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0")
                if "=" in item)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
    return out


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
