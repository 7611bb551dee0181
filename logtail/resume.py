"""Resuming a stream from a Last-Event-ID.

The id names an inode, an offset and a checksum of the bytes before it, so resuming needs
nothing from memory: the file it names is found among the follower's open generations,
or on disk next to the current file (`app.log.1`, `app.log-20250101`...), and read on from
the offset. Anything that cannot be honoured becomes a `reset` with the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from logtail.follow import Follower
from logtail.generation import Generation
from logtail.position import Identity, Position, check_at

__all__ = ["Resumed", "matches", "resolve"]

COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".z", ".zip")
MAX_SIBLINGS = 200


@dataclass(slots=True)
class Resumed:
    gen: Generation
    offset: int
    pending_bytes: int  # what is left to send from the resume point to the present
    opened: list[Generation]  # generations opened for this stream alone (closed by it)


def resolve(pos: Position, follower: Follower) -> Resumed | str:
    """Where a stream resumes, or why it cannot."""
    gens = follower.generations()
    for gen in reversed(gens):
        if gen.identity != pos.identity:
            continue
        if pos.offset <= max(gen.published, gen.size()) and matches(gen.fd, pos):
            pending = sum(g.published for g in gens[gens.index(gen) :]) - pos.offset
            return Resumed(gen, pos.offset, pending, [])
    siblings = _rotated_siblings(follower.path, pos.identity, {g.identity for g in gens})
    if siblings is None:
        return "the file this id names is gone"
    if isinstance(siblings, str):
        return siblings
    first_fd = siblings[0].fd
    if pos.offset > siblings[0].published or not matches(first_fd, pos):
        for g in siblings:
            g.close()
        return "the file this id names has changed"
    nxt = gens[0] if gens else follower.latest()
    for older, newer in zip(siblings, [*siblings[1:], nxt], strict=True):
        older.final, older.reason, older.next = True, "replaced", newer
    pending = sum(g.published for g in siblings) - pos.offset + sum(g.published for g in gens)
    return Resumed(siblings[0], pos.offset, pending, siblings)


def matches(fd: int, pos: Position) -> bool:
    try:
        return check_at(fd, pos.offset) == pos.check
    except OSError:
        return False


def _rotated_siblings(
    path: Path, identity: Identity, known: set[Identity]
) -> list[Generation] | str | None:
    """The rotated file with `identity` beside `path`, then any rotated after it, by age."""
    prefix = path.name
    found: tuple[Path, os.stat_result] | None = None
    candidates: list[tuple[Path, os.stat_result]] = []
    try:
        with os.scandir(path.parent) as it:
            for i, entry in enumerate(it):
                if i > 10 * MAX_SIBLINGS:
                    break
                name = entry.name
                if (name == prefix or not name.startswith(prefix)
                        or name[len(prefix)] not in ".-_" or name.lower().endswith(COMPRESSED)):
                    continue
                try:
                    st = entry.stat()
                except OSError:
                    continue
                if Identity.of(st) in known:
                    continue
                if Identity.of(st) == identity:
                    found = (Path(entry.path), st)
                else:
                    candidates.append((Path(entry.path), st))
    except OSError:
        return None
    if found is None:
        return None
    newer = sorted((c for c in candidates if c[1].st_mtime_ns >= found[1].st_mtime_ns),
                   key=lambda c: c[1].st_mtime_ns)[:MAX_SIBLINGS]
    gens: list[Generation] = []
    for p, st in [found, *newer]:
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        opened = os.fstat(fd)
        if Identity.of(opened) != Identity.of(st):
            os.close(fd)
            continue
        gen = Generation(fd, Identity.of(st), p, published=opened.st_size)
        gens.append(gen)
    if not gens or gens[0].identity != identity:
        for g in gens:
            g.close()
        return "the rotated file this id names could not be opened"
    return gens
