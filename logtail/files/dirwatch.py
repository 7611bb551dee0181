"""What every directory watcher shares: its lifecycle, its health, and whom it tells.

A watcher tells two kinds of parties about its directory. Followers are poked when
their file's name changed, and on every tick of the safety net. Listeners (the globs
of `logtail.files.sources`) are told the names of entries that were created, deleted,
renamed or changed attributes, or None for "anything may have changed": the directory
came back, was replaced, or events were lost. Writes alone never reach a listener, so
a busy log does not make its directory be listed again.

Health: a watcher whose task ends without being asked to stop is dead, and so is one
that failed MAX_FAILURES times in a row, until it runs again (`/healthz` fails).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path

from logtail.files.follow import Follower

__all__ = ["MAX_FAILURES", "BaseWatcher", "Listener", "identity"]

log = logging.getLogger("logtail.files.watch")
MAX_FAILURES = 3  # failed starts in a row before a watcher counts as dead (healthz fails)

# told the names of entries that came, went or changed attributes; None: look at them all
Listener = Callable[[frozenset[str] | None], None]


def identity(directory: Path) -> tuple[int, int] | None:
    """(device, inode) of the directory, or None while it does not exist."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class BaseWatcher:
    """One watched directory; a backend supplies `_run` (and `_halt` to wake it up)."""

    STOP_GRACE_S = 0.0  # how long `stop` lets `_run` end by itself before cancelling it

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.followers: set[Follower] = set()
        self.listeners: set[Listener] = set()
        self.restarts = 0
        self.failures = 0  # failed starts since the last time the watcher ran
        self.alive = True  # False after MAX_FAILURES failures in a row, or if the task died
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        """Nobody needs this watcher any more."""
        return not self.followers and not self.listeners

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"logtail-watch-{self.directory}")
        self._task.add_done_callback(self._ended)

    async def stop(self) -> None:
        """Stop and wait for the task: by itself within STOP_GRACE_S, else cancelled."""
        self._stopping = True
        self._halt()
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done() and self.STOP_GRACE_S > 0:
            await asyncio.wait({task}, timeout=self.STOP_GRACE_S)
        task.cancel()
        await asyncio.wait({task})

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self._stopping:
            return
        self.alive = False
        error = None if task.cancelled() else task.exception()
        log.error("watcher for %s stopped unexpectedly%s", self.directory,
                  f": {error!r}" if error else "")

    # -- telling followers and listeners -----------------------------------------------------

    def poke_all(self) -> None:
        for f in self.followers:
            f.poke()

    def tell(self, names: Collection[str] | None, entries: Collection[str] | None) -> None:
        """`names` changed (None: any may have), and of them `entries` came, went or changed
        attributes (None: any may have). Listeners first: they only schedule a look."""
        if entries is None or entries:
            told = None if entries is None else frozenset(entries)
            for listener in list(self.listeners):
                listener(told)
        if names is None:
            self.poke_all()
            return
        for f in self.followers:
            if not f.watch_names.isdisjoint(names):
                f.poke()

    def tell_all(self) -> None:
        """Anything may have changed (a fresh watch: changes before it were not seen)."""
        self.tell(None, None)

    # -- health ------------------------------------------------------------------------------

    def _ran(self) -> None:
        self.failures = 0
        self.alive = True

    def _failed(self, error: BaseException) -> None:
        self.restarts += 1
        self.failures += 1
        if self.failures >= MAX_FAILURES:
            self.alive = False
        if self.failures <= MAX_FAILURES:  # then quiet until it works again
            log.warning("watcher for %s failed (%s); trying again", self.directory, error)

    # -- the backend -------------------------------------------------------------------------

    async def _run(self) -> None:
        raise NotImplementedError

    def _halt(self) -> None:
        """Ask `_run` to end (before it is cancelled)."""
