"""Who is asking: the socket peer, or the client a trusted proxy says it forwards for.

Forwarded headers are believed only when the connection comes from an address in
`server.trusted_proxies`; anyone else could write them, and so dodge their limits.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

__all__ = ["ClientIP"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FORWARDED_FOR = re.compile(r'for\s*=\s*"?\[?([^\]";,\s]+)', re.I)


def _parse(text: str) -> IPAddress | None:
    text = text.strip()
    if text.count(":") == 1 and "." in text:  # IPv4 with a port
        text = text.split(":")[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class ClientIP:
    def __init__(self, trusted: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def trusted(self, addr: IPAddress | None) -> bool:
        return addr is not None and any(addr in net for net in self.networks)

    def resolve(self, peer: str, headers: Mapping[str, str]) -> str:
        """The client address for limits and logs."""
        peer_addr = _parse(peer)
        if peer_addr is None:
            return peer or "unknown"
        if not self.trusted(peer_addr):
            return str(peer_addr)
        hops: list[str] = []
        if fwd := headers.get("forwarded"):
            hops = FORWARDED_FOR.findall(fwd)
        elif xff := headers.get("x-forwarded-for"):
            hops = [h for h in xff.split(",") if h.strip()]
        elif real := headers.get("x-real-ip"):
            hops = [real]
        # walk from the nearest hop: the first address we do not trust is the client
        for hop in reversed(hops[-20:]):
            addr = _parse(hop)
            if addr is None:
                return str(peer_addr)  # garbage from a trusted proxy: do not guess
            if not self.trusted(addr):
                return str(addr)
        return str(peer_addr)
