"""Benchmark load client: many SSE streams (or one `tail -F` pipe) in one uvloop process.

Modes:
  stream   open --conns streams, count and verify every line, optionally record latency
  idle     open --conns streams and hold them (heartbeats only) until stdin closes
  backlog  --reps times in turn: open a stream with n=--n and time its last backlog line
  tail     read `tail -F -n 0 FILE` (optionally `| grep`) exactly like a stream
  files    --conns clients each following --files: one `/api/stream?file=..` stream each
           (multi-file JSON events), or with --single one single-file stream per file;
           every line's sequence number is checked, per file

The client prints `READY {...}` once every stream is open, then `RESULT {...}` when every
stream got --expect lines, stdin closed, or --timeout passed. Work per received chunk is a
few C-level byte searches; per line only when --latency asks for timestamps.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import raise_nofile

now_ns = time.monotonic_ns
SSE_TS = re.compile(rb"data: \d{10} (\d{19})")
TEXT_TS = re.compile(rb"(?m)^\d{10} (\d{19})")
SINGLE_LINE = re.compile(rb"data: (\d{10}) (\d{19})")
MULTI_EVENT = re.compile(rb'data: \{"file":"([^"]*)","lines":\[([^\]]*)\]\}\n')
MULTI_LINE = re.compile(rb'"(\d{10}) (\d{19})')
EVENT_NAME = re.compile(rb"(?m)^event: (\S+)")


class Counter:
    """Counts and checks lines of one stream: each line's sequence number must be the
    previous one + `step` (no loss, no duplicate, no reordering)."""

    __slots__ = ("count", "done", "error", "expect", "first", "last", "last_ns", "lat",
                 "marker", "owner", "rem", "step")

    def __init__(self, owner: Client, marker: bytes, expect: int, step: int) -> None:
        self.owner = owner
        self.marker = marker  # b"data: " for SSE, b"" for raw text lines
        self.expect = expect
        self.step = step
        self.count = 0
        self.first = -1
        self.last = -1
        self.last_ns = 0
        self.error = ""
        self.rem = b""
        self.done = False
        self.lat = owner.lat

    def feed(self, body: bytes) -> None:
        if self.rem:
            body = self.rem + body
        cut = body.rfind(b"\n")
        if cut < 0:
            self.rem = body
            return
        self.rem = body[cut + 1 :]
        body = body[: cut + 1]
        m = self.marker
        if m:
            n = body.count(m)
            if not n:
                return
            i = body.rfind(m) + len(m)
            last = int(body[i : i + 10])
            if self.first < 0:
                j = body.find(m) + len(m)
                self.first = int(body[j : j + 10])
        else:
            n = body.count(b"\n")
            i = body.rfind(b"\n", 0, len(body) - 1) + 1
            last = int(body[i : i + 10])
            if self.first < 0:
                self.first = int(body[:10])
        t = now_ns()
        self.count += n
        if last != self.first + (self.count - 1) * self.step and not self.error:
            self.error = f"after {self.count} lines: seq {last}, expected " \
                         f"{self.first + (self.count - 1) * self.step}"
        if self.lat is not None:
            rx = SSE_TS if m else TEXT_TS
            self.lat.extend([t - int(ts) for ts in rx.findall(body)])
        self.last = last
        self.last_ns = t
        if self.expect and self.count >= self.expect and not self.done:
            self.done = True
            self.owner.one_done()


class SSEConn(asyncio.Protocol):
    """One HTTP/1.1 stream: headers, then a chunked body of SSE events."""

    def __init__(self, owner: Client, counter: Counter) -> None:
        self.owner = owner
        self.c = counter
        self.head = b""
        self.in_body = False
        self.need = -1  # bytes left in the current chunk; -1 = size line next; -2 = CRLF
        self.buf = b""
        self.opened = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.pings = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.owner.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.head[: self.head.find(b"\r\n")]
            data, self.head = self.head[end + 4 :], b""
            if b" 200 " not in status:
                if not self.opened.done():
                    self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()  # type: ignore[union-attr]
                return
            self.in_body = True
        body = self._dechunk(data)
        if not body:
            return
        if not self.opened.done():
            self.opened.set_result(None)
        if b": ping" in body:
            self.pings += body.count(b": ping")
        self.c.feed(body)

    def _dechunk(self, data: bytes) -> bytes:
        buf = self.buf + data if self.buf else data
        out = []
        pos, size = 0, len(buf)
        while pos < size:
            if self.need > 0:
                take = min(self.need, size - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self.need -= take
                if self.need == 0:
                    self.need = -2
            elif self.need == -2:
                if size - pos < 2:
                    break
                pos += 2
                self.need = -1
            else:
                e = buf.find(b"\r\n", pos)
                if e < 0:
                    break
                n = int(buf[pos:e].split(b";")[0], 16)
                pos = e + 2
                self.need = n if n else -3
                if n == 0:
                    break
        self.buf = buf[pos:] if pos < size and self.need != -3 else b""
        return out[0] if len(out) == 1 else b"".join(out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(str(exc or "closed")))
        self.owner.one_lost(self)


class PipeReader(asyncio.Protocol):
    def __init__(self, counter: Counter, owner: Client) -> None:
        self.c = counter
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        self.c.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.finished.set()


class FileSeq:
    """One file's lines on one connection: the sequence number expected next, and what
    broke the order (a gap: lines missing; a number below the expected one: a duplicate
    or a line sent late)."""

    __slots__ = ("back", "count", "first", "gaps", "missing", "next")

    def __init__(self, first: int) -> None:
        self.next = first
        self.first = -1
        self.count = 0
        self.gaps = 0
        self.missing = 0
        self.back = 0


class FilesCounter:
    """Counts and checks every line of one connection that carries one or more files
    (mode `files`). Both stream shapes go through the same per-line work, so the client's
    cost does not differ between the two modes it compares: a regex pass over the
    received events, then per line two int() calls and a list comparison."""

    __slots__ = ("count", "done", "error", "errors", "events", "files", "first", "last_ns",
                 "lat", "left", "multi", "notices", "owner", "rem", "single", "unparsed",
                 "warm")

    def __init__(self, owner: Client, files: list[str], multi: bool) -> None:
        args = owner.args
        self.owner = owner
        self.multi = multi
        self.files = {f.encode(): FileSeq(args.first) for f in files}
        self.single = None if multi else self.files[files[0].encode()]
        self.warm = args.warm  # lines numbered below this are not timed (warm-up)
        self.left = len(files) if args.expect else -1  # files still short of --expect
        self.count = 0
        self.events = 0  # events with an id: batches (the server coalesces when behind)
        self.first = -1
        self.last_ns = 0
        self.error = ""
        self.errors = 0
        self.unparsed = 0
        self.notices: dict[str, int] = {}
        self.rem = b""
        self.done = False
        self.lat = owner.lat

    def feed(self, body: bytes) -> None:
        if self.rem:
            body = self.rem + body
        cut = body.rfind(b"\n\n")  # whole events only: a multi-file event is one unit
        if cut < 0:
            self.rem = body
            return
        self.rem = body[cut + 2 :]
        body = body[: cut + 2]
        t = now_ns()
        self.events += body.count(b"id: ")
        others = body.count(b"event: ") - body.count(b"event: lines\n")
        if others:
            for name in EVENT_NAME.findall(body):
                if name != b"lines":
                    key = name.decode(errors="replace")
                    self.notices[key] = self.notices.get(key, 0) + 1
        if self.single is not None:  # `id:` then one `data:` per line; a notice has one
            n = body.count(b"data: ") - others
            if n:
                self.take(self.single, SINGLE_LINE.findall(body), n, t)
            return
        seen = 0
        for m in MULTI_EVENT.finditer(body):
            seen += 1
            f = self.files.get(m[1])
            if f is None:
                self.fail(f"lines of a file not asked for: {m[1][:50]!r}")
                continue
            lines = m[2]
            self.take(f, MULTI_LINE.findall(lines), lines.count(b'"') // 2, t)
        if seen != body.count(b"event: lines\n"):
            self.unparsed += 1
            self.fail("a `lines` event not in the expected shape")

    def take(self, f: FileSeq, pairs: list[tuple[bytes, bytes]], n: int, t: int) -> None:
        k = len(pairs)
        if k != n:
            self.unparsed += n - k
            self.fail(f"{n - k} lines not in the expected shape")
        if not k:
            return
        seqs = [int(s) for s, _ in pairs]
        if f.count == 0:
            f.first = seqs[0]
        if seqs[0] != f.next or seqs[-1] != f.next + k - 1 or (
                k > 2 and seqs != list(range(f.next, f.next + k))):
            self.disorder(f, seqs)
        else:
            f.next += k
        f.count += k
        self.count += k
        self.last_ns = t
        lat = self.lat
        if lat is not None:
            if seqs[0] >= self.warm:
                lat.extend([t - int(ts) for _, ts in pairs])
            elif seqs[-1] >= self.warm:
                lat.extend([t - int(ts) for s, ts in pairs if int(s) >= self.warm])
        if self.left > 0 and f.count >= self.owner.args.expect and f.count - k < \
                self.owner.args.expect:
            self.left -= 1
            if self.left == 0 and not self.done:
                self.done = True
                self.owner.one_done()

    def disorder(self, f: FileSeq, seqs: list[int]) -> None:
        """Line by line: where the order broke, and how."""
        for s in seqs:
            if s == f.next:
                f.next += 1
            elif s > f.next:
                f.gaps += 1
                f.missing += s - f.next
                self.fail(f"{self.name(f)}: seq {s} after {f.next - 1} "
                          f"({s - f.next} missing)")
                f.next = s + 1
            else:
                f.back += 1
                self.fail(f"{self.name(f)}: seq {s} after {f.next - 1} (duplicate or late)")

    def name(self, f: FileSeq) -> str:
        return next(k.decode() for k, v in self.files.items() if v is f)

    def fail(self, what: str) -> None:
        self.errors += 1
        if not self.error:
            self.error = what


class FilesConn(SSEConn):
    """A stream whose request is its own (mode `files` opens different paths)."""

    def __init__(self, owner: Client, counter: FilesCounter, request: bytes) -> None:
        super().__init__(owner, counter)  # type: ignore[arg-type]
        self.request = request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
                        f"Accept: text/event-stream\r\n\r\n").encode()
        self.lat: array | None = array("d") if args.latency else None
        self.conns: list[SSEConn] = []
        self.counters: list[Counter] = []
        self.pending = 0
        self.lost = 0
        self.failed: list[str] = []
        self.finished = asyncio.Event()
        self.extra: dict[str, object] = {}

    def one_done(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.finished.set()

    def one_lost(self, conn: SSEConn) -> None:
        self.lost += 1

    async def open_one(self, sem: asyncio.Semaphore, marker: bytes = b"data: ") -> None:
        loop = asyncio.get_running_loop()
        c = Counter(self, marker, self.args.expect, self.args.step)
        async with sem:
            for attempt in range(5):
                try:
                    _, conn = await loop.create_connection(
                        lambda: SSEConn(self, c), self.args.host, self.args.port)
                    await asyncio.wait_for(conn.opened, 30)
                    break
                except (OSError, ConnectionError, TimeoutError) as e:
                    if attempt == 4:
                        self.failed.append(str(e)[:200])
                        return
                    await asyncio.sleep(0.2 * (attempt + 1))
        self.conns.append(conn)
        self.counters.append(c)

    async def open_all(self) -> None:
        sem = asyncio.Semaphore(self.args.concurrency)
        self.pending = self.args.conns
        await asyncio.gather(*(self.open_one(sem) for _ in range(self.args.conns)))
        self.pending = len(self.counters)

    def files_request(self, path: str) -> bytes:
        return (f"GET {path} HTTP/1.1\r\nHost: {self.args.host}:{self.args.port}\r\n"
                f"Accept: text/event-stream\r\n\r\n").encode()

    async def open_stream(self, sem: asyncio.Semaphore, counter: FilesCounter,
                          request: bytes) -> None:
        """One stream of mode `files`, retried like `open_one`."""
        loop = asyncio.get_running_loop()
        async with sem:
            for attempt in range(5):
                try:
                    _, conn = await loop.create_connection(
                        lambda: FilesConn(self, counter, request), self.args.host,
                        self.args.port)
                    await asyncio.wait_for(conn.opened, 30)
                    break
                except (OSError, ConnectionError, TimeoutError) as e:
                    if attempt == 4:
                        self.failed.append(str(e)[:200])
                        return
                    await asyncio.sleep(0.2 * (attempt + 1))
        self.conns.append(conn)
        self.counters.append(counter)  # type: ignore[arg-type]

    async def open_files(self) -> None:
        """--conns clients, each following every file of --files: over one multi-file
        stream, or (--single) over one single-file stream per file."""
        files = [f for f in self.args.files.split(",") if f]
        sem = asyncio.Semaphore(self.args.concurrency)
        jobs = []
        if self.args.single:
            for _ in range(self.args.conns):
                for f in files:
                    req = self.files_request(f"/api/files/{quote(f)}/stream?{self.args.query}")
                    jobs.append(self.open_stream(sem, FilesCounter(self, [f], False), req))
        else:
            path = "/api/stream?" + "&".join(f"file={quote(f)}" for f in files)
            req = self.files_request(f"{path}&{self.args.query}")
            jobs = [self.open_stream(sem, FilesCounter(self, files, True), req)
                    for _ in range(self.args.conns)]
        self.pending = len(jobs)
        await asyncio.gather(*jobs)
        self.pending = len(self.counters)

    def files_result(self) -> dict[str, object]:
        """What mode `files` adds to RESULT: per (connection, file) checks, by file."""
        expect = self.args.expect
        seqs = [(name.decode(), f) for c in self.counters
                for name, f in c.files.items()]  # type: ignore[attr-defined]
        by_file: dict[str, int] = {}
        for name, f in seqs:
            by_file[name] = by_file.get(name, 0) + f.count
        notices: dict[str, int] = {}
        for c in self.counters:
            for k, v in c.notices.items():  # type: ignore[attr-defined]
                notices[k] = notices.get(k, 0) + v
        errors = [c.error for c in self.counters if c.error]
        out: dict[str, object] = {
            "streams": len(seqs), "lines_by_file": by_file,
            "n_short": sum(1 for _, f in seqs if f.count < expect),
            "n_over": sum(1 for _, f in seqs if expect and f.count > expect),
            "firsts_bad": sum(1 for _, f in seqs if f.count and f.first != self.args.first),
            "gaps": sum(f.gaps for _, f in seqs), "missing": sum(f.missing for _, f in seqs),
            "back": sum(f.back for _, f in seqs),
            "unparsed": sum(c.unparsed for c in self.counters),  # type: ignore[attr-defined]
            "events": sum(c.events for c in self.counters),  # type: ignore[attr-defined]
            "n_errors": sum(c.errors for c in self.counters),  # type: ignore[attr-defined]
            "errors": errors[:5], "notices": notices,
        }
        if self.lat is not None and self.lat:
            s = sorted(self.lat)
            lat = {f"p{q:g}": s[min(len(s) - 1, int(len(s) * q / 100))] / 1e6
                   for q in (50, 90, 99, 99.9)}
            lat["max"] = s[-1] / 1e6
            lat["over_100ms"] = len(s) - bisect.bisect_right(s, 100e6)
            out["lat_ms"] = lat
        return out

    async def backlog(self) -> None:
        """Time to the last of --n backlog lines, --reps times, one stream at a time."""
        loop = asyncio.get_running_loop()
        times = []
        for _ in range(self.args.reps):
            self.finished = asyncio.Event()
            self.pending = 1
            c = Counter(self, b"data: ", self.args.n, 1)
            t0 = now_ns()
            tr, _ = await loop.create_connection(lambda c=c: SSEConn(self, c), self.args.host,
                                                 self.args.port)
            try:
                await asyncio.wait_for(self.finished.wait(), self.args.timeout)
                times.append((c.last_ns - t0) / 1e6)
            except TimeoutError:
                self.failed.append(f"backlog: {c.count} of {self.args.n} lines")
            if c.error or c.count != self.args.n:
                self.failed.append(c.error or f"backlog: {c.count} lines, want {self.args.n}")
            tr.close()
            await asyncio.sleep(self.args.pause)
        self.extra["backlog_ms"] = times

    async def tail(self) -> None:
        loop = asyncio.get_running_loop()
        path = shlex.quote(self.args.tail_file)
        cmd = f"exec tail -F -n 0 {path}"
        if self.args.grep:
            kind = "-E" if self.args.grep_regex else "-F"
            cmd = (f"tail -F -n 0 {path} | grep --line-buffered {kind} "
                   f"{shlex.quote(self.args.grep)}")
        proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, start_new_session=True)
        c = Counter(self, b"", self.args.expect, self.args.step)
        self.counters.append(c)
        self.pending = 1
        await loop.connect_read_pipe(lambda: PipeReader(c, self), proc.stdout)
        await asyncio.sleep(0.3)  # let tail set up inotify
        self.extra["tail_pid"] = proc.pid
        self.proc = proc


def watch_stdin(loop: asyncio.AbstractEventLoop, ev: asyncio.Event) -> None:
    def run() -> None:
        with contextlib.suppress(Exception):
            while sys.stdin.buffer.read(1):
                pass
        loop.call_soon_threadsafe(ev.set)

    threading.Thread(target=run, daemon=True).start()


def percentiles(values: array) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    return {f"p{q}": s[min(len(s) - 1, int(len(s) * q / 100))] / 1e6 for q in (50, 99)}


async def amain(args: argparse.Namespace) -> dict[str, object]:
    cl = Client(args)
    stop = asyncio.Event()
    watch_stdin(asyncio.get_running_loop(), stop)
    t_open = time.monotonic()
    if args.mode == "backlog":
        await cl.backlog()
    elif args.mode == "tail":
        await cl.tail()
    elif args.mode == "files":
        await cl.open_files()
    else:
        await cl.open_all()
    ready = {"conns": len(cl.counters), "failed": len(cl.failed),
             "open_s": round(time.monotonic() - t_open, 3), **cl.extra}
    print("READY " + json.dumps(ready), flush=True)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    if args.mode != "backlog":
        waits = [asyncio.ensure_future(stop.wait())]
        if args.expect:
            waits.append(asyncio.ensure_future(cl.finished.wait()))
        await asyncio.wait(waits, timeout=args.timeout or None,
                           return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    counts = [c.count for c in cl.counters]
    errors = [c.error for c in cl.counters if c.error]
    res: dict[str, object] = {
        "conns": len(cl.counters), "failed": cl.failed[:5], "n_failed": len(cl.failed),
        "lost_conns": cl.lost, "counts_min": min(counts, default=0),
        "counts_max": max(counts, default=0), "counts_sum": sum(counts),
        "n_short": sum(1 for n in counts if n < args.expect),
        "firsts_bad": sum(1 for c in cl.counters if c.count and c.first != args.first),
        "errors": errors[:5], "n_errors": len(errors),
        "last_ns": max((c.last_ns for c in cl.counters), default=0),
        "first_last_ns": min((c.last_ns for c in cl.counters if c.last_ns), default=0),
        "pings": sum(x.pings for x in cl.conns),
        "wall_s": wall, "cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "maxrss_kb": ru1.ru_maxrss, **cl.extra,
    }
    if args.mode == "files":
        res.update(cl.files_result())
    if cl.lat is not None:
        res["n_lat"] = len(cl.lat)
        if args.out:
            with open(args.out, "wb") as f:
                cl.lat.tofile(f)
    if args.mode == "tail":  # keep tail alive until told: its CPU is measured from outside
        print("RESULT " + json.dumps(res), flush=True)
        await stop.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cl.proc.pid, signal.SIGKILL)
        cl.proc.wait()
        res["printed"] = True
    for conn in cl.conns:
        if conn.transport is not None:
            conn.transport.close()
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["stream", "idle", "backlog", "tail", "files"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--path", default="/api/files/bench/stream?n=0")
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--expect", type=int, default=0, help="lines per stream, 0 = until stdin")
    ap.add_argument("--first", type=int, default=0, help="sequence number of the first line")
    ap.add_argument("--step", type=int, default=1, help="sequence step between lines")
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--pause", type=float, default=0.05)
    ap.add_argument("--tail-file")
    ap.add_argument("--grep")
    ap.add_argument("--grep-regex", action="store_true")
    ap.add_argument("--files", default="", help="files: comma-separated file names")
    ap.add_argument("--single", action="store_true",
                    help="files: one single-file stream per file, not one multi-file stream")
    ap.add_argument("--query", default="n=0", help="files: the streams' query string")
    ap.add_argument("--warm", type=int, default=0,
                    help="files: time only lines numbered from this on (skip a warm-up)")
    args = ap.parse_args()
    raise_nofile()
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
            res = runner.run(amain(args))
    if not res.get("printed"):
        print("RESULT " + json.dumps(res), flush=True)
    if args.mode == "files":  # the stdin watcher thread may hold stdin's lock: skip the
        os._exit(0)  # interpreter's shutdown, which would abort on it (all is written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
