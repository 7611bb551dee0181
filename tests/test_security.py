"""The HTTP edge under attack: forged client addresses, DNS rebinding, path variants,
dripped heads, log floods, odd digits, probes, and password guessing. Real servers,
real nginx, raw sockets where a client must misbehave."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from helpers import (
    ROOT,
    ServerProcess,
    append,
    free_port,
    live_server,
    make_config,
    sse,
    toml_config,
    wait_for,
)
from nginx_helpers import SHIPPED, running_nginx

from logtail.config import ConfigError, load_config
from logtail.http.auth import hash_password
from logtail.http.hosts import HostCheck
from logtail.http.sanic_compat import missing_internals

RELAXED_RATE = 'requests_per_ip = "100000/minute"\nstreams_per_ip = 1000\n'


def client(ip: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=ip), timeout=30)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def behind_nginx(tmp: Path, config: object) -> AsyncIterator[tuple[str, str]]:
    """logtail, and the shipped nginx config in front of it: (direct URL, URL via /logs)."""
    async with live_server(config) as direct:
        with running_nginx(tmp / "nginx", port_of(direct)) as nginx:
            yield direct, nginx.base + "/logs"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    append(path, *(f"line {i}" for i in range(200)))
    return path


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length, from a raw connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ln)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


# -- 1. forwarded headers ---------------------------------------------------------------------

def forged(i: int) -> dict[str, str]:
    return {"Forwarded": f"for=198.51.100.{i}", "X-Real-IP": f"203.0.113.{i}",
            "X-Forwarded-For": f"192.0.2.{i}"}


async def test_forged_forwarding_headers_through_nginx_change_nothing(tmp_path, log):
    """Behind the shipped nginx, forged Forwarded / X-Real-IP / X-Forwarded-For give a
    client neither a fresh request budget nor a fresh stream slot, and the access log
    names its real address."""
    access = tmp_path / "access.log"
    config = make_config(tmp_path, extra=f'[server]\ntrusted_proxies = ["127.0.0.1"]\n'
                                         f'access_log = "{access}"\n'
                                         '[limits]\nrequests_per_ip = "8/minute"\n'
                                         "streams_per_ip = 1\n")
    async with behind_nginx(tmp_path, config) as (_, via), \
            client("127.0.0.2") as c, client("127.0.0.3") as other:
        stream_url = via + "/api/files/app/stream?n=0"
        async with c.stream("GET", stream_url, headers=forged(1)) as first:
            assert first.status_code == 200
            second = await c.get(stream_url, headers=forged(2))
            assert second.status_code == 429, second.text
            assert second.json()["reason"] == "streams_per_ip"
            assert "127.0.0.2" in second.json()["error"]
        codes = [(await c.get(via + "/api/files", headers=forged(i))).status_code
                 for i in range(3, 10)]
        assert codes == [200] * 6 + [429]  # 8 requests a minute, whatever the headers say
        assert (await other.get(via + "/api/files", headers=forged(1))).status_code == 200
        await wait_for(lambda: access.exists() and len(access.read_text().splitlines()) >= 10)
    clients = {line.split(" ", 1)[0] for line in access.read_text().splitlines()}
    assert clients == {"127.0.0.2", "127.0.0.3"}


def test_shipped_nginx_clears_the_other_forwarding_headers_everywhere():
    conf = SHIPPED.read_text()
    proxied = len(re.findall(r"^\s*proxy_pass\s", conf, re.M))
    assert proxied == 2
    for header in ("Forwarded", "X-Real-IP"):
        assert len(re.findall(rf'^\s*proxy_set_header\s+{header}\s+"";', conf, re.M)) == proxied
    assert len(re.findall(r"^\s*proxy_set_header\s+Host\s+\$host;", conf, re.M)) == proxied


@pytest.mark.parametrize(("header", "lines", "expected"), [
    # several lines of the configured header are one list, walked from the nearest hop
    ("Forwarded", [("Forwarded", 'for="[2001:db8::7]:4711";proto=https'),
                   ("Forwarded", "for=127.0.0.1, for=127.0.0.1")], "2001:db8::7"),
    ("forwarded", [("Forwarded", "for=192.0.2.1, for=198.51.100.9"),
                   ("X-Forwarded-For", "203.0.113.1")], "198.51.100.9"),
    ("X-Forwarded-For", [("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "192.0.2.2"),
                         ("Forwarded", "for=203.0.113.1")], "192.0.2.2"),
    ("X-Real-IP", [("X-Real-IP", "192.0.2.3"), ("X-Forwarded-For", "203.0.113.1")],
     "192.0.2.3"),
])
async def test_only_the_configured_forwarded_header_counts(tmp_path, log, header, lines,
                                                           expected):
    access = tmp_path / "access.log"
    config = make_config(tmp_path, extra=f'[server]\ntrusted_proxies = ["127.0.0.1"]\n'
                                         f'forwarded_header = "{header}"\n'
                                         f'access_log = "{access}"\n')
    async with live_server(config) as base, client() as c:
        assert (await c.get(base + "/api/files", headers=lines)).status_code == 200
        await wait_for(lambda: access.exists() and access.read_text())
    assert access.read_text().split(" ", 1)[0] == expected


# -- config checks for the new keys -----------------------------------------------------------

FILES = '[[files]]\nname = "app"\npath = "app.log"\n'


@pytest.mark.parametrize(("text", "key"), [
    ('[server]\nforwarded_header = "X-Client-IP"\n', "server.forwarded_header"),
    ('[server]\nallowed_hosts = ["logs.example.com:443"]\n', "server.allowed_hosts[0]"),
    ('[server]\nallowed_hosts = ["ok.example", "bad host"]\n', "server.allowed_hosts[1]"),
    ('[server]\nmetrics_allow = ["10.0.0.0/8", "nope"]\n', "server.metrics_allow[1]"),
    ('[limits]\nfailed_auth_per_ip = "lots"\n', "limits.failed_auth_per_ip"),
])
def test_bad_values_of_the_new_keys_name_the_key(tmp_path, text, key):
    path = tmp_path / "config.toml"
    path.write_text(text + FILES)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(key + ":")


def test_bad_forwarded_header_exits_2(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[server]\nforwarded_header = "True-Client-IP"\n' + FILES)
    r = subprocess.run([sys.executable, "-m", "logtail", "check-config", "-c", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "server.forwarded_header: must be" in r.stderr


def test_forwarded_header_is_case_insensitive(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[server]\nforwarded_header = "x-real-ip"\n' + FILES)
    assert load_config(path).server.forwarded_header == "x-real-ip"


# -- 2. DNS rebinding ----------------------------------------------------------------------------

async def test_foreign_host_is_misdirected_before_any_limit(tmp_path, log):
    config = make_config(tmp_path, extra='[limits]\nrequests_per_ip = "3/minute"\n')
    async with live_server(config) as base, client() as c:
        for _ in range(10):  # a rebinding page hammering from its victim's browser
            r = await c.get(base + "/api/files", headers={"Host": "attacker.example:8080"})
            assert r.status_code == 421
            assert r.json()["host"] == "attacker.example:8080"
            assert "allowed_hosts" in r.json()["error"]
        # ... has not spent its victim's own requests
        codes = [(await c.get(base + "/api/files")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]


@pytest.mark.parametrize(("host", "status"), [
    ("127.0.0.1", 200), ("127.0.0.1:8080", 200), ("127.9.8.7", 200), ("localhost", 200),
    ("LOCALHOST.:1", 200), ("[::1]:8080", 200), ("", 200),
    ("attacker.example", 421), ("localhost.attacker.example", 421), ("10.0.0.1", 421),
    ("[2001:db8::1]", 421), ("127.0.0.1.nip.io", 421),
])
async def test_default_hosts_on_a_loopback_bind(tmp_path, log, host, status):
    async with live_server(make_config(tmp_path)) as base, client() as c:
        r = await c.get(base + "/healthz", headers={"Host": host})
        assert r.status_code == status, r.text


async def test_allowed_hosts_names_a_public_name_and_its_subdomains(tmp_path, log):
    extra = '[server]\nallowed_hosts = ["logs.example.com", ".corp.example"]\n'
    async with live_server(make_config(tmp_path, extra=extra)) as base, client() as c:
        for host, status in [("logs.example.com", 200), ("LOGS.example.com:443", 200),
                             ("corp.example", 200), ("a.b.corp.example", 200),
                             ("127.0.0.1", 200), ("example.com", 421),
                             ("evilcorp.example", 421)]:
            r = await c.get(base + "/api/files", headers={"Host": host})
            assert r.status_code == status, (host, r.status_code)
    async with live_server(make_config(tmp_path, extra='[server]\nallowed_hosts = ["*"]\n')) \
            as base, client() as c:
        r = await c.get(base + "/api/files", headers={"Host": "anything.example"})
        assert r.status_code == 200


def test_automatic_hosts_when_bound_elsewhere():
    named = HostCheck((), "192.0.2.10")
    for host in ("192.0.2.10:8080", socket.gethostname(), socket.getfqdn(), "localhost"):
        assert named.allows(host), host
    assert not named.allows("192.0.2.11")
    assert not named.allows("attacker.example")
    everywhere = HostCheck((), "0.0.0.0")
    assert everywhere.allows("192.0.2.11") and everywhere.allows("[2001:db8::1]:80")
    assert not everywhere.allows("attacker.example")
    loopback = HostCheck((), "127.0.0.1")  # reachable from this machine only: no more names
    if socket.gethostname().lower() != "localhost":
        assert not loopback.allows(socket.gethostname())


# -- 3. metrics by a path variant -------------------------------------------------------------

async def test_routes_are_exact(tmp_path, log):
    async with live_server(make_config(tmp_path)) as base, client() as c:
        for path in ("/", "/static/app.js", "/api/files", "/api/files/app/stream?follow=0",
                     "/healthz", "/metrics"):
            assert (await c.get(base + path)).status_code == 200, path
        for path in ("/metrics/", "/metrics%2F", "/metrics%2f", "/healthz/", "/api/files/",
                     "/api/files/app/stream/", "/api/files/app%2Fstream"):
            r = await c.get(base + path)
            assert r.status_code == 404, (path, r.status_code)
            assert "logtail_" not in r.text


async def test_metrics_path_variants_through_nginx_are_refused(tmp_path, log):
    """nginx's `location = /logs/metrics` rule does not match `/logs/metrics/` or
    `/logs/metrics%2F`: logtail itself must refuse those, and check the real client."""
    config = make_config(tmp_path, extra='[server]\ntrusted_proxies = ["127.0.0.1"]\n'
                                         'metrics_allow = ["192.0.2.0/24"]\n')
    async with behind_nginx(tmp_path, config) as (direct, via), \
            client("127.0.0.2") as outsider, client("127.0.0.1") as local:
        for path in ("/metrics/", "/metrics%2F", "/metrics%2f", "/metrics/.", "//metrics/",
                     "/metrics"):
            r = await outsider.get(via + path)
            assert r.status_code in (403, 404), (path, r.status_code)
            assert "logtail_" not in r.text, path
        r = await local.get(via + "/metrics")  # nginx lets 127.0.0.1 by; logtail does not
        assert r.status_code == 403
        assert "metrics_allow" in r.json()["error"]
        assert (await local.get(direct + "/metrics")).status_code == 403  # 127.0.0.1 directly


# -- 4. slow request heads -----------------------------------------------------------------------

def test_sanic_internals_we_rely_on_are_there():
    assert missing_internals() == []


async def drip(port: int, data: bytes, interval: float, give_up_s: float) -> tuple[float, bytes]:
    """Send `data` a byte at a time; how long until the server answered or hung up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        for byte in data:
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            with contextlib.suppress(TimeoutError):
                got = await asyncio.wait_for(reader.read(4096), interval)
                return time.monotonic() - started, got
            if time.monotonic() - started > give_up_s:
                break
        return time.monotonic() - started, b""
    finally:
        writer.close()


async def test_dripped_request_head_is_cut_after_request_timeout_in_total(tmp_path, log):
    config = make_config(tmp_path, extra="[server]\nrequest_timeout_s = 1\n")
    async with live_server(config) as base:
        head = b"GET /api/files HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 100
        took, answer = await drip(port_of(base), head, interval=0.3, give_up_s=6)
        assert answer.startswith(b"HTTP/1.1 408"), (took, answer)
        assert 0.9 <= took < 2.5, took
        async with client() as c:  # a normal request still works
            assert (await c.get(base + "/api/files")).status_code == 200


async def test_keep_alive_and_long_streams_outlive_the_head_deadline(tmp_path, log):
    config = make_config(tmp_path, extra="[server]\nrequest_timeout_s = 1\n"
                                         "keepalive_timeout_s = 10\n")
    async with live_server(config) as base:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(base))
        request = b"GET /api/files HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        writer.write(request)
        assert (await read_response(reader))[0] == 200
        await asyncio.sleep(1.5)  # idle on keep-alive past request_timeout_s
        for part in (request[:7], request[7:20], request[20:]):  # a head in pieces, in time
            writer.write(part)
            await asyncio.sleep(0.2)
        assert (await asyncio.wait_for(read_response(reader), 5))[0] == 200
        writer.close()
        async with sse(base, "/api/files/app/stream?n=0") as s:  # a stream is not a head
            await asyncio.sleep(2.5)
            append(log, "after the deadline would have struck")
            assert await s.collect(1) == ["after the deadline would have struck"]


# -- 5. log flooding ------------------------------------------------------------------------------

def test_malformed_request_lines_get_400_and_a_few_escaped_log_lines(tmp_path, log):
    path = toml_config(tmp_path)
    server = ServerProcess(["-c", str(path)], free_port(), cwd=tmp_path)
    try:
        server.wait_ready()
        server.output()  # the start-up lines
        answers = []
        for _ in range(50):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(b"GET /\x1b[2J\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                answers.append(s.recv(4096))
        time.sleep(1.3)  # the suppressed count is written when the second is over
        out = server.output()
    finally:
        server.stop()
    assert all(a.startswith(b"HTTP/1.1 400") for a in answers), answers[0]
    assert "\x1b" not in out and "\x00" not in out
    assert "Traceback" not in out
    lines = out.splitlines()
    assert len(lines) <= 10, out
    assert any(r"GET /\x1b[2J\x00" in ln for ln in lines), out
    assert any("more suppressed" in ln for ln in lines), out


# -- 6. odd digits ------------------------------------------------------------------------------

@pytest.mark.parametrize("n", ["%C2%B2", "%EF%BC%91", "%D9%A3", "1%C2%B2"])
async def test_non_ascii_digits_are_a_400_naming_the_parameter(tmp_path, log, n):
    async with live_server(make_config(tmp_path)) as base, client() as c:
        r = await c.get(f"{base}/api/files/app/stream?follow=0&n={n}")
        assert r.status_code == 400
        assert r.json()["param"] == "n"


# -- 7. what /healthz tells whom -----------------------------------------------------------------

BASIC_OK = "Basic " + base64.b64encode(b"alice:correct horse").decode()
BASIC_BAD = "Basic " + base64.b64encode(b"alice:wrong").decode()


@pytest.fixture(scope="module")
def alice_hash() -> str:
    return hash_password("correct horse")


async def test_healthz_details_only_for_allowed_addresses_or_credentials(tmp_path, log,
                                                                        alice_hash):
    outside = '[server]\nmetrics_allow = ["192.0.2.0/24"]\n'
    auth = f'[auth]\nusers = {{ alice = "{alice_hash}" }}\n'
    async with live_server(make_config(tmp_path, extra=outside + auth)) as base, client() as c:
        for headers in ({}, {"Authorization": BASIC_BAD}, {"Authorization": "Bearer x"}):
            r = await c.get(base + "/healthz", headers=headers)
            assert (r.status_code, r.json()) == (200, {"status": "ok"})
        r = await c.get(base + "/healthz", headers={"Authorization": BASIC_OK})
        assert r.status_code == 200
        assert {"version", "missing", "pid", "files"} <= r.json().keys()
    async with live_server(make_config(tmp_path, extra=outside)) as base, client() as c:
        assert (await c.get(base + "/healthz")).json() == {"status": "ok"}
    async with live_server(make_config(tmp_path, extra=auth)) as base, client() as c:
        assert "pid" in (await c.get(base + "/healthz")).json()  # 127.0.0.1 is allowed


# -- 8. + 9. OPTIONS counts, probes do not ---------------------------------------------------

async def test_options_requests_are_rate_limited(tmp_path, log):
    extra = ('[server]\ncors_origins = ["http://ok.example"]\n'
             '[limits]\nrequests_per_ip = "10/minute"\n')
    async with live_server(make_config(tmp_path, extra=extra)) as base, client() as c:
        headers = {"Origin": "http://ok.example", "Access-Control-Request-Method": "GET"}
        codes = [(await c.options(base + "/api/files", headers=headers)).status_code
                 for _ in range(300)]
    assert codes[:10] == [204] * 10
    assert set(codes[10:]) == {429}


async def test_probes_are_never_rate_limited(tmp_path, log):
    extra = '[limits]\nrequests_per_ip = "3/minute"\n'
    async with live_server(make_config(tmp_path, extra=extra)) as base, client() as c:
        codes = [(await c.get(base + "/api/files")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        for _ in range(20):
            assert (await c.get(base + "/healthz")).status_code == 200
            assert (await c.get(base + "/metrics")).status_code == 200
        assert (await c.get(base + "/api/files")).status_code == 429


# -- 10. password guessing ---------------------------------------------------------------------

def scrypt_seconds(alice_hash: str) -> float:
    from logtail.http.auth import verify_password

    started = time.perf_counter()
    verify_password("x", alice_hash)
    return time.perf_counter() - started


async def test_failed_logins_are_limited_per_ip_without_hashing(tmp_path, log, alice_hash):
    extra = (f'[auth]\nusers = {{ alice = "{alice_hash}" }}\n'
             f'[limits]\nfailed_auth_per_ip = "3/minute"\n{RELAXED_RATE}')
    async with live_server(make_config(tmp_path, extra=extra)) as base, \
            client() as guesser, client("127.0.0.2") as other:
        for _ in range(5):  # no credentials at all is the browser's first try, not a failure
            assert (await guesser.get(base + "/api/files")).status_code == 401
        for _ in range(3):
            r = await guesser.get(base + "/api/files", headers={"Authorization": BASIC_BAD})
            assert r.status_code == 401
        r = await guesser.get(base + "/api/files", headers={"Authorization": BASIC_OK})
        assert r.status_code == 429  # even the right password, until the window moves on
        assert r.json()["reason"] == "auth_failures"
        assert int(r.headers["retry-after"]) >= 1
        started = time.perf_counter()
        for i in range(20):
            wrong = "Basic " + base64.b64encode(f"alice:guess{i}".encode()).decode()
            r = await guesser.get(base + "/api/files", headers={"Authorization": wrong})
            assert r.status_code == 429
        assert time.perf_counter() - started < 10 * scrypt_seconds(alice_hash)  # no hashing
        r = await other.get(base + "/api/files", headers={"Authorization": BASIC_OK})
        assert r.status_code == 200


async def test_password_checks_are_bounded_and_keep_off_the_shared_pool(tmp_path, log,
                                                                       alice_hash):
    """80 addresses, each under its failure limit, each sending a wrong password at once:
    past 32 waiting checks the rest get 503 without hashing, and an authenticated
    backlog meanwhile is not stuck behind them."""
    extra = f'[auth]\nusers = {{ alice = "{alice_hash}" }}\n[limits]\n{RELAXED_RATE}'
    async with live_server(make_config(tmp_path, extra=extra)) as base, client() as me:
        backlog = base + "/api/files/app/stream?n=100&follow=0&format=text"
        ok = {"Authorization": BASIC_OK}
        assert (await me.get(backlog, headers=ok)).status_code == 200  # now cached
        clients = [client(f"127.0.1.{i}") for i in range(1, 81)]
        try:
            async def guess(i: int) -> httpx.Response:
                wrong = "Basic " + base64.b64encode(f"alice:guess{i}".encode()).decode()
                return await clients[i].get(base + "/api/files",
                                            headers={"Authorization": wrong})

            guesses = asyncio.gather(*(guess(i) for i in range(80)))
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            r = await me.get(backlog, headers=ok)
            backlog_s = time.perf_counter() - started
            answers = await guesses
        finally:
            for c in clients:
                await c.aclose()
    assert r.status_code == 200 and r.text.count("\n") == 100
    codes = [a.status_code for a in answers]
    assert set(codes) <= {401, 503}, codes
    assert codes.count(401) >= 1 and codes.count(503) >= 10, codes  # 32 when all arrive at once
    assert all(a.headers["retry-after"] == "1" for a in answers if a.status_code == 503)
    assert backlog_s < 1.0, backlog_s


def test_cached_logins_are_keyed_by_a_digest_never_the_password(alice_hash):
    from logtail.http.auth import Authenticator

    auth = Authenticator((("alice", alice_hash),), (), "logtail")
    assert asyncio.run(auth.check(BASIC_OK)) == "alice"
    assert list(auth._ok) == [hashlib.sha256(b"alice\0correct horse").digest()]
    auth.close()


# -- 11. docs --------------------------------------------------------------------------------------

def test_protection_section_documents_the_edges():
    readme = (ROOT / "README.md").read_text()
    protection = " ".join(readme.split("## Protection", 1)[1].split("\n## ", 1)[0].split())
    for phrase in ("symlink", "server.allowed_hosts", "set `allowed_hosts`",
                   "server.forwarded_header", "trusted proxy's address is trusted too",
                   "limits.failed_auth_per_ip", "server.metrics_allow"):
        assert phrase in protection, phrase
