"""Attack benchmark: how slow a legitimate request gets while one client attacks, at the
server's default limits (120 requests/minute and 8 streams per IP).

The legitimate request is a 10-line backlog of a small file (`n=10&follow=0`), sent one at
a time, 20-50 ms apart, with a 30 s timeout. It is timed with no attack and under:

  regex   8 filtered backlogs, `(x+)+y`, on a 70 MB log where nothing matches, from
          127.0.0.2, each reopened as soon as it ends
  resume  8 streams from 127.0.0.3 resuming at offset 0 of a 2 GB log, with an id forged
          from a real one (offset 0, check 00000000, any other part kept), `follow=0`
  logins  bad Basic passwords from 127.0.0.10-127.0.0.89 (auth on; the legitimate client
          logs in correctly, once before the attack, then from the cache)

Every attacker paces its requests under its own request rate, so only the attack itself
is measured, not the limiter. The attackers run in a child process (their own CPU, not the
measuring client's event loop), on loopback only, and stop by themselves. Each scenario
runs `--runs` times on a fresh server; ATTACKS.md gets medians and [min-max] over runs.

    .venv/bin/python bench/attacks.py [--runs 3] [--seconds 25] [--only regex,resume]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import CpuMark, LogtailServer, Quiet, line_block, tree  # noqa: E402

SCENARIOS = ("none", "regex", "resume", "logins")
LEGIT_URL = "/api/files/small/stream?n=10&follow=0"
REGEX_URL = "/api/files/nomatch/stream?q=(x%2B)%2By&regex=1&n=10&follow=0"
RESUME_URL = "/api/files/big/stream?follow=0"
REGEX_IP, RESUME_IP = "127.0.0.2", "127.0.0.3"
LOGIN_IPS = tuple(f"127.0.0.{i}" for i in range(10, 90))
PER_IP_REQUESTS = 100  # per legitimate address per run: under 120/minute on a fresh server
RATE_GAP_S = 0.55  # an attacker address starts a request at most every 0.55 s (109/minute)
STREAMS = 8  # concurrent attacker streams: the default streams_per_ip
TIMEOUT_S = 30.0
WARMUP_S = 3.0  # the attack runs this long before the first measured request
PASSWORD = "correct horse battery staple"
SMALL_LINES = 300
NOMATCH_LINE = b"x" * 95 + b" abc\n"  # 100 bytes; `(x+)+y` never matches


# -- files and server ------------------------------------------------------------------------

def write_files(work: Path, big_bytes: int, nomatch_bytes: int) -> dict[str, Path]:
    """`small`, `nomatch` (one line repeated) and `big`: real lines all through, not a
    sparse file, so a resume at 0 has every byte to send and a line count every line to
    count (one 8 MB block of numbered 100-byte lines, written again and again: seconds)."""
    files = {"small": work / "small.log", "nomatch": work / "nomatch.log",
             "big": work / "big.log"}
    files["small"].write_bytes(line_block(0, SMALL_LINES, time.monotonic_ns()))
    for name, block, size in (
            ("nomatch", NOMATCH_LINE * ((8 << 20) // len(NOMATCH_LINE)), nomatch_bytes),
            ("big", line_block(0, 80_000, time.monotonic_ns()), big_bytes)):
        with open(files[name], "wb") as f:
            for _ in range(max(1, round(size / len(block)))):
                f.write(block)
    return files


def password_hash(env: dict[str, str]) -> str:
    """Hashed by the code under test, so a changed hash format still matches its server."""
    code = f"from logtail.http.auth import hash_password; print(hash_password({PASSWORD!r}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    return out.stdout.strip().splitlines()[-1]


class Server(LogtailServer):
    """logtail with default limits (those under attack), as a child process."""

    @classmethod
    def start(cls, work: Path, files: dict[str, Path], env: dict[str, str],
              auth_hash: str | None, tag: str) -> Server:
        conf = work / f"{tag}.toml"
        auth = f'[auth]\nusers = {{ alice = "{auth_hash}" }}\n\n' if auth_hash else ""
        conf.write_text('[server]\nhost = "127.0.0.1"\n\n' + auth + "".join(
            f'[[files]]\nname = "{n}"\npath = "{p}"\n' for n, p in files.items()))
        return cls.run(conf, work / f"{tag}.log", env, work)


def client_for(ip: str, connections: int = 10) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(local_address=ip),
        timeout=httpx.Timeout(TIMEOUT_S), trust_env=False,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- the legitimate client -------------------------------------------------------------------

def legit_addresses(requests: int) -> list[str]:
    """127.0.0.1 first; more addresses only so that none goes over its own request rate."""
    extra = math.ceil(requests / PER_IP_REQUESTS) - 1
    return ["127.0.0.1", *(f"127.0.0.{100 + i}" for i in range(extra))]


@dataclass
class Legit:
    latencies_ms: list[float] = field(default_factory=list)
    failed: list[tuple[str, float]] = field(default_factory=list)  # (what, wall seconds)

    @property
    def timeouts(self) -> int:
        return sum(1 for what, _ in self.failed if what == "timeout")


async def legit_request(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                        out: Legit) -> None:
    t0 = time.perf_counter()
    try:
        resp = await client.get(url, headers=headers)
        wall = time.perf_counter() - t0
        lines = sum(1 for ln in resp.text.split("\n") if ln.startswith("data:"))
        if resp.status_code == 200 and lines == 10:
            out.latencies_ms.append(wall * 1e3)
        else:
            out.failed.append((str(resp.status_code) if resp.status_code != 200
                               else f"{lines} lines", wall))
    except httpx.TimeoutException:
        out.failed.append(("timeout", time.perf_counter() - t0))
    except httpx.HTTPError as e:
        out.failed.append((type(e).__name__, time.perf_counter() - t0))


async def measure_legit(clients: list[httpx.AsyncClient], base: str, headers: dict[str, str],
                        requests: int, seconds: float) -> Legit:
    """One request at a time, 20-50 ms apart, until `requests` or `seconds` (the one in
    flight then may still take its full timeout)."""
    out = Legit()
    end = time.monotonic() + seconds
    for i in range(requests):
        if time.monotonic() >= end:
            break
        await legit_request(clients[i % len(clients)], base + LEGIT_URL, headers, out)
        await asyncio.sleep(random.uniform(0.02, 0.05))
    return out


# -- the attackers (a child process: `attacks.py --attacker KIND --base URL`) ----------------

@dataclass
class Tally:
    """What an attacker got: requests started, statuses answered, bytes read."""

    sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    note: str = ""
    waiting: int = 0  # sent, no status yet
    cores: float = 0.0  # the attacker process's own CPU over its run

    def count(self, what: str, n: int = 1) -> None:
        self.statuses[what] = self.statuses.get(what, 0) + n

    @property
    def answered(self) -> int:
        return sum(v for k, v in self.statuses.items() if k.isdigit())


class Pacer:
    """Request starts from one address at least `gap` apart: under its request rate."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.next = 0.0

    async def wait(self, stop: asyncio.Event, deadline: float) -> bool:
        now = time.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.gap
        if slot >= deadline:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), slot - now)
        return not stop.is_set()


async def attack_request(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                         tally: Tally, stop: asyncio.Event) -> bytes:
    """One request; the body is read to its end (or until the attack stops) and thrown
    away but for its first 4 KB, which are returned. A request cancelled before its answer
    stays counted in `waiting`."""
    tally.sent += 1
    tally.waiting += 1
    answered = False
    head = b""
    try:
        async with client.stream("GET", url, headers=headers) as resp:
            answered = True
            tally.waiting -= 1
            tally.count(str(resp.status_code))
            async for chunk in resp.aiter_raw(1 << 20):
                tally.bytes += len(chunk)
                if len(head) < 4096:
                    head += chunk[:4096]
                if stop.is_set():
                    tally.count("still reading at the end")
                    break
    except httpx.HTTPError as e:
        if not answered:
            tally.waiting -= 1
        tally.count("timeout" if isinstance(e, httpx.TimeoutException) else type(e).__name__)
    return head


async def worker(client: httpx.AsyncClient, pacer: Pacer, url: str,
                 headers: dict[str, str] | None, tally: Tally, stop: asyncio.Event,
                 deadline: float, wrong_password: bool = False) -> None:
    for _ in range(int((deadline - time.monotonic()) / pacer.gap) + 2):
        if not await pacer.wait(stop, deadline):
            return
        if wrong_password:
            headers = basic("alice", f"guess-{random.getrandbits(64):x}")
        await attack_request(client, url, headers or {}, tally, stop)


def forge(event_id: str) -> str:
    """The id with its offset set to 0 and its check to 00000000; other parts kept."""
    parts = event_id.split("-")
    if len(parts) >= 4:
        parts[2], parts[3] = "0", "00000000"
    return "-".join(parts)


def first_id(body: bytes) -> str | None:
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("id:"):
            return line[3:].strip()
    return None


async def run_attacker(kind: str, base: str, seconds: float) -> Tally:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    t0, cpu0 = time.monotonic(), time.process_time()
    deadline = t0 + seconds
    tally = Tally()
    tasks: list[asyncio.Task[None]] = []
    clients: list[httpx.AsyncClient] = []
    try:
        if kind == "regex":
            clients.append(client_for(REGEX_IP, STREAMS))
            pacer = Pacer(RATE_GAP_S)
            tasks = [asyncio.create_task(worker(clients[0], pacer, base + REGEX_URL, None,
                                                tally, stop, deadline))
                     for _ in range(STREAMS)]
        elif kind == "resume":
            clients.append(client_for(RESUME_IP, STREAMS))
            pacer = Pacer(RATE_GAP_S)
            forged = None
            for _ in range(5):  # a real id first: the position of the end of the log
                if not await pacer.wait(stop, deadline):
                    break
                real = first_id(await attack_request(
                    clients[0], base + "/api/files/big/stream?n=0&follow=0", {}, tally, stop))
                if real:
                    forged = forge(real)
                    tally.note = f"`{real}` → `{forged}`"
                    break
            if forged is not None:
                headers = {"last-event-id": forged}
                tasks = [asyncio.create_task(worker(clients[0], pacer, base + RESUME_URL,
                                                    headers, tally, stop, deadline))
                         for _ in range(STREAMS)]
        elif kind == "logins":
            for ip in LOGIN_IPS:
                client = client_for(ip, 2)
                clients.append(client)
                pacer = Pacer(RATE_GAP_S)
                tasks += [asyncio.create_task(worker(client, pacer, base + LEGIT_URL, None,
                                                     tally, stop, deadline, True))
                          for _ in range(2)]  # two in flight: 2/s even when answers are slow
        else:
            raise SystemExit(f"attacks: unknown attacker {kind!r}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, deadline - time.monotonic()))
        stop.set()
        # in-flight requests see `stop` at their next chunk; those still waiting for an
        # answer are cancelled
        _, pending = await asyncio.wait(tasks, timeout=2.0) if tasks else (set(), set())
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if tally.waiting:
            tally.count("no answer by the end", tally.waiting)
        tally.cores = round((time.process_time() - cpu0) / (time.monotonic() - t0), 2)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()
    return tally


# -- one run of one scenario -----------------------------------------------------------------

@dataclass
class Run:
    """One run of one scenario, as measured."""

    ok: int
    sent: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    failed: list[tuple[str, float]]
    timeouts: int
    server_cores: float
    attacker: Tally | None
    busy_before: float = 0.0


async def one_run(scenario: str, server: Server, args: argparse.Namespace) -> Run:
    headers = basic("alice", PASSWORD) if scenario == "logins" else {}
    clients = [client_for(ip, 1) for ip in legit_addresses(args.requests)]
    attacker: subprocess.Popen[bytes] | None = None
    try:
        warm = Legit()
        for client in clients:  # connections open, and alice's login checked and cached
            await legit_request(client, server.base + LEGIT_URL, headers, warm)
        if warm.failed:
            raise RuntimeError(f"warm-up failed: {warm.failed}")
        if scenario != "none":
            attacker = subprocess.Popen(
                [sys.executable, __file__, "--attacker", scenario, "--base", server.base,
                 "--seconds", str(WARMUP_S + args.seconds + TIMEOUT_S)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            await asyncio.sleep(WARMUP_S)
        cpu = CpuMark.start(tree(server.proc.pid))
        t0 = time.monotonic()
        legit = await measure_legit(clients, server.base, headers, args.requests, args.seconds)
        measured_s = time.monotonic() - t0
        server_cores = cpu.stop()[0] / measured_s
    finally:
        for client in clients:
            await client.aclose()
        tally = stop_attacker(attacker)
    lat = legit.latencies_ms
    return Run(ok=len(lat), sent=len(lat) + len(legit.failed), seconds=round(measured_s, 1),
               p50_ms=pct(lat, 50), p99_ms=pct(lat, 99), max_ms=max(lat, default=None),
               failed=[(what, round(wall, 3)) for what, wall in legit.failed],
               timeouts=legit.timeouts, server_cores=round(server_cores, 2), attacker=tally)


def stop_attacker(proc: subprocess.Popen[bytes] | None) -> Tally | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)
        return Tally(note="attacker killed: it did not stop")
    try:
        raw = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Tally(note=f"attacker failed: {err.decode(errors='replace')[-300:]}")
    return Tally(sent=raw["sent"], statuses=raw["statuses"], bytes=raw["bytes"],
                 note=raw["note"], cores=raw["cores"])


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, math.ceil(len(s) * q / 100) - 1))], 2)


# -- report ----------------------------------------------------------------------------------

def spread(values: list[float | None] | list[int], digits: int = 1) -> str:
    """Median [min-max]."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    med, lo, hi = (f"{v:.{digits}f}" for v in (statistics.median(vals), min(vals), max(vals)))
    return med if len(vals) == 1 else f"{med} [{lo}–{hi}]"


HEAD = ["scenario", "p50 ms", "p99 ms", "legit ok / sent", "failed (timeouts)",
        "failed: what, wall time", "attacker sent / answered per run",
        "attacker statuses (all runs)", "attacker MB read per run", "server cores",
        "attacker cores"]


def summary_rows(results: dict[str, list[Run]]) -> list[list[str]]:
    rows = []
    for scenario, runs in results.items():
        failed = [f for r in runs for f in r.failed]
        tallies = [r.attacker for r in runs if r.attacker is not None]
        statuses: Counter[str] = Counter()
        for t in tallies:
            statuses.update(t.statuses)
        shown = ", ".join(f"{w}: {s:.1f} s" for w, s in failed[:6])
        rows.append([
            scenario,
            spread([r.p50_ms for r in runs]),
            spread([r.p99_ms for r in runs]),
            f"{sum(r.ok for r in runs)} / {sum(r.sent for r in runs)}",
            f"{len(failed)} ({sum(r.timeouts for r in runs)})",
            (shown + (" …" if len(failed) > 6 else "")) or "—",
            f"{spread([t.sent for t in tallies], 0)} / {spread([t.answered for t in tallies], 0)}"
            if tallies else "—",
            ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) or "—",
            spread([t.bytes / 1e6 for t in tallies], 0),
            spread([r.server_cores for r in runs], 2),
            spread([t.cores for t in tallies], 2),
        ])
    return rows


@dataclass
class Meta:
    when: str
    code: str
    runs: int
    cpus: int
    requests: int
    seconds: float
    legit_ips: list[str]
    nomatch_mb: int
    big_gb: float


def write_markdown(path: Path, results: dict[str, list[Run]], meta: Meta,
                   notes: list[str]) -> None:
    table = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    table += ["| " + " | ".join(r) + " |" for r in summary_rows(results)]
    ids = sorted({r.attacker.note for r in results.get("resume", [])
                  if r.attacker is not None and r.attacker.note})
    lines = "\n".join(f"- {n}" for n in notes)
    sources = " and ".join(meta.legit_ips)
    if len(meta.legit_ips) > 1:
        sources += " in turn (each stays under its own 120/minute)"
    runs = f"{meta.runs} run{'s' if meta.runs != 1 else ''}"
    path.write_text(f"""# Attack benchmark

Written by `bench/attacks.py` ({meta.when}; code: {meta.code}; {runs} per scenario,
each on a fresh server with default limits; {meta.cpus} CPUs).

Legitimate request: `GET {LEGIT_URL}` ({SMALL_LINES}-line file), one at a time,
20–50 ms apart, up to {meta.requests} per run or {meta.seconds:.0f} s, 30 s timeout, from
{sources}. p50 and p99 are over the successful requests of a run: median [min–max] over
runs. A failure is any answer but a 200 with 10 lines, or a timeout; its wall time is listed.
Attacker requests answered: those that got a status (any); statuses are summed over runs.
Server cores: CPU of the server process over the measured phase; attacker cores: the
attacker process's own, over its whole run (the two share the machine's cores).

{chr(10).join(table)}

Scenarios (each attack starts {WARMUP_S:.0f} s before the first measured request):

- **none**: no attack.
- **regex**: {STREAMS} concurrent `GET {REGEX_URL}` from {REGEX_IP} on a
  {meta.nomatch_mb} MB log of `xxx…x abc` lines (nothing matches), each reopened when it
  ends, request starts at least {RATE_GAP_S} s apart (under 120/minute).
- **resume**: {RESUME_IP} takes a real id (`n=0&follow=0`), sets its offset to `0` and its
  check to `00000000` (any other part kept), then keeps {STREAMS} `GET {RESUME_URL}` with
  that `Last-Event-ID` open on a {meta.big_gb} GB log of real 100-byte lines, reading
  and discarding what comes, paced like regex.{" Ids: " + "; ".join(ids) + "." if ids else ""}
- **logins**: auth on (user alice); each of {len(LOGIN_IPS)} addresses
  ({LOGIN_IPS[0]}–{LOGIN_IPS[-1]}) sends bad Basic passwords for alice, request starts at
  least {RATE_GAP_S} s apart, two in flight. The legitimate client sends alice's right
  password (checked once before the attack, then cached by the server).

Notes:

{lines}
""")


def print_table(results: dict[str, list[Run]]) -> None:
    keep = [i for i, h in enumerate(HEAD) if h != "failed: what, wall time"]
    rows = [[r[i] for i in keep] for r in [HEAD, *summary_rows(results)]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(keep))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


# -- main ------------------------------------------------------------------------------------

def run_all(args: argparse.Namespace, scenarios: list[str], env: dict[str, str],
            notes: list[str]) -> tuple[dict[str, list[Run]], float]:
    """Every run of every scenario, interleaved; the big files only exist meanwhile."""
    work = Path(tempfile.mkdtemp(prefix="logtail-attacks-"))
    free_gb = shutil.disk_usage(work).free / 1e9
    big_gb = args.big_gb
    if free_gb < 10 and big_gb > 0.5:
        big_gb = 0.5
        notes.append(f"Only {free_gb:.1f} GB free: the \"2 GB\" log was {big_gb} GB.")
    results: dict[str, list[Run]] = {s: [] for s in scenarios}
    quiet = Quiet(threshold=0.5, budget_s=60.0)
    try:
        print(f"writing files in {work} ({free_gb:.0f} GB free) ...", flush=True)
        t0 = time.monotonic()
        files = write_files(work, int(big_gb * (1 << 30)), args.nomatch_mb << 20)
        print(f"  {time.monotonic() - t0:.1f} s", flush=True)
        auth_hash = password_hash(env) if "logins" in scenarios else None
        for run in range(args.runs):
            for scenario in scenarios:
                busy = quiet.wait(max_s=10.0)
                server = Server.start(work, files, env,
                                      auth_hash if scenario == "logins" else None,
                                      f"{scenario}-{run}")
                try:
                    r = asyncio.run(one_run(scenario, server, args))
                finally:
                    server.stop()
                r.busy_before = round(busy, 2)
                results[scenario].append(r)
                att = r.attacker
                print(f"run {run + 1} {scenario:7s} p50 {r.p50_ms} ms  p99 {r.p99_ms} ms  "
                      f"ok {r.ok}/{r.sent}  timeouts {r.timeouts}  server {r.server_cores} "
                      f"cores" + (f"  attacker sent {att.sent} {dict(att.statuses)}"
                                  if att else ""), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results, big_gb


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=25.0,
                    help="longest measured phase per run (the attack starts 3 s earlier)")
    ap.add_argument("--requests", type=int, default=200, help="legitimate requests per run")
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--big-gb", type=float, default=2.0)
    ap.add_argument("--nomatch-mb", type=int, default=70)
    ap.add_argument("--logtail-path", default="",
                    help="run the logtail package found in this directory instead")
    ap.add_argument("--label", default="", help="what code this is, for ATTACKS.md")
    ap.add_argument("--out", default=str(BENCH / "ATTACKS.md"))
    ap.add_argument("--attacker", help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.attacker:
        tally = asyncio.run(run_attacker(args.attacker, args.base, args.seconds))
        print(json.dumps(asdict(tally)), flush=True)
        return
    scenarios = [s for s in args.only.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"attacks: unknown scenario {s!r} (known: {', '.join(SCENARIOS)})")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up as on ^C
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    code = "the working tree"
    if args.logtail_path:
        env["PYTHONPATH"] = str(Path(args.logtail_path).resolve())
        code = f"the copy in `{Path(args.logtail_path).name}/`"
    code = args.label or code
    notes = ["Shared 2-core machine: other work ran beside it, so figures are noisy; the "
             "attackers (a second process) use CPU too.",
             "Requests go one at a time, so a slow answer delays the next: under a heavy "
             "attack a run holds few requests (see legit ok / sent)."]
    started = time.time()
    results, big_gb = run_all(args, scenarios, env, notes)
    for scenario, runs in results.items():
        for i, r in enumerate(runs):
            if r.attacker is not None and r.attacker.note.startswith("attacker"):
                notes.append(f"{scenario}, run {i + 1}: {r.attacker.note}")
    busy = spread([r.busy_before for rs in results.values() for r in rs], 2)
    notes.append(f"Other processes kept {busy} cores busy just before the runs.")
    print()
    print_table(results)
    meta = Meta(when=time.strftime("%Y-%m-%d %H:%M", time.localtime(started)), code=code,
                runs=args.runs, cpus=os.cpu_count() or 0, requests=args.requests,
                seconds=args.seconds, legit_ips=legit_addresses(args.requests),
                nomatch_mb=args.nomatch_mb, big_gb=big_gb)
    write_markdown(Path(args.out), results, meta, notes)
    out_dir = BENCH / "out"
    out_dir.mkdir(exist_ok=True)
    raw = {"meta": asdict(meta), "notes": notes,
           "results": {k: [asdict(r) for r in v] for k, v in results.items()}}
    (out_dir / "attacks.json").write_text(json.dumps(raw, indent=1))
    print(f"\nwrote {args.out} and {out_dir / 'attacks.json'}")


if __name__ == "__main__":
    main()
