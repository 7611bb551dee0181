"""Who is asking: the socket peer, or the client a trusted proxy says it forwards for.

Forwarded headers are believed only when the connection comes from an address in
`server.trusted_proxies`, and only the one header that proxy sets
(`server.forwarded_header`): a proxy overwrites or appends to its own header but passes
the others through as the client wrote them, so believing any other would let a client
choose its own address, and with it its own limits.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Protocol

__all__ = ["AddressSet", "ClientIP", "HeaderLines"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_HOPS = 20
# one `for=` parameter of an RFC 7239 element: a token or a quoted string
FOR_PARAM = re.compile(r'(?:^|;)\s*for\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)', re.I)
ELEMENTS = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+')


class HeaderLines(Protocol):
    """Request headers that can hold one name on several lines (Sanic's `Header`)."""

    def getall(self, key: str, default: list[str]) -> list[str]: ...


def _parse(text: str) -> IPAddress | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1:text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":")[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _forwarded_hops(value: str) -> list[str]:
    """The `for=` of each element of a `Forwarded` value, "" where an element has none."""
    hops = []
    for element in ELEMENTS.findall(value):
        m = FOR_PARAM.search(element.strip())
        hops.append(m.group(1) if m else "")
    return hops


class AddressSet:
    """IP addresses and CIDRs (`trusted_proxies`, `metrics_allow`), for membership tests."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(e, strict=False) for e in entries)

    def __contains__(self, addr: IPAddress | str | None) -> bool:
        if isinstance(addr, str):
            addr = _parse(addr)
        return addr is not None and any(addr in net for net in self.networks)


class ClientIP:
    def __init__(self, trusted: Iterable[str], header: str = "X-Forwarded-For") -> None:
        self.proxies = AddressSet(trusted)
        self.header = header.lower()

    def trusted(self, addr: IPAddress | None) -> bool:
        return addr in self.proxies

    def hops(self, lines: Sequence[str]) -> list[str]:
        """The addresses in the header, nearest last; several lines are one list, in order."""
        value = ",".join(lines)
        if self.header == "forwarded":
            return _forwarded_hops(value)
        return [h for h in value.split(",") if h.strip()]

    def resolve(self, peer: str, headers: HeaderLines) -> str:
        """The client address for limits and logs: walking from the nearest hop, the first
        address that is not a trusted proxy."""
        peer_addr = _parse(peer)
        if peer_addr is None:
            return peer or "unknown"
        if not self.trusted(peer_addr):
            return str(peer_addr)
        client = peer_addr
        for hop in reversed(self.hops(headers.getall(self.header, []))[-MAX_HOPS:]):
            addr = _parse(hop)
            if addr is None:
                break  # garbage or an obfuscated hop: the last trusted address answers
            client = addr
            if not self.trusted(addr):
                break
        return str(client)
