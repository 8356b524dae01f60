"""Request context at the edge: request ids, identity-header stripping, forwarding headers.

Everything here decides what the upstream may believe about a request. Clients
cannot set identity headers (they are removed before forwarding and counted as a
spoof attempt), cannot pick their request id unless they are a trusted proxy,
and cannot plant ``X-Forwarded-*`` / ``Forwarded`` values unless they are a
trusted proxy (an untrusted peer's values are dropped, as Traefik does).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Final

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

# RFC 9110 §7.6.1: Connection and the fields it names, plus the classic hop-by-hop set.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
FORWARDING_HEADERS: Final = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"})
REQUEST_ID_HEADER: Final = "X-Request-Id"

# Per-request values later stages (policy, audit) read from the request.
REQUEST_ID = web.RequestKey("request_id", str)
CLIENT_IP = web.RequestKey("client_ip", str)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


_IDS_PER_READ: Final = 128


class _RequestIds:
    """Request ids from the OS's random source, read for 128 ids at a time: a system call per id
    (``os.urandom(16)``) costs about 1 % of a proxied request. Used on the event loop's thread only."""

    __slots__ = ("_digits", "_at")

    def __init__(self) -> None:
        self._digits = ""
        self._at = 0

    def next(self) -> str:
        at = self._at
        if at >= len(self._digits):
            self._digits, at = os.urandom(16 * _IDS_PER_READ).hex(), 0
        self._at = at + 32
        return self._digits[at : at + 32]

    def forget(self) -> None:
        """Drop the unused ids (a forked child must not hand out its parent's)."""
        self._digits, self._at = "", 0


_request_ids = _RequestIds()
os.register_at_fork(after_in_child=_request_ids.forget)


def new_request_id() -> str:
    """128 random bits as 32 hex characters (nginx's ``$request_id`` shape)."""
    return _request_ids.next()


def accept_request_id(value: str | None, from_trusted_hop: bool) -> str:
    """Keep a well-formed request id from a trusted hop; otherwise mint a new one."""
    if value is not None and from_trusted_hop and _REQUEST_ID.match(value):
        return value
    return new_request_id()


def connection_listed(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    """Header names a sender listed in ``Connection`` (RFC 9110 §7.6.1), lower-cased."""
    values = headers.getall("Connection", ())
    if not values:
        return frozenset()
    return frozenset(token.strip().lower() for value in values for token in value.split(",") if token.strip())


class IdentityHeaderRules:
    """Which client-sent headers are identity claims only the gateway may set.

    Rules are header names, or prefixes ending in ``*`` (``X-Auth-*``). ``match``
    returns the rule that matched, used as a bounded metric label.
    """

    def __init__(self, rules: Iterable[str]) -> None:
        self.rules = tuple(rules)
        self._exact = {r.lower(): r for r in self.rules if not r.endswith("*")}
        self._prefixes = tuple((r[:-1].lower(), r) for r in self.rules if r.endswith("*"))
        self._prefix_heads = tuple(p for p, _ in self._prefixes)

    def match(self, lower_name: str) -> str | None:
        rule = self._exact.get(lower_name)
        if rule is not None:
            return rule
        if self._prefix_heads and lower_name.startswith(self._prefix_heads):
            for prefix, rule in self._prefixes:
                if lower_name.startswith(prefix):
                    return rule
        return None


def forwarded_node(address: str) -> str:
    """An RFC 7239 node: IPv6 addresses are bracketed and quoted."""
    return f'"[{address}]"' if ":" in address else address


def forwarded_pair(peer: str, proto: str, host: str) -> str:
    """One RFC 7239 ``Forwarded`` element for the hop from ``peer`` to us."""
    element = f"for={forwarded_node(peer)};proto={proto}"
    if host:
        quoted = host.replace("\\", "\\\\").replace('"', '\\"')
        element += f';host="{quoted}"'
    return element
