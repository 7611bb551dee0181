"""`[fleet]`: shipped files served by any logtail that reads the same Redis.

Real processes throughout: redis-server on loopback, the `logtail ship` process, and
`logtail serve` processes; clients are httpx (our SSE reader) and curl.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import httpx
import pytest
import redis
from helpers import SSE, Event, free_port, sse
from redis_support import (
    NAME,
    RedisServer,
    append,
    redis_server,
    serve_config,
    serving,
    shipping,
    wait_listed,
    write_config,
)

from logtail.fleet.keys import stream_key


async def lines_of(s: SSE, count: int, notices: list[Event] | None = None,
                   timeout: float = 30.0, ids: list[str] | None = None) -> list[str]:
    """The next `count` lines; `ids` gets the id of each event taken (`s.last_id` is the
    reader's, which may be ahead of what was taken)."""
    out: list[str] = []
    while len(out) < count:
        ev = await s.next_event(timeout)
        if ev.id and ids is not None:
            ids.append(ev.id)
        if ev.event == "message":
            out.extend(ev.lines)
        elif notices is not None:
            notices.append(ev)
        else:
            raise AssertionError(f"unexpected {ev.event}: {ev.data}")
    return out


def test_a_shipped_file_is_listed_and_streamed_with_its_notices(tmp_path):
    log = tmp_path / "app.log"
    append(log, [f"old {i}" for i in range(5)])
    with redis_server(tmp_path) as rs, \
            shipping(write_config(tmp_path, rs.url, extra="heartbeat_s = 0.2")):
        server = serving(serve_config(tmp_path, rs.url))
        try:
            entry = wait_listed(server.base, NAME)
            assert entry["host"] == "web-1" and entry["quiet"] is False
            assert abs(float(entry["last_seen"]) - time.time()) < 60  # type: ignore[arg-type]

            async def follow() -> tuple[list[str], list[Event]]:
                notices: list[Event] = []
                async with sse(server.base, f"/api/files/{NAME}/stream?n=3") as s:
                    got = await lines_of(s, 3)
                    append(log, ["live 1"])
                    got += await lines_of(s, 1)
                    os.rename(log, tmp_path / "app.log.1")  # rotation on the shipping host
                    append(log, ["after rotation"])
                    got += await lines_of(s, 1, notices)
                return got, notices

            got, notices = asyncio.run(follow())
            assert got == ["old 2", "old 3", "old 4", "live 1", "after rotation"]
            # (the shipper may see the file missing between the rename and the new file)
            assert [n.event for n in notices if n.event != "missing"] == ["rotated"]
            assert {n.json()["file"] for n in notices} == {NAME}
            # text format and a filter, as for a local file, from curl
            out = httpx.get(f"{server.base}/api/files/{NAME}/stream",
                            params={"n": 50, "follow": 0, "format": "text", "q": "old [34]",
                                    "regex": 1}, timeout=30)
            assert out.text == "old 3\nold 4\n"
            metrics = httpx.get(server.base + "/metrics").text
            assert "logtail_fleet_files 1.0" in metrics and "logtail_fleet_up 1.0" in metrics
            assert 'logtail_fleet_host_last_seen_seconds{host="web-1"}' in metrics
            assert f'logtail_lines_sent_total{{file="{NAME}"}} 7.0' in metrics  # 5 + 2
            # what the shipper reports with its heartbeat
            shipped = 'logtail_ship_lines{file="app",host="web-1"} 7.0'  # 5 + live + after
            deadline = time.monotonic() + 30
            while shipped not in httpx.get(server.base + "/metrics").text:
                assert time.monotonic() < deadline, httpx.get(server.base + "/metrics").text
                time.sleep(0.1)
        finally:
            server.stop()


def test_a_client_resumes_on_another_server_after_a_kill_9_with_no_gap_or_duplicate(
        tmp_path):
    log = tmp_path / "app.log"
    log.touch()
    with redis_server(tmp_path) as rs, shipping(write_config(tmp_path, rs.url)):
        config = serve_config(tmp_path, rs.url)
        first, second = serving(config), serving(config)
        try:
            wait_listed(first.base, NAME)
            wait_listed(second.base, NAME)
            written: list[str] = []

            async def run() -> list[str]:
                got: list[str] = []
                stop = asyncio.Event()

                async def writer() -> None:
                    i = 0
                    while not stop.is_set():
                        line = f"line {i:05d}"
                        append(log, [line])
                        written.append(line)
                        i += 1
                        await asyncio.sleep(0.002)

                task = asyncio.create_task(writer())
                try:
                    async with sse(first.base, f"/api/files/{NAME}/stream?n=0") as s:
                        ids: list[str] = []
                        got += await lines_of(s, 200, ids=ids)
                        first.proc.send_signal(signal.SIGKILL)
                        first.proc.wait(10)
                    async with sse(second.base, f"/api/files/{NAME}/stream?n=0",
                                   headers={"Last-Event-ID": ids[-1]}) as s:
                        got += await lines_of(s, 300)
                        stop.set()
                        await task
                        got += await lines_of(s, len(written) - len(got))
                finally:
                    stop.set()
                    await task
                return got

            got = asyncio.run(run())
            assert got == written
        finally:
            first.stop()
            second.stop()


def test_health_is_degraded_while_redis_is_down_and_local_files_keep_streaming(tmp_path):
    local = tmp_path / "local.log"
    local.touch()
    files = f'[[files]]\nname = "local"\npath = "{local}"\n'
    port = free_port()
    rs = RedisServer(tmp_path, port)
    rs.start()
    server = serving(serve_config(tmp_path, rs.url, files))
    try:
        assert httpx.get(server.base + "/healthz").json()["status"] == "ok"

        async def stream_while_down() -> list[str]:
            async with sse(server.base, "/api/files/local/stream?n=0") as s:
                rs.stop()
                deadline = time.monotonic() + 30
                while True:
                    body = httpx.get(server.base + "/healthz").json()
                    if body["status"] == "degraded" or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                assert body["status"] == "degraded", body
                assert "Redis" in body["reason"]
                with local.open("a") as f:
                    f.write("still here\n")
                return await lines_of(s, 1)

        assert asyncio.run(stream_while_down()) == ["still here"]
        r = httpx.get(server.base + "/healthz")
        assert r.status_code == 200  # degraded is not out of rotation: local files work
        rs.start()
        deadline = time.monotonic() + 30
        while httpx.get(server.base + "/healthz").json()["status"] != "ok":
            assert time.monotonic() < deadline, "never back to ok"
            time.sleep(0.1)
    finally:
        server.stop()
        rs.stop()


def test_keys_and_entries_that_are_not_a_shippers_are_ignored_and_counted(tmp_path):
    with redis_server(tmp_path) as rs:
        r = redis.Redis(port=rs.port)
        r.xadd("logtail:bad host!:x", {"lines": "no", "n": "1"})
        r.xadd("logtail:a:b:c", {"lines": "no", "n": "1"})
        key = stream_key("web-1", "app")
        r.xadd(key, {"lines": "one\ntwo", "n": "2", "t": "1", "pos": "-"}, id="5-0")
        r.xadd(key, {"junk": "yes"}, id="5-2")
        r.xadd(key, {"lines": "three", "n": "1", "t": "1", "pos": "-"}, id="5-3")
        server = serving(serve_config(tmp_path, rs.url))
        try:
            wait_listed(server.base, NAME)
            names = [f["name"] for f in httpx.get(server.base + "/api/files").json()["files"]]
            assert names == [NAME]

            async def read() -> list[str]:
                async with sse(server.base, f"/api/files/{NAME}/stream?n=0") as s:
                    r.xadd(key, {"junk": "again"}, id="5-4")
                    r.xadd(key, {"lines": "four", "n": "1", "t": "1", "pos": "-"}, id="5-5")
                    return await lines_of(s, 1)

            assert asyncio.run(read()) == ["four"]
            body = httpx.get(server.base + "/healthz").json()
            assert body["fleet"]["bad_keys"] == 2
            assert body["fleet"]["bad_entries"] >= 1
            metrics = httpx.get(server.base + "/metrics").text
            assert "logtail_fleet_bad_keys 2.0" in metrics
            assert "logtail_fleet_bad_entries_total 0.0" not in metrics
            out = httpx.get(f"{server.base}/api/files/{NAME}/stream",
                            params={"n": 10, "follow": 0, "format": "text"}, timeout=30)
            assert out.text == "one\ntwo\nthree\nfour\n"
        finally:
            server.stop()


def test_a_resume_id_that_was_trimmed_away_or_forged_is_told(tmp_path):
    with redis_server(tmp_path) as rs:
        r = redis.Redis(port=rs.port)
        key = stream_key("web-1", "app")
        for i in range(10):
            r.xadd(key, {"lines": f"l{i}", "n": "1", "t": "1", "pos": "-"}, id=f"7-{i}")
        server = serving(serve_config(tmp_path, rs.url))
        try:
            wait_listed(server.base, NAME)

            async def resume(last: str) -> tuple[list[str], list[Event]]:
                notices: list[Event] = []
                async with sse(server.base, f"/api/files/{NAME}/stream?n=2&follow=0",
                               headers={"Last-Event-ID": last}) as s:
                    got: list[str] = []
                    try:
                        while True:
                            ev = await s.next_event()
                            if ev.event == "message":
                                got += ev.lines
                            else:
                                notices.append(ev)
                    except EOFError:
                        return got, notices

            assert asyncio.run(resume("7-8")) == (["l8", "l9"], [])
            r.xtrim(key, minid="7-6", approximate=False)
            got, notices = asyncio.run(resume("7-3"))
            assert got == ["l6", "l7", "l8", "l9"]
            assert [(n.event, n.json()["lines"]) for n in notices] == [("dropped", 3)]
            for forged in ("7-99", "6-1", "nonsense"):
                got, notices = asyncio.run(resume(forged))
                assert [n.event for n in notices] == ["reset"], forged
                assert got == ["l8", "l9"]
        finally:
            server.stop()


def test_a_stream_of_local_and_shipped_files_resumes_each_on_another_server(tmp_path):
    log, local = tmp_path / "app.log", tmp_path / "local.log"
    append(log, ["shipped 0"])
    append(local, ["local 0"])
    files = f'[[files]]\nname = "local"\npath = "{local}"\n'
    path = f"/api/stream?file=local&file={NAME}&n=5"
    with redis_server(tmp_path) as rs, shipping(write_config(tmp_path, rs.url)):
        config = serve_config(tmp_path, rs.url, files)
        first, second = serving(config), serving(config)
        try:
            wait_listed(first.base, NAME)
            wait_listed(second.base, NAME)

            async def run() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
                got: list[tuple[str, str]] = []
                async with sse(first.base, path) as s:
                    while len(got) < 2:
                        ev = await s.next_event(30)
                        assert ev.event == "lines", ev
                        got += [(ev.json()["file"], ln) for ln in ev.json()["lines"]]
                    last = s.last_id
                first.proc.send_signal(signal.SIGKILL)
                first.proc.wait(10)
                append(log, ["shipped 1"])
                append(local, ["local 1"])
                after: list[tuple[str, str]] = []
                async with sse(second.base, path, headers={"Last-Event-ID": last or ""}) as s:
                    while len(after) < 2:
                        ev = await s.next_event(30)
                        assert ev.event == "lines", ev
                        after += [(ev.json()["file"], ln) for ln in ev.json()["lines"]]
                return got, after

            got, after = asyncio.run(run())
            assert sorted(got) == [("local", "local 0"), (NAME, "shipped 0")]
            assert sorted(after) == [("local", "local 1"), (NAME, "shipped 1")]
        finally:
            first.stop()
            second.stop()


def test_since_on_a_shipped_file_starts_at_what_was_shipped_then(tmp_path):
    with redis_server(tmp_path) as rs:
        r = redis.Redis(port=rs.port)
        key = stream_key("web-1", "app")
        for i, t in enumerate((1_000, 2_000, 3_000)):  # shipped at 00:00:01, :02, :03 (ms)
            r.xadd(key, {"lines": f"a{i}\nb{i}", "n": "2", "t": str(t), "pos": "-"},
                   id=f"9-{2 * i}")
        server = serving(serve_config(tmp_path, rs.url))
        try:
            wait_listed(server.base, NAME)
            out = httpx.get(f"{server.base}/api/files/{NAME}/stream", timeout=30, params={
                "since": "1970-01-01T00:00:02Z", "follow": 0, "format": "text", "n": 1})
            assert out.text == "a1\nb1\na2\nb2\n"
        finally:
            server.stop()


def test_search_and_lines_over_what_redis_holds_of_a_shipped_file(tmp_path):
    with redis_server(tmp_path) as rs:
        r = redis.Redis(port=rs.port)
        key = stream_key("web-1", "app")
        number = 0
        for i in range(300):  # three pages of entries, two lines each
            r.xadd(key, {"lines": f"line {2 * i} {'ERROR' if i % 50 == 0 else 'ok'}\n"
                                  f"line {2 * i + 1} ok", "n": "2", "t": str(1000 * i),
                         "pos": "-"}, id=f"3-{number}")
            number += 2
        server = serving(serve_config(tmp_path, rs.url))
        try:
            wait_listed(server.base, NAME)
            url = f"{server.base}/api/files/{NAME}"
            out = httpx.get(url + "/search", params={"q": "ERROR", "format": "ndjson"},
                            timeout=30)
            found = [json.loads(line) for line in out.text.splitlines()]
            assert [m["line"] for m in found[:-1]] == [
                f"line {2 * i} ERROR" for i in (250, 200, 150, 100, 50, 0)]  # newest first
            assert found[-1] == {"matches": 6, "scanned_bytes": found[-1]["scanned_bytes"],
                                 "limited": False}
            out = httpx.get(url + "/search", params={"q": "ERROR", "format": "text",
                                                     "order": "asc", "limit": 2,
                                                     "since": "1970-01-01T00:00:10Z"})
            assert out.text == "line 100 ERROR\nline 200 ERROR\n"
            # a match's id shows it in context, as a permalink would
            at = found[0]["id"]
            ctx = httpx.get(url + "/lines", params={"at": at, "before": 2, "after": 1}).json()
            assert [x["line"] for x in ctx["lines"]] == [
                "line 498 ok", "line 499 ok", "line 500 ERROR", "line 501 ok"]
            assert ctx["more_before"] is True and ctx["more_after"] is True
            assert [x["id"] for x in ctx["lines"]][2] == at and ctx["at"] == 2
            r.xtrim(key, minid="3-520", approximate=False)
            gone = httpx.get(url + "/lines", params={"at": at})
            assert gone.status_code == 410
            bad = httpx.get(url + "/lines", params={"at": "nonsense"})
            assert bad.status_code == 400 and bad.json()["param"] == "at"
        finally:
            server.stop()


def test_a_redis_with_a_password_ships_and_serves_and_the_password_stays_secret(tmp_path):
    secret = "s3cret-Pa55"
    rs = RedisServer(tmp_path, password=secret)
    rs.start()
    try:
        append(tmp_path / "app.log", ["behind a password"])
        with shipping(write_config(tmp_path, rs.url)) as shipper:
            server = serving(serve_config(tmp_path, rs.url))
            try:
                wait_listed(server.base, NAME)
                out = httpx.get(f"{server.base}/api/files/{NAME}/stream",
                                params={"n": 5, "follow": 0, "format": "text"}, timeout=30)
                assert out.text == "behind a password\n"
                health = httpx.get(server.base + "/healthz").json()
                assert health["status"] == "ok"
            finally:
                server.stop()
            output = server.output() + shipper.text()
            assert "127.0.0.1" in output and secret not in output
        # a wrong password: degraded, with a reason that does not show it either
        wrong = serve_config(tmp_path, rs.url.replace(secret, "wrong-pass"))
        server = serving(wrong)
        try:
            deadline = time.monotonic() + 30
            while (body := httpx.get(server.base + "/healthz").json())["status"] != "degraded":
                assert time.monotonic() < deadline, body
                time.sleep(0.1)
            assert "wrong-pass" not in body["reason"] and "Redis" in body["reason"]
        finally:
            server.stop()
    finally:
        rs.stop()


def test_rediss_tls_ships_and_serves(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file",
         str(cert), "--tls-auth-clients", "no", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if redis.Redis.from_url(url, socket_timeout=2).ping():
                    break
            except redis.exceptions.RedisError:
                assert time.monotonic() < deadline and proc.poll() is None, "no TLS redis"
                time.sleep(0.05)
        append(tmp_path / "app.log", ["over TLS"])
        with shipping(write_config(tmp_path, url)):
            server = serving(serve_config(tmp_path, url))
            try:
                wait_listed(server.base, NAME)
                out = httpx.get(f"{server.base}/api/files/{NAME}/stream",
                                params={"n": 5, "follow": 0, "format": "text"}, timeout=30)
                assert out.text == "over TLS\n"
            finally:
                server.stop()
        plain = redis.Redis(port=port, socket_timeout=2)  # the port speaks TLS only
        with pytest.raises(redis.exceptions.RedisError):
            plain.ping()
    finally:
        proc.terminate()
        proc.wait(10)
