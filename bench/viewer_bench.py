#!/usr/bin/env python3
"""Viewer benchmark: logs growing at 5,000 lines/s in all, watched in headless Chromium.

By default 4 files at 1,250 lines/s each, merged in one view (one `api/stream`
connection, badges and the per-minute overview on); `--files 1` is the single-file view.
Each run measures, after the page has loaded and gone live:
- the longest main-thread task (from a Chromium trace of the renderer's main thread, and
  the `longtask` PerformanceObserver, which only reports tasks over 50 ms);
- filter keystroke to repaint with 100,000 lines retained, typed while lines stream in
  (keydown timestamp to the first task after the next animation frame), several queries;
- the JS heap over time and at the end (CDP `Runtime.getHeapUsage`, before and after GC);
- whether the page kept up: lines written, received, retained, evicted.

The runs are repeated (`--runs`, default 3) and reported as medians with their ranges.
`--profile` records a detailed trace (timeline events and V8's sampling profiler) instead,
and prints what the longest tasks spent their time on (bench/out/viewer-profile.json).

Writes bench/out/viewer.json and bench/out/viewer.md, screenshots of both themes to
docs/screenshots/ and one of a merged view to bench/viewer-merged.png.
Usage: python bench/viewer_bench.py [--seconds 60] [--rate 5000] [--files 4] [--runs 3]
[--profile] [--only-screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
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

from common import cpu_fields  # noqa: E402
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


STAMP_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
STAMP = "\x00"  # where a pool line's time goes


def now_stamp(t: float | None = None) -> str:
    t = time.time() if t is None else t
    ms = int(t * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


class Writer(threading.Thread):
    """Appends `rate` lines/s in all to `paths` (round robin) in 10 ms slices, on absolute
    deadlines (no drift), each line stamped with the time it is written."""

    def __init__(self, paths: list[Path], rate: int, pool: list[str]) -> None:
        super().__init__(daemon=True)
        self.paths, self.rate, self.pool = paths, rate, pool
        self.written = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        slice_s = 0.01
        files = [open(p, "a", encoding="utf-8") for p in self.paths]  # noqa: SIM115
        try:
            tick = 0
            while not self.stop_event.is_set():
                tick += 1
                due = int(self.rate * tick * slice_s)
                n = due - self.written
                if n > 0:
                    stamp = now_stamp()
                    chunks: list[list[str]] = [[] for _ in files]
                    for i in range(n):
                        k = self.written + i
                        chunks[k % len(files)].append(
                            self.pool[k % len(self.pool)].replace(STAMP, stamp))
                    for f, lines in zip(files, chunks, strict=True):
                        if lines:
                            f.write("".join(f"{ln}\n" for ln in lines))
                            f.flush()
                    self.written += n
                delay = start + tick * slice_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        finally:
            for f in files:
                f.close()


def line_pool(seed: int = 7, size: int = 20_000) -> list[str]:
    """Demo lines (levels, JSON, ANSI) with a placeholder for their time."""
    rng = random.Random(seed)
    return [STAMP_RE.sub(STAMP, demo_line(rng), count=1) for _ in range(size)]


def file_names(count: int) -> list[str]:
    return ["app"] if count == 1 else [f"app{i}" for i in range(count)]


def view_hash(names: list[str]) -> str:
    return "#" + "&".join(f"file={n}" for n in names)


@contextlib.contextmanager
def server(tmp: Path, extra: str = "", names: list[str] | None = None) -> Iterator[ServerProcess]:
    config = toml_config(tmp, {n: f"{n}.log" for n in names or ["app"]}, extra)
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


def trace_events(trace: bytes) -> tuple[list[dict[str, Any]], set[tuple[int, int]]]:
    events = json.loads(trace)
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    mains = {(e["pid"], e["tid"]) for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"
             and e.get("args", {}).get("name") == "CrRendererMain"}
    return events, mains


RUN_TASK = ("ThreadControllerImpl::RunTask", "RunTask")


def outer_tasks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks of one thread: RunTask events not nested in another (a task that runs a
    nested loop shows as two)."""
    spans = sorted((e for e in events if e.get("ph") == "X" and e.get("name") in RUN_TASK
                    and "dur" in e), key=lambda e: (e["ts"], -e["dur"]))
    out: list[dict[str, Any]] = []
    end = -1.0
    for e in spans:
        if e["ts"] >= end:
            out.append(e)
            end = e["ts"] + e["dur"]
    return out


def _nest(events: list[dict[str, Any]],
          field: str = "dur") -> list[tuple[dict[str, Any], float]]:
    """Complete events of one thread with their self time (µs): their duration less that of
    the events nested directly inside them."""
    spans = sorted((e for e in events if e.get("ph") == "X" and "dur" in e),
                   key=lambda e: (e["ts"], -e["dur"]))
    out: list[list[Any]] = []
    stack: list[list[Any]] = []
    for e in spans:
        while stack and stack[-1][0]["ts"] + stack[-1][0]["dur"] <= e["ts"]:
            stack.pop()
        item = [e, float(e.get(field, e["dur"]))]
        if stack:
            stack[-1][1] -= e.get(field, e["dur"])
        stack.append(item)
        out.append(item)
    return [(e, max(0.0, own)) for e, own in out]


def _label(e: dict[str, Any]) -> str:
    data = e.get("args", {}).get("data", {}) or {}
    name = e["name"]
    if name == "FunctionCall" and data.get("functionName") is not None:
        where = data.get("url", "").rsplit("/", 1)[-1]
        fn = data.get("functionName") or "(anonymous)"
        return f"FunctionCall {fn} {where}:{data.get('lineNumber')}"
    if name == "EventDispatch" and data.get("type"):
        return f"EventDispatch {data['type']}"
    return str(name)


def profile_tasks(trace: bytes, top: int = 5, field: str = "dur") -> list[dict[str, Any]]:
    """The `top` longest tasks on the page's main thread (by wall time, or by CPU time with
    field="tdur"): what ran inside them (self time of the trace events, wall and CPU) and,
    from V8's sampling profiler, which functions."""
    events, mains = trace_events(trace)
    by_thread: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for e in events:
        key = (e.get("pid"), e.get("tid"))
        if key in mains:
            by_thread.setdefault(key, []).append(e)  # type: ignore[arg-type]
    if not by_thread:
        return []
    key, mine = max(by_thread.items(), key=lambda kv: len(kv[1]))
    tasks = sorted(outer_tasks(mine), key=lambda e: -e.get(field, e["dur"]))[:top]
    nested = _nest(mine)
    nested_cpu = {id(e): own for e, own in _nest(mine, "tdur")}
    samples = _cpu_samples(events, key)
    out = []
    for t in tasks:
        start, end = t["ts"], t["ts"] + t["dur"]
        own: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for e, self_us in nested:
            if e is t or e["ts"] < start or e["ts"] >= end:
                continue
            own[_label(e)] = own.get(_label(e), 0.0) + self_us
            cpu[_label(e)] = cpu.get(_label(e), 0.0) + nested_cpu.get(id(e), 0.0)
        funcs: dict[str, int] = {}
        for ts, frame in samples:
            if start <= ts < end:
                funcs[frame] = funcs.get(frame, 0) + 1
        out.append({
            "ms": round(t["dur"] / 1000, 1), "cpu_ms": round(t.get("tdur", t["dur"]) / 1000, 1),
            "self_ms": {k: round(v / 1000, 2) for k, v in sorted(own.items(),
                                                                 key=lambda kv: -kv[1])[:12]},
            "self_cpu_ms": {k: round(v / 1000, 2) for k, v in sorted(cpu.items(),
                                                                     key=lambda kv: -kv[1])[:12]},
            "js_samples": dict(sorted(funcs.items(), key=lambda kv: -kv[1])[:15]),
        })
    return out


def _cpu_samples(events: list[dict[str, Any]], thread: tuple[int, int]) -> list[tuple[float, str]]:
    """(time µs, innermost function) of every V8 CPU profiler sample on `thread`."""
    starts: dict[str, float] = {}
    for e in events:
        if e.get("name") == "Profile" and (e.get("pid"), e.get("tid")) == thread:
            starts[e.get("id", "")] = e.get("args", {}).get("data", {}).get("startTime", e["ts"])
    nodes: dict[tuple[str, int], str] = {}
    out: list[tuple[float, str]] = []
    clock: dict[str, float] = dict(starts)
    for e in sorted((e for e in events if e.get("name") == "ProfileChunk"
                     and e.get("id", "") in starts), key=lambda e: e["ts"]):
        pid = e.get("id", "")
        data = e.get("args", {}).get("data", {})
        profile = data.get("cpuProfile", {})
        for node in profile.get("nodes", []):
            frame = node.get("callFrame", {})
            where = frame.get("url", "").rsplit("/", 1)[-1]
            name = frame.get("functionName") or "(anonymous)"
            nodes[(pid, node["id"])] = f"{name} {where}:{frame.get('lineNumber', -1) + 1}" \
                if where else name
        t = clock[pid]
        for sample, delta in zip(profile.get("samples", []), data.get("timeDeltas", []),
                                 strict=False):
            t += delta
            out.append((t, nodes.get((pid, sample), "?")))
        clock[pid] = t
    return out


def longest_task_from_trace(trace: bytes) -> dict[str, Any]:
    """Durations of tasks on the renderer's main thread (the page's JS, style, layout).

    Wall time is what a person feels; thread time (`tdur`) is what the page itself cost.
    On a busy 2-core machine the two differ by the time the thread waited for a core.
    """
    events, mains = trace_events(trace)
    by_thread: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for e in events:
        key = (e.get("pid"), e.get("tid"))
        if key in mains and e.get("ph") == "X" and e.get("name") in RUN_TASK and "dur" in e:
            by_thread.setdefault(key, []).append(e)  # type: ignore[arg-type]
    per_thread = {key: [(e["dur"] / 1000.0, e.get("tdur", e["dur"]) / 1000.0)
                        for e in outer_tasks(evs)] for key, evs in by_thread.items()}
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


def cpu_ticks() -> tuple[int, int]:
    """The machine's CPU time taken by the host (steal) and in all, in ticks: on a virtual
    machine whose host is busy, a task can wait for a core it was given."""
    fields = cpu_fields()[:8]
    return fields[7], sum(fields)


def steal_percent(start: tuple[int, int], end: tuple[int, int]) -> float | None:
    total = end[1] - start[1]
    return round(100 * (end[0] - start[0]) / total, 1) if total > 0 else None


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


TRACE_CATEGORIES = ["toplevel", "__metadata"]
# --profile: what runs inside each task (timeline events: script, style, layout, paint, GC)
PROFILE_CATEGORIES = ["toplevel", "__metadata", "devtools.timeline", "v8.execute",
                      "disabled-by-default-devtools.timeline", "disabled-by-default-v8.gc",
                      "blink_gc", "cppgc", "disabled-by-default-cppgc"]
# --js-samples also: V8's sampling profiler, which functions (it slows the page down)
SAMPLER = "disabled-by-default-v8.cpu_profiler"


async def serve_viewer_from(page: Page, web: Path) -> None:
    """Answer the page's requests for the viewer's files (`/`, `static/...`) from `web`,
    another copy of the viewer (to compare two versions on the same server and machine)."""
    types = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
             ".svg": "image/svg+xml"}

    async def handle(route: Any) -> None:
        path = route.request.url.split("?", 1)[0].split("#", 1)[0]
        rest = path.split("/", 3)[3] if path.count("/") >= 3 else ""
        name = "index.html" if rest == "" else rest.removeprefix("static/")
        file = web / name
        if file.is_file():
            await route.fulfill(body=file.read_bytes(),
                                content_type=types.get(file.suffix, "application/octet-stream"))
        else:
            await route.continue_()

    await page.route(re.compile(r"^[^?#]*/(static/[^?#]*)?([?#].*)?$"), handle)


async def run_bench(browser: Browser, seconds: int, rate: int, files: int = 4,
                    profile: bool = False, samples: bool = False,
                    web: Path | None = None, trace_to: Path | None = None) -> dict[str, Any]:
    pool = line_pool()
    names = file_names(files)
    with tempfile.TemporaryDirectory() as d, server(Path(d), names=names) as srv:
        tmp = Path(d)
        paths = [tmp / f"{n}.log" for n in names]
        for path in paths:
            path.write_text("")
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        await context.add_init_script(INSTRUMENT)
        page = await context.new_page()
        if web is not None:
            await serve_viewer_from(page, web)
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        cdp = await context.new_cdp_session(page)
        await cdp.send("Performance.enable")
        await page.goto(srv.base + "/" + view_hash(names))
        await page.wait_for_selector("#conn[data-state=live]", timeout=20_000)
        await page.evaluate(KEY_PROBE)
        await page.wait_for_timeout(1000)
        load_mark = await page.evaluate("performance.now()")
        await page.evaluate("__bench.measuring = true")
        categories = TRACE_CATEGORIES
        if profile:
            categories = [*PROFILE_CATEGORIES, *([SAMPLER] if samples else [])]
        await browser.start_tracing(page=page, categories=categories)
        metrics_start, load_start = await main_thread(cdp), os.getloadavg()
        ticks_start = cpu_ticks()
        rss_at_load = await renderer_rss_mb(browser)

        writer = Writer(paths, rate, pool)
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
        ticks_end = cpu_ticks()
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
        bars = await page.locator("#spark .bar:not([disabled])").count()
        streams = [u for u in requested if re.search(r"/api/stream\?|/api/files/[^/?]+/stream", u)]
        heap_before_gc = await heap(cdp)
        await cdp.send("HeapProfiler.enable")
        await cdp.send("HeapProfiler.collectGarbage")
        heap_after_gc = await heap(cdp)
        dom = await cdp.send("Memory.getDOMCounters")
        await context.close()

    keys = [k["paint"] for k in bench["keys"] if k["paint"] is not None]
    done = [k["done"] for k in bench["keys"] if k["done"] is not None]
    firsts = [k["paint"] for k in bench["keys"] if len(k["value"]) == 1 and k["paint"] is not None]
    if profile and trace_to is not None:
        trace_to.parent.mkdir(parents=True, exist_ok=True)
        trace_to.write_bytes(trace)
    return {
        "seconds": seconds, "rate_lines_per_s": rate, "cap": CAP, "files": names,
        "stream_requests": len(streams), "overview_bars_at_end": bars,
        "profile": profile_tasks(trace) if profile else None,
        "profile_by_cpu": profile_tasks(trace, field="tdur") if profile else None,
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
                    "loadavg_end": [round(x, 2) for x in load_end],
                    "steal_percent": steal_percent(ticks_start, ticks_end)},
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


async def merged_screenshot(browser: Browser, path: Path, theme: str = "light") -> Path:
    """Four files merged: badges, the legend and the per-minute overview over half an hour."""
    rng = random.Random(11)
    names = ["api", "worker", "db", "nginx"]
    now = time.time()
    with tempfile.TemporaryDirectory() as d, \
            server(Path(d), "[stream]\nbacklog_lines = 400\n", names) as srv:
        for k, name in enumerate(names):
            timed = []
            for _ in range(300 + 40 * k):  # busier in the last ten minutes
                t = now - 1800 * rng.random() ** 1.6
                timed.append((t, STAMP_RE.sub(STAMP, demo_line(rng), count=1)))
            for _ in range(25):  # and a burst of errors twelve minutes ago
                t = now - 720 - 60 * rng.random()
                timed.append((t, f"{STAMP} ERROR api: upstream timeout after 5000 ms"))
            lines = [line.replace(STAMP, now_stamp(t)).replace("api:", f"{name}:")
                     for t, line in sorted(timed)]
            (Path(d) / f"{name}.log").write_text("".join(f"{ln}\n" for ln in lines))
        context = await browser.new_context(viewport={"width": 1280, "height": 720},
                                            color_scheme=theme)  # type: ignore[arg-type]
        page = await context.new_page()
        await page.goto(srv.base + "/" + view_hash(names))
        await page.wait_for_selector("#conn[data-state=live]", timeout=20_000)
        await page.wait_for_selector("#spark .bar:not([disabled])", timeout=20_000)
        await page.wait_for_timeout(1500)
        path.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(path))
        await context.close()
    return path


def markdown_run(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    k = r["filter_keystroke_to_repaint_ms"]["all"]
    f = r["filter_keystroke_to_repaint_ms"]["first_key_of_query"]
    w = r["filter_keystroke_to_repaint_ms"]["whole_buffer_filtered"]
    lt = r["longest_task"]
    obs = r["longtask_observer"]
    lines = r["lines"]
    h = r["heap_mb"]
    peak = max(s["heap_mb"] for s in r["samples"]) if r["samples"] else None
    return [
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
        (f"… until all {r['cap']:,} lines are filtered (count final)", "—",
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
        ("Stream connections the page opened", "1",
         f"{r['stream_requests']} ({len(r['files'])} files); {r['overview_bars_at_end']} "
         "overview bars at the end"),
    ]


def spread(values: list[float | None]) -> str:
    """The median of the runs' values and their range, as `median [min-max]`."""
    got = [v for v in values if v is not None]
    if not got:
        return "—"
    med = round(statistics.median(got), 1)
    return f"**{med}** [{round(min(got), 1)}–{round(max(got), 1)}]"


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and ranges over the runs of the figures the issue asks for."""
    def pick(path: str) -> list[float | None]:
        out = []
        for r in runs:
            v: Any = r
            for part in path.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            out.append(v)
        return out

    keys = {
        "longest_task_ms": "longest_task.max_ms",
        "longest_task_cpu_ms": "longest_task.longest_cpu_ms",
        "most_cpu_in_a_task_ms": "longest_task.max_cpu_ms",
        "tasks_over_50ms": "longest_task.over_50ms",
        "longest_frame_gap_ms": "longest_frame_gap_ms",
        "keystroke_median_ms": "filter_keystroke_to_repaint_ms.all.median",
        "keystroke_p90_ms": "filter_keystroke_to_repaint_ms.all.p90",
        "first_key_median_ms": "filter_keystroke_to_repaint_ms.first_key_of_query.median",
        "whole_buffer_median_ms": "filter_keystroke_to_repaint_ms.whole_buffer_filtered.median",
        "heap_end_mb": "heap_mb.end_before_gc",
        "heap_after_gc_mb": "heap_mb.end_after_gc",
        "renderer_rss_end_mb": "heap_mb.renderer_rss",
        "main_thread_task_pct": "main_thread_busy.task_pct",
        "steal_pct": "machine.steal_percent",
    }
    return {name: {"values": pick(path), "summary": spread(pick(path))}
            for name, path in keys.items()}


def markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    first = runs[0]
    m = result["machine"]
    agg = result["aggregate"]
    files = first["files"]
    what = (f"{len(files)} files at {first['rate_lines_per_s'] // len(files):,} lines/s each, "
            "merged in one view (one connection, badges and the per-minute overview on)"
            if len(files) > 1 else "one file")
    out = [f"Viewer: {first['rate_lines_per_s']:,} lines/s in all, {what}, {first['seconds']} s "
           f"per run, {len(runs)} runs, headless Chromium, cap {first['cap']:,} lines; "
           f"{m['cpus']} CPUs (the server and the writer run on the same machine).\n",
           f"Command: `{result['command']}`\n",
           "Medians over the runs, [min–max]:\n",
           "| measure | target | median [range] |", "|---|---|---|"]
    rows = [
        ("Longest main-thread task after load (trace, wall)", "< 50 ms",
         agg["longest_task_ms"]["summary"]),
        ("… of it on the CPU", "—", agg["longest_task_cpu_ms"]["summary"]),
        ("Most CPU time in one task (what the page itself cost; robust to a busy machine)",
         "—", agg["most_cpu_in_a_task_ms"]["summary"]),
        ("Tasks over 50 ms per run", "0", agg["tasks_over_50ms"]["summary"]),
        ("Longest gap between animation frames", "—", agg["longest_frame_gap_ms"]["summary"]),
        (f"Filter keystroke → repaint, {first['cap']:,} lines retained (median of the run)",
         "≤ 50 ms", agg["keystroke_median_ms"]["summary"]),
        ("… p90 of the run", "—", agg["keystroke_p90_ms"]["summary"]),
        ("… first key of a query (full scan)", "≤ 50 ms", agg["first_key_median_ms"]["summary"]),
        (f"… until all {first['cap']:,} lines are filtered", "—",
         agg["whole_buffer_median_ms"]["summary"]),
        ("JS heap at the end (MiB)", "bounded", agg["heap_end_mb"]["summary"]),
        ("… after GC (MiB)", "—", agg["heap_after_gc_mb"]["summary"]),
        ("Renderer RSS at the end (MiB)", "—", agg["renderer_rss_end_mb"]["summary"]),
        ("Main thread busy (task %)", "—", agg["main_thread_task_pct"]["summary"]),
        ("CPU time the host took while streaming (steal, %)", "—",
         agg["steal_pct"]["summary"]),
    ]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    noise = m.get("cpu_time_of_fixed_work")
    if noise:
        out.append(f"\nMachine: CPU time of one fixed piece of work, repeated before the "
                   f"browser started: median {noise['median_ms']} ms, p99.9 {noise['p999_ms']} "
                   f"({noise['p999_over_median']}× the median), max {noise['max_ms']}.")
    for i, r in enumerate(runs, 1):
        load = r["machine"]
        out.append(f"\n### Run {i} (load average {load['loadavg_start'][0]} at the start, "
                   f"{load['loadavg_end'][0]} at the end; the host took "
                   f"{load.get('steal_percent')} % of the CPU time while streaming)\n")
        out += ["| measure | target | result |", "|---|---|---|"]
        out += [f"| {a} | {b} | {c} |" for a, b, c in markdown_run(r)]
    return "\n".join(out) + "\n"


def profile_text(tasks: list[dict[str, Any]]) -> str:
    out = []
    for t in tasks:
        out.append(f"task {t['ms']} ms ({t['cpu_ms']} ms CPU); self time, wall / CPU:")
        for name, ms in t["self_ms"].items():
            out.append(f"  {ms:8.2f} / {t['self_cpu_ms'].get(name, 0):8.2f} ms  {name}")
        if t["js_samples"]:
            out.append("  JS samples (innermost function):")
            for name, n in t["js_samples"].items():
                out.append(f"  {n:8d}     {name}")
    return "\n".join(out)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick = os.environ.get("BENCH_QUICK") == "1"  # bench/run.py --quick
    parser.add_argument("--seconds", type=int, default=30 if quick else 60)
    parser.add_argument("--rate", type=int, default=5000, help="lines/s in all")
    parser.add_argument("--files", type=int, default=4, help="files, merged in one view")
    parser.add_argument("--runs", type=int, default=1 if quick else 3)
    parser.add_argument("--web", type=Path, default=None,
                        help="serve the viewer's files from this folder instead (another "
                             "version of web/, to compare)")
    parser.add_argument("--profile", action="store_true",
                        help="one run with a detailed trace: what the longest tasks did")
    parser.add_argument("--js-samples", action="store_true",
                        help="with --profile: V8's sampling profiler too (slows the page)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--merged-screenshot", type=Path,
                        default=ROOT / "bench" / "viewer-merged.png")
    parser.add_argument("--no-screenshots", action="store_true")
    parser.add_argument("--only-screenshots", action="store_true",
                        help="take the screenshots, skip the measurements")
    parser.add_argument("--only-merged-screenshot", action="store_true",
                        help="take only the merged view's screenshot")
    args = parser.parse_args()
    if args.only_merged_screenshot:
        async with async_playwright() as pw:
            browser = await launch(pw)
            try:
                print(await merged_screenshot(browser, args.merged_screenshot))
            finally:
                await browser.close()
        return 0
    if args.only_screenshots:
        async with async_playwright() as pw:
            browser = await launch(pw)
            try:
                for path in await screenshots(browser, args.screenshots):
                    print(path)
                print(await merged_screenshot(browser, args.merged_screenshot))
            finally:
                await browser.close()
        return 0
    if args.profile:
        async with async_playwright() as pw:
            browser = await launch(pw, "--enable-precise-memory-info")
            try:
                r = await run_bench(browser, args.seconds, args.rate, args.files, profile=True,
                                    samples=args.js_samples, web=args.web,
                                    trace_to=args.out / "viewer-trace.json")
            finally:
                await browser.close()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "viewer-profile.json").write_text(json.dumps(r, indent=2) + "\n")
        print(json.dumps(r["longest_task"]))
        print("== longest tasks (wall) ==")
        print(profile_text(r["profile"] or []))
        print("== longest tasks (CPU) ==")
        print(profile_text(r["profile_by_cpu"] or []))
        return 0
    noise = machine_noise()  # before Chromium starts: the machine alone
    runs = []
    async with async_playwright() as pw:
        browser = await launch(pw, "--enable-precise-memory-info")
        try:
            for i in range(args.runs):
                r = await run_bench(browser, args.seconds, args.rate, args.files, web=args.web)
                runs.append(r)
                keys = r["filter_keystroke_to_repaint_ms"]["all"]
                print(f"run {i + 1}/{args.runs}: longest task "
                      f"{r['longest_task'].get('max_ms')} ms, keystroke median "
                      f"{keys.get('median')} ms, heap {r['heap_mb']['end_before_gc']} MiB",
                      flush=True)
            shots: list[str] = []
            if not args.no_screenshots:
                for p in [*await screenshots(browser, args.screenshots),
                          await merged_screenshot(browser, args.merged_screenshot)]:
                    shots.append(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p))
        finally:
            await browser.close()
    command = "python bench/viewer_bench.py " + " ".join(
        a if not a.startswith("/") else os.path.relpath(a, ROOT) for a in sys.argv[1:])
    result = {"command": command.strip(), "runs": runs, "aggregate": aggregate(runs),
              "machine": {"cpus": os.cpu_count(), "cpu_time_of_fixed_work": noise},
              "screenshots": shots}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "viewer.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (args.out / "viewer.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
