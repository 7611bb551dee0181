"""Which `Host` headers the server answers for: the guard against DNS rebinding.

A page on an attacker's site can make its own name resolve to 127.0.0.1 and then read
anything a local, unauthenticated logtail serves, because the browser believes it is
talking to the attacker's site. The one thing it cannot change is the `Host` header it
sends: that is the attacker's name. So requests for names the server does not know are
refused. The allowed set is worked out once per app, not per request.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

__all__ = ["HostCheck"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LOOPBACK_NETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _address(text: str) -> IPAddress | None:
    """`text` as an IP address (IPv6 with or without brackets), or None for a name."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _host_of(header: str) -> str:
    """The host part of a Host header: port dropped, lower case, no trailing dot."""
    host = header.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class HostCheck:
    """The names and addresses this server answers for.

    The loopback names and addresses (`localhost`, 127.0.0.0/8, ::1) are always allowed:
    a browser sends them only to a page whose own origin is loopback. Listed entries add
    exact names, `.example.com` (the name and its subdomains), IP addresses, or `*`
    (anything). No entries means automatic: bound to loopback, nothing more; bound
    elsewhere, the bind address and this machine's host names; bound to every address
    (0.0.0.0, ::), any IP address as well, since an address cannot be rebound.
    """

    def __init__(self, allowed: Iterable[str], bind: str) -> None:
        entries = [e.lower().rstrip(".") for e in allowed]
        self.any_host = "*" in entries
        self.any_address = False
        names = {"localhost"}
        nets: set[IPNetwork] = set(LOOPBACK_NETS)
        if not entries:
            bind_addr = _address(bind)
            loopback = bind.lower() == "localhost" or (bind_addr is not None
                                                       and bind_addr.is_loopback)
            if not loopback:
                entries = [h.lower().rstrip(".") for h in
                           (bind, socket.gethostname(), socket.getfqdn())]
                self.any_address = bind_addr is not None and bind_addr.is_unspecified
        suffixes: set[str] = set()
        for entry in entries:
            addr = _address(entry)
            if addr is not None:
                nets.add(ipaddress.ip_network(addr))
            elif entry.startswith("."):
                suffixes.add(entry)
            elif entry and entry != "*":
                names.add(entry)
        self.names = frozenset(names)
        self.suffixes = tuple(sorted(suffixes))
        self.networks = tuple(nets)

    def allows(self, header: str | None) -> bool:
        """Whether a request with this Host header is for us. No Host at all (HTTP/1.0)
        passes: browsers always send one, so there is nothing to rebind."""
        if self.any_host or not header:
            return True
        host = _host_of(header)
        addr = _address(host)
        if addr is not None:
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            return self.any_address or any(addr in net for net in self.networks)
        return host in self.names or any(host.endswith(s) or host == s[1:]
                                         for s in self.suffixes)
