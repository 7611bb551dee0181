"""Compare logtail's figures between two result files (e.g. before and after a change).

    python bench/compare.py bench/out/results-base.json bench/out/results-proto.json
    python bench/compare.py out/results-a1.json,out/results-a2.json out/results-b1.json

Prints one row per scenario/metric: median [min-max] of each file, and the ratio.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

METRICS = {
    "latency": ("p50_ms", "p99_ms", "server_cores"),
    "throughput": ("lines_per_s", "cpu_s_per_mlines"),
    "fanout": ("p50_ms", "p99_ms", "server_cores", "hwm_mb"),
    "idle": ("kb_per_stream", "cores"),
    "filter": ("lines_per_s", "cpu_s_per_mlines"),
    "rest": ("cores", "cores_after_client_left", "p50_ms", "p99_ms"),
    "backlog": ("backlog_ms",),
}


def figure(rs: list[dict], metric: str) -> tuple[str, float | None]:
    v = [r[metric] for r in rs if r.get("ok") and isinstance(r.get(metric), (int, float))]
    if not v:
        return "—", None
    m = statistics.median(v)
    return f"{m:.4g} [{min(v):.3g}-{max(v):.3g}] n={len(v)}", m


def load(paths: str) -> dict:
    """One result file, or several (comma-separated) whose runs are pooled."""
    merged: dict = {}
    for p in paths.split(","):
        for scenario, keys in json.loads(Path(p).read_text())["results"].items():
            for key, systems in keys.items():
                for system, rs in systems.items():
                    merged.setdefault(scenario, {}).setdefault(key, {}).setdefault(
                        system, []).extend(rs)
    return merged


def main() -> int:
    a, b = load(sys.argv[1]), load(sys.argv[2])
    system = sys.argv[3] if len(sys.argv) > 3 else "logtail"
    name_a, name_b = (Path(p.split(",")[0]).stem for p in sys.argv[1:3])
    print(f"| scenario | metric | {name_a} | {name_b} | ratio |")
    print("|---|---|---|---|---|")
    for scenario, metrics in METRICS.items():
        for key in sorted(set(a.get(scenario, {})) | set(b.get(scenario, {}))):
            for metric in metrics:
                fa, ma = figure(a.get(scenario, {}).get(key, {}).get(system, []), metric)
                fb, mb = figure(b.get(scenario, {}).get(key, {}).get(system, []), metric)
                if ma is None and mb is None:
                    continue
                ratio = f"{mb / ma:.2f}×" if ma and mb is not None else "—"
                print(f"| {scenario} {key} | {metric} | {fa} | {fb} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
