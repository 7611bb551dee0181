"""What a glob lists in its directory: the matching names that are live logs.

Never listed: rotated siblings and compressed files (`is_rotated_sibling`), hidden files
unless the pattern starts with a dot, with `follow_symlinks = false` symlinks whose target
is outside the directory, and for a served directory (`files_only`) anything but regular
files. Only the directory is read (its entries and their types; a symlink's target is
resolved): no file is opened, so a FIFO among them cannot block the listing.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path

from logtail.files.rotated import rotated_name

__all__ = ["COMPRESSED", "Scan", "is_rotated_sibling", "scan"]

COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


def is_rotated_sibling(name: str, names: Container[str]) -> bool:
    """A log's history, not a live log: a compressed file, or `<base><suffix>` with a
    suffix logrotate gives (`.1`, `.2.gz`, `-20261130`, `-2026113013`; see
    `logtail.files.rotated`) where `<base>` is also in `names` or ends in `.log`."""
    if name.endswith(COMPRESSED):
        return True
    for i in range(len(name) - 1, 0, -1):
        if name[i] in ".-":
            base = name[:i]
            if (base in names or base.endswith(".log")) and rotated_name(base, name):
                return True
    return False


@dataclass(frozen=True, slots=True)
class Scan:
    """What one listing of a glob's directory found."""

    names: list[str]  # served, sorted
    present: frozenset[str]
    ok: bool = True  # False: the directory is missing or cannot be read
    error: str = ""
    links_skipped: int = 0  # symlinks out of the directory, not followed


def scan(directory: Path, pattern: str, follow_symlinks: bool, files_only: bool) -> Scan:
    """The names in `directory` a glob serves. Blocking: run it in a thread."""
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except OSError as e:
        return Scan([], frozenset(), ok=False, error=e.strerror or str(e))
    everything = {entry.name for entry in entries}
    hidden_ok = pattern.startswith(".")
    real_dir = os.path.realpath(directory)
    names: list[str] = []
    links_skipped = 0
    for entry in entries:
        n = entry.name
        if (n.startswith(".") and not hidden_ok) or not fnmatch.fnmatchcase(n, pattern) \
                or is_rotated_sibling(n, everything):
            continue
        try:
            if entry.is_symlink() and not follow_symlinks \
                    and os.path.dirname(os.path.realpath(entry.path)) != real_dir:
                links_skipped += 1
                continue
            if files_only and not entry.is_file():
                continue
        except OSError:
            continue  # gone while we looked
        names.append(n)
    names.sort()
    return Scan(names, frozenset(names), links_skipped=links_skipped)
