"""Prometheus metrics, computed when scraped, summed over every worker.

Streams count into plain StreamStats objects; this collector sums them (live streams plus
the totals of finished ones) only when /metrics is read, so the hot path pays nothing.

With several workers, each one also writes a snapshot of its own values as a small JSON
file into a folder the main process made (`LOGTAIL_SHARED_DIR`): every second while
something changes, soon after a stream starts or ends, and once more when it stops.
Whichever worker answers /metrics adds its live values to the other workers' snapshots,
so one scrape covers the whole server, at most about a second behind for other workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from logtail.files.follow import Follower
from logtail.streaming.stats import StreamStats

__all__ = ["CONTENT_TYPE", "SHARED_DIR_ENV", "Metrics"]

log = logging.getLogger("logtail.http.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SHARED_DIR_ENV = "LOGTAIL_SHARED_DIR"
FLUSH_S = 1.0  # a worker's snapshot is at most this old while it is running
SOON_S = 0.1  # after a stream starts or ends, write within this long

STREAM_COUNTERS = {  # snapshot key -> (metric name, help)
    "lines": ("logtail_lines_sent", "Log lines sent on streams"),
    "bytes": ("logtail_bytes_sent", "Bytes sent on streams"),
    "batches": ("logtail_batches_sent", "Batches (events) sent on streams"),
    "heartbeats": ("logtail_heartbeats", "Heartbeats sent on idle streams"),
    "dropped": ("logtail_dropped_lines", "Lines reported lost to slow clients (dropped events)"),
    "resumes": ("logtail_resumes", "Streams started with a Last-Event-ID (resumed)"),
}

SHIPPER_SERIES = {  # what each shipper reports with its heartbeat -> (metric name, help)
    "entries": ("logtail_ship_entries", "Entries a shipper appended since it started"),
    "lines": ("logtail_ship_lines", "Lines a shipper appended since it started"),
    "lag_bytes": ("logtail_ship_lag_bytes", "Bytes written to a shipped file, not yet shipped"),
    "errors": ("logtail_ship_redis_errors", "Failed writes of a shipper to Redis since it "
               "started"),
}
REJECTION_REASONS = ("rate", "streams_per_ip", "max_streams", "auth")  # shown even at 0
Snapshot = dict[str, Any]


@dataclass
class Metrics:
    """Counters a worker keeps; `followers` and `watchers` are read at scrape time."""

    followers: dict[str, Follower] = field(default_factory=dict)
    watchers: object = None
    fleet: Callable[[], dict[str, Any]] | None = None  # shipped files' values, if served
    live: dict[str, set[StreamStats]] = field(default_factory=dict)
    finished: dict[str, StreamStats] = field(default_factory=dict)
    rejections: Counter[str] = field(default_factory=Counter)
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    shared_dir: Path | None = None
    _soon: asyncio.Event | None = None
    _writer: asyncio.Task[None] | None = None
    _written: str = ""

    # -- counting (hot path: no I/O) -------------------------------------------------------

    def stream_started(self, name: str, stats: StreamStats) -> None:
        self.live.setdefault(name, set()).add(stats)
        self._changed()

    def stream_ended(self, name: str, stats: StreamStats) -> None:
        self.live.get(name, set()).discard(stats)
        total = self.finished.setdefault(name, StreamStats())
        total.lines += stats.lines
        total.bytes += stats.bytes
        total.batches += stats.batches
        total.heartbeats += stats.heartbeats
        total.dropped += stats.dropped
        total.resumed += stats.resumed  # type: ignore[assignment]
        for k, v in stats.notices.items():
            total.notices[k] = total.notices.get(k, 0) + v
        self._changed()

    def reject(self, reason: str) -> None:
        self.rejections[reason] += 1
        self._changed()

    def request(self, endpoint: str, status: int) -> None:
        self.requests[(endpoint, status)] += 1

    def _changed(self) -> None:
        if self._soon is not None:
            self._soon.set()

    # -- this worker's values --------------------------------------------------------------

    def snapshot(self, stopped: bool = False) -> Snapshot:
        """This worker's values, as plain JSON-able data."""
        streams: dict[str, dict[str, Any]] = {}
        for name in sorted({*self.followers, *self.live}):  # shipped files have no follower
            parts = [*self.live.get(name, ()), self.finished.get(name, StreamStats())]
            notices: Counter[str] = Counter()
            for s in parts:
                notices.update(s.notices)
            streams[name] = {
                "open": len(self.live.get(name, ())),
                "lines": sum(s.lines for s in parts), "bytes": sum(s.bytes for s in parts),
                "batches": sum(s.batches for s in parts),
                "heartbeats": sum(s.heartbeats for s in parts),
                "dropped": sum(s.dropped for s in parts),
                "resumes": sum(int(s.resumed) for s in parts),
                "notices": dict(notices),
            }
        followers = {name: {"rotations": f.rotations, "lag": f.lag_bytes(),
                            "active": int(f.active)}
                     for name, f in sorted(self.followers.items())}
        watchers = getattr(self.watchers, "watchers", {})
        return {
            "pid": os.getpid(), "stopped": stopped, "streams": streams,
            "followers": followers, "rejections": dict(self.rejections),
            "requests": [[e, s, n] for (e, s), n in sorted(self.requests.items())],
            "watchers": len(watchers),
            "watcher_restarts": getattr(self.watchers, "restarts", 0),
            "dead_watchers": sorted(str(d) for d, w in watchers.items() if not w.alive),
            "fleet": self.fleet() if self.fleet is not None else None,
        }

    # -- sharing with the other workers ----------------------------------------------------

    def start(self, shared_dir: str | None = None) -> None:
        """With a shared folder (`serve` names one in the environment when it starts
        several workers), keep this worker's snapshot there."""
        shared_dir = shared_dir or os.environ.get(SHARED_DIR_ENV)
        if not shared_dir:
            return
        self.shared_dir = Path(shared_dir)
        self._soon = asyncio.Event()
        self._writer = asyncio.get_running_loop().create_task(
            self._keep_written(), name="logtail-metrics-writer")

    async def close(self) -> None:
        """Stop writing; leave a final snapshot so this worker's totals still count."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self.shared_dir is not None:
            self.write(stopped=True)

    async def _keep_written(self) -> None:
        assert self._soon is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._soon.wait(), FLUSH_S)
                await asyncio.sleep(SOON_S)  # a burst of streams: one write
            self._soon.clear()
            self.write()

    def write(self, stopped: bool = False) -> None:
        """Replace this worker's file (atomically: readers never see half of it)."""
        if self.shared_dir is None:
            return
        text = json.dumps(self.snapshot(stopped), separators=(",", ":"))
        if text == self._written:
            return
        pid = os.getpid()
        tmp = self.shared_dir / f".worker-{pid}.tmp"
        try:
            tmp.write_text(text)
            os.replace(tmp, self.shared_dir / f"worker-{pid}.json")
            self._written = text
        except OSError as e:
            log.warning("writing metrics snapshot failed: %s", e)

    def others(self) -> list[Snapshot]:
        """The other workers' latest snapshots."""
        if self.shared_dir is None:
            return []
        out = []
        mine = f"worker-{os.getpid()}.json"
        with contextlib.suppress(OSError):
            for path in self.shared_dir.glob("worker-*.json"):
                if path.name == mine:
                    continue
                try:
                    out.append(json.loads(path.read_text()))
                except (OSError, ValueError):
                    continue  # a worker that just went away
        return out

    # -- answering for the whole server ----------------------------------------------------

    def all_snapshots(self) -> list[Snapshot]:
        return [self.snapshot(), *self.others()]

    def dead_watchers(self) -> list[str]:
        """Directories whose watcher is dead, in any running worker."""
        return sorted({d for s in _running(self.all_snapshots()) for d in s["dead_watchers"]})

    def open_streams(self) -> int:
        return sum(st["open"] for s in _running(self.all_snapshots())
                   for st in s["streams"].values())

    def render(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self.all_snapshots()))
        return generate_latest(registry)


def _running(snaps: Iterable[Snapshot]) -> Iterator[Snapshot]:
    """Snapshots of workers still running: only they count for gauges."""
    for s in snaps:
        if s["stopped"]:
            continue
        if s["pid"] != os.getpid():
            try:
                os.kill(s["pid"], 0)
            except ProcessLookupError:
                continue  # killed without a final write
            except PermissionError:
                pass
        yield s


class _Collector(Collector):
    """Counters add up over every worker that ever ran (each event happened in exactly one);
    gauges cover running workers: open streams and watchers add up, follower lag and
    activity take the maximum. Every worker follows the files its clients watch, so each
    one sees the same rotations: rotations are the most any worker saw."""

    def __init__(self, snaps: list[Snapshot]) -> None:
        self.snaps = snaps

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snaps = self.snaps
        running = list(_running(snaps))
        names = sorted({n for s in snaps for n in s["streams"]})

        g = GaugeMetricFamily("logtail_workers", "Worker processes reporting")
        g.add_metric([], len(running))
        yield g
        g = GaugeMetricFamily("logtail_streams_open", "Open streams", labels=["file"])
        for name in names:
            g.add_metric([name], _sum(running, "streams", name, "open"))
        yield g
        for key, (metric, help_text) in STREAM_COUNTERS.items():
            c = CounterMetricFamily(metric, help_text, labels=["file"])
            for name in names:
                c.add_metric([name], _sum(snaps, "streams", name, key))
            yield c
        notices: Counter[tuple[str, str]] = Counter()
        for s in snaps:
            for name, st in s["streams"].items():
                for event, n in st["notices"].items():
                    notices[(name, event)] += n
        c = CounterMetricFamily("logtail_notices", "Notices sent on streams (rotated, "
                                "truncated, missing, reset, dropped, bye)",
                                labels=["file", "event"])
        for (name, event), n in sorted(notices.items()):
            c.add_metric([name, event], n)
        yield c
        c = CounterMetricFamily("logtail_rotations", "Rotations and truncations seen by the "
                                "file's follower", labels=["file"])
        lag = GaugeMetricFamily("logtail_follower_lag_bytes",
                                "Bytes written to the file but not yet read", labels=["file"])
        active = GaugeMetricFamily("logtail_follower_active",
                                   "1 while someone watches the file", labels=["file"])
        for name in sorted({n for s in snaps for n in s["followers"]}):
            c.add_metric([name], _max(snaps, "followers", name, "rotations"))
            lag.add_metric([name], _max(running, "followers", name, "lag"))
            active.add_metric([name], _max(running, "followers", name, "active"))
        yield c
        yield lag
        yield active
        reasons: Counter[str] = Counter(dict.fromkeys(REJECTION_REASONS, 0))
        for s in snaps:
            reasons.update(s["rejections"])
        c = CounterMetricFamily("logtail_rejections", "Requests refused by limits or "
                                "authentication", labels=["reason"])
        for reason, n in sorted(reasons.items()):
            c.add_metric([reason], n)
        yield c
        requests: Counter[tuple[str, str]] = Counter()
        for s in snaps:
            for endpoint, status, n in s["requests"]:
                requests[(endpoint, str(status))] += n
        c = CounterMetricFamily("logtail_http_requests", "HTTP requests answered",
                                labels=["endpoint", "status"])
        for (endpoint, status), n in sorted(requests.items()):
            c.add_metric([endpoint, status], n)
        yield c
        c = CounterMetricFamily("logtail_watcher_restarts", "Directory watcher restarts")
        c.add_metric([], sum(s["watcher_restarts"] for s in snaps))
        yield c
        g = GaugeMetricFamily("logtail_watchers", "Directory watchers running")
        g.add_metric([], sum(s["watchers"] for s in running))
        yield g
        g = GaugeMetricFamily("logtail_watchers_dead", "Directory watchers that failed "
                              "(healthz fails while any is dead)")
        g.add_metric([], sum(len(s["dead_watchers"]) for s in running))
        yield g
        yield from _fleet([s["fleet"] for s in snaps if s.get("fleet")],
                          [s["fleet"] for s in running if s.get("fleet")])


def _fleet(all_: list[dict[str, Any]], running: list[dict[str, Any]]
           ) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """Series of the shipped files (`[fleet]`), when served: see `Fleet.stats`."""
    if not all_:
        return
    g = GaugeMetricFamily("logtail_fleet_files", "Shipped files listed in Redis")
    g.add_metric([], max((f["files"] for f in running), default=0))
    yield g
    g = GaugeMetricFamily("logtail_fleet_readers", "Redis readers running (one per "
                          "shipped file followed, per worker)")
    g.add_metric([], sum(f["readers"] for f in running))
    yield g
    g = GaugeMetricFamily("logtail_fleet_up", "1 while Redis answers the fleet's reads")
    g.add_metric([], min((f["up"] for f in running), default=0))
    yield g
    c = CounterMetricFamily("logtail_fleet_redis_errors", "Failed reads of Redis (lists "
                            "and stream reads)")
    c.add_metric([], sum(f["redis_errors"] for f in all_))
    yield c
    c = CounterMetricFamily("logtail_fleet_bad_entries", "Stream entries that are not "
                            "what a shipper writes, skipped")
    c.add_metric([], sum(f["bad_entries"] for f in all_))
    yield c
    g = GaugeMetricFamily("logtail_fleet_bad_keys", "Keys under the prefix that are not a "
                          "shipper's stream, ignored")
    g.add_metric([], max((f["bad_keys"] for f in running), default=0))
    yield g
    g = GaugeMetricFamily("logtail_fleet_host_last_seen_seconds", "When each host's "
                          "shipper last reached Redis (Unix time)", labels=["host"])
    hosts: dict[str, float] = {}
    for f in running:
        for host, seen in f["hosts"].items():
            hosts[host] = max(hosts.get(host, 0.0), seen)
    for host, seen in sorted(hosts.items()):
        g.add_metric([host], seen)
    yield g
    for key, (metric, help_text) in SHIPPER_SERIES.items():
        g = GaugeMetricFamily(metric, help_text, labels=["host", "file"])
        latest: dict[tuple[str, str], float] = {}
        for f in running:
            for host, files in f["shippers"].items():
                for name, values in files.items():
                    if key in values:
                        latest[(host, name)] = values[key]
        for (host, name), v in sorted(latest.items()):
            g.add_metric([host, name], v)
        yield g


def _values(snaps: Iterable[Snapshot], section: str, name: str, key: str) -> list[float]:
    return [s[section][name][key] for s in snaps if name in s[section]]


def _sum(snaps: Iterable[Snapshot], section: str, name: str, key: str) -> float:
    return sum(_values(snaps, section, name, key))


def _max(snaps: Iterable[Snapshot], section: str, name: str, key: str) -> float:
    return max(_values(snaps, section, name, key), default=0)
