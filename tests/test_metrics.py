"""/metrics (Prometheus text format) and /healthz, in one process; the sum over several
workers from their snapshot files. Real 2-worker runs are in test_workers.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from helpers import append, live_server, make_config, sse, wait_for
from prometheus_client.parser import text_string_to_metric_families

import logtail.files.watch
from logtail.files.watch import MAX_FAILURES, DirectoryWatcher
from logtail.http.metrics import CONTENT_TYPE, Metrics
from logtail.streaming.stream import StreamStats

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def f(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


async def scrape(base: str) -> Samples:
    async with httpx.AsyncClient() as client:
        r = await client.get(base + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == CONTENT_TYPE
    return parse(r.text)


async def until_closed(base: str) -> Samples:
    """Scrape until no stream is open (a stream ends once its handler notices the close)."""
    for _ in range(200):
        got = await scrape(base)
        if got[f("logtail_streams_open", file="app")] == 0:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError("a stream stayed open")


async def test_metrics_count_streams_lines_batches_heartbeats_and_resumes(tmp_path):
    log = tmp_path / "app.log"
    append(log, "one", "two")
    config = make_config(tmp_path, extra="[stream]\nheartbeat_s = 0.2\n")
    async with live_server(config) as base:
        async with sse(base, "/api/files/app/stream?n=2") as s:
            assert await s.collect(2) == ["one", "two"]
            append(log, "three")
            assert await s.collect(1) == ["three"]
            await wait_for(lambda: s.comments.count("ping") >= 1)
            last = s.last_id
            during = await scrape(base)
        await until_closed(base)  # else "four" might still go to the closing stream
        append(log, "four")
        async with sse(base, "/api/files/app/stream", headers={"Last-Event-ID": last}) as s:
            assert await s.collect(1) == ["four"]
        after = await until_closed(base)
    assert during[f("logtail_streams_open", file="app")] == 1
    assert during[f("logtail_lines_sent_total", file="app")] == 3
    assert during[f("logtail_batches_sent_total", file="app")] == 2
    assert during[f("logtail_heartbeats_total", file="app")] >= 1
    assert during[f("logtail_bytes_sent_total", file="app")] > len("onetwothree")
    assert during[f("logtail_follower_active", file="app")] == 1
    assert during[f("logtail_workers")] == 1
    assert after[f("logtail_streams_open", file="app")] == 0
    assert after[f("logtail_lines_sent_total", file="app")] == 4
    assert after[f("logtail_resumes_total", file="app")] == 1
    assert after[f("logtail_dropped_lines_total", file="app")] == 0
    assert after[f("logtail_http_requests_total", endpoint="metrics", status="200")] >= 2


async def test_metrics_count_rejections_by_reason(tmp_path):
    append(tmp_path / "app.log", "x")
    limits = '[limits]\nstreams_per_ip = 1\nrequests_per_ip = "5/minute"\n'
    async with live_server(make_config(tmp_path, extra=limits)) as base, \
            sse(base, "/api/files/app/stream?n=0"), httpx.AsyncClient() as client:
        r = await client.get(base + "/api/files/app/stream?n=0")
        assert r.status_code == 429
        statuses = [(await client.get(base + "/api/files")).status_code for _ in range(4)]
        assert statuses[-1] == 429
        other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")  # not over the limit
        async with httpx.AsyncClient(transport=other) as scraper:
            got = parse((await scraper.get(base + "/metrics")).text)
    assert got[f("logtail_rejections_total", reason="streams_per_ip")] == 1
    assert got[f("logtail_rejections_total", reason="rate")] >= 1


async def test_rotations_and_notices_are_counted(tmp_path):
    log = tmp_path / "app.log"
    append(log, "before")
    async with live_server(make_config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=1") as s:
            assert await s.collect(1) == ["before"]
            os.rename(log, tmp_path / "app.log.1")
            append(log, "after")
            notices: list = []
            assert await s.collect(1, notices=notices) == ["after"]
            got = await scrape(base)
    assert got[f("logtail_rotations_total", file="app")] == 1
    assert got[f("logtail_notices_total", file="app", event="rotated")] == 1


async def test_healthz_reports_files_and_fails_while_a_watcher_is_dead(tmp_path, monkeypatch):
    append(tmp_path / "app.log", "x")
    config = make_config(tmp_path, {"app": "app.log", "later": "later.log"},
                         extra='[watch]\nsafety_s = 0.05\nbackend = "watchfiles"\n')
    real_awatch = logtail.files.watch.awatch

    def broken_awatch(*args: object, **kwargs: object) -> object:
        raise OSError(24, "Too many open files")

    async with live_server(config) as base, httpx.AsyncClient() as client:
        ok = await client.get(base + "/healthz")
        assert ok.status_code == 200
        assert ok.json()["status"] == "ok"
        assert ok.json()["files"] == {"present": 1, "missing": 1}
        assert ok.json()["missing"] == ["later"]
        monkeypatch.setattr(logtail.files.watch, "awatch", broken_awatch)
        async with sse(base, "/api/files/app/stream?n=0"):  # starts a (broken) watcher
            for _ in range(200):
                health = await client.get(base + "/healthz")
                if health.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert health.status_code == 503
            assert health.json()["status"] == "failing"
            assert health.json()["dead_watchers"] == [str(tmp_path)]
            got = parse((await client.get(base + "/metrics")).text)
            assert got[f("logtail_watchers_dead")] == 1
            assert got[f("logtail_watcher_restarts_total")] >= MAX_FAILURES
            monkeypatch.setattr(logtail.files.watch, "awatch", real_awatch)  # inotify is back
            for _ in range(200):
                health = await client.get(base + "/healthz")
                if health.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert health.json()["status"] == "ok"


async def test_a_watcher_whose_task_dies_is_not_alive(tmp_path):
    from logtail.config import WatchConfig

    watcher = DirectoryWatcher(tmp_path, WatchConfig())
    watcher.start()
    await asyncio.sleep(0.05)
    assert watcher.alive
    assert watcher._task is not None
    watcher._task.cancel()  # ended without anyone asking it to stop
    await wait_for(lambda: watcher._task is not None and watcher._task.done())
    assert not watcher.alive
    stopped = DirectoryWatcher(tmp_path, WatchConfig())
    stopped.start()
    await stopped.stop()
    assert stopped.alive  # asked to stop: not a failure


class FakeFollower:
    def __init__(self, rotations: int = 0, lag: int = 0, active: bool = False) -> None:
        self.rotations, self.lag, self.active = rotations, lag, active

    def lag_bytes(self) -> int:
        return self.lag


def other_worker(directory: Path, pid: int, stopped: bool = False, open_: int = 0,
                 lines: int = 0, rotations: int = 0, lag: int = 0,
                 rejections: dict[str, int] | None = None) -> None:
    snap = {
        "pid": pid, "stopped": stopped,
        "streams": {"app": {"open": open_, "lines": lines, "bytes": lines * 10,
                            "batches": lines, "heartbeats": 0, "dropped": 0, "resumes": 0,
                            "notices": {"rotated": rotations}}},
        "followers": {"app": {"rotations": rotations, "lag": lag, "active": int(open_ > 0)}},
        "rejections": rejections or {}, "requests": [["stream", 200, 1]],
        "watchers": 1 if open_ else 0, "watcher_restarts": 1, "dead_watchers": [],
    }
    (directory / f"worker-{pid}.json").write_text(json.dumps(snap))


async def test_one_scrape_sums_every_worker_and_gauges_only_running_ones(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        other_worker(tmp_path, helper.pid, open_=2, lines=10, rotations=1, lag=500,
                     rejections={"rate": 3})
        other_worker(tmp_path, gone.pid, open_=5, lines=7, rotations=1)  # killed: no final write
        other_worker(tmp_path, 999_999_999, stopped=True, open_=0, lines=4)  # stopped cleanly
        m = Metrics(followers={"app": FakeFollower(rotations=1, lag=20, active=True)})
        m.start(str(tmp_path))
        mine = StreamStats(lines=1, bytes=10, batches=1)
        m.stream_started("app", mine)
        m.reject("rate")
        got = parse(m.render().decode())
        await m.close()
        snaps = {p.name for p in tmp_path.glob("worker-*.json")}
        assert f"worker-{os.getpid()}.json" in snaps  # a final snapshot at close
    finally:
        helper.kill()
        helper.wait()
    assert got[f("logtail_workers")] == 2  # this one and the sleeping helper
    assert got[f("logtail_streams_open", file="app")] == 3  # 1 + 2: not the killed worker's
    assert got[f("logtail_lines_sent_total", file="app")] == 1 + 10 + 7 + 4  # counters: all
    assert got[f("logtail_rejections_total", reason="rate")] == 4
    assert got[f("logtail_rotations_total", file="app")] == 1  # each worker saw the same one
    assert got[f("logtail_follower_lag_bytes", file="app")] == 500  # the worst
    assert got[f("logtail_http_requests_total", endpoint="stream", status="200")] == 3
    assert got[f("logtail_watcher_restarts_total")] == 3
