"""Parsers for operator input about credentials (CLI flags, admin API bodies).

Each raises ``ValueError`` with a message that names what is wrong and can follow
a field name (``scopes[2]: not a scope: 'read orders'``), the same convention as
:mod:`gateway.units`. Models built through the ``issue``/``new_*`` factories in
:mod:`gateway.credentials.models` run these checks; the store trusts its models.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlsplit

from gateway.units import parse_network

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REASON_LENGTH = 500
MAX_SCOPES = 64
MAX_ALLOWLIST = 256

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")
# Scopes: "orders:read", "orders.write", "admin", "billing:*". No spaces, no commas.
_SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,126}(?::\*)?$|^\*$")


def parse_name(value: object, what: str = "name") -> str:
    """A credential or client name: 1-128 characters of ``[A-Za-z0-9_.:@/-]``, starting alphanumeric."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"a {what} is 1-128 characters of [A-Za-z0-9_.:@/-], starting with a letter or digit: {value!r}"
        )
    return value


def parse_tenant(value: object) -> str:
    """A tenant id: a name (:func:`parse_name`)."""
    return parse_name(value, "tenant")


def parse_scope(value: object) -> str:
    """One scope: ``orders:read``, ``orders.write``, ``billing:*`` or ``*``."""
    if not isinstance(value, str) or not _SCOPE.match(value):
        raise ValueError(f"not a scope (letters, digits and _ . : / -, optional trailing :*): {value!r}")
    return value


def parse_scopes(values: Iterable[object]) -> frozenset[str]:
    scopes = frozenset(parse_scope(value) for value in _listed(values, "scopes"))
    if len(scopes) > MAX_SCOPES:
        raise ValueError(f"at most {MAX_SCOPES} scopes")
    return scopes


def parse_cidrs(values: Iterable[object]) -> tuple[IPNetwork, ...]:
    """CIDRs (``10.0.0.0/8``, ``2001:db8::/32``) or single addresses; host bits must be zero."""
    networks = tuple(dict.fromkeys(parse_network(value) for value in _listed(values, "allowed IPs")))
    if len(networks) > MAX_ALLOWLIST:
        raise ValueError(f"at most {MAX_ALLOWLIST} allowed networks")
    return networks


def parse_origin(value: object) -> str:
    """A browser origin, ``scheme://host[:port]`` exactly as browsers send it (lower-case, no path)."""
    text = value if isinstance(value, str) else ""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"not an origin (scheme://host[:port]): {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an origin (scheme://host[:port]): {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"an origin has no path, query, fragment or credentials: {value!r}")
    host = parts.hostname
    host = f"[{host}]" if ":" in host else host
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def parse_origins(values: Iterable[object]) -> tuple[str, ...]:
    origins = tuple(dict.fromkeys(parse_origin(value) for value in _listed(values, "allowed origins")))
    if len(origins) > MAX_ALLOWLIST:
        raise ValueError(f"at most {MAX_ALLOWLIST} allowed origins")
    return origins


def parse_expiry(value: datetime | None, now: datetime) -> datetime | None:
    """An expiry must be timezone-aware and in the future (``None``: never expires)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"an expiry needs a timezone (e.g. 2030-01-01T00:00:00Z): {value.isoformat()}")
    if value <= now:
        raise ValueError(f"expiry is in the past: {value.isoformat()}")
    return value


def parse_reason(value: object) -> str:
    """A revocation reason: printable text, at most 500 characters (it ends up in the audit trail)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a reason is required")
    if len(value) > MAX_REASON_LENGTH or not value.isprintable():
        raise ValueError(f"a reason is printable text of at most {MAX_REASON_LENGTH} characters")
    return value.strip()


def _listed(values: Iterable[object], what: str) -> list[object]:
    if isinstance(values, str | bytes):
        raise ValueError(f"{what}: expected a list, got a string")
    return list(values)
