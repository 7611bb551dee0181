"""Sources that appear by themselves: globs and directories, kept current by the directory
watchers (no polling), with their bad inputs: nothing matched, far too much matched, a
directory that goes and comes back, FIFOs and directories among the matches, names that
collide, symlinks out of the directory.

Timings use generous timeouts: the assertions are about what happens, not how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import RELAXED, append, live_server, sse, wait_for

import logtail.files.sources
from logtail.config import ConfigError, config_for_paths, parse_config
from logtail.files.listing import is_rotated_sibling, scan

pytestmark = pytest.mark.timeout(60)

APPEAR_S = 5.0  # generous: the watcher answers in milliseconds, the safety net in ~1 s


@pytest.fixture(params=["inotify", "watchfiles"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def glob_config(tmp: Path, *entries: dict[str, Any], extra: str = "", backend: str = "auto"):
    """A Config with [[files]] entries given as dicts (TOML written by hand)."""
    text = ("" if "[limits]" in extra else RELAXED) + extra + \
        f'\n[watch]\nbackend = "{backend}"\nsafety_s = 0.5\n'
    for e in entries:
        text += "[[files]]\n" + "".join(
            f"{k} = {str(v).lower() if isinstance(v, bool) else repr(str(v))}\n"
            for k, v in e.items())
    return parse_config(tomllib.loads(text), tmp)


async def listing(client: httpx.AsyncClient, base: str) -> dict[str, dict[str, Any]]:
    r = await client.get(base + "/api/files")
    assert r.status_code == 200, r.text
    return {f["name"]: f for f in r.json()["files"]}


async def until_listed(client: httpx.AsyncClient, base: str, check: Any,
                       timeout: float = APPEAR_S) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = await listing(client, base)
        if check(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not listed as expected in {timeout} s: {sorted(got)}")
        await asyncio.sleep(0.02)


# -- the rule and the listing, without a server ------------------------------------------

@pytest.mark.parametrize(("name", "sibling"), [
    ("app.log.1", True), ("app.log.2.gz", True), ("app.log-20261130", True),
    ("app.log-2026113013.gz", True), ("syslog.1", True), ("old.log.3", True),
    ("notes.gz", True), ("dump.xz", True),
    ("app.log", False), ("syslog", False), ("data.2", False), ("release-20261130", False),
    ("app-20261130.log", False), ("app.log.bak", False), ("app.log.0", False),
])
def test_rotated_siblings_are_named_as_logrotate_names_them(name, sibling):
    present = {"app.log", "syslog"}
    assert is_rotated_sibling(name, present) is sibling


def test_listing_reads_the_directory_only(tmp_path):
    for n in ("b.log", "a.log", "a.log.1", ".hidden.log", "c.txt"):
        (tmp_path / n).touch()
    os.mkfifo(tmp_path / "pipe.log")  # listed (a match), never opened
    (tmp_path / "dir.log").mkdir()
    assert scan(tmp_path, "*.log", False, False).names == ["a.log", "b.log", "dir.log",
                                                            "pipe.log"]
    assert scan(tmp_path, "*", False, True).names == ["a.log", "b.log", "c.txt"]
    assert scan(tmp_path, ".*", False, False).names == [".hidden.log"]
    missing = scan(tmp_path / "nope", "*", False, False)
    assert not missing.ok and missing.names == []


@pytest.mark.parametrize(("entry", "message"), [
    ('glob = "*/x.log"', "files[0].glob: only the file name may have wildcards"),
    ('glob = "logs/"', "files[0].glob: only the file name may have wildcards"),
    ('glob = ""', "files[0].glob: must be a non-empty string"),
    ('glob = "*.log"\npath = "a.log"', "files[0].glob: give path (one file) or glob"),
    ('path = "a.log"\nfollow_symlinks = true', "files[0].follow_symlinks: only for a glob"),
    ('glob = "*.log"\nfollow_symlinks = "yes"', "files[0].follow_symlinks: must be true or"),
])
def test_a_bad_glob_entry_names_the_key(entry, message):
    with pytest.raises(ConfigError) as e:
        parse_config(tomllib.loads(f'[[files]]\nname = "l"\n{entry}\n'), Path("/srv"))
    assert str(e.value).startswith(message), str(e.value)


def test_a_globs_name_is_a_short_prefix_and_may_repeat():
    with pytest.raises(ConfigError, match=r"files\[0\]\.name: a glob.s name prefixes"):
        parse_config(tomllib.loads(f'[[files]]\nname = "{"n" * 33}"\nglob = "*.log"\n'),
                     Path("/srv"))
    config = parse_config(tomllib.loads('[[files]]\nname = "l"\nglob = "a/*.log"\n'
                                        '[[files]]\nname = "l"\nglob = "b/*.log"\n'),
                          Path("/srv"))
    assert [(f.name, str(f.path), f.glob, f.follow_symlinks) for f in config.files] == [
        ("l", "/srv/a/*.log", True, False), ("l", "/srv/b/*.log", True, False)]


# -- globs and directories on a server -------------------------------------------------------

async def test_a_glob_serves_each_match_as_prefix_dot_basename(tmp_path):
    logs = tmp_path / "nginx"
    logs.mkdir()
    append(logs / "access.log", "GET /")
    append(logs / "error.log", "oops")
    (logs / "readme.txt").touch()
    config = glob_config(tmp_path, {"name": "nginx", "glob": "nginx/*.log"},
                         {"name": "app", "path": "app.log"})
    async with live_server(config) as base, httpx.AsyncClient() as client:
        r = await client.get(base + "/api/files")
        body = r.json()
        assert [f["name"] for f in body["files"]] == ["nginx.access.log", "nginx.error.log",
                                                       "app"]
        assert body["dynamic"] is True
        assert body["files"][0]["title"] == "nginx.access.log"
        # which glob lists a file, so a viewer can pick them all at once
        assert [f.get("glob") for f in body["files"]] == ["nginx", "nginx", None]
        async with sse(base, "/api/files/nginx.access.log/stream?n=5") as s:
            assert await s.collect(1) == ["GET /"]
            append(logs / "access.log", "GET /favicon.ico")
            assert await s.collect(1) == ["GET /favicon.ico"]


async def test_fixed_paths_alone_are_not_dynamic(tmp_path):
    config = glob_config(tmp_path, {"name": "app", "path": "app.log"})
    async with live_server(config) as base, httpx.AsyncClient() as client:
        body = (await client.get(base + "/api/files")).json()
        assert body["dynamic"] is False
        assert [f["name"] for f in body["files"]] == ["app"]


async def test_serving_a_directory_lists_its_live_logs_not_their_history(tmp_path):
    logs = tmp_path / "var"
    logs.mkdir()
    for n in ("app.log", "app.log.1", "app.log.2.gz", "app.log-20261130", "syslog",
              "syslog.1", "data.2", "notes.gz", ".lock"):
        append(logs / n, n)
    (logs / "sub").mkdir()
    os.mkfifo(logs / "fifo")
    config = config_for_paths([str(logs)], parse_config(tomllib.loads(
        RELAXED + '[[files]]\nname = "x"\npath = "x"\n'), tmp_path))
    async with live_server(config) as base, httpx.AsyncClient() as client:
        got = await listing(client, base)
        assert sorted(got) == ["var.app.log", "var.data.2", "var.syslog"]
        assert got["var.app.log"]["title"] == f"{logs}/app.log"
        (logs / "app.log").rename(logs / "app.log.3")  # rotation: the sibling stays out
        append(logs / "app.log", "new")
        append(logs / "kern.log", "appeared")
        await until_listed(client, base, lambda g: "var.kern.log" in g)
        got = await listing(client, base)
        assert sorted(got) == ["var.app.log", "var.data.2", "var.kern.log", "var.syslog"]
        assert all(f["exists"] for f in got.values())


async def test_a_new_file_is_served_within_seconds_and_a_gone_one_listed_as_gone(
        tmp_path, backend, monkeypatch):
    monkeypatch.setattr(logtail.files.sources, "GONE_KEEP_S", 1.0)
    (tmp_path / "logs").mkdir()
    config = glob_config(tmp_path, {"name": "l", "glob": "logs/*.log"}, backend=backend)
    async with live_server(config) as base, httpx.AsyncClient() as client:
        assert await listing(client, base) == {}
        t0 = time.monotonic()
        append(tmp_path / "logs" / "new.log", "first")
        await until_listed(client, base, lambda g: "l.new.log" in g)
        assert time.monotonic() - t0 < APPEAR_S
        async with sse(base, "/api/files/l.new.log/stream?n=10") as s:
            assert await s.collect(1) == ["first"]
            (tmp_path / "logs" / "new.log").unlink()
            got = await until_listed(client, base,
                                     lambda g: g.get("l.new.log", {}).get("exists") is False)
            assert got["l.new.log"]["readable"] is False
            notices: list = []
            append(tmp_path / "logs" / "new.log", "again")  # back within the window
            got = await until_listed(client, base,
                                     lambda g: g.get("l.new.log", {}).get("exists") is True)
            assert await s.collect(1, notices=notices) == ["again"]  # same name, same stream
        (tmp_path / "logs" / "new.log").unlink()
        await until_listed(client, base, lambda g: "l.new.log" not in g)  # dropped after 1 s
        r = await client.get(base + "/api/files/l.new.log/stream?follow=0")
        assert r.status_code == 404


async def test_the_file_list_streams_at_once_and_on_every_change(tmp_path, backend):
    (tmp_path / "logs").mkdir()
    append(tmp_path / "logs" / "a.log", "a")
    config = glob_config(tmp_path, {"name": "l", "glob": "logs/*.log"}, backend=backend)
    async with live_server(config) as base:
        async with sse(base, "/api/files?watch=1") as s:
            ev = await s.next_event()
            assert ev.event == "files"
            assert [f["name"] for f in ev.json()["files"]] == ["l.a.log"]
            assert ev.json()["dynamic"] is True
            append(tmp_path / "logs" / "b.log", "b")
            ev = await s.next_event(APPEAR_S)
            assert [f["name"] for f in ev.json()["files"]] == ["l.a.log", "l.b.log"]
            (tmp_path / "logs" / "a.log").unlink()
            ev = await s.next_event(APPEAR_S)
            assert {f["name"]: f["exists"] for f in ev.json()["files"]} == \
                {"l.a.log": False, "l.b.log": True}
            append(tmp_path / "logs" / "b.log", "writes are not changes of the list")
            with pytest.raises(TimeoutError):
                await s.next_event(0.5)


async def test_the_file_list_stream_has_heartbeats_a_slot_and_says_bye(tmp_path):
    (tmp_path / "logs").mkdir()
    config = glob_config(tmp_path, {"name": "l", "glob": "logs/*.log"},
                         extra='[stream]\nheartbeat_s = 0.2\n[limits]\nstreams_per_ip = 1\n'
                               'requests_per_ip = "10000/minute"\n')
    server = contextlib.AsyncExitStack()
    base = await server.enter_async_context(live_server(config))
    try:
        async with sse(base, "/api/files?watch=1") as s:
            assert (await s.next_event()).event == "files"
            await wait_for(lambda: "ping" in s.comments, timeout=5)
            async with httpx.AsyncClient() as client:
                r = await client.get(base + "/api/files?watch=1")
                assert r.status_code == 429  # it holds this address's one stream slot
                assert r.headers["retry-after"]
        async with sse(base, "/api/files?watch=1") as s:  # the slot came back
            assert (await s.next_event()).event == "files"
            stopping = asyncio.get_running_loop().create_task(server.aclose())
            t0 = time.monotonic()
            assert (await s.next_event(5)).event == "bye"
            await stopping
            assert time.monotonic() - t0 < 1.0  # not cut at the end of the 1 s grace
    finally:
        await server.aclose()


@pytest.mark.parametrize("query", ["watch=2", "watch=1&watch=1", "x=1", "watch="])
async def test_a_bad_file_list_parameter_is_400(tmp_path, query):
    config = glob_config(tmp_path, {"name": "app", "path": "app.log"})
    async with live_server(config) as base, httpx.AsyncClient() as client:
        r = await client.get(f"{base}/api/files?{query}")
        assert r.status_code == 400
        assert r.json()["param"] in ("watch", "x")


# -- bad input ---------------------------------------------------------------------------

async def test_a_glob_that_matches_nothing_is_an_empty_list_and_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "logtail")
    (tmp_path / "logs").mkdir()
    config = glob_config(tmp_path, {"name": "l", "glob": "logs/*.log"},
                         {"name": "gone", "glob": "nowhere/*.log"})
    async with live_server(config) as base, httpx.AsyncClient() as client:
        assert await listing(client, base) == {}
        health = (await client.get(base + "/healthz")).json()
        assert health["status"] == "ok"
        assert any("files[0]" in w and "matches nothing" in w for w in health["warnings"])
        assert any("files[1]" in w and "cannot list" in w for w in health["warnings"])
    assert "matches nothing" in caplog.text


async def test_too_many_matches_are_capped_at_max_files_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "logtail")
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(50):
        (logs / f"f{i:02d}.log").touch()
    config = glob_config(tmp_path, {"name": "l", "glob": "logs/*.log"},
                         extra="[limits]\nmax_files = 10\nrequests_per_ip = \"10000/minute\"\n")
    async with live_server(config) as base, httpx.AsyncClient() as client:
        got = await listing(client, base)
        assert sorted(got) == [f"l.f{i:02d}.log" for i in range(10)]  # the first, sorted
        health = (await client.get(base + "/healthz")).json()
        assert health["status"] == "ok"
        assert any("50 matches, only 10 served (limits.max_files)" in w
                   for w in health["warnings"])
        (logs / "f00.log").unlink()  # a listed file goes: listed as gone, still counted
        (logs / "zz.log").touch()
        await until_listed(client, base, lambda g: g["l.f00.log"]["exists"] is False)
        assert "l.zz.log" not in await listing(client, base)
    assert "only 10 served" in caplog.text


async def test_thousands_of_matches_are_capped_and_the_server_keeps_serving(tmp_path):
    """100,000 empty files take about 10 s to create here (measured: 9.3 s), so 5,000,
    capped at 1,000; a stream on another file goes on while they are listed."""
    logs = tmp_path / "logs"
    logs.mkdir()
    config = glob_config(tmp_path, {"name": "l", "glob": "logs/*"},
                         {"name": "app", "path": "app.log"},
                         extra="[limits]\nmax_files = 1000\nrequests_per_ip = \"10000/minute\"\n")
    append(tmp_path / "app.log", "before")
    async with live_server(config) as base, httpx.AsyncClient() as client:
        async with sse(base, "/api/files/app/stream?n=1") as s:
            assert await s.collect(1) == ["before"]
            for i in range(5000):
                os.close(os.open(logs / f"f{i:05d}.log", os.O_CREAT | os.O_WRONLY, 0o644))
            append(tmp_path / "app.log", "during")
            assert await s.collect(1) == ["during"]
            got = await until_listed(client, base, lambda g: len(g) == 1001, timeout=20)
        assert "l.f00000.log" in got
        health = (await client.get(base + "/healthz")).json()
        assert any("5000 matches, only 1000 served" in w for w in health["warnings"])


async def test_a_directory_that_goes_and_comes_back(tmp_path, backend):
    logs = tmp_path / "logs"
    logs.mkdir()
    append(logs / "a.log", "a")
    config = glob_config(tmp_path, {"name": "l", "glob": "logs/*.log"}, backend=backend)
    async with live_server(config) as base, httpx.AsyncClient() as client:
        assert (await listing(client, base))["l.a.log"]["exists"]
        shutil.rmtree(logs)
        await until_listed(client, base, lambda g: g["l.a.log"]["exists"] is False)
        logs.mkdir()
        append(logs / "a.log", "a again")
        append(logs / "b.log", "b")
        got = await until_listed(client, base, lambda g: "l.b.log" in g
                                 and g["l.a.log"]["exists"] is True)
        assert sorted(got) == ["l.a.log", "l.b.log"]
        health = (await client.get(base + "/healthz")).json()
        assert health["status"] == "ok"


async def test_fifos_devices_and_directories_are_listed_unreadable_and_never_block(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    os.mkfifo(logs / "pipe.log")
    (logs / "dir.log").mkdir()
    (logs / "null.log").symlink_to("/dev/null")  # a device (out of the directory)
    append(logs / "ok.log", "fine")
    config = glob_config(tmp_path, {"name": "l", "glob": "logs/*.log",
                                    "follow_symlinks": True})
    async with live_server(config) as base, httpx.AsyncClient(timeout=10) as client:
        got = await listing(client, base)
        assert sorted(got) == ["l.dir.log", "l.null.log", "l.ok.log", "l.pipe.log"]
        for name in ("l.dir.log", "l.null.log", "l.pipe.log"):
            assert got[name]["exists"] is True
            assert got[name]["readable"] is False
            assert got[name]["error"] == "not a regular file"
        assert got["l.ok.log"]["readable"] is True
        async with asyncio.timeout(10):  # a FIFO opened for reading would block here
            r = await client.get(base + "/api/files/l.pipe.log/stream?follow=0&format=text")
            assert r.status_code == 200 and r.text == ""
            async with sse(base, "/api/files/l.pipe.log/stream") as s:
                assert (await s.next_event()).event == "missing"
        assert stat.S_ISFIFO(os.stat(logs / "pipe.log").st_mode)


async def test_names_that_collide_get_suffixes_in_sorted_path_order(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        append(tmp_path / d / "x.log", d)
    append(tmp_path / "a" / "fixed.log", "fixed")
    append(tmp_path / "b" / "y.log", "y")
    config = glob_config(tmp_path,
                         {"name": "p", "glob": "b/*.log"},  # b first in the config...
                         {"name": "p", "glob": "a/*.log"},
                         {"name": "p.y.log", "path": "a/fixed.log"})  # a fixed name wins
    async with live_server(config) as base, httpx.AsyncClient() as client:
        got = await listing(client, base)
        # a/fixed.log is the fixed entry's: a/*.log does not list it again
        assert sorted(got) == ["p.x.log", "p.x.log-2", "p.y.log", "p.y.log-2"]
        # ...but a/x.log sorts first, so it is the one without a suffix
        r = await client.get(base + "/api/files/p.x.log/stream?follow=0&format=text")
        assert r.text == "a\n"
        r = await client.get(base + "/api/files/p.y.log/stream?follow=0&format=text")
        assert r.text == "fixed\n"
        r = await client.get(base + "/api/files/p.y.log-2/stream?follow=0&format=text")
        assert r.text == "y\n"


async def test_a_file_is_listed_once_and_odd_names_become_valid_ones(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    append(logs / "app.log", "app")
    odd = "my log (été) " + "x" * 80 + ".log"
    append(logs / odd, "odd")
    config = glob_config(tmp_path, {"name": "app", "path": "logs/app.log"},
                         {"name": "l", "glob": "logs/*.log"})
    async with live_server(config) as base, httpx.AsyncClient() as client:
        got = await listing(client, base)
        assert "l.app.log" not in got  # the fixed entry serves it
        [name] = [n for n in got if n != "app"]
        assert name.startswith("l.my_log_") and len(name) == 64
        r = await client.get(f"{base}/api/files/{name}/stream?follow=0&format=text")
        assert r.text == "odd\n"


@pytest.mark.parametrize("follow", [False, True])
async def test_symlinks_out_of_the_directory_only_when_the_config_says_so(tmp_path, follow):
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    logs.mkdir()
    outside.mkdir()
    append(outside / "secret.log", "secret")
    append(logs / "real.log", "real")
    (logs / "out.log").symlink_to(outside / "secret.log")
    (logs / "in.log").symlink_to("real.log")  # stays in the directory: fine either way
    entry: dict[str, Any] = {"name": "l", "glob": "logs/*.log"}
    if follow:
        entry["follow_symlinks"] = True
    config = glob_config(tmp_path, entry)
    async with live_server(config) as base, httpx.AsyncClient() as client:
        got = await listing(client, base)
        expected = ["l.in.log", "l.real.log"] + (["l.out.log"] if follow else [])
        assert sorted(got) == sorted(expected)
        r = await client.get(base + "/api/files/l.out.log/stream?follow=0&format=text")
        assert (r.status_code, r.text if follow else "") == ((200, "secret\n") if follow
                                                             else (404, ""))
        warnings = (await client.get(base + "/healthz")).json()["warnings"]
        assert any("symlinks out of" in w for w in warnings) is not follow
