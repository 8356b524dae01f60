"""IP (CIDR) and Origin allowlists, parsed once and cached by their configured text.

Credential records carry allowlists as tuples of strings; :func:`ip_allowlist`
and :func:`origin_allowlist` turn a tuple into a matcher once and reuse it for
every request presenting that credential. An empty allowlist allows everything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from gateway.clientip import parse_ip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IPAllowlist:
    """Client IPs allowed by a list of IPv4/IPv6 CIDRs (a bare address is a /32 or /128)."""

    __slots__ = ("networks", "_cache")

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        self._cache: dict[str, bool] = {}

    @classmethod
    def parse(cls, entries: Iterable[str]) -> IPAllowlist:
        """Raise ``ValueError`` naming the entry that is not a CIDR."""
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"not an IP network: {entry!r}") from exc
        return cls(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def allows(self, client_ip: str) -> bool:
        if not self.networks:
            return True
        allowed = self._cache.get(client_ip)
        if allowed is None:
            ip = parse_ip(client_ip)  # IPv4-mapped IPv6 peers are compared as IPv4
            allowed = ip is not None and any(ip.version == net.version and ip in net for net in self.networks)
            if len(self._cache) < 4096:
                self._cache[client_ip] = allowed
        return allowed


class OriginAllowlist:
    """Browser origins allowed: exact (``https://app.example.com``) or one-label wildcards (``https://*.example.com``).

    A wildcard matches one or more labels in front of the suffix, never the bare
    suffix itself, and the scheme and port must match exactly. The ``null``
    origin (sandboxed frames, ``file:``) is never allowed by a wildcard.
    """

    __slots__ = ("exact", "wildcards")

    def __init__(self, origins: Iterable[str]) -> None:
        exact: set[str] = set()
        wildcards: list[tuple[str, str]] = []
        for origin in origins:
            normalized = origin.strip().rstrip("/").lower()
            scheme, sep, host = normalized.partition("://")
            if sep and host.startswith("*."):
                wildcards.append((f"{scheme}://", host[1:]))  # ("https://", ".example.com")
            else:
                exact.add(normalized)
        self.exact = frozenset(exact)
        self.wildcards = tuple(wildcards)

    def __bool__(self) -> bool:
        return bool(self.exact or self.wildcards)

    def allows(self, origin: str) -> bool:
        if not self:
            return True
        normalized = origin.strip().lower()
        if normalized in self.exact:
            return True
        for scheme, suffix in self.wildcards:
            if normalized.startswith(scheme) and normalized.endswith(suffix):
                label = normalized[len(scheme) : -len(suffix)]
                if label and "/" not in label and "@" not in label and ":" not in label:
                    return True
        return False


@lru_cache(maxsize=1024)
def ip_allowlist(entries: tuple[str, ...]) -> IPAllowlist:
    """The cached matcher for a credential's CIDR tuple (invalid entries match nothing)."""
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue  # fail closed: a broken entry widens nothing
    if entries and not networks:
        return _NOTHING
    return IPAllowlist(networks)


@lru_cache(maxsize=1024)
def origin_allowlist(entries: tuple[str, ...]) -> OriginAllowlist:
    """The cached matcher for a credential's origin tuple."""
    return OriginAllowlist(entries)


class _AllowNothing(IPAllowlist):
    """An allowlist whose every entry was invalid: it must deny, not turn into 'allow all'."""

    def __bool__(self) -> bool:
        return True

    def allows(self, client_ip: str) -> bool:
        return False


_NOTHING = _AllowNothing(())
