"""The served files, by name: fixed `path` entries and the current matches of globs.

A glob (`[[files]] glob`, or a directory given to `logtail serve`) is listed at start and
again whenever its directory's watcher says that an entry came, went, was renamed or
changed attributes: the same watcher the followers use (one per directory per worker),
woken by the kernel, never a poll. Listing runs in a thread and touches only the
directory (no file is opened, so a FIFO cannot block it), so a directory of 100,000
files does not hold the event loop.

- Names: a match is served as `<name>.<basename>` (characters outside `[A-Za-z0-9._-]`
  become `_`; cut to 64). A name already taken (by a fixed entry, or an earlier match)
  gets `-2`, `-3`, ...: files found together are named in sorted path order, and a name
  once given stays with its file while it is listed, so a URL never changes file.
- A file is listed once: a path a fixed entry or an earlier glob serves is skipped.
- What a glob lists in its directory is `logtail.files.listing`'s rule.
- At most `limits.max_files` per glob (the first ones in sorted order at start, then as
  they come); past it, a warning in the log and on `/healthz`.
- A file that goes stays listed (`exists: false`, its follower and streams untouched)
  for GONE_KEEP_S, so one that is recreated keeps its name; then it is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from logtail.config import Config, FileConfig
from logtail.files.dirwatch import Listener
from logtail.files.follow import Follower
from logtail.files.generation import file_status
from logtail.files.listing import Scan, scan
from logtail.files.position import IdCodec
from logtail.files.watch import WatchRegistry

__all__ = ["GONE_KEEP_S", "Source", "SourceSet", "describe"]

log = logging.getLogger("logtail.files.sources")

GONE_KEEP_S = 300.0  # a glob's file that went is listed as gone this long, then dropped
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
NAME_MAX = 64
MIN_GAP_S = 0.05  # between two listings of a directory that keeps changing


@dataclass(slots=True, eq=False)
class Source:
    """One served file."""

    name: str
    title: str
    path: Path
    gone_since: float | None = None  # when a glob's file went (monotonic)
    glob: str | None = None  # the `name` of the glob entry that lists it, if one does


def describe(sources: Sequence[Source], show_paths: bool) -> list[dict[str, object]]:
    """`/api/files` entries, with each file's state now. Blocking (a stat per file, and an
    open for an empty one): run it in a thread."""
    out: list[dict[str, object]] = []
    for s in sources:
        entry: dict[str, object] = {"name": s.name, "title": s.title}
        if s.glob is not None:
            entry["glob"] = s.glob
        st, unreadable = (None, None) if s.gone_since is not None else file_status(s.path)
        if st is None:
            entry.update(size=None, mtime=None, exists=False, readable=False)
        else:
            entry.update(size=st.st_size, mtime=st.st_mtime, exists=True,
                         readable=unreadable is None)
            if unreadable is not None:
                entry["error"] = unreadable
        if show_paths:
            entry["path"] = str(s.path)
        out.append(entry)
    return out


class _Glob:
    """One glob entry and the files it lists now (by basename)."""

    def __init__(self, index: int, cfg: FileConfig) -> None:
        self.index = index
        self.cfg = cfg
        self.directory = cfg.path.parent
        self.pattern = cfg.path.name
        self.listed: dict[str, Source] = {}
        self.last: Scan | None = None
        self.capped = False
        self.listener: Listener | None = None
        self.task: asyncio.Task[None] | None = None
        self.again = False  # a change came while listing: list again
        self.warned = ""

    def scan(self) -> Scan:
        return scan(self.directory, self.pattern, self.cfg.follow_symlinks, self.cfg.files_only)

    def title(self, name: str, base: str) -> str:
        return f"{self.cfg.title}/{base}" if self.cfg.title else name

    def warning(self, max_files: int) -> str:
        last, where = self.last, f"files[{self.index}] ({self.cfg.path})"
        if last is None:
            return ""
        if not last.ok:
            return f"{where}: matches nothing: cannot list {self.directory}: {last.error}"
        if self.capped:
            return (f"{where}: {len(last.names)} matches, only {max_files} served "
                    "(limits.max_files)")
        if not last.names:
            return f"{where}: matches nothing (yet)"
        if last.links_skipped:
            return (f"{where}: {last.links_skipped} symlinks out of {self.directory} not "
                    "served (follow_symlinks = false)")
        return ""


class SourceSet:
    """Every served file by name, kept current, with one Follower per name in `followers`
    (the dict itself stays the same object: the metrics read it when scraped)."""

    @classmethod
    def configured(cls, config: Config, codec: IdCodec, registry: WatchRegistry) -> SourceSet:
        """The files of `config`, followed as its `[stream]` and `[watch]` say, each
        follower telling `registry` what it watches (the server and the shipper alike)."""
        def follower(name: str, path: Path) -> Follower:
            f = Follower(name, path, codec, config.stream.max_line_bytes,
                         config.stream.partial_line_s, config.watch.idle_stop_s,
                         rotate_grace_s=config.watch.rotate_grace_s)
            f.on_watch_change = registry.update
            return f

        return cls(config.files, config.limits.max_files, follower, registry)

    def __init__(self, files: Sequence[FileConfig], max_files: int,
                 make: Callable[[str, Path], Follower], registry: WatchRegistry) -> None:
        self.max_files = max_files
        self.followers: dict[str, Follower] = {}
        self.version = 0  # goes up whenever the list changes
        self._make = make
        self._registry = registry
        self._names: dict[str, Source] = {}
        self._paths: set[Path] = set()
        self._order: list[Source | _Glob] = []
        self._leaving: set[Follower] = set()  # dropped from the list, still read by streams
        self._changed = asyncio.Event()
        self._prune: asyncio.TimerHandle | None = None
        self._started = self._closed = False
        for i, fc in enumerate(files):
            if fc.glob:
                self._order.append(_Glob(i, fc))
            else:
                src = Source(fc.name, fc.title, fc.path)
                self._add(src)
                self._order.append(src)
        self._apply([(g, g.scan()) for g in self._globs])  # once, before serving

    @property
    def _globs(self) -> list[_Glob]:
        return [item for item in self._order if isinstance(item, _Glob)]

    @property
    def dynamic(self) -> bool:
        """The list can change while the server runs (some glob is served)."""
        return bool(self._globs)

    def entries(self) -> list[Source]:
        """The list, in config order; a glob's files sorted by basename."""
        out: list[Source] = []
        for item in self._order:
            if isinstance(item, _Glob):
                out.extend(src for _, src in sorted(item.listed.items()))
            else:
                out.append(item)
        return out

    def warnings(self) -> list[str]:
        return [w for g in self._globs if (w := g.warning(self.max_files))]

    async def wait_change(self, version: int) -> None:
        """Return once the list is no longer the one `version` numbered."""
        while self.version == version:
            await self._changed.wait()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Follow the globs' directories (in the event loop, before serving). A new watch
        tells its listeners at once, so changes since the first listing are seen."""
        self._started = True
        for g in self._globs:
            g.listener = partial(self._on_change, g)
            self._registry.listen(g.directory, g.listener)
        self._schedule_prune()

    async def close(self) -> None:
        """Stop listening and listing; stop every follower, listed or leaving."""
        self._closed = True
        if self._prune is not None:
            self._prune.cancel()
            self._prune = None
        tasks = []
        for g in self._globs:
            if g.listener is not None:
                self._registry.unlisten(g.directory, g.listener)
                g.listener = None
            if g.task is not None:
                g.task.cancel()
                tasks.append(g.task)
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(f.stop() for f in [*self.followers.values(), *self._leaving]))
        self._leaving.clear()

    # -- keeping the list current ------------------------------------------------------------

    def _on_change(self, g: _Glob, entries: frozenset[str] | None) -> None:
        if self._closed:
            return
        if g.task is not None:
            g.again = True
            return
        g.task = asyncio.get_running_loop().create_task(
            self._relist(g), name=f"logtail-glob-{g.index}")

    async def _relist(self, g: _Glob) -> None:
        try:
            while not self._closed:
                g.again = False
                t0 = time.monotonic()
                result = await asyncio.to_thread(g.scan)
                if self._closed:
                    return
                self._apply([(g, result)])
                if not g.again:
                    return
                await asyncio.sleep(max(MIN_GAP_S, time.monotonic() - t0))
        except Exception:  # the next change lists it again
            log.exception("listing %s failed", g.cfg.path)
        finally:
            g.task = None

    def _apply(self, results: list[tuple[_Glob, Scan]]) -> None:
        now = time.monotonic()
        changed = False
        found: list[tuple[Path, _Glob, str]] = []
        for g, result in results:
            g.last = result
            for base, src in g.listed.items():
                here = base in result.present
                if here == (src.gone_since is not None):
                    src.gone_since = None if here else now
                    changed = True
            room = self.max_files - len(g.listed)
            g.capped = False
            for base in result.names:
                if base in g.listed or (path := g.directory / base) in self._paths:
                    continue
                if room <= 0:
                    g.capped = True
                    break
                found.append((path, g, base))
                room -= 1
        for path, g, base in sorted(found, key=lambda item: item[0]):
            name = self._unique(f"{g.cfg.name}.{UNSAFE.sub('_', base)}"[:NAME_MAX])
            g.listed[base] = src = Source(name, g.title(name, base), path, glob=g.cfg.name)
            self._add(src)
        for g, _ in results:
            warning = g.warning(self.max_files)
            if warning != g.warned:
                g.warned = warning
                if warning:
                    log.warning("%s", warning)
        if found or changed:
            self._bump()
        self._schedule_prune()

    def _unique(self, wanted: str) -> str:
        name, n = wanted, 2
        while name in self._names:
            suffix = f"-{n}"
            name, n = wanted[:NAME_MAX - len(suffix)] + suffix, n + 1
        return name

    def _add(self, src: Source) -> None:
        self._names[src.name] = src
        self._paths.add(src.path)
        self.followers[src.name] = self._make(src.name, src.path)

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    # -- dropping what has been gone long enough ---------------------------------------------

    def _schedule_prune(self) -> None:
        if not self._started or self._closed:
            return
        if self._prune is not None:
            self._prune.cancel()
            self._prune = None
        gone = [src.gone_since for g in self._globs for src in g.listed.values()
                if src.gone_since is not None]
        if gone:
            self._prune = asyncio.get_running_loop().call_later(
                max(0.0, min(gone) + GONE_KEEP_S - time.monotonic()), self._drop_gone)

    def _drop_gone(self) -> None:
        self._prune = None
        now = time.monotonic()
        dropped = False
        for g in self._globs:
            for base, src in list(g.listed.items()):
                if src.gone_since is not None and now - src.gone_since >= GONE_KEEP_S:
                    del g.listed[base]
                    self._drop(src)
                    dropped = True
            if dropped and g.capped:
                self._on_change(g, None)  # room for files the cap kept out
        self._leaving = {f for f in self._leaving if f.active}
        if dropped:
            self._bump()
        self._schedule_prune()

    def _drop(self, src: Source) -> None:
        del self._names[src.name]
        self._paths.discard(src.path)
        follower = self.followers.pop(src.name)
        if follower.active:
            self._leaving.add(follower)  # it stops by itself when its last stream ends
