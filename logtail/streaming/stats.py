"""What one stream did: plain counters, kept by the stream and summed by the metrics.

A leaf: the metrics import it without importing streaming, files or the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["StreamStats"]


@dataclass(slots=True, eq=False)
class StreamStats:
    lines: int = 0
    bytes: int = 0
    batches: int = 0
    heartbeats: int = 0
    dropped: int = 0
    resumed: bool = False
    notices: dict[str, int] = field(default_factory=dict)
