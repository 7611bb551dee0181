"""Costly reads run apart from everything else, and fairly between clients.

A backlog scan may read tens of megabytes backwards through a cold file. Scans run in a
small thread pool of their own (not the default pool, which other work shares), at most
`per_ip` at a time for one client address, and in slices: after each slice a scan gives
its thread back and queues again (asyncio's semaphores wake waiters in order), so one
client's scans queue behind each other, and a cheap scan from someone else waits for at
most one slice, never for a whole expensive scan.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

__all__ = ["SLICE_BYTES", "ScanGate", "SteppedScan"]

SLICE_BYTES = 4 * 1024 * 1024


class SteppedScan(Protocol):
    def step(self, budget: int) -> bool: ...


class ScanGate:
    def __init__(self, threads: int, per_ip: int) -> None:
        self.threads = threads
        self.per_ip = per_ip
        self._pool: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._clients: dict[str, tuple[asyncio.Semaphore, int]] = {}

    async def run(self, ip: str, scan: SteppedScan, done: Callable[[], None]) -> None:
        """Step `scan` to its end in turns; `done` runs once no thread touches the scan
        any more (it closes the scan's descriptor), even when the caller is cancelled."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="logtail-scan")
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
