"""logtail behind a real nginx running the shipped deploy/nginx.conf, under /logs/."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from helpers import append, live_server, make_config, sse, wait_for
from nginx_helpers import running_nginx
from playwright.async_api import Page, async_playwright
from viewer_support import launch


@dataclass
class Proxied:
    via: str  # nginx, with the /logs/ prefix
    direct: str  # logtail itself
    log: Path
    access_log: Path


@contextlib.asynccontextmanager
async def behind_nginx(tmp: Path, extra: str = "", **nginx: object) -> AsyncIterator[Proxied]:
    """logtail on one loopback port, the shipped nginx config in front of it on another."""
    log, access = tmp / "app.log", tmp / "access.log"
    log.touch()
    server = f'[server]\ntrusted_proxies = ["127.0.0.1"]\naccess_log = "{access}"\n'
    config = make_config(tmp, extra=server + extra)
    async with live_server(config) as direct:
        port = int(direct.rsplit(":", 1)[1])
        with running_nginx(tmp / "nginx", port, **nginx) as proxy:
            yield Proxied(proxy.base + "/logs", direct, log, access)


def client_from(address: str) -> httpx.AsyncClient:
    """An HTTP client whose connections come from `address` (any of 127.0.0.0/8)."""
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address),
                             timeout=httpx.Timeout(30.0))


def relative_refs(html: str) -> list[str]:
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]+)"', html)
    return [r for r in refs if not re.match(r"^(?:[a-z]+:|/|#)", r)]


async def test_viewer_page_and_its_assets_load_under_the_sub_path(tmp_path):
    async with behind_nginx(tmp_path) as p, httpx.AsyncClient() as client:
        bare = await client.get(p.via)  # /logs without the slash
        assert bare.status_code == 301
        assert bare.headers["location"] == "/logs/"
        page = await client.get(p.via + "/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        refs = relative_refs(page.text)
        assert refs, "the viewer page references no assets"
        seen: set[str] = set()
        todo = [urljoin(p.via + "/", r) for r in refs]
        while todo:  # every asset, and every ES module those import
            url = todo.pop()
            if url in seen:
                continue
            seen.add(url)
            r = await client.get(url)
            assert r.status_code == 200, (url, r.status_code)
            if url.endswith(".js"):
                assert "javascript" in r.headers["content-type"]
                for spec in re.findall(r'(?:import|from)\s*\(?\s*"(\.{1,2}/[^"]+)"', r.text):
                    todo.append(urljoin(url, spec))
        assert any(u.endswith(".js") for u in seen)


async def test_file_list_through_nginx(tmp_path):
    async with behind_nginx(tmp_path) as p, httpx.AsyncClient() as client:
        append(p.log, "one")
        r = await client.get(p.via + "/api/files")
    assert r.status_code == 200
    files = r.json()["files"]
    assert [(f["name"], f["exists"], f["size"]) for f in files] == [("app", True, 4)]


async def test_metrics_through_nginx_only_for_allowed_addresses(tmp_path):
    async with behind_nginx(tmp_path) as p, client_from("127.0.0.2") as outsider, \
            httpx.AsyncClient() as local:
        assert (await outsider.get(p.via + "/metrics")).status_code == 403
        r = await local.get(p.via + "/metrics")
        assert r.status_code == 200
        assert "logtail_streams_open" in r.text
        assert (await outsider.get(p.via + "/healthz")).json()["status"] == "ok"


async def test_stream_through_nginx_delivers_backlog_live_lines_and_resumes(tmp_path):
    async with behind_nginx(tmp_path) as p:
        append(p.log, *(f"old {i}" for i in range(10)))
        async with sse(p.via, "/api/files/app/stream?n=3") as s:
            assert s.response.headers["content-type"].startswith("text/event-stream")
            assert await s.collect(3) == ["old 7", "old 8", "old 9"]
            for i in range(5):
                append(p.log, f"live {i}")
                assert await s.collect(1) == [f"live {i}"]  # each one before the next write
            last = s.last_id
        append(p.log, "missed 1", "missed 2")
        async with sse(p.via, "/api/files/app/stream", headers={"Last-Event-ID": last}) as s:
            assert await s.collect(2) == ["missed 1", "missed 2"]


async def test_idle_stream_outlives_nginx_read_timeout_thanks_to_heartbeats(tmp_path):
    async with behind_nginx(tmp_path, "[stream]\nheartbeat_s = 0.5\n", read_timeout="2s") as p, \
            sse(p.via, "/api/files/app/stream?n=0") as s:
        with pytest.raises(TimeoutError):
            await s.next_event(timeout=5)  # idle well past proxy_read_timeout
        assert s.comments.count("ping") >= 2
        append(p.log, "still here")
        assert await s.collect(1) == ["still here"]


async def test_without_heartbeats_nginx_read_timeout_would_cut_the_stream(tmp_path):
    """The control for the test above: the short read timeout is really in force."""
    async with behind_nginx(tmp_path, "[stream]\nheartbeat_s = 60\n",
                            read_timeout="1s") as p, sse(p.via, "/api/files/app/stream?n=0") as s:
        with pytest.raises(EOFError):
            await s.next_event(timeout=15)


async def test_logtail_sees_the_real_client_address_and_limits_it(tmp_path):
    limits = '[limits]\nstreams_per_ip = 2\nrequests_per_ip = "10000/minute"\n'
    url = "/api/files/app/stream?n=0"
    async with behind_nginx(tmp_path, limits) as p, client_from("127.0.0.2") as a, \
            client_from("127.0.0.3") as b:
        async with contextlib.AsyncExitStack() as streams:
            for headers in ({}, {"X-Forwarded-For": "203.0.113.9"}):  # a spoof changes nothing
                r = await streams.enter_async_context(a.stream("GET", p.via + url,
                                                               headers=headers))
                assert r.status_code == 200
            third = await a.get(p.via + url, headers={"X-Forwarded-For": "198.51.100.7"})
            assert third.status_code == 429
            assert third.json()["reason"] == "streams_per_ip"
            assert "127.0.0.2" in third.json()["error"]
            assert "retry-after" in third.headers
            other = await streams.enter_async_context(b.stream("GET", p.via + url))
            assert other.status_code == 200  # another client is not limited by the first
        await wait_for(lambda: p.access_log.read_text().count("/stream") >= 4)
    clients = [line.split(" ", 1)[0] for line in p.access_log.read_text().splitlines()]
    assert sorted(set(clients)) == ["127.0.0.2", "127.0.0.3"]
    assert clients.count("127.0.0.2") == 3


async def test_gzip_in_nginx_does_not_hold_back_events(tmp_path):
    async with behind_nginx(tmp_path, gzip=True) as p:
        append(p.log, "before")
        async with sse(p.via, "/api/files/app/stream?n=1",
                       headers={"Accept-Encoding": "gzip"}) as s:
            assert s.response.headers.get("content-encoding") == "gzip"
            assert await s.collect(1) == ["before"]
            for i in range(3):
                append(p.log, f"zipped {i}")
                assert await s.collect(1) == [f"zipped {i}"]  # arrives before the next write


async def shows(page: Page, text: str, problems: list[str]) -> None:
    """Wait until the page shows `text`; say what the page shows if it never does."""
    try:  # a function, not a string: the viewer's CSP forbids eval
        await page.wait_for_function("text => document.body.innerText.includes(text)",
                                     arg=text, timeout=20_000)
    except Exception as e:
        body = await page.evaluate("() => document.body.innerText")
        raise AssertionError(f"{text!r} not shown; page: {body[-2000:]!r}; {problems}") from e


async def test_viewer_shows_live_lines_in_chromium_through_nginx(tmp_path):
    async with behind_nginx(tmp_path) as p, async_playwright() as pw:
        append(p.log, "first line before the page")
        browser = await launch(pw)  # the system Chromium, headless
        try:
            page = await browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
                    if r.status >= 400 else None)
            await page.goto(p.via + "/", wait_until="domcontentloaded")
            await shows(page, "first line before the page", problems)
            for i in range(3):
                marker = f"marker-{i}-through-nginx"
                append(p.log, marker)
                await shows(page, marker, problems)
            assert not [x for x in problems if "page error" in x], problems
        finally:
            await browser.close()
