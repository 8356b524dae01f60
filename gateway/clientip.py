"""Client IP resolution over trusted proxies: the one resolver every feature uses.

The client IP is the socket peer, unless the peer is a trusted proxy. Then the
``X-Forwarded-For`` chain is walked right to left (each proxy appends the address
it saw) and the first address that is not itself a trusted proxy is the client.
An untrusted peer's ``X-Forwarded-For`` is never read: a client cannot choose its
own IP by sending the header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=4096)
def parse_ip(text: str) -> IPAddress | None:
    """Parse an address as proxies write it: bare, ``[v6]``, ``[v6]:port`` or ``v4:port``."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        text = text[1:end] if end > 0 else text
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """A set of CIDRs whose ``X-Forwarded-*`` headers the gateway believes."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def contains(self, address: str) -> bool:
        cached = self._cache.get(address)
        if cached is None:
            ip = parse_ip(address)
            cached = ip is not None and any(ip in network for network in self.networks)
            if len(self._cache) < 65536:
                self._cache[address] = cached
        return cached

    def resolve(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """Return the client IP for a connection from ``peer`` carrying these X-Forwarded-For values."""
        if not self.networks or not self.contains(peer):
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        client = peer
        for hop in reversed(hops):
            ip = parse_ip(hop)
            if ip is None:
                # A malformed entry ends the walk: the nearest address we could read stands.
                break
            client = str(ip)
            if not self.contains(client):
                return client
        return client
