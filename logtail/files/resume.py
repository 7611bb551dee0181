"""Resuming a stream from a Last-Event-ID.

The id names an inode, an offset and a checksum of the bytes before it, signed by the
server, so resuming needs nothing from memory: the file it names is found among the
follower's open generations, or on disk beside the current file under a name logrotate
gives (`app.log.1`, `app.log-20250101`; see `logtail.files.rotated`), and read on from the
offset. A resume through several rotated files opens them one at a time, as the stream
reaches each, from a budget of descriptors shared by all streams. Anything that cannot
be honoured becomes a `reset` with the reason.

An id made during a rotation's grace period names a place in each generation the stream
still followed (see `logtail.files.follow`): the last is resolved as above, the others
are found the same way (held by the follower, else on disk, opened at once and read to
their end) and the stream goes on in each. One of those that is gone cannot be read: the
stream is told (`Resumed.gone`).
"""

from __future__ import annotations

import os
import resource
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from logtail.files.follow import Follower
from logtail.files.generation import Generation, open_generation
from logtail.files.position import IdCodec, Identity, Position, check_at
from logtail.files.rotated import rotated_name

__all__ = ["FdBudget", "Resumed", "matches", "resolve"]

MAX_SIBLINGS = 200
MAX_ENTRIES = 10_000  # directory entries looked at, at most, for one resume


@dataclass(slots=True)
class Resumed:
    gen: Generation
    offset: int
    pending_bytes: int  # what is left to send from the resume point to the present
    older: list[tuple[Generation, int]] = field(default_factory=list)  # rotated files still
    # followed when the id was made (before `gen`), and the place in each
    gone: int = 0  # of those, how many no longer exist (what they got late is unknown)

    def close(self) -> None:
        """Give back the rotated files opened for this resume alone, when it is not used."""
        for gen in (*(g for g, _ in self.older), self.gen):
            if gen.transient:
                gen.close()


class FdBudget:
    """Descriptors that resumes may hold on rotated files, all streams together: a flood
    of resumes gets `reset`s, never a server out of descriptors."""

    def __init__(self, limit: int | None = None) -> None:
        if limit is None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            limit = max(16, (soft if soft > 0 else 1024) // 4)
        self.limit = limit
        self.used = 0

    def take(self, force: bool = False) -> bool:
        if self.used >= self.limit and not force:
            return False
        self.used += 1
        return True

    def give(self) -> None:
        self.used -= 1


@dataclass(frozen=True, slots=True)
class _Sibling:
    path: Path
    identity: Identity
    size: int


def resolve(positions: Sequence[Position], follower: Follower,
            budget: FdBudget) -> Resumed | str:
    """Where a stream resumes, or why it cannot. `positions` are an id's, oldest first."""
    *older, last = positions
    found = _resolve(last, follower, budget, {p.identity for p in older})
    if isinstance(found, str):
        return found
    for pos in older:
        gen = _find(pos, follower, budget)
        if gen is None:
            found.gone += 1
        elif gen is not found.gen and all(g is not gen for g, _ in found.older):
            found.older.append((gen, pos.offset))
            found.pending_bytes += max(0, gen.published - pos.offset)
    return found


def _resolve(pos: Position, follower: Follower, budget: FdBudget,
             skip: set[Identity]) -> Resumed | str:
    """The place the stream reads on from (lines after it are newer than `skip`'s)."""
    gens = follower.generations()
    for gen in reversed(gens):
        if gen.identity != pos.identity:
            continue
        if pos.offset <= max(gen.published, gen.size()) and matches(gen.fd, pos):
            pending = sum(g.published for g in gens[gens.index(gen) :]) - pos.offset
            return Resumed(gen, pos.offset, pending)
    chain = _scan(follower.path, pos.identity, {g.identity for g in gens} | skip)
    if not chain:
        return "the file this id names is gone"
    if not budget.take():
        return "too many rotated files are open for resumes right now; try again later"
    first = _open(chain[0], follower.path, follower.codec, budget)
    if first is None:
        budget.give()
        return "the rotated file this id names could not be opened"
    if pos.offset > first.published or not matches(first.fd, pos):
        first.close()
        return "the file this id names has changed"
    _link(first, chain[1:], gens[0] if gens else follower.latest(), follower, budget)
    pending = sum(s.size for s in chain) - pos.offset + sum(g.published for g in gens)
    return Resumed(first, pos.offset, pending)


def _find(pos: Position, follower: Follower, budget: FdBudget) -> Generation | None:
    """An older generation an id names, still held by the follower or on disk (opened
    alone, final at its present size), or None when it is gone or changed."""
    gens = follower.generations()
    for gen in gens:
        if (gen.identity == pos.identity and pos.offset <= max(gen.published, gen.size())
                and matches(gen.fd, pos)):
            return gen
    chain = _scan(follower.path, pos.identity, {g.identity for g in gens})
    if not chain or not budget.take():
        return None
    opened = _open(chain[0], follower.path, follower.codec, budget)
    if opened is None:
        budget.give()
        return None
    if pos.offset > opened.published or not matches(opened.fd, pos):
        opened.close()
        return None
    opened.retire("replaced")
    return opened


def matches(fd: int, pos: Position) -> bool:
    try:
        return check_at(fd, pos.offset) == pos.check
    except OSError:
        return False


def _link(gen: Generation, newer: list[_Sibling], tail: Generation, follower: Follower,
          budget: FdBudget) -> None:
    """`gen` ends where it is; the next rotated file is opened once a stream gets there."""
    gen.retire("replaced")

    def successor() -> Generation:
        for i, sib in enumerate(newer):
            budget.take(force=True)  # the stream gives one back as it leaves `gen`
            nxt = _open(sib, follower.path, follower.codec, budget)
            if nxt is not None:
                _link(nxt, newer[i + 1 :], tail, follower, budget)
                return nxt
            budget.give()
        return tail

    gen.link_lazily(successor)


def _open(sib: _Sibling, log: Path, codec: IdCodec, budget: FdBudget) -> Generation | None:
    """Open a rotated file by identity: at its name, or found again if rotated since."""
    gen = open_generation(sib.path, codec, follow_links=False)
    if gen is None or gen.identity != sib.identity:
        if gen is not None:
            gen.close()
        again = _scan(log, sib.identity, set())
        gen = open_generation(again[0].path, codec, follow_links=False) if again else None
        if gen is None or gen.identity != sib.identity:
            if gen is not None:
                gen.close()
            return None
    gen.published = gen.size()
    gen.transient = True
    gen.on_close = budget.give
    return gen


def _scan(log: Path, identity: Identity, known: set[Identity]) -> list[_Sibling]:
    """The rotated file with `identity` beside `log`, then those rotated after it."""
    found: tuple[_Sibling, int] | None = None
    others: list[tuple[_Sibling, int]] = []
    try:
        with os.scandir(log.parent) as it:
            for i, entry in enumerate(it):
                if i >= MAX_ENTRIES:
                    break
                name = rotated_name(log.name, entry.name)
                if name is None or name.compressed:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)  # a link is never a sibling
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or Identity.of(st) in known:
                    continue
                sib = _Sibling(Path(entry.path), Identity.of(st), st.st_size)
                if sib.identity == identity:
                    found = (sib, st.st_mtime_ns)
                else:
                    others.append((sib, st.st_mtime_ns))
    except OSError:
        return []
    if found is None:
        return []
    newer = sorted((o for o in others if o[1] >= found[1]), key=lambda o: o[1])
    return [found[0], *(s for s, _ in newer[:MAX_SIBLINGS])]
