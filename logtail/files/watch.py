"""Directory watchers: ONE `watchfiles.awatch` per watched directory, shared by followers.

Watching the directory (not the file) keeps working across rename, delete and recreate;
each change pokes only the followers whose file name changed. The same loop is the
safety net: every `safety_s` without events it pokes every follower, so a write that
inotify missed (network filesystems, a directory replaced) is still read. A watcher runs
only while some follower in its directory is active: no one watching, nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

from watchfiles import awatch

from logtail.config import WatchConfig
from logtail.files.follow import Follower

__all__ = ["DirectoryWatcher", "WatchRegistry"]

log = logging.getLogger("logtail.files.watch")
MAX_FAILURES = 3  # failed starts in a row before a watcher counts as dead (healthz fails)


class DirectoryWatcher:
    def __init__(self, directory: Path, cfg: WatchConfig) -> None:
        self.directory = directory
        self.cfg = cfg
        self.followers: set[Follower] = set()
        self.restarts = 0
        self.failures = 0  # failed starts since the last time the watcher ran
        self.alive = True  # False after MAX_FAILURES failures in a row, or if the task died
        self._stop = asyncio.Event()
        self._stop_asked = False  # awatch sets `_stop` itself when cancelled: not the same
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"logtail-watch-{self.directory}"
        )
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not self._stop_asked:
            self.alive = False
            log.error("watcher for %s stopped unexpectedly", self.directory)

    async def stop(self) -> None:
        self._stop_asked = True
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            try:
                await asyncio.wait_for(task, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def poke_all(self) -> None:
        for f in self.followers:
            f.poke()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                ident = _identity(self.directory)
                if ident is None:
                    self.poke_all()  # followers see their file missing
                    await self._sleep(self.cfg.safety_s)
                    continue
                # writes made before inotify is set up would be missed: look again soon
                loop.call_later(0.05, self.poke_all)
                loop.call_later(0.25, self.poke_all)
                await self._watch(ident)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the watcher must outlive a bad moment of the filesystem
                self.restarts += 1
                self.failures += 1
                if self.failures >= MAX_FAILURES:
                    self.alive = False
                log.warning("watcher for %s failed (%s); restarting", self.directory, e)
                self.poke_all()
                await self._sleep(self.cfg.safety_s)

    async def _watch(self, ident: tuple[int, int]) -> None:
        async for changes in awatch(
            self.directory,
            watch_filter=None,
            debounce=self.cfg.debounce_ms,
            step=self.cfg.step_ms,
            stop_event=self._stop,
            rust_timeout=int(self.cfg.safety_s * 1000),
            yield_on_timeout=True,
            recursive=False,
            ignore_permission_denied=True,
        ):
            self.failures = 0  # it runs: inotify is set up and answering
            self.alive = True
            if not changes:
                self.poke_all()
                if _identity(self.directory) != ident:
                    self.restarts += 1
                    return  # the directory was replaced: watch the new one
                continue
            names = {os.path.basename(path) for _, path in changes}
            for f in self.followers:
                if not names.isdisjoint(f.watch_names):
                    f.poke()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)


def _identity(directory: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class WatchRegistry:
    """Which directories are watched, for which active followers."""

    def __init__(self, cfg: WatchConfig) -> None:
        self.cfg = cfg
        self.watchers: dict[Path, DirectoryWatcher] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._hub = None  # the inotify instance shared by this worker's directories
        self._inotify_ok = sys.platform.startswith("linux")
        self._past_restarts = 0  # of watchers no longer running, so the total never drops

    @property
    def restarts(self) -> int:
        return self._past_restarts + sum(w.restarts for w in self.watchers.values())

    def update(self, follower: Follower) -> None:
        """Make the watched set match the follower's directories (none when inactive)."""
        wanted = follower.dirs if follower.active else frozenset()
        for directory, watcher in list(self.watchers.items()):
            if follower in watcher.followers and directory not in wanted:
                watcher.followers.discard(follower)
                if not watcher.followers:
                    del self.watchers[directory]
                    self._past_restarts += watcher.restarts
                    task = asyncio.get_running_loop().create_task(watcher.stop())
                    self._stopping.add(task)
                    task.add_done_callback(self._stopping.discard)
        for directory in wanted:
            watcher = self.watchers.get(directory)
            if watcher is None:
                watcher = self.watchers[directory] = self._new_watcher(directory)
                watcher.start()
            watcher.followers.add(follower)

    def _new_watcher(self, directory: Path) -> DirectoryWatcher:
        """inotify on the event loop where it works; watchfiles otherwise, or when asked."""
        if self.cfg.backend != "watchfiles" and self._hub is None and self._inotify_ok:
            try:
                from logtail.files.inotify import InotifyHub

                self._hub = InotifyHub()
            except (ImportError, OSError) as e:
                if self.cfg.backend == "inotify":
                    raise
                log.info("inotify unavailable (%s): using watchfiles", e)
                self._inotify_ok = False
        if self._hub is not None:
            from logtail.files.inotify import InotifyDirectoryWatcher

            return InotifyDirectoryWatcher(directory, self.cfg.safety_s, self._hub)  # type: ignore[return-value]
        return DirectoryWatcher(directory, self.cfg)

    async def close(self) -> None:
        watchers = list(self.watchers.values())
        self.watchers.clear()
        await asyncio.gather(*(w.stop() for w in watchers), *self._stopping)
        if self._hub is not None:
            self._hub.close()
            self._hub = None
