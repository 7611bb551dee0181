"""Turn bench/out/results.json into bench/RESULTS.md and PNG plots.

    python bench/report.py            # re-render from the last run's raw results

Every figure is the median over repeated runs, with the spread [min-max] across runs and
the number of runs; a run that lost or reordered a line, or whose client failed, counts
as failed and is shown, never averaged in.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
NAMES = {"logtail": "logtail", "frontail": "frontail", "tail": "tail -F"}


def runs(data: dict, scenario: str, key: str, system: str) -> list[dict]:
    return data["results"].get(scenario, {}).get(key, {}).get(system, [])


def values(rs: list[dict], metric: str) -> list[float]:
    return [r[metric] for r in rs if r.get("ok") and isinstance(r.get(metric), (int, float))
            and not math.isnan(r[metric])]


def med(rs: list[dict], metric: str) -> float | None:
    v = values(rs, metric)
    return statistics.median(v) if v else None


def fmt_num(x: float) -> str:
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 100_000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def cell(rs: list[dict], metric: str, scale: float = 1.0) -> str:
    if not rs:
        return "—"
    v = [x * scale for x in values(rs, metric)]
    failed = sum(1 for r in rs if not r.get("ok"))
    note = f" ✗{failed}/{len(rs)} failed" if failed else ""
    if not v:
        return f"failed{note}"
    m = statistics.median(v)
    spread = f" [{fmt_num(min(v))}–{fmt_num(max(v))}]" if len(v) > 1 else ""
    return f"**{fmt_num(m)}**{spread} n={len(v)}{note}"


class Table:
    """metric | target | logtail | frontail | tail -F | logtail ÷ frontail | verdict"""

    def __init__(self, data: dict) -> None:
        self.data = data
        self.rows: list[str] = [
            "| metric | target | logtail | frontail | tail -F | logtail ÷ frontail | verdict |",
            "|---|---|---|---|---|---|---|",
        ]

    def add(self, label: str, scenario: str, key: str, metric: str, *, scale: float = 1.0,
            target: str = "", check: Callable[[float], bool] | None = None,
            lower_better: bool = True, vs_frontail: bool = False) -> None:
        d = self.data
        cells = [cell(runs(d, scenario, key, s), metric, scale) for s in NAMES]
        lt = med(runs(d, scenario, key, "logtail"), metric)
        fr = med(runs(d, scenario, key, "frontail"), metric)
        ratio = f"{lt / fr:.2f}×" if lt is not None and fr else "—"
        verdict = []
        failed = [r for r in runs(d, scenario, key, "logtail") if not r.get("ok")]
        if failed:
            verdict.append("✗ logtail runs failed")
        if check is not None and lt is not None:
            verdict.append("✓ target" if check(lt * scale) else "✗ target")
        if vs_frontail and lt is not None and fr is not None:
            ahead = lt <= fr if lower_better else lt >= fr
            verdict.append("✓ vs frontail" if ahead else "✗ vs frontail")
        arrow = "↓" if lower_better else "↑"
        self.rows.append(f"| {label} {arrow} | {target} | {' | '.join(cells)} | {ratio} | "
                         f"{', '.join(verdict)} |")

    def section(self, title: str) -> None:
        self.rows.append(f"| **{title}** | | | | | | |")


def main_table(data: dict) -> list[str]:
    t = Table(data)
    t.section("1. Backlog: last 1,000 lines, time to the last one (ms)")
    for size in ("1MB", "100MB", "1GB", "4GB"):
        t.add(f"{size} file", "backlog", size, "backlog_ms")
    if flatness(data):
        t.add("flatness: 4 GB ÷ 1 MB (per run)", "_derived", "flatness", "ratio",
              target="≤ 1.5", check=lambda v: v <= 1.5)
    t.section("2. Latency, append → client, one client (ms)")
    for rate in ("10/s", "100/s", "1000/s", "10000/s"):
        low = rate != "10000/s"
        t.add(f"p50 at {rate}", "latency", rate, "p50_ms", target="≤ 3" if low else "",
              check=(lambda v: v <= 3) if low else None, vs_frontail=True)
        t.add(f"p99 at {rate}", "latency", rate, "p99_ms", target="≤ 15" if low else "",
              check=(lambda v: v <= 15) if low else None, vs_frontail=True)
    t.section("3. Throughput, one client, writer flat out")
    t.add("lines/s delivered, zero loss", "throughput", "max", "lines_per_s",
          target="≥ 500,000", check=lambda v: v >= 500_000, lower_better=False,
          vs_frontail=True)
    t.add("server CPU s per million lines", "throughput", "max", "cpu_s_per_mlines",
          vs_frontail=True)
    t.section("4. Fan-out at 100 lines/s")
    for n in ("100", "1000", "2000"):
        at1k = n == "1000"
        t.add(f"{n} clients: p50 ms", "fanout", n, "p50_ms", vs_frontail=True)
        t.add(f"{n} clients: p99 ms", "fanout", n, "p99_ms", target="≤ 100" if at1k else "",
              check=(lambda v: v <= 100) if at1k else None, vs_frontail=True)
        t.add(f"{n} clients: server CPU (cores)", "fanout", n, "server_cores",
              target="≤ 1" if at1k else "", check=(lambda v: v <= 1) if at1k else None,
              vs_frontail=True)
        t.add(f"{n} clients: server peak RSS (MB)", "fanout", n, "hwm_mb",
              target="≤ 300" if at1k else "", check=(lambda v: v <= 300) if at1k else None,
              vs_frontail=True)
    t.section("5. Idle streams (heartbeat every 5 s)")
    for key in data["results"].get("idle", {}):
        t.add(f"{key} streams: RSS per stream (KB)", "idle", key, "kb_per_stream",
              target="≤ 30", check=lambda v: v <= 30, vs_frontail=True)
        t.add(f"{key} streams: CPU at rest (% of a core)", "idle", key, "cores", scale=100,
              vs_frontail=True)
        t.add(f"{key} streams: server RSS (MB)", "idle", key, "rss_mb", vs_frontail=True)
    t.section("6. Filtered stream, writer flat out (input lines/s, 10 % match)")
    t.add("substring `q=error`", "filter", "substring", "lines_per_s", lower_better=False)
    t.add("regex `ERROR svc=\\w+ user=\\d+`", "filter", "regex", "lines_per_s",
          lower_better=False)
    t.section("7. CPU at rest (% of a core)")
    t.add("no client ever", "rest", "no clients", "cores", scale=100, target="≈ 0",
          check=lambda v: v < 0.1)
    t.add("no client, after the last one left", "rest", "no clients",
          "cores_after_client_left", scale=100, target="≈ 0", check=lambda v: v < 0.1)
    rest = data["results"].get("rest", {})
    quiet_ref = {s: rest.get("quiet", {}).get(s, []) for s in ("frontail", "tail")}
    for key in [k for k in rest if k == "inotify" or k.startswith("step=")]:
        rest[key].update({s: v for s, v in quiet_ref.items() if v})
        label = ("inotify backend (default)" if key == "inotify"
                 else f"watchfiles backend, {key} ms")
        t.add(f"one client, quiet log, 1 directory: {label}", "rest", key, "cores",
              scale=100, target="≤ 2", check=lambda v: v <= 2)
    return t.rows


def flatness(data: dict) -> bool:
    """Per run and system: backlog time on the 4 GB file ÷ on the 1 MB file."""
    back = data["results"].get("backlog", {})
    out: dict[str, list[dict]] = {}
    for s in NAMES:
        small, big = back.get("1MB", {}).get(s, []), back.get("4GB", {}).get(s, [])
        out[s] = [{"ok": a.get("ok") and b.get("ok"), "ratio": b["backlog_ms"] / a["backlog_ms"]}
                  for a, b in zip(small, big, strict=False)
                  if a.get("backlog_ms") and b.get("backlog_ms")]
    data["results"].setdefault("_derived", {})["flatness"] = out
    return any(out.values())


def step_table(data: dict) -> list[str]:
    rest = data["results"].get("rest", {})
    rows = ["| logtail watch backend | CPU at rest, 1 client (% core) | p50 ms at 100 lines/s "
            "| p99 ms |", "|---|---|---|---|"]
    keys = ["inotify"] if "inotify" in rest else []
    keys += sorted((k for k in rest if k.startswith("step=")), key=lambda k: int(k[5:]))
    for key in keys:
        rs = rest[key].get("logtail", [])
        label = "inotify (default)" if key == "inotify" else f"watchfiles, step_ms = {key[5:]}"
        rows.append(f"| {label} | {cell(rs, 'cores', 100)} | "
                    f"{cell(rs, 'p50_ms')} | {cell(rs, 'p99_ms')} |")
    for s in ("frontail", "tail"):
        rs = rest.get("quiet", {}).get(s, [])
        if rs:
            rows.append(f"| {NAMES[s]} (reference) | {cell(rs, 'cores', 100)} | "
                        f"{cell(rs, 'p50_ms')} | {cell(rs, 'p99_ms')} |")
    return rows


def loadgen_table(data: dict) -> list[str]:
    rows = ["| scenario | system | load generator CPU (cores) | writer CPU s | server CPU "
            "(cores) | other processes (cores) |", "|---|---|---|---|---|---|"]
    for scenario in ("latency", "throughput", "fanout", "filter"):
        for key, systems in data["results"].get(scenario, {}).items():
            for s, rs in systems.items():
                if not values(rs, "loadgen_cores"):
                    continue
                rows.append(f"| {scenario} {key} | {NAMES[s]} | {cell(rs, 'loadgen_cores')} |"
                            f" {cell(rs, 'writer_cpu_s')} | {cell(rs, 'server_cores')} |"
                            f" {cell(rs, 'others_cores')} |")
    for key, systems in data["results"].get("idle", {}).items():
        for s, rs in systems.items():
            rows.append(f"| idle {key} | {NAMES[s]} | {cell(rs, 'loadgen_cores')} | — |"
                        f" {cell(rs, 'cores')} | — |")
    return rows


def failures(data: dict) -> list[str]:
    out = []
    for scenario, keys in data["results"].items():
        for key, systems in keys.items():
            for s, rs in systems.items():
                for i, r in enumerate(rs):
                    if not r.get("ok", True):
                        errs = "; ".join(str(e) for e in r.get("errors", []))[:300]
                        extra = {k: r[k] for k in ("delivered", "expected", "short_conns",
                                                   "seq_errors", "failed_conns", "late_start",
                                                   "streams", "lost_conns") if k in r}
                        out.append(f"- {scenario} {key} {NAMES.get(s, s)} run {i + 1}: "
                                   f"{extra} {errs}")
    return out


# -- plots --------------------------------------------------------------------------------------

def plots(data: dict, lat_path: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return []
    made = []
    colors = {"logtail": "tab:blue", "frontail": "tab:orange", "tail": "tab:green"}
    lat = dict(np.load(lat_path)) if lat_path.exists() else {}

    rates = [r for r in ("10/s", "100/s", "1000/s", "10000/s") if f"latency|{r}|logtail" in lat]
    if rates:
        fig, axes = plt.subplots(1, len(rates), figsize=(4.2 * len(rates), 3.8), sharey=True)
        for ax, rate in zip(np.atleast_1d(axes), rates, strict=True):
            for s in NAMES:
                v = lat.get(f"latency|{rate}|{s}")
                if v is None or not v.size:
                    continue
                v = np.sort(np.maximum(v, 1e-3))
                ax.plot(v, np.arange(1, v.size + 1) / v.size, label=NAMES[s], color=colors[s])
            ax.set_xscale("log")
            ax.set_title(f"{rate} lines/s")
            ax.set_xlabel("append → client latency (ms)")
            ax.axvline(3, color="grey", ls=":", lw=0.8)
            ax.axvline(15, color="grey", ls="--", lw=0.8)
            ax.grid(alpha=0.3)
        np.atleast_1d(axes)[0].set_ylabel("fraction of lines (CDF, all runs)")
        np.atleast_1d(axes)[0].legend()
        fig.tight_layout()
        fig.savefig(BENCH / "latency_cdf.png", dpi=90)
        plt.close(fig)
        made.append("latency_cdf.png")

    fan = data["results"].get("fanout", {})
    if fan:
        ns = sorted(fan, key=int)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
        for s in ("logtail", "frontail"):
            xs = [int(n) for n in ns if med(fan[n].get(s, []), "p50_ms") is not None]
            if not xs:
                continue
            for metric, ls in (("p50_ms", "-"), ("p99_ms", "--")):
                a1.plot(xs, [med(fan[str(n)][s], metric) for n in xs], ls, marker="o",
                        color=colors[s], label=f"{NAMES[s]} {metric[:3]}")
            a2.plot(xs, [med(fan[str(n)][s], "server_cores") for n in xs], marker="o",
                    color=colors[s], label=NAMES[s])
        a1.set_yscale("log")
        a1.axhline(100, color="grey", ls=":", lw=0.8)
        a1.set(xlabel="SSE / socket.io clients (100 lines/s)", ylabel="latency (ms)",
               title="latency vs clients")
        a2.axhline(1, color="grey", ls=":", lw=0.8)
        a2.set(xlabel="clients", ylabel="server CPU (cores)", title="server CPU vs clients")
        for a in (a1, a2):
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(BENCH / "fanout.png", dpi=90)
        plt.close(fig)
        made.append("fanout.png")

    rest = data["results"].get("rest", {})
    steps = sorted(int(k.split("=")[1]) for k in rest if k.startswith("step="))
    if steps:
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        rs = [rest[f"step={s}"].get("logtail", []) for s in steps]
        ax.plot(steps, [med(r, "p50_ms") for r in rs], "o-", label="p50 latency (ms)")
        ax.plot(steps, [med(r, "p99_ms") for r in rs], "o--", label="p99 latency (ms)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("watchfiles step_ms")
        ax.set_ylabel("latency at 100 lines/s (ms)")
        ax2 = ax.twinx()
        ax2.plot(steps, [(med(r, "cores") or 0) * 100 for r in rs], "s-", color="tab:red",
                 label="CPU at rest, 1 client (% core)")
        ax2.set_ylabel("% of a core at rest")
        ax2.axhline(2, color="tab:red", ls=":", lw=0.8)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center")
        ax.grid(alpha=0.3)
        ax.set_title("watchfiles backend: step vs latency and CPU at rest")
        ino = rest.get("inotify", {}).get("logtail", [])
        if med(ino, "p50_ms") is not None:
            ax.axhline(med(ino, "p50_ms"), color="tab:blue", ls=":", lw=1)
            ax.annotate(f"inotify backend: p50 {med(ino, 'p50_ms'):.2f} ms, "
                        f"{(med(ino, 'cores') or 0) * 100:.2f} % core",
                        (steps[0], med(ino, "p50_ms")), fontsize=8, color="tab:blue",
                        xytext=(0, 4), textcoords="offset points")
        fig.tight_layout()
        fig.savefig(BENCH / "step_tradeoff.png", dpi=90)
        plt.close(fig)
        made.append("step_tradeoff.png")
    return made


def background(data: dict) -> str:
    bg = [r["bg_cores"] for keys in data["results"].values() for systems in keys.values()
          for rs in systems.values() for r in rs if isinstance(r.get("bg_cores"), float)]
    if not bg:
        return "- background load: not recorded"
    busy = sum(1 for b in bg if b > 0.3)
    return (f"- other processes on the machine, just before each phase: median "
            f"{statistics.median(bg):.2f} cores, max {max(bg):.2f}; {busy} of {len(bg)} phases "
            f"started with > 0.3 core busy elsewhere (the run waits up to 30 s for quiet, "
            f"{data['meta'].get('quiet_waited_s', 0):.0f} s waited in all)")


def write(data: dict, lat_path: Path = OUT / "latencies.npz") -> Path:
    meta = data["meta"]
    v = meta["versions"]
    m = meta["machine"]
    made = plots(data, lat_path)
    lines = [
        "# logtail benchmark results",
        "",
        "Written by `make bench` (`bench/run.py`; see bench/README.md for what each scenario "
        "does and how). logtail, frontail and GNU `tail -F` were measured side by side in one "
        "run on this machine, over loopback.",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; run {m['date']}, "
        f"{meta['seconds'] / 60:.1f} min{' (--quick)' if meta['quick'] else ''}",
        f"- logtail at {m['commit']}; Python {v.get('python')}, Sanic {v.get('sanic')}, "
        f"watchfiles {v.get('watchfiles')}, uvloop {v.get('uvloop')}",
        f"- frontail {v.get('frontail', '—')} on Node {v.get('node', '—')}; "
        f"{v.get('tail', 'tail')}",
        f"- each figure: **median** [min–max] over n runs ({meta['reps']} repeats; backlog "
        "figures are each a run's median of many requests). ↓ lower is better, ↑ higher.",
        background(data),
        "- every client must get every line: each line carries a sequence number, and a run "
        "with a missing, repeated or reordered line, or a client that could not connect, is "
        "marked failed (✗) and left out of the median.",
        "",
        *main_table(data),
        "",
    ]
    if made:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in made] + [""]
    lines += ["## Watch backend and step: latency vs CPU at rest (scenario 7)", "",
              "One client on a quiet log in one watched directory; CPU measured over the quiet "
              "period, then latency at 100 lines/s on the same server. `[watch] backend = "
              "\"auto\"` uses inotify on the event loop (no thread, no polling); the watchfiles "
              "backend (the fallback where inotify is unavailable) sleeps `step_ms` between "
              "checks: latency ≈ 2 × step, CPU at rest ∝ 1/step.", "",
              *step_table(data), ""]
    lines += ["## Load generator check", "",
              "The clients and the writer are separate processes; their CPU is measured the "
              "same way as the server's. On 2 cores, a load generator well under 1 core "
              "leaves the server its core. \"Other processes\" is what the rest of this "
              "shared machine used during the phase (total busy minus ours).", "",
              *loadgen_table(data), ""]
    fails = failures(data)
    lines += ["## Failed runs", ""] + (fails or ["None."]) + [""]
    if data.get("viewer"):
        lines += ["## Viewer (bench/viewer_bench.py)", "", data["viewer"].strip(), ""]
    path = BENCH / "RESULTS.md"
    path.write_text("\n".join(lines))
    return path


def main() -> int:
    data = json.loads((OUT / "results.json").read_text())
    print(write(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
