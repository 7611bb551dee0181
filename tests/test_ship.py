"""`logtail ship`: real files, a real redis-server on loopback, the real shipper process.

What the stream holds is compared with what the file holds, line for line: every line
once, in order, across kill -9, rotation, truncation, and Redis going away (with its data
kept, or lost) or out of memory.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from helpers import ROOT, free_port
from redis_support import HOST, RedisServer, Shipper, append, redis_server, shipping, write_config

from logtail.fleet.keys import (
    HOSTS_KEY,
    Entry,
    format_positions,
    parse_entry,
    parse_positions,
    parse_stream_key,
    stream_key,
)

KEY = stream_key(HOST, "app")


def entries(r: redis.Redis, key: str = KEY) -> list[Entry]:
    out: list[Entry] = []
    start = "-"
    while True:
        page = r.xrange(key, start, "+", count=1000)
        for raw_id, fields in page:
            entry = parse_entry(raw_id, fields)
            assert entry is not None, (raw_id, fields)
            out.append(entry)
        if len(page) < 1000:
            return out
        start = "(" + page[-1][0].decode()


def shipped_lines(r: redis.Redis, key: str = KEY) -> list[str]:
    return [line for e in entries(r, key) if e.lines is not None for line in e.lines]


def notices(r: redis.Redis, key: str = KEY) -> list[str]:
    return [e.notice for e in entries(r, key) if e.notice is not None]


def file_lines(*paths: Path) -> list[str]:
    return [line for p in paths for line in p.read_text().splitlines()]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0,
               shipper: Shipper | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            log = f"\nshipper log:\n{shipper.text()}" if shipper else ""
            raise AssertionError(f"timed out waiting for {what}{log}")
        time.sleep(0.05)


def wait_shipped(r: redis.Redis, expected: list[str], shipper: Shipper,
                 key: str = KEY) -> None:
    """Until the stream holds as many lines as `expected`, then they must be equal."""
    def enough() -> bool:
        try:
            return len(shipped_lines(r, key)) >= len(expected)
        except redis.exceptions.ConnectionError:
            return False

    wait_until(enough, f"{len(expected)} lines in {key}", shipper=shipper)
    assert shipped_lines(r, key) == expected


def assert_numbered(found: list[Entry]) -> None:
    """Ids count every line and notice: each entry starts where the one before ended."""
    for a, b in itertools.pairwise(found):
        assert b.number == a.next and b.epoch == a.epoch, (a, b)


# -- tests -------------------------------------------------------------------------------------

def test_every_line_is_shipped_once_in_order(tmp_path):
    log = tmp_path / "app.log"
    before = [f"before {i} " + "x" * 80 for i in range(3000)]
    append(log, before)
    with redis_server(tmp_path) as rs:
        config = write_config(tmp_path, rs.url, extra="heartbeat_s = 0.5\n",
                              files='[stream]\nmax_line_bytes = 1000\npartial_line_s = 0.5\n'
                                    '[[files]]\nname = "app"\npath = "app.log"\n')
        r = rs.client()
        with shipping(config) as shipper:
            wait_shipped(r, before, shipper)
            after = [f"after {i}" for i in range(20000)]
            for i in range(0, len(after), 500):
                append(log, after[i:i + 500])
            long = "L" * 5000
            append(log, ["", "tab\tand ünïcode ✓", long])
            with log.open("ab") as f:
                f.write(b"crlf line\r\nbad \xff byte\npartial at the end")
            expected = [*before, *after, "", "tab\tand ünïcode ✓",
                        "L" * 1000 + " [… line cut: 5000 bytes]", "crlf line",
                        "bad \ufffd byte", "partial at the end"]
            wait_shipped(r, expected, shipper)
            wait_until(lambda: r.hget(HOSTS_KEY, HOST) is not None, "the heartbeat")
            assert abs(int(r.hget(HOSTS_KEY, HOST)) - time.time()) < 60
            assert shipper.stop() == 0
        found = entries(r)
        assert [e.notice for e in found if e.notice] == ["reset"]
        assert found[0].notice == "reset" and found[0].data["skipped_bytes"] == 0
        assert found[0].number == 0
        assert_numbered(found)
        assert all(len("\n".join(e.lines or [])) <= 31 * 1024 for e in found)
        # the server side finds the stream with SCAN, and nothing else of ours looks like one
        keys = {k.decode() for k in r.scan_iter(match="logtail:*", _type="stream")}
        assert keys == {KEY} and parse_stream_key(KEY) == (HOST, "app")
        assert "stopped: app" in shipper.text()
        # started again with nothing new: nothing is shipped twice
        with shipping(config, shipper.log) as again:
            wait_until(lambda: again.text().count("resuming at byte") == 1, "a resume",
                       shipper=again)
            append(log, ["one more"])
            wait_shipped(r, [*expected, "one more"], again)
            assert again.stop() == 0


def test_kill_9_while_a_writer_appends_fast_loses_and_repeats_nothing(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        with log.open("a") as f:
            while not stop.is_set():
                n = written[0]
                f.write("".join(f"line {n + i} {'y' * 60}\n" for i in range(200)))
                f.flush()
                written[0] = n + 200
                time.sleep(0.002)

    with redis_server(tmp_path) as rs:
        r = rs.client()
        config = write_config(tmp_path, rs.url)
        shipper = Shipper(config, tmp_path / "ship.log")
        thread = threading.Thread(target=writer)
        thread.start()
        rng = random.Random(15)

        def starts() -> int:
            text = shipper.text()
            return text.count("starting afresh") + text.count("resuming at byte")

        try:
            for i in range(4):
                shipper.start()
                wait_until(lambda i=i: starts() == i + 1, "the shipper's start", shipper=shipper)
                time.sleep(rng.uniform(0.05, 0.8))  # shipping at full speed, then killed
                shipper.kill()
            stop.set()
            thread.join()
            shipper.start()
            wait_shipped(r, file_lines(log), shipper)
            assert shipper.stop() == 0
        finally:
            stop.set()
            thread.join()
            if shipper.proc is not None:
                shipper.kill()
        assert written[0] > 20000
        found = entries(r)
        assert [e.notice for e in found if e.notice] == ["reset"]
        assert_numbered(found)
        assert shipper.text().count("starting afresh") == 1
        assert shipper.text().count("resuming at byte") == 4


def test_rotation_and_truncation_ship_their_notices(tmp_path):
    log, rotated = tmp_path / "app.log", tmp_path / "app.log.1"
    append(log, [f"first {i}" for i in range(100)])
    with redis_server(tmp_path) as rs:
        r = rs.client()
        config = write_config(tmp_path, rs.url,
                              files='[watch]\nrotate_grace_s = 1\n'
                                    '[[files]]\nname = "app"\npath = "app.log"\n')
        with shipping(config) as shipper:
            wait_shipped(r, file_lines(log), shipper)
            # logrotate's create: rename, a late write to the old file, a new file
            log.rename(rotated)
            append(rotated, ["late in the old file"])
            append(log, [f"second {i}" for i in range(100)])
            wait_shipped(r, file_lines(rotated, log), shipper)
            wait_until(lambda: "rotated" in notices(r), "the rotated notice", shipper=shipper)
            # copytruncate: the same file, from offset 0 again
            old = file_lines(rotated, log)
            os.truncate(log, 0)
            append(log, [f"third {i}" for i in range(10)])
            wait_shipped(r, [*old, *file_lines(log)], shipper)
            wait_until(lambda: "truncated" in notices(r), "the truncated notice",
                       shipper=shipper)
            # rotated while the shipper is down: it finishes the old file (found again as
            # app.log.1 by its identity), then the new one
            assert shipper.stop() == 0
            append(log, ["written before the rotation, shipped after"])
            done = old + file_lines(log)
            rotated.rename(tmp_path / "app.log.2")
            log.rename(rotated)
            append(log, [f"fourth {i}" for i in range(10)])
            shipper.start()
            wait_shipped(r, [*done, *file_lines(log)], shipper)
            wait_until(lambda: notices(r).count("rotated") == 2, "a second rotated notice",
                       shipper=shipper)
            assert shipper.stop() == 0
        found = entries(r)
        assert [(e.notice, e.data.get("reason")) for e in found if e.notice] == [
            ("reset", "no place in Redis (a first run, or Redis lost this file's stream)"),
            ("rotated", "replaced"), ("truncated", None), ("rotated", "replaced")]
        assert_numbered(found)


@pytest.mark.parametrize("keep", [True, False], ids=["data-kept", "data-lost"])
def test_redis_going_away_and_coming_back(tmp_path, keep):
    log = tmp_path / "app.log"
    append(log, [f"up {i}" for i in range(500)])
    rs = RedisServer(tmp_path)
    rs.start()
    try:
        r = rs.client()
        with shipping(write_config(tmp_path, rs.url, extra="heartbeat_s = 0.5\n")) as shipper:
            wait_shipped(r, file_lines(log), shipper)
            rs.shutdown(save=keep)  # no persistence configured: without SAVE it comes back empty
            wait_until(lambda: "redis: cannot reach" in shipper.text(), "the down line",
                       shipper=shipper)
            append(log, [f"down {i}" for i in range(500)])
            time.sleep(1.5)  # a few retries
            append(log, [f"still down {i}" for i in range(500)])
            rs.start()
            wait_shipped(rs.client(), file_lines(log), shipper)
            append(log, ["back"])
            wait_shipped(rs.client(), file_lines(log), shipper)
            assert shipper.stop() == 0
        text = shipper.text()
        assert text.count("redis: cannot reach") == 1, text
        assert text.count("redis: reachable again") == 1, text
        found = entries(rs.client())
        assert_numbered(found)
        if keep:
            assert [e.notice for e in found if e.notice] == ["reset"]
            assert "going on from what Redis holds" not in text
        else:
            # the new Redis got the whole current file again, after a reset that says why
            assert [e.notice for e in found if e.notice] == ["reset"]
            assert found[0].data["reason"].startswith("no place in Redis")
            assert text.count("going on from what Redis holds") == 1, text
            assert text.count("starting afresh") == 2, text
    finally:
        rs.stop()


def test_redis_back_from_an_older_snapshot_gets_the_lost_lines_again(tmp_path):
    """Redis killed after a snapshot and more writes: it comes back without the later
    lines, and the shipper sends exactly those again (with the same numbers)."""
    log = tmp_path / "app.log"
    append(log, [f"saved {i}" for i in range(300)])
    rs = RedisServer(tmp_path)
    rs.start()
    try:
        r = rs.client()
        with shipping(write_config(tmp_path, rs.url)) as shipper:
            wait_shipped(r, file_lines(log), shipper)
            r.save()  # dump.rdb: what the restarted Redis loads
            append(log, [f"lost {i}" for i in range(300)])
            wait_shipped(r, file_lines(log), shipper)
            before = entries(r)
            assert rs.proc is not None
            rs.proc.kill()
            rs.proc.wait(10)
            rs.start()
            assert len(shipped_lines(rs.client())) == 300
            append(log, [f"after {i}" for i in range(300)])
            wait_shipped(rs.client(), file_lines(log), shipper)
            assert shipper.stop() == 0
        found = entries(rs.client())
        assert [e.notice for e in found if e.notice] == ["reset"]
        assert_numbered(found)
        numbered = {e.number + k: line for e in found if e.lines for k, line in
                    enumerate(e.lines)}
        assert all(numbered[e.number + k] == line for e in before if e.lines
                   for k, line in enumerate(e.lines))
        assert shipper.text().count("going on from what Redis holds") == 1
    finally:
        rs.stop()


def test_a_stream_emptied_by_hand_starts_afresh(tmp_path):
    log = tmp_path / "app.log"
    append(log, [f"a {i}" for i in range(50)])
    with redis_server(tmp_path) as rs:
        r = rs.client()
        with shipping(write_config(tmp_path, rs.url, extra="maxlen = 10\n")) as shipper:
            wait_shipped(r, file_lines(log)[-10:], shipper)
            r.xtrim(KEY, maxlen=0)  # the key stays, with its last id
            append(log, [f"b {i}" for i in range(5)])
            wait_until(lambda: shipped_lines(r)[-5:] == [f"b {i}" for i in range(5)],
                       "the lines after the trim", shipper=shipper)
            assert shipper.stop() == 0
        found = entries(r)
        assert found[0].notice == "reset"
        assert shipped_lines(r) == file_lines(log)[-len(shipped_lines(r)):]
        assert_numbered(found)


def test_without_redis_it_waits_says_so_once_and_stops_cleanly(tmp_path):
    log = tmp_path / "app.log"
    append(log, ["waiting"])
    config = write_config(tmp_path, f"redis://127.0.0.1:{free_port()}/0",
                          extra="heartbeat_s = 0.2\n")
    with shipping(config) as shipper:
        wait_until(lambda: "redis: cannot reach" in shipper.text(), "the down line",
                   shipper=shipper)
        time.sleep(2)  # retries, and heartbeats
        assert shipper.stop() == 0
    assert shipper.text().count("redis: cannot reach") == 1


def test_a_glob_ships_each_file_it_finds(tmp_path):
    (tmp_path / "logs").mkdir()
    one = tmp_path / "logs" / "one.log"
    append(one, ["one 1"])
    with redis_server(tmp_path) as rs:
        r = rs.client()
        config = write_config(tmp_path, rs.url,
                              files='[[files]]\nname = "web"\nglob = "logs/*.log"\n')
        with shipping(config) as shipper:
            wait_shipped(r, ["one 1"], shipper, key=stream_key(HOST, "web.one.log"))
            two = tmp_path / "logs" / "two.log"
            append(two, ["two 1", "two 2"])
            wait_shipped(r, ["two 1", "two 2"], shipper, key=stream_key(HOST, "web.two.log"))
            assert shipper.stop() == 0
        keys = {parse_stream_key(k) for k in r.scan_iter(match="logtail:*", _type="stream")}
        assert keys == {(HOST, "web.one.log"), (HOST, "web.two.log")}


def test_redis_out_of_memory_backs_off_and_says_so(tmp_path):
    log = tmp_path / "app.log"
    append(log, [f"a {i}" for i in range(100)])
    with redis_server(tmp_path) as rs:
        r = rs.client()
        with shipping(write_config(tmp_path, rs.url)) as shipper:
            wait_shipped(r, file_lines(log), shipper)
            r.config_set("maxmemory", "1")  # every write refused (noeviction)
            append(log, [f"b {i}" for i in range(100)])
            wait_until(lambda: "redis: out of memory" in shipper.text(), "the OOM line",
                       shipper=shipper)
            append(log, [f"c {i}" for i in range(100)])
            time.sleep(1.0)
            assert len(shipped_lines(r)) == 100
            r.config_set("maxmemory", "0")
            wait_shipped(r, file_lines(log), shipper)
            assert shipper.stop() == 0
        text = shipper.text()
        assert text.count("redis: out of memory") == 1, text
        assert text.count("redis: accepting writes again") == 1, text


def test_redis_keeps_about_maxlen_lines(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    with redis_server(tmp_path) as rs:
        r = rs.client()
        with shipping(write_config(tmp_path, rs.url, extra="maxlen = 500\n")) as shipper:
            for i in range(40):
                append(log, [f"line {i}-{j}" for j in range(50)])
                wait_until(lambda i=i: shipped_lines(r)[-1:] == [f"line {i}-49"],
                           "the batch", shipper=shipper)
            assert shipper.stop() == 0
        kept = shipped_lines(r)
        assert kept == file_lines(log)[-len(kept):]
        # trimmed by whole Redis nodes: some more stay, or an entry (50 lines) less
        assert 450 <= len(kept) < 1000, len(kept)


def test_a_missing_file_is_shipped_once_it_appears(tmp_path):
    log = tmp_path / "app.log"
    with redis_server(tmp_path) as rs:
        r = rs.client()
        config = write_config(tmp_path, rs.url)
        with shipping(config) as shipper:
            wait_until(lambda: notices(r) == ["reset", "missing"], "the missing notice",
                       shipper=shipper)
            assert shipper.stop() == 0
        append(log, ["made while the shipper was down"])
        with shipping(config, shipper.log) as shipper:
            wait_shipped(r, file_lines(log), shipper)
            append(log, ["and after"])
            wait_shipped(r, file_lines(log), shipper)
            assert shipper.stop() == 0
        assert notices(r) == ["reset", "missing"]


@pytest.mark.parametrize(("host", "extra", "message"), [
    (HOST, "bogus = 1\n", "ship.bogus: unknown key"),
    ("a:b", "", "ship.host: must be 1-253 characters"),
    (HOST, "maxlen = 0\n", "ship.maxlen: must be > 0"),
])
def test_a_bad_ship_config_refuses_to_start(tmp_path, host, extra, message):
    config = write_config(tmp_path, "redis://127.0.0.1:1/0", extra=extra, host=host)
    r = subprocess.run([sys.executable, "-m", "logtail", "ship", "-c", str(config)],
                       capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://:s3cret@host:port/0",
                                 "redis://127.0.0.1:6379/db"])
def test_a_bad_redis_url_refuses_to_start_without_showing_the_password(tmp_path, url):
    config = write_config(tmp_path, url)
    r = subprocess.run([sys.executable, "-m", "logtail", "ship", "-c", str(config)],
                       capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert "redis.url: must look like" in r.stderr and "Traceback" not in r.stderr
    assert "s3cret" not in r.stderr


def test_keys_and_places_round_trip():
    assert parse_stream_key(b"logtail:web-1.example.com:nginx.access.log") == \
        ("web-1.example.com", "nginx.access.log")
    for key in ("logtail:hosts", "logtail:a:b:c", "logtail::app", "logtail:..:app",
                "other:web-1:app", "logtail:web 1:app", "logtail:web-1:" + "n" * 65):
        assert parse_stream_key(key) is None, key
    with pytest.raises(ValueError):
        stream_key("a:b", "app")
    text = "fe00-1a2b-0-0.fe00-1a2c-2a-2d3a5e4d"
    positions = parse_positions(text)
    assert positions is not None and format_positions(positions) == text
    assert parse_positions("-") == () and format_positions(()) == "-"
    assert parse_positions("nonsense") is None


def test_the_unit_file_runs_logtail_ship():
    unit = (ROOT / "deploy" / "logtail-ship.service").read_text()
    assert "ExecStart=/opt/logtail/bin/logtail ship -c /etc/logtail/ship.toml" in unit
    assert "RestartPreventExitStatus=2" in unit


def test_sigint_stops_it_too(tmp_path):
    with redis_server(tmp_path) as rs:
        config = write_config(tmp_path, rs.url)
        with shipping(config) as shipper:
            wait_until(lambda: "starting afresh" in shipper.text(), "the start",
                       shipper=shipper)
            assert shipper.proc is not None
            shipper.proc.send_signal(signal.SIGINT)
            assert shipper.proc.wait(20) == 0
            shipper.proc = None
