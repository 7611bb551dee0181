"""How many history scans (searches, lines around a position) run at once: at most
`history.max_scans` in this worker (then 503) and `history.scans_per_ip` for one client
address (then 429). A slot is held until no thread works for the scan any more, so a
scan whose client left frees its slot only once it has really stopped."""

from __future__ import annotations

from collections import Counter

from logtail.http.guard import Refusal

__all__ = ["ScanSlots"]

RETRY_AFTER_S = 2


class ScanSlots:
    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self.running = 0
        self._by_ip: Counter[str] = Counter()

    def acquire(self, ip: str) -> Refusal | None:
        """Take a slot for `ip`, or say why not; give it back with `release`."""
        if self.running >= self.total:
            return Refusal(503, "max_scans", f"server busy: {self.total} history scans "
                           "running (history.max_scans)", RETRY_AFTER_S)
        if self._by_ip[ip] >= self.per_ip:
            return Refusal(429, "scans_per_ip", f"more than {self.per_ip} history scans "
                           f"from {ip} (history.scans_per_ip)", RETRY_AFTER_S)
        self.running += 1
        self._by_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.running -= 1
        self._by_ip[ip] -= 1
        if self._by_ip[ip] <= 0:
            del self._by_ip[ip]
