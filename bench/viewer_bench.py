#!/usr/bin/env python3
"""Viewer benchmark: a log growing at 5,000 lines/s, watched in headless Chromium.

Measures, after the page has loaded and gone live:
- the longest main-thread task (from a Chromium trace of the renderer's main thread, and
  the `longtask` PerformanceObserver, which only reports tasks over 50 ms);
- filter keystroke to repaint with 100,000 lines retained, typed while lines stream in
  (keydown timestamp to the first task after the next animation frame), several queries;
- the JS heap over time and at the end (CDP `Runtime.getHeapUsage`, before and after GC);
- whether the page kept up: lines written, received, retained, evicted.

Writes bench/out/viewer.json and bench/out/viewer.md, and screenshots of both themes to
docs/screenshots/. Usage: python bench/viewer_bench.py [--seconds 60] [--rate 5000]
[--only-screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from helpers import ServerProcess, free_port, toml_config  # noqa: E402
from playwright.async_api import Browser, Page, async_playwright  # noqa: E402
from viewer_support import launch  # noqa: E402

from logtail.demo import demo_line  # noqa: E402

CAP = 100_000
QUERIES = [("error", False), ("payment", False), ("GET /api", False), ("user 4", False),
           ("warn", False), (r"\d{4,} ms|declined", True)]

# Installed before the page's own scripts (through the DevTools protocol, so CSP allows it).
INSTRUMENT = """
window.__bench = {longtasks: [], events: [], keys: [], maxGap: 0, gaps: 0, measuring: false};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) __bench.longtasks.push([e.startTime, e.duration]);
}).observe({type: "longtask", buffered: true});
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.name === "keydown" || e.name === "input" || e.name === "keypress")
        __bench.events.push([e.name, e.startTime, e.duration]);
    }
  }).observe({type: "event", durationThreshold: 16, buffered: true});
} catch (e) {}
let last = 0;
function frame(t) {
  if (last && __bench.measuring) {
    const gap = t - last;
    if (gap > __bench.maxGap) __bench.maxGap = gap;
    if (gap > 50) __bench.gaps++;
  }
  last = t;
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
"""

# Keystroke to repaint: keydown's timestamp, to a task posted from an animation frame
# callback that runs after the app's own render (so after the frame is produced). The
# filter pass runs newest lines first in short slices, so the screen can be right before
# the whole buffer is done: "done" is when the count stops saying "filtering…".
KEY_PROBE = """
() => {
  const input = document.getElementById("filter");
  const count = document.getElementById("count");
  const afterPaint = (fn) => requestAnimationFrame(() => {
    const ch = new MessageChannel();
    ch.port1.onmessage = fn;
    ch.port2.postMessage(0);
  });
  let waiting = null;
  new MutationObserver(() => {
    if (waiting && !count.textContent.startsWith("filtering")) {
      const rec = waiting;
      waiting = null;
      afterPaint(() => { rec.done = performance.now() - rec.t0; });
    }
  }).observe(count, {childList: true, characterData: true, subtree: true});
  input.addEventListener("keydown", (e) => { __bench.pendingKey = e.timeStamp; }, true);
  input.addEventListener("input", () => {
    const t0 = __bench.pendingKey;
    __bench.pendingKey = undefined;
    if (t0 === undefined) return;
    const rec = {value: input.value, t0, paint: null, done: null};
    __bench.keys.push(rec);
    afterPaint(() => {
      rec.paint = performance.now() - t0;
      if (!count.textContent.startsWith("filtering")) rec.done = rec.paint;
      else waiting = rec;
    });
  });
}
"""


class Writer(threading.Thread):
    """Appends `rate` lines/s in 10 ms slices, on absolute deadlines (no drift)."""

    def __init__(self, path: Path, rate: int, pool: list[str]) -> None:
        super().__init__(daemon=True)
        self.path, self.rate, self.pool = path, rate, pool
        self.written = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        slice_s = 0.01
        with open(self.path, "a", encoding="utf-8") as f:
            tick = 0
            while not self.stop_event.is_set():
                tick += 1
                due = int(self.rate * tick * slice_s)
                n = due - self.written
                if n > 0:
                    lines = [self.pool[(self.written + i) % len(self.pool)] for i in range(n)]
                    f.write("".join(f"{ln}\n" for ln in lines))
                    f.flush()
                    self.written += n
                delay = start + tick * slice_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)


def line_pool(seed: int = 7, size: int = 20_000) -> list[str]:
    rng = random.Random(seed)
    return [demo_line(rng) for _ in range(size)]


@contextlib.contextmanager
def server(tmp: Path, extra: str = "") -> Iterator[ServerProcess]:
    config = toml_config(tmp, {"app": "app.log"}, extra)
    proc = ServerProcess(["-c", str(config)], free_port())
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"n": len(values), "median": round(statistics.median(values), 1),
            "p90": round(p90, 1), "min": round(ordered[0], 1), "max": round(ordered[-1], 1),
            "stdev": round(statistics.pstdev(values), 1)}


async def counts(page: Page) -> dict[str, int]:
    return await page.evaluate("""() => {
      const num = (s) => Number((s.match(/[\\d,]+/) || ["0"])[0].replace(/,/g, ""));
      const retained = num(document.getElementById("count").textContent);
      const ev = document.getElementById("evicted");
      const evicted = ev.hidden ? 0 : num(ev.textContent);
      return {retained, evicted, received: retained + evicted};
    }""")


async def main_thread(cdp: Any) -> dict[str, float]:
    """Cumulative main-thread time (s) by kind, and a wall clock, from the DevTools protocol."""
    got = {m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]}
    keys = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")
    return {k: got.get(k, 0.0) for k in keys} | {"wall": time.monotonic()}


def busy(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    wall = end["wall"] - start["wall"]
    return {k.removesuffix("Duration").lower() + "_pct": round(100 * (end[k] - start[k]) / wall, 1)
            for k in start if k != "wall"}


async def renderer_rss_mb(browser: Browser) -> float | None:
    """Resident memory of the busiest renderer process (the page's), from /proc."""
    session = await browser.new_browser_cdp_session()
    try:
        info = await session.send("SystemInfo.getProcessInfo")
    finally:
        await session.detach()
    renderers = [p for p in info.get("processInfo", []) if p.get("type") == "renderer"]
    if not renderers:
        return None
    pid = max(renderers, key=lambda p: p.get("cpuTime", 0))["id"]
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


async def heap(cdp: Any) -> float:
    usage = await cdp.send("Runtime.getHeapUsage")
    return round(usage["usedSize"] / 2**20, 1)


def longest_task_from_trace(trace: bytes) -> dict[str, Any]:
    """Durations of tasks on the renderer's main thread (the page's JS, style, layout).

    Wall time is what a person feels; thread time (`tdur`) is what the page itself cost.
    On a busy 2-core machine the two differ by the time the thread waited for a core.
    """
    events = json.loads(trace)
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    mains = {(e["pid"], e["tid"]) for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"
             and e.get("args", {}).get("name") == "CrRendererMain"}
    per_thread: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in events:
        key = (e.get("pid"), e.get("tid"))
        if key in mains and e.get("ph") == "X" and e.get("name") in (
                "ThreadControllerImpl::RunTask", "RunTask") and "dur" in e:
            per_thread.setdefault(key, []).append(  # type: ignore[arg-type]
                (e["dur"] / 1000.0, e.get("tdur", e["dur"]) / 1000.0))
    if not per_thread:
        return {"tasks": 0}
    tasks = max(per_thread.values(), key=len)
    ordered = sorted(tasks)
    walls = [w for w, _ in ordered]
    return {"tasks": len(tasks), "max_ms": round(walls[-1], 1),
            "max_cpu_ms": round(max(c for _, c in tasks), 1),
            "longest_cpu_ms": round(ordered[-1][1], 1),
            "p99_ms": round(walls[int(0.99 * (len(walls) - 1))], 1),
            "over_50ms": sum(1 for w in walls if w > 50),
            "top5_ms": [round(w, 1) for w in walls[-5:][::-1]]}


async def type_queries(page: Page, keys_delay_ms: int) -> None:
    regex_on = False
    for query, regex in QUERIES:
        if regex != regex_on:
            await page.click("#opt-regex")
            regex_on = regex
        await page.fill("#filter", "")
        await page.wait_for_timeout(400)
        await page.locator("#filter").press_sequentially(query, delay=keys_delay_ms)
        await page.wait_for_timeout(400)
    await page.fill("#filter", "")
    if regex_on:
        await page.click("#opt-regex")


def machine_noise(seconds: float = 5.0) -> dict[str, Any]:
    """How much the CPU time of one fixed piece of work varies on this machine.

    A page's longest task is the tail of many similar renders; where the same work
    sometimes costs several times its median CPU time (a shared host), that tail grows
    with it. Measured before the browser starts, with nothing else of ours running.
    """
    def work() -> int:
        total = 0
        for i in range(20_000):
            total += i * i
        return total

    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.thread_time()
        work()
        times.append((time.thread_time() - start) * 1000)
    median = statistics.median(times)
    cuts = statistics.quantiles(times, n=1000, method="inclusive")
    p99, p999 = cuts[989], cuts[998]
    return {"n": len(times), "median_ms": round(median, 2), "p99_ms": round(p99, 2),
            "p999_ms": round(p999, 2), "max_ms": round(max(times), 2),
            "p999_over_median": round(p999 / median, 1)}


async def run_bench(browser: Browser, seconds: int, rate: int) -> dict[str, Any]:
    pool = line_pool()
    with tempfile.TemporaryDirectory() as d, server(Path(d)) as srv:
        tmp = Path(d)
        (tmp / "app.log").write_text("")
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        await context.add_init_script(INSTRUMENT)
        page = await context.new_page()
        cdp = await context.new_cdp_session(page)
        await cdp.send("Performance.enable")
        await page.goto(srv.base + "/")
        await page.wait_for_selector("#conn[data-state=live]", timeout=20_000)
        await page.evaluate(KEY_PROBE)
        await page.wait_for_timeout(1000)
        load_mark = await page.evaluate("performance.now()")
        await page.evaluate("__bench.measuring = true")
        await browser.start_tracing(page=page, categories=["toplevel", "__metadata"])
        metrics_start, load_start = await main_thread(cdp), os.getloadavg()
        rss_at_load = await renderer_rss_mb(browser)

        writer = Writer(tmp / "app.log", rate, pool)
        writer.start()
        t0 = time.monotonic()
        samples = []
        typed = False
        typed_at = None
        next_sample = 0.0
        while (elapsed := time.monotonic() - t0) < seconds:
            if elapsed >= next_sample:
                c = await counts(page)
                samples.append({"t": round(elapsed, 1), "written": writer.written,
                                **c, "heap_mb": await heap(cdp)})
                next_sample = (elapsed // 5 + 1) * 5
            if not typed and elapsed >= seconds * 0.4 and (await counts(page))["retained"] >= CAP:
                typed_at = round(elapsed, 1)
                await type_queries(page, keys_delay_ms=250)
                typed = True
            await asyncio.sleep(0.2)
        writer.stop_event.set()
        writer.join()
        trace = await browser.stop_tracing()
        metrics_end, load_end = await main_thread(cdp), os.getloadavg()
        written = writer.written
        caught_up = time.monotonic()
        while (await counts(page))["received"] < written and time.monotonic() - caught_up < 20:
            await asyncio.sleep(0.1)
        lag_s = round(time.monotonic() - caught_up, 2)
        final = await counts(page)
        bench = await page.evaluate("""(mark) => ({
          longtasks: __bench.longtasks.filter(([s]) => s >= mark).map(([, d]) => d),
          keys: __bench.keys, events: __bench.events, maxGap: __bench.maxGap,
          gaps: __bench.gaps,
          memory: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null})""",
                                    load_mark)
        rss = await renderer_rss_mb(browser)
        heap_before_gc = await heap(cdp)
        await cdp.send("HeapProfiler.enable")
        await cdp.send("HeapProfiler.collectGarbage")
        heap_after_gc = await heap(cdp)
        dom = await cdp.send("Memory.getDOMCounters")
        await context.close()

    keys = [k["paint"] for k in bench["keys"] if k["paint"] is not None]
    done = [k["done"] for k in bench["keys"] if k["done"] is not None]
    firsts = [k["paint"] for k in bench["keys"] if len(k["value"]) == 1 and k["paint"] is not None]
    return {
        "seconds": seconds, "rate_lines_per_s": rate, "cap": CAP,
        "lines": {"written": written, **final, "catch_up_after_writer_stopped_s": lag_s},
        "longest_task": longest_task_from_trace(trace),
        "longtask_observer": {"count": len(bench["longtasks"]),
                              "max_ms": round(max(bench["longtasks"]), 1)
                              if bench["longtasks"] else None},
        "longest_frame_gap_ms": round(bench["maxGap"], 1),
        "frame_gaps_over_50ms": bench["gaps"],
        "filter_keystroke_to_repaint_ms": {"all": summary(keys), "first_key_of_query": summary(
            firsts), "whole_buffer_filtered": summary(done), "typed_at_s": typed_at,
            "queries": [q for q, _ in QUERIES]},
        "event_timing_over_16ms": len(bench["events"]),
        "heap_mb": {"end_before_gc": heap_before_gc, "end_after_gc": heap_after_gc,
                    "performance_memory": round(bench["memory"], 1) if bench["memory"] else None,
                    "renderer_rss": rss, "renderer_rss_at_load": rss_at_load},
        "dom_counters_end": {k: dom.get(k) for k in ("documents", "nodes", "jsEventListeners")},
        "main_thread_busy": busy(metrics_start, metrics_end),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load_start],
                    "loadavg_end": [round(x, 2) for x in load_end]},
        "samples": samples,
    }


def screenshot_tail(rng: random.Random, count: int = 12) -> list[str]:
    """Demo lines for the end of the screenshot, with an error in colour and a warning."""
    lines = [demo_line(rng) for _ in range(count)]
    picked: dict[str, str] = {}
    while len(picked) < 2:
        line = demo_line(rng)
        if "\x1b[31mERROR" in line:
            picked.setdefault("error", line)
        elif " WARN " in line:
            picked.setdefault("warn", line)
    lines[5], lines[9] = picked["error"], picked["warn"]
    return lines


async def screenshots(browser: Browser, out: Path) -> list[Path]:
    """The page with realistic content, in both themes, for a look by eye."""
    rng = random.Random(3)
    paths = []
    with tempfile.TemporaryDirectory() as d, server(Path(d), "[stream]\nbacklog_lines = 400\n") \
            as srv:
        log = Path(d) / "app.log"
        log.write_text("".join(demo_line(rng) + "\n" for _ in range(400)))
        out.mkdir(parents=True, exist_ok=True)
        pages = []
        for theme in ("dark", "light"):
            context = await browser.new_context(viewport={"width": 1280, "height": 720},
                                                color_scheme=theme)  # type: ignore[arg-type]
            page = await context.new_page()
            await page.goto(srv.base + "/#file=app")
            await page.wait_for_selector("#conn[data-state=live]", timeout=20_000)
            pages.append((theme, context, page))
        # rotate without a moment where the file is missing: both pages show one notice
        fresh = log.with_name("app.log.new")
        fresh.write_text("".join(ln + "\n" for ln in screenshot_tail(rng)))
        os.link(log, log.with_name("app.log.1"))
        os.replace(fresh, log)
        for theme, context, page in pages:
            await page.wait_for_selector("#rows .row.notice", timeout=20_000)
            await page.wait_for_timeout(500)
            path = out / f"viewer-{theme}.png"
            await page.screenshot(path=str(path))
            paths.append(path)
            await context.close()
    return paths


def markdown(r: dict[str, Any]) -> str:
    k = r["filter_keystroke_to_repaint_ms"]["all"]
    f = r["filter_keystroke_to_repaint_ms"]["first_key_of_query"]
    w = r["filter_keystroke_to_repaint_ms"]["whole_buffer_filtered"]
    lt = r["longest_task"]
    obs = r["longtask_observer"]
    lines = r["lines"]
    h = r["heap_mb"]
    peak = max(s["heap_mb"] for s in r["samples"]) if r["samples"] else None
    rows = [
        ("Longest main-thread task after load (trace)", "≤ 50 ms",
         f"{lt.get('max_ms')} ms ({lt.get('longest_cpu_ms')} ms of it on the CPU; p99 "
         f"{lt.get('p99_ms')} ms, {lt.get('tasks')} tasks, {lt.get('over_50ms')} over 50 ms; "
         f"most CPU in one task {lt.get('max_cpu_ms')} ms)"),
        ("`longtask` entries after load (PerformanceObserver)", "none",
         f"{obs['count']}" + (f" (longest {obs['max_ms']} ms)" if obs["max_ms"] else "")),
        ("Longest gap between animation frames", "—", f"{r['longest_frame_gap_ms']} ms"),
        (f"Filter keystroke → repaint, {r['cap']:,} lines retained", "≤ 50 ms",
         f"median {k.get('median')} ms, p90 {k.get('p90')}, min {k.get('min')}, "
         f"max {k.get('max')} (n={k.get('n')})"),
        ("… first key of a query (full scan)", "≤ 50 ms",
         f"median {f.get('median')} ms, max {f.get('max')} (n={f.get('n')})"),
        ("… until all 100,000 lines are filtered (count final)", "—",
         f"median {w.get('median')} ms, p90 {w.get('p90')}, max {w.get('max')} "
         f"(n={w.get('n')})"),
        ("JS heap at the end", "bounded by the cap",
         f"{h['end_before_gc']} MiB V8 heap ({h['end_after_gc']} MiB after GC; peak sample "
         f"{peak} MiB); `performance.memory` {h['performance_memory']} MiB; renderer process "
         f"RSS {h['renderer_rss_at_load']} MiB at load, {h['renderer_rss']} MiB at the end; "
         f"{r['dom_counters_end']['nodes']} DOM nodes after GC"),
        ("Main thread busy while streaming (task / script / layout / style)", "—",
         " / ".join(f"{v} %" for v in r["main_thread_busy"].values())),
        ("Lines written / received / retained", "all received",
         f"{lines['written']:,} / {lines['received']:,} / {lines['retained']:,} "
         f"(caught up {lines['catch_up_after_writer_stopped_s']} s after the writer stopped)"),
    ]
    m = r["machine"]
    noise = m.get("cpu_time_of_fixed_work")
    if noise:
        rows.append(("Machine: CPU time of one fixed piece of work, repeated (before the browser)",
                     "—", f"median {noise['median_ms']} ms, p99 {noise['p99_ms']}, p99.9 "
                     f"{noise['p999_ms']} ({noise['p999_over_median']}× the median), max "
                     f"{noise['max_ms']} (n={noise['n']:,})"))
    head = (f"Viewer: {r['rate_lines_per_s']:,} lines/s for {r['seconds']} s, headless "
            f"Chromium, cap {r['cap']:,} lines; {m['cpus']} CPUs, load average "
            f"{m['loadavg_start'][0]} at the start, {m['loadavg_end'][0]} at the end "
            f"(the server and the writer run on the same machine)\n\n"
            f"| measure | target | result |\n|---|---|---|\n")
    return head + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick = os.environ.get("BENCH_QUICK") == "1"  # bench/run.py --quick
    parser.add_argument("--seconds", type=int, default=30 if quick else 60)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--no-screenshots", action="store_true")
    parser.add_argument("--only-screenshots", action="store_true",
                        help="take the screenshots, skip the measurements")
    args = parser.parse_args()
    if args.only_screenshots:
        async with async_playwright() as pw:
            browser = await launch(pw)
            try:
                for path in await screenshots(browser, args.screenshots):
                    print(path)
            finally:
                await browser.close()
        return 0
    noise = machine_noise()  # before Chromium starts: the machine alone
    async with async_playwright() as pw:
        browser = await launch(pw, "--enable-precise-memory-info")
        try:
            result = await run_bench(browser, args.seconds, args.rate)
            result["machine"]["cpu_time_of_fixed_work"] = noise
            if not args.no_screenshots:
                shots = await screenshots(browser, args.screenshots)
                result["screenshots"] = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT)
                                         else str(p) for p in shots]
        finally:
            await browser.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "viewer.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (args.out / "viewer.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
