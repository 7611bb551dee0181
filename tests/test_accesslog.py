"""logtail's own access log: nginx's `combined` format plus the request time."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
from helpers import append, live_server, make_config, sse, wait_for

import logtail.http.accesslog
from logtail.http.accesslog import AccessLog, format_line

COMBINED = re.compile(
    r'^(?P<ip>\S+) - (?P<user>\S+) \[(?P<time>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
    r'"(?P<method>\S+) (?P<target>\S+) (?P<protocol>HTTP/[\d.]+)" (?P<status>\d{3}) '
    r'(?P<size>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" (?P<duration>\d+\.\d{3})$')


def entries(path: Path) -> list[dict[str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = COMBINED.match(line)
        assert m, f"not combined + request time: {line!r}"
        out.append(m.groupdict())
    return out


async def test_requests_and_streams_are_logged_in_combined_format(tmp_path):
    log, access = tmp_path / "app.log", tmp_path / "logs" / "access.log"
    append(log, "a", "b")
    config = make_config(tmp_path, extra=f'[server]\naccess_log = "{access}"\n')
    async with live_server(config) as base:
        async with httpx.AsyncClient() as client:
            r = await client.get(base + "/api/files", headers={
                "User-Agent": 'probe "quoted"', "Referer": "http://example.test/x"})
            missing = await client.get(base + "/api/files/nope/stream")
        async with sse(base, "/api/files/app/stream?n=2&q=a") as s:
            assert await s.collect(1) == ["a"]
        await wait_for(lambda: access.exists() and "stream?n=2" in access.read_text())
    files, nope, stream = entries(access)
    assert files["ip"] == "127.0.0.1" and files["user"] == "-"
    assert (files["method"], files["target"], files["protocol"]) == ("GET", "/api/files",
                                                                    "HTTP/1.1")
    assert (files["status"], int(files["size"])) == ("200", len(r.content))
    assert files["referer"] == "http://example.test/x"
    assert files["agent"] == r"probe \x22quoted\x22"
    assert (nope["status"], int(nope["size"])) == ("404", len(missing.content))
    assert stream["target"] == "/api/files/app/stream?n=2&q=a"
    assert stream["status"] == "200" and int(stream["size"]) > 0  # bytes sent on the stream
    assert float(stream["duration"]) > 0


async def test_access_log_to_stderr(tmp_path, capsys):
    append(tmp_path / "app.log", "a")
    config = make_config(tmp_path, extra='[server]\naccess_log = "stderr"\n')
    async with live_server(config) as base, httpx.AsyncClient() as client:
        await client.get(base + "/healthz")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "/healthz" in ln]
    assert len(lines) == 1 and COMBINED.match(lines[0]), lines


def test_access_log_off_writes_nothing(tmp_path):
    off = AccessLog.from_setting("off")
    off.write("1.2.3.4", None, "GET", "/", "HTTP/1.1", 200, 1, None, None, 0.1)
    assert not off.enabled


def test_client_text_cannot_break_a_line_or_its_quotes():
    line = format_line("10.0.0.1", None, "GET", '/a"b\\c\nd', "HTTP/1.1", 200, 5,
                       "ref\r\nX: y", "agent\x1b[31m", 0.0125, 0.0)
    assert line.count("\n") == 1 and line.endswith("\n")
    assert r'"GET /a\x22b\x5Cc\x0Ad HTTP/1.1"' in line
    assert r'"ref\x0D\x0AX: y" "agent\x1B[31m" 0.013' in line
    assert COMBINED.match(line.rstrip("\n"))


def test_a_file_moved_away_by_logrotate_is_reopened(tmp_path, monkeypatch):
    monkeypatch.setattr(logtail.http.accesslog, "REOPEN_CHECK_S", 0.0)
    path = tmp_path / "access.log"
    out = AccessLog.from_setting(str(path))
    out.write("1.1.1.1", None, "GET", "/one", "HTTP/1.1", 200, 1, None, None, 0.0)
    os.rename(path, tmp_path / "access.log.1")
    out.write("1.1.1.1", None, "GET", "/two", "HTTP/1.1", 200, 1, None, None, 0.0)
    out.close()
    assert "/one" in (tmp_path / "access.log.1").read_text()
    assert "/two" in path.read_text() and "/one" not in path.read_text()


def test_relative_path_is_relative_to_the_config_folder(tmp_path):
    out = AccessLog.from_setting("logs/access.log", tmp_path)
    out.write("1.1.1.1", "alice", "GET", "/", "HTTP/1.1", 200, 1, None, None, 0.0)
    out.close()
    [entry] = entries(tmp_path / "logs" / "access.log")
    assert entry["user"] == "alice"
