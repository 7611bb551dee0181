"""Limits, client identity, authentication, headers and hostile input, on a real server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import subprocess
import time

import httpx
import pytest
from helpers import append, free_port, live_server, make_config, sse

from logtail.http.auth import hash_password


def client(ip: str = "127.0.0.1", **kw) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=ip),
                             timeout=10, **kw)


@contextlib.asynccontextmanager
async def open_stream(base: str, ip: str = "127.0.0.1", headers: dict | None = None):
    async with client(ip) as c, c.stream("GET", base + "/api/files/app/stream?n=0",
                                         headers=headers or {}) as r:
        yield r


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "app.log"
    append(path, "hello")
    return path


async def test_streams_per_ip_limit_is_per_client_ip(tmp_path, log):
    config = make_config(tmp_path, extra="[limits]\nstreams_per_ip = 2\n")
    async with live_server(config) as base:
        async with open_stream(base) as a, open_stream(base) as b:
            assert a.status_code == b.status_code == 200
            async with open_stream(base) as c:
                assert c.status_code == 429
                assert int(c.headers["retry-after"]) >= 1
                body = (await c.aread()).decode()
                assert "streams" in body
            async with open_stream(base, ip="127.0.0.2") as other:
                assert other.status_code == 200
        async with open_stream(base) as again:  # slots are given back when streams end
            assert again.status_code == 200


async def test_request_rate_per_ip_with_retry_after(tmp_path, log):
    config = make_config(tmp_path, extra='[limits]\nrequests_per_ip = "5/minute"\n')
    async with live_server(config) as base:
        async with client() as c:
            codes = [(await c.get(base + "/api/files")).status_code for _ in range(5)]
            assert codes == [200] * 5
            r = await c.get(base + "/")
            assert r.status_code == 429
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert r.json()["reason"] == "rate"
        async with client("127.0.0.2") as c:
            assert (await c.get(base + "/api/files")).status_code == 200


async def test_global_stream_cap_is_503(tmp_path, log):
    config = make_config(tmp_path, extra="[limits]\nmax_streams = 2\nstreams_per_ip = 10\n")
    async with live_server(config) as base:
        async with open_stream(base) as a, open_stream(base, "127.0.0.2") as b:
            assert a.status_code == b.status_code == 200
            async with open_stream(base, "127.0.0.3") as c:
                assert c.status_code == 503
                assert "retry-after" in c.headers


async def test_forwarded_headers_believed_only_from_trusted_proxies(tmp_path, log):
    config = make_config(tmp_path, extra='[server]\ntrusted_proxies = ["127.0.0.1"]\n'
                                          "[limits]\nstreams_per_ip = 1\n")
    async with live_server(config) as base:
        # from the trusted proxy, each forwarded client has its own limit
        async with open_stream(base, headers={"X-Forwarded-For": "198.51.100.1"}) as a, \
                open_stream(base, headers={"X-Forwarded-For": "198.51.100.2"}) as b:
            assert a.status_code == b.status_code == 200
            async with open_stream(base, headers={"X-Forwarded-For": "198.51.100.1"}) as c:
                assert c.status_code == 429
            async with open_stream(base, headers={
                    "Forwarded": 'for="[2001:db8::1]";proto=https'}) as d:
                assert d.status_code == 200
        # 127.0.0.2 is not trusted: inventing headers does not give it new identities
        async with open_stream(base, "127.0.0.2", {"X-Forwarded-For": "203.0.113.1"}) as e:
            assert e.status_code == 200
            for spoof in ({"X-Forwarded-For": "203.0.113.2"}, {"X-Real-IP": "203.0.113.3"},
                          {"Forwarded": "for=203.0.113.4"}):
                async with open_stream(base, "127.0.0.2", spoof) as f:
                    assert f.status_code == 429


@pytest.fixture
def redis_url(tmp_path):
    port = free_port()
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    import socket

    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(5)


async def test_redis_limits_are_shared_between_instances(tmp_path, log, redis_url):
    extra = f'[limits]\nstorage = "{redis_url}"\nrequests_per_ip = "6/minute"\nstreams_per_ip = 1\n'
    config = make_config(tmp_path, extra=extra)
    async with live_server(config) as a, live_server(config) as b:
        async with client() as c:
            codes = []
            for base in (a, b, a, b):
                codes.append((await c.get(base + "/api/files")).status_code)
            assert codes == [200, 200, 200, 200]
        async with open_stream(a) as s1:
            assert s1.status_code == 200
            async with open_stream(b) as s2:  # the same IP on the other instance
                assert s2.status_code == 429
        async with client() as c:
            r = await c.get(b + "/api/files")
            assert r.status_code == 429  # 7th request across both instances


BASIC_OK = "Basic " + base64.b64encode(b"alice:correct horse").decode()
BASIC_BAD = "Basic " + base64.b64encode(b"alice:wrong").decode()
TOKEN = "t0ken-for-scripts-0123456789"


@pytest.fixture
def auth_config(tmp_path, log):
    hashed = hash_password("correct horse")
    return make_config(tmp_path, extra=f'[auth]\nusers = {{ alice = "{hashed}" }}\n'
                                       f'tokens = ["{TOKEN}"]\n')


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/files",
                                  "/api/files/app/stream?follow=0", "/metrics"])
async def test_auth_protects_every_endpoint_but_healthz(auth_config, path):
    async with live_server(auth_config) as base, client() as c:
        r = await c.get(base + path)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Basic realm=")
        assert (await c.get(base + path, headers={"Authorization": BASIC_BAD})).status_code == 401
        assert (await c.get(base + path, headers={"Authorization": "Bearer nope"})
                ).status_code == 401
        assert (await c.get(base + path, headers={"Authorization": BASIC_OK})).status_code == 200
        assert (await c.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
                ).status_code == 200
        assert (await c.get(base + "/healthz")).status_code == 200


async def test_auth_stream_with_basic_credentials_in_url_style(auth_config, log):
    async with live_server(auth_config) as base:
        async with sse(base, "/api/files/app/stream?n=1", {"Authorization": BASIC_OK}) as s:
            assert await s.collect(1) == ["hello"]


async def test_auth_off_by_default(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base, client() as c:
        for path in ("/", "/api/files", "/metrics", "/healthz"):
            assert (await c.get(base + path)).status_code == 200


async def test_security_headers_and_cors(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base, client() as c:
        r = await c.get(base + "/")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        r = await c.get(base + "/api/files", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    config = make_config(tmp_path, extra='[server]\ncors_origins = ["http://ok.example"]\n')
    async with live_server(config) as base, client() as c:
        r = await c.get(base + "/api/files", headers={"Origin": "http://ok.example"})
        assert r.headers["access-control-allow-origin"] == "http://ok.example"
        r = await c.get(base + "/api/files", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers


HOSTILE = [
    ("traversal ..", "GET", "/api/files/../stream", None),
    ("encoded traversal", "GET", "/api/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd/stream", None),
    ("encoded slash", "GET", "/api/files/app%2F..%2F..%2Fetc%2Fpasswd/stream", None),
    ("NUL in name", "GET", "/api/files/app%00.log/stream", None),
    ("very long name", "GET", "/api/files/" + "a" * 5000 + "/stream", None),
    ("static traversal", "GET", "/static/..%2F..%2Fpyproject.toml", None),
    ("static absolute", "GET", "/static//etc/passwd", None),
    ("oversized query", "GET", "/api/files/app/stream?q=" + "x" * 20000, None),
    ("repeated parameter", "GET", "/api/files/app/stream?n=1&n=2", None),
    ("many parameters", "GET", "/api/files/app/stream?" + "&".join(f"p{i}=1" for i in range(500)),
     None),
    ("catastrophic regex", "GET", "/api/files/app/stream?follow=0&regex=1&q=%28a%2B%29%2B%24",
     None),
    ("huge repetition regex", "GET", "/api/files/app/stream?regex=1&q=%28a%7B1000%7D%29%7B1000%7D",
     None),
    ("backreference regex", "GET", "/api/files/app/stream?regex=1&q=%28a%29%5C1", None),
    ("bad n", "GET", "/api/files/app/stream?n=99999999999999999999", None),
    ("huge header", "GET", "/api/files", {"X-Big": "x" * 40000}),
    ("bad Last-Event-ID", "GET", "/api/files/app/stream?follow=0",
     {"Last-Event-ID": b"\xff" * 300}),
    ("POST", "POST", "/api/files", None),
]


async def test_hostile_inputs_get_clear_4xx_and_others_keep_being_served(tmp_path, log, capsys):
    append(log, *(("a" * 40) + "!" for _ in range(200)))
    config = make_config(tmp_path, extra="[server]\nrequest_timeout_s = 1\n")
    async with live_server(config) as base:
        async with sse(base, "/api/files/app/stream?n=0") as watcher:
            table = []
            async with client() as c:
                for label, method, path, headers in HOSTILE:
                    r = await c.request(method, base + path, headers=headers)
                    table.append((label, r.status_code))
                    append(log, f"still here after {label}")
                    got = await watcher.collect(1, timeout=10)
                    assert got == [f"still here after {label}"], label
            # slowloris: a request head that never ends is cut after request_timeout_s
            port = int(base.rsplit(":", 1)[1])
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /api/files HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            closed = await asyncio.wait_for(r.read(), 10)
            table.append(("slowloris", f"closed after {time.monotonic() - started:.1f} s "
                                       f"({closed.split(b' ', 2)[1].decode() if closed else '-'})"))
            w.close()
            append(log, "still here after slowloris")
            assert await watcher.collect(1) == ["still here after slowloris"]
    with capsys.disabled():
        print("\nhostile input -> response")
        for label, status in table:
            print(f"  {label}: {status}")
    statuses = dict(table)
    # a linear-time engine simply runs the "catastrophic" pattern; a bad id gets `reset`
    harmless = {"catastrophic regex", "bad Last-Event-ID"}
    for label, status in statuses.items():
        if label in harmless:
            assert status == 200, (label, status)
        elif label != "slowloris":
            assert 400 <= int(status) < 500, (label, status)


async def test_open_close_churn_leaves_fds_tasks_and_memory_where_they_were(tmp_path, log,
                                                                           capsys):
    def rss_kb() -> int:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))

    async with live_server(make_config(tmp_path)) as base:
        port = int(base.rsplit(":", 1)[1])

        async def cycle(i: int) -> None:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            fmt = "sse" if i % 2 else "text"
            w.write(f"GET /api/files/app/stream?n=1&format={fmt} HTTP/1.1\r\n"
                    "Host: 127.0.0.1\r\n\r\n".encode())
            await r.readuntil(b"hello\n")
            w.close()
            await w.wait_closed()

        for i in range(50):
            await cycle(i)
        await asyncio.sleep(0.5)
        before = (len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks()), rss_kb())
        for i in range(2000):
            await cycle(i)
        await asyncio.sleep(1.0)
        after = (len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks()), rss_kb())
    with capsys.disabled():
        print(f"\nchurn 2000 cycles: fds {before[0]} -> {after[0]}, tasks {before[1]} -> "
              f"{after[1]}, RSS {before[2] / 1024:.1f} -> {after[2] / 1024:.1f} MB")
    assert after[0] <= before[0] + 2
    assert after[1] <= before[1] + 2
    assert after[2] - before[2] < 20 * 1024
