"""Costly reads run apart from everything else, and fairly between clients.

A backlog scan may read tens of megabytes backwards through a cold file. Scans run in a
small thread pool of their own (not the default pool, which other work shares), at most
`per_ip` at a time for one client address, and in slices: after each slice a scan gives
its thread back and queues again (asyncio's semaphores wake waiters in order), so one
client's scans queue behind each other, and a cheap scan from someone else waits for at
most one slice, never for a whole expensive scan.

The scan threads share the GIL with the event loop. Where a scan runs Python (a filter
tested line by line), the loop, wanting the GIL back after each of its system calls,
waits for the interpreter's switch interval: 5 ms by default, several times for one line
of a live stream. The pool lowers it to SWITCH_INTERVAL_S; where a scan runs RE2 over
whole blocks, the GIL is let go anyway. They also share the CPU: a search keeps a core
busy for as long as it reads, so its threads run at a lower priority (Linux gives each
thread its own niceness) and a live line's wake-up never queues behind a scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar

__all__ = ["SLICE_BYTES", "GeneratorScan", "OneShot", "ScanGate", "SteppedScan"]

SLICE_BYTES = 4 * 1024 * 1024
SWITCH_INTERVAL_S = 0.001
SCAN_NICENESS = 19  # the scan threads' niceness, the lowest priority: live streams first
T = TypeVar("T")


class SteppedScan(Protocol):
    def step(self, budget: int) -> bool: ...


class OneShot(Generic[T]):
    """A short blocking call (a binary search, a few probes) run as one slice."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._result: list[T] = []

    def step(self, budget: int) -> bool:
        self._result.append(self._fn())
        return True

    @property
    def result(self) -> T:
        return self._result[0]


class GeneratorScan:
    """Work written as plain sequential code: a generator that yields the bytes it read
    since its last yield (at most a block or two). A slice runs it until the budget is
    spent; `stop()` ends it at its next yield, so a scan whose client left stops within
    one block, not one slice. `close()` runs its `finally` blocks (closing its files):
    call it only once no thread runs it (the gate's `done`)."""

    def __init__(self, work: Generator[int, None, None]) -> None:
        self._work = work
        self.stopped = False
        self.finished = False

    def step(self, budget: int) -> bool:
        while budget > 0 and not self.stopped:
            try:
                budget -= max(1, next(self._work))
            except StopIteration:
                self.finished = True
                return True
        return self.stopped or self.finished

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        self.stopped = True
        self._work.close()


class ScanGate:
    def __init__(self, threads: int, per_ip: int) -> None:
        self.threads = threads
        self.per_ip = per_ip
        self._pool: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._clients: dict[str, tuple[asyncio.Semaphore, int]] = {}

    async def run(self, ip: str, scan: SteppedScan, done: Callable[[], None], *,
                  between: Callable[[], Awaitable[None]] | None = None) -> None:
        """Step `scan` to its end in turns; `done` runs once no thread touches the scan
        any more (it closes the scan's descriptor), even when the caller is cancelled.
        `between` runs on the loop after each unfinished slice, holding no thread (it
        sends what the slice found: a slow client slows its own scan only)."""
        if self._pool is None:
            if sys.getswitchinterval() > SWITCH_INTERVAL_S:
                sys.setswitchinterval(SWITCH_INTERVAL_S)  # for the whole process: see above
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="logtail-scan",
                                            initializer=_lower_priority)
            self._slots = asyncio.Semaphore(self.threads)
        assert self._slots is not None
        loop = asyncio.get_running_loop()
        client = self._enter(ip)
        step: asyncio.Future[bool] | None = None
        try:
            async with client:
                while True:
                    async with self._slots:
                        step = loop.run_in_executor(self._pool, scan.step, SLICE_BYTES)
                        finished = await asyncio.shield(step)
                    if finished:
                        return
                    if between is not None:
                        await between()
        finally:
            self._leave(ip)
            if step is not None and not step.done():
                step.add_done_callback(lambda _: done())  # a slice still runs: close after
            else:
                done()

    def _enter(self, ip: str) -> asyncio.Semaphore:
        sem, users = self._clients.get(ip) or (asyncio.Semaphore(self.per_ip), 0)
        self._clients[ip] = (sem, users + 1)
        return sem

    def _leave(self, ip: str) -> None:
        sem, users = self._clients[ip]
        if users <= 1:
            del self._clients[ip]
        else:
            self._clients[ip] = (sem, users - 1)

    def close(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(RuntimeError):
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _lower_priority() -> None:
    """Run the calling thread (a scan thread) at niceness SCAN_NICENESS. A scan still gets
    any core nothing else wants: it is slowed only where it would slow a live stream."""
    with contextlib.suppress(OSError, AttributeError):  # elsewhere than Linux: as it is
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SCAN_NICENESS)
