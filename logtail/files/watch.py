"""Directory watchers: ONE per watched directory per worker, shared by followers and globs.

Watching the directory (not the file) keeps working across rename, delete and recreate;
each change pokes only the followers whose file name changed, and tells the directory's
listeners (globs) when entries came or went. The same loop is the safety net: every
`safety_s` without events it pokes every follower, so a write that inotify missed
(network filesystems, a directory replaced) is still read. A directory is watched only
while an active follower or a glob needs it.

This module holds the registry and the portable backend (`watchfiles.awatch`); on Linux
the registry prefers `logtail.files.inotify`. Both share `logtail.files.dirwatch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from watchfiles import Change, awatch

from logtail.config import WatchConfig
from logtail.files.dirwatch import MAX_FAILURES, BaseWatcher, Listener, identity
from logtail.files.follow import Follower

if TYPE_CHECKING:
    from logtail.files.inotify import InotifyHub

__all__ = ["MAX_FAILURES", "DirectoryWatcher", "WatchRegistry"]

log = logging.getLogger("logtail.files.watch")


class DirectoryWatcher(BaseWatcher):
    """The watchfiles backend: a Rust loop that checks every `step_ms`."""

    STOP_GRACE_S = 2.0

    def __init__(self, directory: Path, cfg: WatchConfig) -> None:
        super().__init__(directory)
        self.cfg = cfg
        self._stop = asyncio.Event()  # awatch's own stop signal (it sets it when cancelled)

    def _halt(self) -> None:
        self._stop.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        present = True
        while not self._stop.is_set():
            try:
                ident = identity(self.directory)
                if ident is None:
                    if present:
                        self.tell_all()  # followers see their file missing, globs empty
                    present = False
                    self.poke_all()
                    await self._sleep(self.cfg.safety_s)
                    continue
                present = True
                # changes made before inotify is set up would be missed: look again soon
                loop.call_later(0.05, self.tell_all)
                loop.call_later(0.25, self.tell_all)
                await self._watch(ident)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the watcher must outlive a bad moment of the filesystem
                self._failed(e)
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
            self._ran()  # it runs: inotify is set up and answering
            if not changes:
                self.poke_all()
                if identity(self.directory) != ident:
                    self.restarts += 1
                    return  # the directory was replaced or is gone: watch it anew
                continue
            self.tell({os.path.basename(path) for _, path in changes},
                      {os.path.basename(path) for change, path in changes
                       if change != Change.modified})

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()


class WatchRegistry:
    """Which directories are watched, for which active followers and listening globs."""

    def __init__(self, cfg: WatchConfig) -> None:
        self.cfg = cfg
        self.watchers: dict[Path, BaseWatcher] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._hub: InotifyHub | None = None  # one inotify instance for this worker's directories
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
                self._release(directory, watcher)
        for directory in wanted:
            self._acquire(directory).followers.add(follower)

    def listen(self, directory: Path, listener: Listener) -> None:
        """Tell `listener` about entries that come and go in `directory`, until `unlisten`."""
        self._acquire(directory).listeners.add(listener)

    def unlisten(self, directory: Path, listener: Listener) -> None:
        watcher = self.watchers.get(directory)
        if watcher is not None:
            watcher.listeners.discard(listener)
            self._release(directory, watcher)

    def _acquire(self, directory: Path) -> BaseWatcher:
        watcher = self.watchers.get(directory)
        if watcher is None:
            watcher = self.watchers[directory] = self._new_watcher(directory)
            watcher.start()
        return watcher

    def _release(self, directory: Path, watcher: BaseWatcher) -> None:
        if not watcher.idle or self.watchers.get(directory) is not watcher:
            return
        del self.watchers[directory]
        self._past_restarts += watcher.restarts
        task = asyncio.get_running_loop().create_task(watcher.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _new_watcher(self, directory: Path) -> BaseWatcher:
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

            return InotifyDirectoryWatcher(directory, self.cfg.safety_s, self._hub)
        return DirectoryWatcher(directory, self.cfg)

    async def close(self) -> None:
        watchers = list(self.watchers.values())
        self.watchers.clear()
        await asyncio.gather(*(w.stop() for w in watchers), *self._stopping)
        if self._hub is not None:
            self._hub.close()
            self._hub = None
