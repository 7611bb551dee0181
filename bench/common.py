"""Shared pieces of the benchmark: the line format, process accounting, free ports.

Every benchmark line starts with a 10-digit sequence number and the 19-digit
CLOCK_MONOTONIC time (ns) at which the writer wrote it. CLOCK_MONOTONIC is one clock for
every process on the machine (Python's `time.monotonic_ns()`, Node's
`process.hrtime.bigint()`), so a client's receive time minus that stamp is the
append-to-client latency, and the sequence numbers prove that no line was lost.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LINE_BYTES = 100  # including the newline
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def make_line(seq: int, ts_ns: int) -> bytes:
    """A ~100-byte log line; every 10th is an ERROR (the filter benchmarks select those)."""
    level = "ERROR" if seq % 10 == 0 else "INFO "
    head = f"{seq:010d} {ts_ns:019d} {level} svc=api user={seq % 997} msg=request served "
    return (head + "x" * (LINE_BYTES - 1 - len(head)) + "\n").encode()


def line_block(first: int, count: int, ts_ns: int) -> bytes:
    """`count` lines starting at `first`, all stamped `ts_ns` (built fast, for bulk writes)."""
    return b"".join(make_line(s, ts_ns) for s in range(first, first + count))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want: int = 65536) -> int:
    """Raise RLIMIT_NOFILE as far as allowed; returns the soft limit now in force."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    except OSError:
        nr_open = hard
    target = min(want, nr_open)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(target, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- /proc accounting ------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime in ticks) of one process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        st = _stat(pid)
        if st is not None:
            total += st[1]
    return total / CLK_TCK


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kb(pids: list[int]) -> int:
    return sum(_status_kb(p, "VmRSS") for p in pids)


def hwm_kb(pids: list[int]) -> int:
    return sum(_status_kb(p, "VmHWM") for p in pids)


@dataclass
class CpuMark:
    """CPU seconds of a set of processes between two moments."""

    pids: list[int]
    cpu: float = 0.0
    wall: float = 0.0

    @classmethod
    def start(cls, pids: list[int]) -> CpuMark:
        import time

        return cls(list(pids), cpu_seconds(pids), time.monotonic())

    def stop(self) -> tuple[float, float]:
        """(cpu seconds used, wall seconds elapsed) since start."""
        import time

        return cpu_seconds(self.pids) - self.cpu, time.monotonic() - self.wall


# -- the rest of the machine -----------------------------------------------------------------

def cpu_fields() -> list[int]:
    """The machine's CPU time so far, in ticks, as /proc/stat's `cpu` line has it: user,
    nice, system, idle, iowait, irq, softirq, steal (the hypervisor's), guest..."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def _cpu_times() -> tuple[int, int]:
    fields = cpu_fields()
    idle = fields[3] + fields[4]
    return sum(fields[:8]), idle


class MachineMark:
    """Cores the whole machine kept busy between two moments."""

    def __init__(self) -> None:
        self.t, self.i = _cpu_times()

    def stop(self) -> float:
        t, i = _cpu_times()
        total = t - self.t
        return (os.cpu_count() or 1) * (total - (i - self.i)) / total if total else 0.0


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores the whole machine kept busy over `seconds`."""
    import time

    t0, i0 = _cpu_times()
    time.sleep(seconds)
    t1, i1 = _cpu_times()
    total = t1 - t0
    return (os.cpu_count() or 1) * (total - (i1 - i0)) / total if total else 0.0


class Quiet:
    """Before each measured phase, wait (within a total budget) until the machine is quiet:
    other processes on a shared 2-core machine would otherwise be measured as our latency."""

    def __init__(self, threshold: float = 0.3, budget_s: float = 300.0) -> None:
        self.threshold = threshold
        self.budget = budget_s
        self.waited = 0.0

    def wait(self, max_s: float = 30.0) -> float:
        """Cores busy (by others) just before the phase starts."""
        import time

        busy = busy_cores(0.5)
        start = time.monotonic()
        while busy > self.threshold and self.waited + (time.monotonic() - start) < self.budget \
                and time.monotonic() - start < max_s:
            busy = busy_cores(1.0)
        self.waited += time.monotonic() - start
        return busy


HOUSEKEEPING_IP = "127.0.0.254"  # readiness checks: not charged to any address measured


@dataclass
class LogtailServer:
    """`python -m logtail serve -c CONF` on loopback, its output going to a file (a pipe
    nobody reads could fill); ready once `/healthz` answers."""

    proc: subprocess.Popen[bytes]
    base: str
    port: int
    log: Path

    @classmethod
    def run(cls, conf: Path, log: Path, env: dict[str, str], cwd: Path) -> LogtailServer:
        port = free_port()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "logtail", "serve", "-c", str(conf), "--port", str(port)],
                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        server = cls(proc, f"http://127.0.0.1:{port}", port, log)
        server.wait_ready()
        return server

    def wait_ready(self, timeout: float = 30.0) -> None:
        import httpx

        transport = httpx.HTTPTransport(local_address=HOUSEKEEPING_IP)
        with httpx.Client(transport=transport, timeout=2, trust_env=False) as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.base + "/healthz").status_code in (200, 503):
                        return
                time.sleep(0.2)
        raise TimeoutError("server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
