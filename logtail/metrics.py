"""Prometheus metrics, computed when scraped.

Streams count into plain StreamStats objects; this collector sums them (live streams plus
the totals of finished ones) only when /metrics is read, so the hot path pays nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from logtail.stream import StreamStats

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Metrics:
    """Counters a worker keeps; `followers` and `registry` are read at scrape time."""

    followers: dict = field(default_factory=dict)
    watchers: object = None
    live: dict[str, set[StreamStats]] = field(default_factory=dict)
    finished: dict[str, StreamStats] = field(default_factory=dict)
    rejections: Counter[str] = field(default_factory=Counter)
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)

    def stream_started(self, name: str, stats: StreamStats) -> None:
        self.live.setdefault(name, set()).add(stats)

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

    def reject(self, reason: str) -> None:
        self.rejections[reason] += 1

    def render(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return generate_latest(registry)


class _Collector(Collector):
    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        m = self.m
        names = sorted(m.followers)
        sums: dict[str, dict[str, float]] = {}
        notices: dict[tuple[str, str], int] = {}
        for name in names:
            parts = [*m.live.get(name, ()), m.finished.get(name, StreamStats())]
            sums[name] = {
                "lines": sum(s.lines for s in parts), "bytes": sum(s.bytes for s in parts),
                "batches": sum(s.batches for s in parts),
                "heartbeats": sum(s.heartbeats for s in parts),
                "dropped": sum(s.dropped for s in parts),
                "resumes": sum(int(s.resumed) for s in parts),
            }
            for s in parts:
                for k, v in s.notices.items():
                    notices[(name, k)] = notices.get((name, k), 0) + v

        open_streams = GaugeMetricFamily("logtail_streams_open", "Open streams", labels=["file"])
        for name in names:
            open_streams.add_metric([name], len(m.live.get(name, ())))
        yield open_streams
        for key, help_text in [("lines", "Log lines sent"), ("bytes", "Bytes sent on streams"),
                               ("batches", "Batches (events) sent"),
                               ("heartbeats", "Heartbeats sent"),
                               ("dropped", "Lines reported lost to clients (dropped events)"),
                               ("resumes", "Streams started with a Last-Event-ID")]:
            fam = CounterMetricFamily(f"logtail_{key}_sent" if key in ("lines", "bytes", "batches")
                                      else f"logtail_{key}", help_text, labels=["file"])
            for name in names:
                fam.add_metric([name], sums[name][key])
            yield fam
        fam = CounterMetricFamily("logtail_notices", "Notices sent", labels=["file", "event"])
        for (name, event), v in sorted(notices.items()):
            fam.add_metric([name, event], v)
        yield fam
        fam = CounterMetricFamily("logtail_rotations", "Rotations and truncations seen",
                                  labels=["file"])
        lag = GaugeMetricFamily("logtail_follower_lag_bytes",
                                "Bytes written but not yet read by the follower", labels=["file"])
        active = GaugeMetricFamily("logtail_follower_active", "1 while someone watches the file",
                                   labels=["file"])
        for name in names:
            f = m.followers[name]
            fam.add_metric([name], f.rotations)
            active.add_metric([name], 1 if f.active else 0)
            lag.add_metric([name], f.lag_bytes())
        yield fam
        yield lag
        yield active
        fam = CounterMetricFamily("logtail_rejections", "Requests refused by limits",
                                  labels=["reason"])
        for reason, v in sorted(m.rejections.items()):
            fam.add_metric([reason], v)
        yield fam
        watchers = getattr(m.watchers, "watchers", {})
        fam = CounterMetricFamily("logtail_watcher_restarts", "Directory watcher restarts")
        fam.add_metric([], sum(w.restarts for w in watchers.values()))
        yield fam
        g = GaugeMetricFamily("logtail_watchers", "Directory watchers running")
        g.add_metric([], len(watchers))
        yield g
