"""Which files beside a log are its rotated generations: exactly the names logrotate makes.

`app.log.1`, `app.log.2.gz` (numbered) and `app.log-20261130`, `app.log-2026113013.gz`
(`dateext`, daily or hourly). Nothing else that merely starts with the log's name
(`app.log.bak-keys`, `app.log_private`) is ever read as part of its history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RotatedName", "rotated_name"]

SUFFIX = re.compile(r"(?:\.(?P<num>[1-9][0-9]{0,5})|-(?P<date>[0-9]{8}(?:[0-9]{2})?))"
                    r"(?P<gz>\.gz)?")


@dataclass(frozen=True, slots=True)
class RotatedName:
    name: str
    age: int  # larger is older, within one naming scheme
    compressed: bool


def rotated_name(base: str, name: str) -> RotatedName | None:
    """`name` as a rotated sibling of the log named `base`, or None if it is not one."""
    if len(name) <= len(base) or not name.startswith(base):
        return None
    m = SUFFIX.fullmatch(name, len(base))
    if m is None:
        return None
    age = int(m["num"]) if m["num"] else -int(m["date"].ljust(10, "0"))
    return RotatedName(name, age, m["gz"] is not None)
