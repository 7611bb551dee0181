"""History benchmark: searching, `since` and `lines?at=` over a log's whole history, against
a running logtail, with `grep`/`zgrep` beside it; writes HISTORY.md.

  search  1 GB of plain text and the same lines as a rotated `.gz` sibling (1 GB
          uncompressed): `search?...&order=asc&format=ndjson`, read to its end, for a
          rare word (case-sensitive and in any case) and a regex; `grep -F`, `grep -iF`,
          `grep -E` and `zgrep` on the same files, timed the same way (wall time)
  since   time to the first line of `stream?since=<middle>&follow=0&format=text` and of
          `search?since=<middle>&limit=1&order=asc`, on a 4 GB file and on a 1 MB one
  live    append-to-client latency of a live stream on another file at 100 lines/s,
          idle and while searches scan the 4 GB file through, one after another
  lines   `lines?at=<id>` for a line near the start, the middle and the end of a 1 GB
          `.gz` generation (ids from a search), and of the plain file for reference

The logs are real timestamped lines, times growing through each file, written from a few
1 MiB templates (seconds for the 4 GB file); the `.gz` is made by `gzip -6`. They live in a
temp dir removed at the end, read once before measuring (page cache warm). One fresh
server per run, on loopback, with limits raised so nothing is rate-limited; every loop
is bounded in count and time. HISTORY.md gets medians and [min-max] over runs.

    .venv/bin/python bench/history.py [--runs 3] [--quick] [--only search,since,live,lines]
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import json
import math
import os
import queue
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import CpuMark, LogtailServer, MachineMark, Quiet, tree  # noqa: E402

PHASES = ("since", "search", "lines", "live")
GB = 1_000_000_000
MB = 1_000_000
TEMPLATES = 8
BLOCK_BYTES = 1 << 20  # a template: about this much, one second of log
STAMP = b"@" * 19  # a template's place for YYYY-MM-DDTHH:MM:SS
BASE = calendar.timegm((2025, 6, 2, 10, 0, 0, 0, 0, 0))  # the first block's second (UTC)
WORD = "deadlock"
REGEX = r"status=5[0-9]{2} latency=[0-9]{4,}ms"
NO_MATCH = r"latency=[0-9]{7,}ms"  # no line has it: a search that reads everything
MARKERS = {"start": "canary-start", "middle": "canary-middle", "end": "canary-end"}
QUERIES: dict[str, tuple[dict[str, str], list[str]]] = {
    "substring": ({"q": WORD, "case": "1"}, ["-F", WORD]),
    "substring, any case": ({"q": WORD}, ["-iF", WORD]),
    "regex": ({"q": REGEX, "regex": "1", "case": "1"}, ["-E", REGEX]),
}
MAX_MATCHES = 1_000_000
GREP_ENV = {"LC_ALL": "C.UTF-8"}
TIMEOUT_S = 600.0  # any one request or command


# -- the logs -----------------------------------------------------------------------------

RESOURCES = ("orders", "users", "carts", "payments", "search", "sessions", "items")
REASONS = ("connection reset by peer", "upstream returned 502", "context canceled",
           "validation error: missing field 'sku'")


def _ordinary(rng: random.Random) -> list[str]:
    """One ordinary line (level and text, no time), sometimes with untimed trace lines."""
    r = rng.random()
    if r < 0.70:
        status = rng.choices((200, 201, 204, 304, 404, 500, 503), (70, 5, 5, 10, 8, 1, 1))[0]
        latency = min(999, int(rng.lognormvariate(3.0, 1.2)))  # slow ones are injected
        method = rng.choice(("GET", "GET", "GET", "POST", "PUT"))
        return [f"INFO  api[{rng.randint(1000, 1100)}]: {method} /api/v1/"
                f"{rng.choice(RESOURCES)}/{rng.randint(1, 99999)} status={status} "
                f"latency={latency}ms user=u{rng.randint(1, 5000)} req={rng.getrandbits(32):08x}"]
    if r < 0.85:
        return [f"DEBUG db: query ok table={rng.choice(RESOURCES)} rows={rng.randint(0, 500)} "
                f"took={rng.randint(0, 80)}ms conn=pool-{rng.randint(1, 16)}"]
    if r < 0.95:
        return [f"WARN  cache: miss key={rng.choice(RESOURCES)}:{rng.randint(1, 99999)} "
                f"fallback=db ttl={rng.randint(1, 3600)}s"]
    out = [f"ERROR worker-{rng.randint(1, 8)}: job {rng.getrandbits(40):010x} failed: "
           f"{rng.choice(REASONS)}"]
    if rng.random() < 0.4:  # a trace: lines without a time belong to the line before
        out += [f"    at jobs.run (/srv/app/jobs.py:{rng.randint(10, 400)})",
                f"    at worker.loop (/srv/app/worker.py:{rng.randint(10, 200)})"]
    return out


def _rare(rng: random.Random, k: int) -> list[str]:
    """The rare lines of template `k`: `deadlock` (k % 4 of them), `Deadlock` (odd k) and
    slow server errors that the regex finds (k % 3 + 1)."""
    out = [f"ERROR db: deadlock detected on table {rng.choice(RESOURCES)}; transaction "
           f"{rng.getrandbits(32):08x} rolled back" for _ in range(k % 4)]
    if k % 2:
        out.append(f"WARN  db: Deadlock victim chosen: txn {rng.getrandbits(32):08x}")
    out += [f"INFO  api[{rng.randint(1000, 1100)}]: GET /api/v1/{rng.choice(RESOURCES)}/"
            f"{rng.randint(1, 99999)} status={rng.choice((500, 502, 503, 504))} "
            f"latency={rng.randint(1000, 30000)}ms user=u{rng.randint(1, 5000)} "
            f"req={rng.getrandbits(32):08x}" for _ in range(k % 3 + 1)]
    return out


@dataclass
class Template:
    data: bytes  # lines; a timed line starts with STAMP + ".ffffffZ "
    counts: dict[str, int]  # matching lines, per query
    mid_offset: int  # the timed line nearest the middle: where it starts
    mid_frac: str  # and its fraction of a second, ".ffffff"


def make_template(rng: random.Random, k: int) -> Template:
    entries: list[list[str]] = []
    size = 0
    while size < BLOCK_BYTES:
        entry = _ordinary(rng)
        entries.append(entry)
        size += sum(len(s) + 29 for s in entry)
    for line in _rare(rng, k):
        entries.insert(rng.randrange(1, len(entries)), [line])
    timed = len(entries)
    parts: list[bytes] = []
    offset, mid_offset, mid_frac = 0, 0, ""
    for i, entry in enumerate(entries):
        frac = f".{i * 1_000_000 // timed:06d}"
        if i == timed // 2:
            mid_offset, mid_frac = offset, frac
        head = STAMP + f"{frac}Z {entry[0]}\n".encode()
        rest = "".join(f"{s}\n" for s in entry[1:]).encode()
        parts += [head, rest]
        offset += len(head) + len(rest)
    data = b"".join(parts)
    lines = data.split(b"\n")
    rx = re.compile(REGEX.encode())
    counts = {"substring": sum(1 for ln in lines if WORD.encode() in ln),
              "substring, any case": sum(1 for ln in lines if WORD.encode() in ln.lower()),
              "regex": sum(1 for ln in lines if rx.search(ln))}
    return Template(data, counts, mid_offset, mid_frac)


def stamp(block: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(BASE + block))


@dataclass
class Log:
    """A written log: what is in it, and where."""

    path: Path
    size: int
    blocks: int
    seconds: float  # to write it
    expect: dict[str, int]  # matching lines per query
    since: str = ""  # the time of its middle line
    since_line: str = ""  # how that line starts
    markers: dict[str, int] = field(default_factory=dict)  # marker -> offset of its line


def _with_marker(block: bytes, line: int, text: str) -> tuple[bytes, int]:
    """`block` with a marker line inserted before its `line`-th line (from the end when
    negative), stamped like the next timed line (times never go back); and its offset."""
    starts = [0, *(m.end() for m in re.finditer(rb"\n", block))][:-1]
    pos = starts[line]
    nxt = pos
    while not block[nxt: nxt + 1].isdigit():  # a trace line: the next line with a time
        nxt = block.index(b"\n", nxt) + 1
    marker = block[nxt: nxt + 27] + f" INFO  audit: checkpoint {text} reached\n".encode()
    return block[:pos] + marker + block[pos:], pos


def write_log(path: Path, tpls: list[Template], target: int, markers: bool = False) -> Log:
    """Whole blocks (one second each, times growing) until at least `target` bytes."""
    t0 = time.monotonic()
    blocks, size = 0, 0
    while size < target:
        size += len(tpls[blocks % TEMPLATES].data)
        blocks += 1
    where = {0: ("start", 100), blocks // 2: ("middle", 100), blocks - 1: ("end", -100)}
    log = Log(path, 0, blocks, 0.0, dict.fromkeys(QUERIES, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for b in range(blocks):
            tpl = tpls[b % TEMPLATES]
            data = tpl.data.replace(STAMP, stamp(b).encode())
            if markers and b in where:
                name, line = where[b]
                data, at = _with_marker(data, line, MARKERS[name])
                log.markers[name] = log.size + at
            if b == blocks // 2:
                log.since = f"{stamp(b)}{tpl.mid_frac}Z"
                log.since_line = log.since
            for q, n in tpl.counts.items():
                log.expect[q] += n
            os.write(fd, data)
            log.size += len(data)
    finally:
        os.close(fd)
    log.seconds = time.monotonic() - t0
    return log


@dataclass
class Files:
    plain: Log | None = None  # 1 GB: plain/app.log
    gz: Log | None = None  # the same lines in gz/app.log.1.gz (gz/app.log is empty)
    gz_bytes: int = 0
    gz_seconds: float = 0.0
    big: Log | None = None  # 4 GB: big/app.log
    small: Log | None = None  # one block, ~1 MB: small/app.log
    live: Path | None = None  # live/app.log, appended to by the latency phase

    def config_files(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        if self.plain is not None:
            out["plain"] = self.plain.path
        if self.gz is not None:
            out["gz"] = self.gz.path.parent / "app.log"
        for name in ("big", "small"):
            log = getattr(self, name)
            if log is not None:
                out[name] = log.path
        if self.live is not None:
            out["live"] = self.live
        return out


def make_files(work: Path, phases: list[str], search_bytes: int, big_bytes: int,
               say: Callable[[str], None]) -> Files:
    rng = random.Random(20250602)
    tpls = [make_template(rng, k) for k in range(TEMPLATES)]
    files = Files()
    gzip: subprocess.Popen[bytes] | None = None
    if {"search", "lines"} & set(phases):
        files.plain = write_log(work / "plain" / "app.log", tpls, search_bytes, markers=True)
        say(f"  plain {files.plain.size / GB:.2f} GB in {files.plain.seconds:.1f} s")
        gz_path = work / "gz" / "app.log.1.gz"
        gz_path.parent.mkdir()
        (gz_path.parent / "app.log").write_bytes(b"")
        with open(gz_path, "wb") as out:  # compressed on the other core meanwhile
            gzip = subprocess.Popen(["gzip", "-6", "-n", "-c", str(files.plain.path)],
                                    stdout=out)
        files.gz = Log(gz_path, files.plain.size, files.plain.blocks, 0.0,
                       dict(files.plain.expect), markers=dict(files.plain.markers))
    t0 = time.monotonic()
    if {"since", "live"} & set(phases):
        files.big = write_log(work / "big" / "app.log", tpls, big_bytes)
        say(f"  big {files.big.size / GB:.2f} GB in {files.big.seconds:.1f} s")
    if "since" in phases:
        files.small = write_log(work / "small" / "app.log", tpls, 1)
    if "live" in phases:
        files.live = work / "live" / "app.log"
        files.live.parent.mkdir()
        files.live.write_bytes(b"")
    if gzip is not None and files.gz is not None:
        gzip.wait(TIMEOUT_S)
        if gzip.returncode != 0:
            raise RuntimeError(f"gzip failed: {gzip.returncode}")
        files.gz_bytes = files.gz.path.stat().st_size
        files.gz_seconds = time.monotonic() - t0
        say(f"  gz {files.gz_bytes / MB:.0f} MB (gzip -6), done {files.gz_seconds:.1f} s "
            "after the plain file")
    return files


def warm(paths: list[Path]) -> float:
    """Read every file once, so every measurement reads the page cache."""
    t0 = time.monotonic()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            while os.read(fd, 16 << 20):
                pass
        finally:
            os.close(fd)
    return time.monotonic() - t0


# -- the server ---------------------------------------------------------------------------

class Server(LogtailServer):
    """logtail with its limits raised (nothing here should meet a rate limit), as a child
    process."""

    @classmethod
    def start(cls, work: Path, files: dict[str, Path], env: dict[str, str], tag: str
              ) -> Server:
        conf = work / f"server-{tag}.toml"
        big = 16 << 30
        conf.write_text(
            f'[server]\nhost = "127.0.0.1"\naccess_log = "off"\n'
            f"secret_file = {json.dumps(str(work / 'secret'))}\n\n"
            f"[stream]\nmax_resume_bytes = {big}\n\n"
            '[limits]\nstreams_per_ip = 1000\nmax_streams = 1000\n'
            'requests_per_ip = "1000000/minute"\n\n'
            f"[history]\nmax_scan_bytes = {big}\nmax_matches = {MAX_MATCHES}\n\n"
            + "".join(f"[[files]]\nname = {json.dumps(n)}\npath = {json.dumps(str(p))}\n\n"
                      for n, p in files.items()))
        return cls.run(conf, work / f"server-{tag}.log", env, work)


def http() -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(TIMEOUT_S, connect=10), trust_env=False)


# -- 1. search throughput -----------------------------------------------------------------

@dataclass
class SearchRun:
    file: str
    query: str
    size: int  # bytes, uncompressed
    logtail_s: float
    logtail_matches: int
    scanned_bytes: int
    limited: bool
    grep_s: float
    grep_matches: int
    expected: int


def logtail_search(base: str, name: str, params: dict[str, str]) -> tuple[float, int, dict]:
    """Seconds to the end of the answer, matches (lines before `done`), `done`."""
    q = {**params, "order": "asc", "format": "ndjson", "limit": str(MAX_MATCHES)}
    lines, tail = 0, b""
    with http() as client:
        t0 = time.perf_counter()
        with client.stream("GET", f"{base}/api/files/{name}/search", params=q) as r:
            if r.status_code != 200:
                raise RuntimeError(f"search {name} {params}: {r.status_code} {r.read()[:200]!r}")
            for chunk in r.iter_bytes():
                lines += chunk.count(b"\n")
                tail = (tail + chunk)[-4096:]
        seconds = time.perf_counter() - t0
    done = json.loads(tail.rstrip(b"\n").rsplit(b"\n", 1)[-1])
    if done.get("matches") != lines - 1:
        raise RuntimeError(f"search {name}: {lines - 1} lines before done, done says {done}")
    return seconds, lines - 1, done


def grep(argv: list[str]) -> tuple[float, int]:
    """Seconds to exit, lines printed: spawned, its output read through a pipe."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_S,
                       env=dict(os.environ, **GREP_ENV))
    seconds = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        raise RuntimeError(f"{argv[0]} failed: {p.stderr.decode(errors='replace')[:300]}")
    return seconds, p.stdout.count(b"\n")


def search_phase(server: Server, files: Files, run: int) -> list[SearchRun]:
    out = []
    assert files.plain is not None and files.gz is not None
    for name, log, tool in (("plain", files.plain, "grep"), ("gz", files.gz, "zgrep")):
        for query, (params, flags) in QUERIES.items():
            def ours(n: str = name, p: dict[str, str] = params) -> tuple[float, int, dict]:
                return logtail_search(server.base, n, p)

            def theirs(t: str = tool, f: list[str] = flags, lg: Log = log) -> tuple[float, int]:
                return grep([t, *f[:-1], "--", f[-1], str(lg.path)])

            if run % 2 == 0:  # who goes first alternates between runs
                (ls, lm, done), (gs, gm) = ours(), theirs()
            else:
                (gs, gm), (ls, lm, done) = theirs(), ours()
            out.append(SearchRun(name, query, log.size, ls, lm, done["scanned_bytes"],
                                 done["limited"], gs, gm, log.expect[query]))
            say(f"  {name:5} {query:20} logtail {ls:6.2f} s ({log.size / MB / ls:5.0f} MB/s) "
                f"{tool} {gs:6.2f} s ({log.size / MB / gs:5.0f} MB/s)  matches {lm} / {gm} "
                f"/ {log.expect[query]}")
    return out


# -- 2. since -----------------------------------------------------------------------------

@dataclass
class SinceRun:
    endpoint: str  # stream or search
    file: str  # small or big
    first_line_ms: list[float] = field(default_factory=list)
    headers_ms: list[float] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)


def since_request(base: str, endpoint: str, name: str, log: Log) -> tuple[float, float, str]:
    """(ms to the response head, ms to the first line, the first line)."""
    if endpoint == "stream":
        url = f"{base}/api/files/{name}/stream"
        params = {"since": log.since, "follow": "0", "format": "text"}
    else:
        url = f"{base}/api/files/{name}/search"
        params = {"since": log.since, "limit": "1", "order": "asc", "format": "ndjson"}
    buf = b""
    with http() as client:
        t0 = time.perf_counter()
        with client.stream("GET", url, params=params) as r:
            t_head = time.perf_counter()
            if r.status_code != 200:
                raise RuntimeError(f"{endpoint} since: {r.status_code} {r.read()[:200]!r}")
            for chunk in r.iter_bytes():
                buf += chunk
                if b"\n" in buf:
                    break
            t_line = time.perf_counter()
        # leaving the block closes the stream: its server side stops reading
    first = buf.split(b"\n", 1)[0].decode(errors="replace")
    if endpoint == "search":
        with contextlib.suppress(ValueError):
            first = json.loads(first).get("line", first)
    return (t_head - t0) * 1e3, (t_line - t0) * 1e3, first


def since_phase(server: Server, files: Files, reps: int) -> list[SinceRun]:
    assert files.small is not None and files.big is not None
    runs = {(e, f): SinceRun(e, f) for e in ("stream", "search") for f in ("small", "big")}
    for i in range(reps):
        order = ("small", "big") if i % 2 == 0 else ("big", "small")
        for endpoint in ("stream", "search"):
            for name in order:
                log = files.small if name == "small" else files.big
                head, line, first = since_request(server.base, endpoint, name, log)
                r = runs[endpoint, name]
                r.headers_ms.append(head)
                r.first_line_ms.append(line)
                if not first.startswith(log.since_line):
                    r.wrong.append(first[:60])
    for r in runs.values():
        say(f"  {r.endpoint:6} {r.file:5} first line {statistics.median(r.first_line_ms):6.2f} "
            f"ms (head {statistics.median(r.headers_ms):5.2f} ms)"
            + (f"  WRONG FIRST LINE x{len(r.wrong)}: {r.wrong[0]!r}" if r.wrong else ""))
    return list(runs.values())


# -- 3. live-stream latency while a search runs ---------------------------------------------

class LoadClient:
    """`load_client.py stream`, speaking its READY/RESULT protocol on stdout."""

    def __init__(self, cmd: list[str], err: Path) -> None:
        self.err = open(err, "wb")  # noqa: SIM115
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True)
        self.q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def wait(self, prefix: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            if line.startswith(prefix + " "):
                return json.loads(line[len(prefix) + 1:])
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.p.stdin is not None
            self.p.stdin.close()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
        self.err.close()


class Searcher(threading.Thread):
    """Searches the big file through, one after another (SSE, so its progress events let
    it notice `stop` within 200 ms), until stopped, at most `most` searches or `seconds`."""

    def __init__(self, base: str, seconds: float, most: int = 100) -> None:
        super().__init__(daemon=True)
        self.base, self.seconds, self.most = base, seconds, most
        self.stop_ev = threading.Event()
        self.scanning = threading.Event()
        self.done_searches = 0
        self.scanned = 0  # bytes, finished searches and the one cut at the end
        self.elapsed = 0.0
        self.error = ""

    def run(self) -> None:
        t0 = time.monotonic()
        params = {"q": NO_MATCH, "regex": "1", "order": "asc", "limit": str(MAX_MATCHES)}
        try:
            with http() as client:
                for _ in range(self.most):
                    if self.stop_ev.is_set() or time.monotonic() - t0 > self.seconds:
                        break
                    self.scanned += self._one(client, params)
        except (httpx.HTTPError, RuntimeError, ValueError) as e:
            self.error = f"{type(e).__name__}: {e}"[:300]
        self.elapsed = time.monotonic() - t0
        self.scanning.set()

    def _one(self, client: httpx.Client, params: dict[str, str]) -> int:
        scanned, event = 0, ""
        with client.stream("GET", f"{self.base}/api/files/big/search", params=params) as r:
            if r.status_code != 200:
                raise RuntimeError(f"search: {r.status_code}")
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event in ("progress", "done"):
                    scanned = json.loads(line[6:])["scanned_bytes"]
                    self.scanning.set()
                    if event == "done":
                        self.done_searches += 1
                        return scanned
                if self.stop_ev.is_set():
                    return scanned
        return scanned


@dataclass
class LiveRun:
    """One mode of one run: its slices' latencies pooled."""

    mode: str  # idle or search
    slices: int = 0
    lines: int = 0
    received: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    slice_p99_ms: list[float] = field(default_factory=list)  # each slice's own p99
    problems: list[str] = field(default_factory=list)
    searches_done: int = 0
    search_mb_s: float | None = None
    server_cores: float = 0.0
    busy_before: float = 0.0
    others_during: list[float] = field(default_factory=list)  # each slice's, in cores


@dataclass
class Slice:
    ms: list[float]
    received: int
    problems: list[str]
    cpu_s: float
    wall_s: float
    others: float = 0.0  # cores kept busy meanwhile by processes not of this bench
    scanned: int = 0
    search_s: float = 0.0
    searches_done: int = 0


def pct(values: list[float] | array, q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(len(s) * q / 100) - 1))]


def live_slice(server: Server, files: Files, work: Path, mode: str, first: int, lines: int,
               rate: float) -> Slice:
    """A fresh stream client, then `lines` appended at `rate`, with or without a search
    scanning the big file meanwhile."""
    assert files.live is not None
    secs = lines / rate
    lat_file = work / f"lat-{mode}-{first}.f64"
    client = LoadClient([sys.executable, str(BENCH / "load_client.py"), "stream",
                         "--port", str(server.port), "--path", "/api/files/live/stream?n=0",
                         "--expect", str(lines), "--first", str(first), "--latency",
                         "--out", str(lat_file), "--timeout", str(secs * 3 + 30)],
                        work / f"client-{mode}-{first}.err")
    searcher: Searcher | None = None
    problems: list[str] = []
    try:
        ready = client.wait("READY", 30)
        if not ready or ready.get("conns") != 1:
            raise RuntimeError(f"live: the stream did not open: {ready}")
        time.sleep(1.0)  # the stream subscribes just after its first bytes
        if mode == "search":
            searcher = Searcher(server.base, secs + 60)
            searcher.start()
            if not searcher.scanning.wait(30):
                problems.append("the search did not start scanning within 30 s")
        cpu = CpuMark.start(tree(server.proc.pid))
        client_cpu = CpuMark.start([client.p.pid])
        machine, own = MachineMark(), _own_cpu()
        subprocess.run([sys.executable, str(BENCH / "writer.py"), str(files.live), "--count",
                        str(lines), "--rate", str(rate), "--first", str(first)],
                       capture_output=True, timeout=secs + 60, check=True)
        busy = machine.stop()
        ours = client_cpu.stop()[0] + _own_cpu() - own  # the writer is a child: in `own`
        res = client.wait("RESULT", 30)
        cpu_s, wall = cpu.stop()
    finally:
        if searcher is not None:
            searcher.stop_ev.set()
            searcher.join(15)
        client.close()
    if res is None:
        raise RuntimeError("live: the stream client gave no result")
    lat = array("d")
    if lat_file.exists():
        with open(lat_file, "rb") as f:
            lat.frombytes(f.read())
        lat_file.unlink()
    problems += [*res.get("errors", []), *res.get("failed", [])]
    if res.get("firsts_bad"):
        problems.append("the first line was not the first written")
    out = Slice([v / 1e6 for v in lat], int(res.get("counts_sum", 0)), problems, cpu_s, wall,
                others=max(0.0, busy - (cpu_s + ours) / wall))
    if searcher is not None:
        out.scanned, out.search_s = searcher.scanned, searcher.elapsed
        out.searches_done = searcher.done_searches
        if searcher.error:
            problems.append(f"searcher: {searcher.error}")
    return out


def _own_cpu() -> float:
    """CPU seconds of this process (its searcher thread too) and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def live_both(run: int, args: argparse.Namespace, server: Server, files: Files, work: Path,
              quiet: Quiet, state: dict) -> list[LiveRun]:
    """`live_slices` slices of each mode, alternating (which goes first alternates too), so
    that bursts of other work on the machine fall on both; latencies pooled per mode."""
    runs = {m: LiveRun(m) for m in ("idle", "search")}
    pooled: dict[str, list[float]] = {m: [] for m in runs}
    slices: dict[str, list[Slice]] = {m: [] for m in runs}
    lines = round(args.live_seconds * args.live_rate / args.live_slices)
    for k in range(args.live_slices):
        busy = quiet.wait(max_s=5.0)
        state.setdefault("busy", []).append(busy)
        for mode in ("idle", "search") if (run + k) % 2 == 0 else ("search", "idle"):
            first = state.get("seq", 0)
            state["seq"] = first + lines  # taken, even if this slice fails
            sl = live_slice(server, files, work, mode, first, lines, args.live_rate)
            slices[mode].append(sl)
            pooled[mode] += sl.ms
            runs[mode].busy_before = max(runs[mode].busy_before, round(busy, 2))
    for mode, r in runs.items():
        ss, ms = slices[mode], pooled[mode]
        r.slices, r.lines, r.received = len(ss), lines * len(ss), sum(x.received for x in ss)
        r.p50_ms, r.p90_ms, r.p99_ms = pct(ms, 50), pct(ms, 90), pct(ms, 99)
        r.max_ms = max(ms, default=None)
        r.slice_p99_ms = [p for x in ss if (p := pct(x.ms, 99)) is not None]
        r.problems = [p for x in ss for p in x.problems]
        r.server_cores = round(sum(x.cpu_s for x in ss) / sum(x.wall_s for x in ss), 2)
        r.others_during = [round(x.others, 2) for x in ss]
        if mode == "search":
            r.searches_done = sum(x.searches_done for x in ss)
            r.search_mb_s = sum(x.scanned for x in ss) / MB / sum(x.search_s for x in ss)
        say(f"  {mode:6} p50 {r.p50_ms or 0:.2f} ms  p90 {r.p90_ms or 0:.2f} ms  p99 "
            f"{r.p99_ms or 0:.2f} ms  max {r.max_ms or 0:.1f} ms  {r.received}/{r.lines} lines"
            + (f"  search {r.search_mb_s or 0:.0f} MB/s" if mode == "search" else "")
            + f"  slice p99s {', '.join(f'{p:.1f}' for p in r.slice_p99_ms)} ms, others' "
              f"cores meanwhile {', '.join(f'{o:.2f}' for o in r.others_during)}"
            + (f"  {r.problems}" if r.problems else ""))
    return list(runs.values())


# -- 4. lines?at= ---------------------------------------------------------------------------

@dataclass
class LinesRun:
    file: str
    where: str  # start, middle, end
    offset: int  # of the line, in the decompressed bytes
    ms: list[float] = field(default_factory=list)
    wrong: int = 0
    cold_ms: list[float] = field(default_factory=list)  # the first request of a fresh server


def find_ids(base: str) -> dict[tuple[str, str], str]:
    """Each marker's line id, from a search of each file."""
    ids = {}
    with http() as client:
        for name in ("gz", "plain"):
            for where, marker in MARKERS.items():
                r = client.get(f"{base}/api/files/{name}/search", params={
                    "q": marker, "case": "1", "order": "asc", "limit": "1",
                    "format": "ndjson"})
                found = [json.loads(ln) for ln in r.text.splitlines() if '"id"' in ln]
                if r.status_code != 200 or not found:
                    raise RuntimeError(f"lines: no {marker} in {name}: {r.status_code}")
                ids[name, where] = found[0]["id"]
    return ids


def lines_request(base: str, name: str, where: str, at: str, run: LinesRun) -> float:
    """One `lines?at=` (checked to hold the marker), in ms."""
    with http() as client:
        t0 = time.perf_counter()
        r = client.get(f"{base}/api/files/{name}/lines", params={"at": at})
        ms = (time.perf_counter() - t0) * 1e3
    body = r.json() if r.status_code == 200 else {}
    got = body.get("lines", [])
    if not got or MARKERS[where] not in got[body.get("at", 0)]["line"]:
        run.wrong += 1
    return ms


def lines_phase(server: Server, ids: dict[tuple[str, str], str], reps: int,
                fresh: Callable[[str], Server]) -> list[LinesRun]:
    """Cold: each id's first request on a server of its own, started for it (the .gz
    not read since, so without checkpoints). Warm: `reps` requests on `server`, after
    one read of the whole `.gz` (as a search leaves it)."""
    runs = {k: LinesRun(k[0], k[1], int(v.rsplit(":", 1)[1], 16)) for k, v in ids.items()}
    for (name, where), at in ids.items():
        cold = fresh(f"{name}-{where}")
        try:
            runs[name, where].cold_ms.append(
                lines_request(cold.base, name, where, at, runs[name, where]))
        finally:
            cold.stop()
    with http() as client:  # the whole .gz read once
        client.get(f"{server.base}/api/files/gz/search", params={
            "q": "no line has this", "format": "ndjson", "limit": "1"}, timeout=600)
    for _ in range(reps):
        for (name, where), at in ids.items():
            runs[name, where].ms.append(
                lines_request(server.base, name, where, at, runs[name, where]))
    for r in runs.values():
        say(f"  {r.file:5} {r.where:6} at {r.offset / MB:7.1f} MB: cold "
            f"{statistics.median(r.cold_ms):8.1f} ms, warm {statistics.median(r.ms):8.1f} ms"
            + (f"  WRONG x{r.wrong}" if r.wrong else ""))
    return list(runs.values())


# -- report ---------------------------------------------------------------------------------

def spread(values: list[float | None] | list[float], digits: int = 1) -> str:
    """Median [min-max]."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    med, lo, hi = (f"{v:,.{digits}f}" for v in (statistics.median(vals), min(vals), max(vals)))
    return med if len(vals) == 1 else f"{med} [{lo}–{hi}]"


def med(values: list[float | None] | list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def yes(ok: bool | None) -> str:
    return "—" if ok is None else ("**met**" if ok else "**missed**")


def search_section(runs: list[SearchRun], notes: list[str]) -> str:
    rows = ["| file | query | logtail s | logtail MB/s | grep s | grep MB/s | "
            "logtail's speed ÷ grep's | matches (logtail / grep / written) | target ≥ 25 % |",
            "|" + "---|" * 9]
    bad = [r for r in runs if not r.logtail_matches == r.grep_matches == r.expected
           or r.limited or r.scanned_bytes != r.size]
    for (file, query) in dict.fromkeys((r.file, r.query) for r in runs):
        rs = [r for r in runs if (r.file, r.query) == (file, query)]
        ratio = [r.grep_s / r.logtail_s for r in rs]
        tool = "zgrep" if file == "gz" else "grep"
        counts = sorted({(r.logtail_matches, r.grep_matches, r.expected) for r in rs})
        target = yes(med(ratio) >= 0.25) if file == "plain" else "—"  # type: ignore[operator]
        rows.append(
            f"| {file} | {query} | {spread([r.logtail_s for r in rs], 2)} | "
            f"{spread([r.size / MB / r.logtail_s for r in rs], 0)} | {tool} "
            f"{spread([r.grep_s for r in rs], 2)} | "
            f"{spread([r.size / MB / r.grep_s for r in rs], 0)} | "
            f"{spread([100 * x for x in ratio], 0)} % | "
            + "; ".join(f"{a:,} / {b:,} / {c:,}" for a, b, c in counts) + f" | {target} |")
    if bad:
        notes.append(f"Search: {len(bad)} of {len(runs)} runs disagreed on matches or did not "
                     "scan everything: " + "; ".join(
                         f"{r.file} {r.query}: {r.logtail_matches}/{r.grep_matches}/"
                         f"{r.expected}, scanned {r.scanned_bytes}" for r in bad[:4]))
    agree = "In every run logtail, grep/zgrep and the count written agreed, and logtail's " \
            "`done` said it scanned every byte, not `limited`." if not bad else \
            "**Match counts disagreed in some runs** (see the notes)."
    return "\n".join(rows) + "\n\n" + agree


def since_section(runs: list[SinceRun], big: str) -> tuple[str, dict[str, float | None]]:
    rows = [f"| endpoint | 1 MB file: first line ms | {big} file: first line ms | "
            f"{big} ÷ 1 MB | response head ms (1 MB / {big}) | wrong first lines | "
            "target ≤ 2 |", "|" + "---|" * 7]
    ratios: dict[str, float | None] = {}
    for endpoint in ("stream", "search"):
        small = [r for r in runs if r.endpoint == endpoint and r.file == "small"]
        big = [r for r in runs if r.endpoint == endpoint and r.file == "big"]
        if not small or not big:
            continue
        s_med = [statistics.median(r.first_line_ms) for r in small]
        b_med = [statistics.median(r.first_line_ms) for r in big]
        ratio = [b / s for b, s in zip(b_med, s_med, strict=True)]
        ratios[endpoint] = med(ratio)
        wrong = sum(len(r.wrong) for r in small + big)
        heads = (f"{spread([statistics.median(r.headers_ms) for r in small], 2)} / "
                 f"{spread([statistics.median(r.headers_ms) for r in big], 2)}")
        rows.append(f"| `{endpoint}` | {spread(s_med, 2)} | {spread(b_med, 2)} | "
                    f"{spread(ratio, 2)} | {heads} | {wrong} | "
                    f"{yes(ratios[endpoint] <= 2)} |")  # type: ignore[operator]
    return "\n".join(rows), ratios


def live_section(runs: list[LiveRun], big: str) -> tuple[str, str]:
    rows = ["| stream | p50 ms | p90 ms | p99 ms | p99 of the median slice, ms | max ms | "
            "lines received / written | search MB/s meanwhile | server cores | "
            "others' cores before (highest) | others' cores during, slices' median (highest) |",
            "|" + "---|" * 11]
    for mode in ("idle", "search"):
        rs = [r for r in runs if r.mode == mode]
        if not rs:
            continue
        label = "idle" if mode == "idle" else f"while searching the {big} file"
        rows.append(
            f"| {label} | {spread([r.p50_ms for r in rs], 2)} | "
            f"{spread([r.p90_ms for r in rs], 2)} | {spread([r.p99_ms for r in rs], 2)} | "
            f"{spread([slice_p99(r) for r in rs], 2)} | {spread([r.max_ms for r in rs], 1)} | "
            f"{sum(r.received for r in rs):,} / {sum(r.lines for r in rs):,} | "
            + (spread([r.search_mb_s for r in rs], 0) if mode == "search" else "—")
            + f" | {spread([r.server_cores for r in rs], 2)} | "
              f"{spread([r.busy_before for r in rs], 2)} | "
              f"{spread([med(r.others_during) for r in rs], 2)} "
              f"({max((o for r in rs for o in r.others_during), default=0):.2f}) |")
    pairs = [(slice_p99(i), slice_p99(s)) for i, s in zip(
        [r for r in runs if r.mode == "idle"], [r for r in runs if r.mode == "search"],
        strict=False)]  # the two modes of one run
    pairs = [(i, s) for i, s in pairs if i and s]
    verdict = "—"
    if pairs:
        ratios = [s / i for i, s in pairs]
        ratio, busy = med(ratios) or 0.0, med([s for _, s in pairs]) or 0.0
        shown = ", ".join(f"{i:.1f} → {s:.1f}" for i, s in pairs)
        verdict = (f"Judged on each run's median slice p99 (one burst of other work in one "
                   f"slice does not decide it): p99 while searching ÷ idle p99 of the same "
                   f"run {spread(ratios, 2)} (target ≤ 2: {yes(ratio <= 2)}); p99 while "
                   f"searching {busy:.1f} ms (target ≤ 20 ms: {yes(busy <= 20)}). Per run, "
                   f"idle → searching: {shown} ms.")
    return "\n".join(rows), verdict


def slice_p99(r: LiveRun) -> float | None:
    """The median of a run's slice p99s."""
    return med(r.slice_p99_ms)


def lines_section(runs: list[LinesRun], plain: str) -> str:
    rows = ["| generation | line | at (MB into it, decompressed) | cold: first request, ms "
            "| warm: after one read of the `.gz`, ms | wrong answers |", "|" + "---|" * 6]
    for (file, where) in dict.fromkeys((r.file, r.where) for r in runs):
        rs = [r for r in runs if (r.file, r.where) == (file, where)]
        label = f"{plain} `.gz` (`app.log.1.gz`)" if file == "gz" else \
            f"{plain} plain (reference)"
        rows.append(f"| {label} | {where} | {rs[0].offset / MB:,.1f} | "
                    f"{spread([statistics.median(r.cold_ms) for r in rs], 1)} | "
                    f"{spread([statistics.median(r.ms) for r in rs], 1)} | "
                    f"{sum(r.wrong for r in rs)} |")
    return "\n".join(rows)


@dataclass
class Meta:
    when: str
    code: str
    runs: int
    quick: bool
    cpus: int
    seconds: float
    grep: str
    gzip: str
    files: dict[str, str]
    plain_gb: float
    big_gb: float
    since_reps: int
    live_seconds: float
    live_slices: int
    live_rate: float
    lines_reps: int


def write_markdown(path: Path, meta: Meta, results: dict[str, list], notes: list[str],
                   files: Files) -> None:
    plain, big = f"{meta.plain_gb:g} GB", f"{meta.big_gb:g} GB"
    runs = f"{meta.runs} run{'s' if meta.runs != 1 else ''}"
    quick = "; **--quick: smaller files, not the sizes the targets are about**" \
        if meta.quick else ""
    made = ", ".join(f"{k} {v}" for k, v in meta.files.items())
    parts = [f"""# History benchmark

Written by `bench/history.py` ({meta.when}; code: {meta.code}; {runs}, each on a fresh
server; {meta.cpus} CPUs; {meta.seconds / 60:.0f} min in all{quick}).
Figures are median [min–max] over runs; where a run makes many requests, its own median is
taken first.
Files: {made}; each was read once before measuring, so every figure is from the page cache.
"""]
    if results.get("search"):
        parts.append(f"""## Search throughput

`GET /api/files/{{plain|gz}}/search?<query>&order=asc&format=ndjson&limit={MAX_MATCHES}`,
read to its end (httpx, streaming), against `{meta.grep}` and `zgrep` (`{meta.gzip}`) on
the same file, their output read through a pipe: wall time, and MB/s of uncompressed data
(1 MB = 10⁶ bytes).
`plain` is an `app.log` of {plain}; `gz` is the history of an empty `app.log` and its
`app.log.1.gz`, the same {plain} compressed by `gzip -6`.
Queries: `q={WORD}&case=1` against `grep -F {WORD}`; `q={WORD}` (any case, logtail's
default) against `grep -iF {WORD}`; `regex=1&case=1&q={REGEX}` against
`grep -E '{REGEX}'`.
grep runs with `LC_ALL={GREP_ENV["LC_ALL"]}`; who goes first alternates between runs.

{search_section(results["search"], notes)}
""")
    if results.get("since"):
        table, _ = since_section(results["since"], big)
        blocks = files.big.blocks if files.big else 0
        parts.append(f"""## `since`: {big} against 1 MB

Time from sending the request to the first line of
`stream?since=T&follow=0&format=text` (the connection is closed after it) and of
`search?since=T&limit=1&order=asc&format=ndjson`, T the time of the file's middle line
(with its fraction of a second): {meta.since_reps} requests per endpoint and file per run,
the two files in turns, a new connection each.
Every first line is checked to be that middle line.
The {big} file's times grow through it ({blocks:,} seconds of log); the 1 MB file is its
first second.

{table}
""")
    if results.get("live"):
        table, verdict = live_section(results["live"], big)
        idle = [r.p99_ms for r in results["live"] if r.mode == "idle" and r.p99_ms]
        if noisy := sum(1 for v in idle if v > 20):
            notes.append(f"Live latency: in {noisy} of {len(idle)} runs the idle p99 alone was "
                         "over 20 ms, with no search running: that is this machine's scheduling "
                         "of the stream's processes among other work, which the server does "
                         "not control; compare the two modes within a run.")
        parts.append(f"""## Live-stream latency while a {big} search runs

`bench/load_client.py` holds `GET /api/files/live/stream?n=0` on a file that
`bench/writer.py` appends to at {meta.live_rate:.0f} lines/s, each line stamped with
`CLOCK_MONOTONIC` as written; the client takes receive time minus stamp for every line and
checks that none is lost.
Per run and mode, {meta.live_seconds:.0f} s of lines
({meta.live_seconds * meta.live_rate:,.0f}) in {meta.live_slices} slices: idle and "while
searching" alternate (which goes first alternates too), so that bursts of other work on
this shared machine fall on both; each slice has a fresh stream and writer.
p50, p90, p99 and max are over the run's pooled lines; "p99 of the median slice" is the
median of the run's slice p99s, which a burst of other work in one slice does not move.
While searching, another client searches the {big} file for a regex no line matches
(`{NO_MATCH}`, SSE, `limit` high), one search after another, started before the first
line is written: the scan pool reads the file all through the slice.
"Search MB/s meanwhile" is what those searches read per second. "Others' cores during"
is what processes not of this bench kept busy while each slice's lines were written (the
whole machine's busy time less the server's, the clients' and the writer's): where it is
high, the two modes are measuring the machine's other work more than the server.

{table}

{verdict}
""")
    if results.get("lines"):
        parts.append(f"""## `lines?at=` in a {plain} `.gz` generation

`GET /api/files/{{gz|plain}}/lines?at=<id>` (20 lines either side), the ids from a search
for marker lines placed near the start, in the middle and near the end of the file:
{meta.lines_reps} requests each per run, one at a time.
Each answer is checked to have the marker at `lines[at]`.
Cold: each id's first request on a server started for it, which has not read the `.gz`:
it is read from its start. Warm: after one read of the whole `.gz` (a search for a line
it does not have), which leaves a checkpoint every 16 MiB of its decompressed bytes: the
context is read from the last checkpoint at least 1 MiB before the line.
No target.

{lines_section(results["lines"], plain)}
""")
    parts.append("## Targets\n\n" + "\n".join(f"- {t}" for t in targets(results, big))
                 + "\n")
    parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    path.write_text("\n".join(parts))


def targets(results: dict[str, list], big: str) -> list[str]:
    out = []
    if results.get("search"):
        for query in QUERIES:
            rs = [r for r in results["search"] if r.file == "plain" and r.query == query]
            if rs:
                ratio = med([r.grep_s / r.logtail_s for r in rs]) or 0.0
                out.append(f"Search, plain text, {query}: logtail at {100 * ratio:.0f} % of "
                           f"grep's speed (target ≥ 25 %): {yes(ratio >= 0.25)}")
    if results.get("since"):
        _, ratios = since_section(results["since"], big)
        for endpoint, ratio in ratios.items():
            if ratio is not None:
                out.append(f"`since` via `{endpoint}`: {big} ÷ 1 MB = {ratio:.2f} "
                           f"(target ≤ 2): {yes(ratio <= 2)}")
    if results.get("live"):
        out.append(live_section(results["live"], big)[1])
    return out


# -- main -----------------------------------------------------------------------------------

def say(msg: str) -> None:
    print(msg, flush=True)


def version(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].strip() if out else "?"
    return "?"


def one_run(run: int, args: argparse.Namespace, phases: list[str], work: Path, files: Files,
            env: dict[str, str], quiet: Quiet, state: dict, notes: list[str]
            ) -> dict[str, list]:
    """Every phase once, on a fresh server; a phase that fails is noted and left out."""
    def lines() -> list[LinesRun]:
        if "ids" not in state:
            state["ids"] = find_ids(server.base)
        return lines_phase(server, state["ids"], args.lines_reps, lambda tag: Server.start(
            work, files.config_files(), env, f"run{run}-cold-{tag}"))

    out: dict[str, list] = {p: [] for p in phases}
    server = Server.start(work, files.config_files(), env, f"run{run}")
    work_of: dict[str, Callable[[], list]] = {
        "since": lambda: since_phase(server, files, args.since_reps),
        "search": lambda: search_phase(server, files, run),
        "lines": lines,
        "live": lambda: live_both(run, args, server, files, work, quiet, state),
    }
    try:
        for phase in phases:
            if phase != "live":
                state.setdefault("busy", []).append(quiet.wait(max_s=10.0))
            say(f"run {run + 1}: {phase}")
            try:
                out[phase] = work_of[phase]()
            except (RuntimeError, OSError, ValueError, KeyError, httpx.HTTPError,
                    subprocess.SubprocessError) as e:
                notes.append(f"Run {run + 1}, {phase}: failed, left out: "
                             f"{type(e).__name__}: {str(e)[:300]}")
                say(f"  FAILED: {e}")
    finally:
        server.stop()
    return out


def room(work: Path, phases: list[str], search_bytes: int, big_bytes: int) -> None:
    need = (search_bytes * 1.3 if {"search", "lines"} & set(phases) else 0) \
        + (big_bytes if {"since", "live"} & set(phases) else 0)
    free = shutil.disk_usage(work).free
    if free < need + 2 * GB:
        raise SystemExit(f"history: {need / GB:.1f} GB of files need more room than the "
                         f"{free / GB:.1f} GB free in {work.parent} (try --quick)")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=0, help="runs (default 3; --quick 1)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 200 MB search files, a 1 GB big file, short phases")
    ap.add_argument("--only", default=",".join(PHASES), help=f"phases: {', '.join(PHASES)}")
    ap.add_argument("--logtail-path", default="",
                    help="run the logtail package found in this directory instead")
    ap.add_argument("--label", default="", help="what code this is, for HISTORY.md")
    ap.add_argument("--out", default="", help="default bench/HISTORY.md (--quick: "
                    "bench/out/HISTORY-quick.md); raw figures go to bench/out/history.json, "
                    "history-quick.json or history-<this file's name>.json")
    args = ap.parse_args()
    phases = [p for p in args.only.split(",") if p]
    for p in phases:
        if p not in PHASES:
            raise SystemExit(f"history: unknown phase {p!r} (known: {', '.join(PHASES)})")
    args.runs = args.runs or (1 if args.quick else 3)
    search_bytes, big_bytes = (200 * MB, 1 * GB) if args.quick else (1 * GB, 4 * GB)
    args.since_reps = 10 if args.quick else 40
    args.live_seconds, args.live_rate = (8.0 if args.quick else 20.0), 100.0
    args.live_slices = 2 if args.quick else 4
    args.lines_reps = 2 if args.quick else 3
    out_md = Path(args.out) if args.out else (
        BENCH / "out" / "HISTORY-quick.md" if args.quick else BENCH / "HISTORY.md")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up as on ^C
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    code = "the working tree"
    if args.logtail_path:
        env["PYTHONPATH"] = str(Path(args.logtail_path).resolve())
        code = f"the copy in `{Path(args.logtail_path).name}/`"
    code = args.label or code
    started = time.time()
    notes = ["Shared machine with 2 cores: other work ran beside the bench, so figures are "
             "noisy. The server, the clients, grep and gzip share those 2 cores; the search "
             "runs in logtail's scan pool (2 threads) beside its event loop."]
    quiet = Quiet(threshold=0.5, budget_s=90.0)
    results: dict[str, list] = {p: [] for p in phases}
    work = Path(tempfile.mkdtemp(prefix="logtail-history-"))
    files = Files()
    state: dict = {}
    try:
        room(work, phases, search_bytes, big_bytes)
        say(f"writing files in {work} ...")
        files = make_files(work, phases, search_bytes, big_bytes, say)
        paths = [log.path for log in (files.plain, files.gz, files.big, files.small) if log]
        say(f"  page cache warmed in {warm(paths):.1f} s")
        for run in range(args.runs):
            for phase, rs in one_run(run, args, phases, work, files, env, quiet, state,
                                     notes).items():
                results[phase] += rs
    finally:
        shutil.rmtree(work, ignore_errors=True)
    file_notes = {}
    if files.plain is not None:
        file_notes["plain"] = f"{files.plain.size / GB:.2f} GB ({files.plain.seconds:.0f} s " \
                              "to write)"
        file_notes["gz"] = f"{files.gz_bytes / MB:.0f} MB compressed (done " \
                           f"{files.gz_seconds:.0f} s after the plain file)"
    if files.big is not None:
        file_notes["big"] = f"{files.big.size / GB:.2f} GB ({files.big.seconds:.0f} s to write)"
    if files.small is not None:
        file_notes["small"] = f"{files.small.size / MB:.2f} MB"
    notes.append(f"Before each phase the bench waited (at most 10 s) for other processes to "
                 f"use under half a core: {quiet.waited:.0f} s of waiting in all; the cores "
                 "others kept busy just before each live phase are in its table.")
    if state.get("busy"):
        notes.append(f"Just before the phases (and live slices), other processes kept "
                     f"{spread(state['busy'], 2)} of the {os.cpu_count()} cores busy "
                     "(median [min–max]).")
    meta = Meta(when=time.strftime("%Y-%m-%d %H:%M", time.localtime(started)), code=code,
                runs=args.runs, quick=args.quick, cpus=os.cpu_count() or 0,
                seconds=time.time() - started, grep=version(["grep", "--version"]),
                gzip=version(["gzip", "--version"]), files=file_notes,
                plain_gb=round(files.plain.size / GB, 1) if files.plain else 0.0,
                big_gb=round(files.big.size / GB, 1) if files.big else 0.0,
                since_reps=args.since_reps, live_seconds=args.live_seconds,
                live_slices=args.live_slices,
                live_rate=args.live_rate, lines_reps=args.lines_reps)
    write_markdown(out_md, meta, results, notes, files)
    raw_dir = BENCH / "out"
    raw_dir.mkdir(exist_ok=True)
    raw_path = raw_dir / ("history-quick.json" if args.quick and not args.out else
                          f"history-{out_md.stem.lower()}.json" if args.out else "history.json")
    raw_path.write_text(json.dumps({"meta": asdict(meta), "notes": notes, "results": {
        k: [asdict(r) for r in v] for k, v in results.items()}}, indent=1))
    say("")
    for t in targets(results, f"{meta.big_gb:g} GB"):
        say(t)
    say(f"\nwrote {out_md} and {raw_path}")


if __name__ == "__main__":
    main()
