"""The trusted context the gateway hands upstreams, and ``X-Gateway-Signature`` that vouches for it.

Headers the gateway sets on every forwarded request of a route with a policy (client-sent
copies are always removed)::

    X-User-Id        the subject: a user id (JWT sub), service:<id>, client:<id>
    X-Tenant-Id      the tenant, when known
    X-Service-Id     the calling service, for service credentials
    X-Auth-Method    hmac_legacy | rfc9421 | service_token | api_key | jwt
    X-Auth-Scopes    the granted scopes, space-separated, sorted
    X-Request-Id     the request id

With ``context_signing`` configured, also::

    X-Gateway-Signature: v1;kid=<key id>;ts=<unix seconds>;sig=<base64url HMAC-SHA256>

over this base (one line each, an absent header is an empty line, no trailing newline)::

    v1
    <METHOD>
    <request target as the upstream receives it: path and query, still percent-encoded>
    <ts>
    <X-User-Id>
    <X-Tenant-Id>
    <X-Service-Id>
    <X-Auth-Method>
    <X-Auth-Scopes>
    <X-Request-Id>

so an upstream can check that the headers came from the gateway, for this request, recently.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

USER_ID: Final = "X-User-Id"
TENANT_ID: Final = "X-Tenant-Id"
SERVICE_ID: Final = "X-Service-Id"
AUTH_METHOD: Final = "X-Auth-Method"
AUTH_SCOPES: Final = "X-Auth-Scopes"
REQUEST_ID: Final = "X-Request-Id"
SIGNATURE: Final = "X-Gateway-Signature"
CONTEXT_HEADERS: Final = (USER_ID, TENANT_ID, SERVICE_ID, AUTH_METHOD, AUTH_SCOPES, REQUEST_ID)
VERSION: Final = "v1"
DEFAULT_MAX_AGE: Final = 60.0

_SIGNATURE = re.compile(r"v1;kid=([A-Za-z0-9_.-]{1,64});ts=([0-9]{1,12});sig=([A-Za-z0-9_-]{43})")


def signature_base(method: str, target: str, timestamp: int, values: Mapping[str, str]) -> bytes:
    """The bytes ``X-Gateway-Signature`` signs (see the module docstring)."""
    lines = [VERSION, method, target, str(timestamp), *(values.get(name, "") for name in CONTEXT_HEADERS)]
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def sign_context(key_id: str, key: bytes, method: str, target: str, values: Mapping[str, str], timestamp: int) -> str:
    """The ``X-Gateway-Signature`` value for these context headers (the gateway's side)."""
    mac = hmac.new(key, signature_base(method, target, timestamp, values), hashlib.sha256).digest()
    return f"{VERSION};kid={key_id};ts={timestamp};sig={base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"


class ContextSignatureError(ValueError):
    """``X-Gateway-Signature`` is missing, malformed, from an unknown key, too old, or does not match.

    ``reason`` is a short stable code: ``missing``, ``malformed``, ``unknown_key``, ``expired``, ``mismatch``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GatewayContext:
    """What the gateway vouched for about one request."""

    user_id: str | None
    tenant_id: str | None
    service_id: str | None
    auth_method: str | None
    scopes: frozenset[str]
    request_id: str | None
    key_id: str
    signed_at: int


def verify_context(
    method: str,
    target: str,
    headers: Mapping[str, str],
    keys: Mapping[str, bytes],
    *,
    max_age: float = DEFAULT_MAX_AGE,
    clock: Callable[[], float] = time.time,
) -> GatewayContext:
    """Check ``X-Gateway-Signature`` of a received request; return the context it vouches for.

    ``headers`` is the received headers (case-insensitive mapping, e.g. aiohttp's),
    ``target`` the raw request target (``request.raw_path`` in aiohttp), ``keys``
    the gateway's context-signing keys by key id (several during a rotation).
    Raises :class:`ContextSignatureError`.
    """
    value = headers.get(SIGNATURE)
    if value is None:
        raise ContextSignatureError("missing", f"no {SIGNATURE} header")
    match = _SIGNATURE.fullmatch(value.strip())
    if match is None:
        raise ContextSignatureError("malformed", f"{SIGNATURE} is not v1;kid=...;ts=...;sig=...")
    key_id, stamp, signature = match.group(1), int(match.group(2)), match.group(3)
    key = keys.get(key_id)
    if key is None:
        raise ContextSignatureError("unknown_key", f"unknown context signing key {key_id!r}")
    if abs(clock() - stamp) > max_age:
        raise ContextSignatureError("expired", f"context signed {clock() - stamp:+.0f}s from now")
    values = {name: headers.get(name, "") for name in CONTEXT_HEADERS}
    expected = hmac.new(key, signature_base(method, target, stamp, values), hashlib.sha256).digest()
    presented = base64.urlsafe_b64decode(signature + "=")
    if not hmac.compare_digest(expected, presented):
        raise ContextSignatureError("mismatch", "context signature does not match the headers")
    scopes = values[AUTH_SCOPES]
    return GatewayContext(
        user_id=values[USER_ID] or None,
        tenant_id=values[TENANT_ID] or None,
        service_id=values[SERVICE_ID] or None,
        auth_method=values[AUTH_METHOD] or None,
        scopes=frozenset(scopes.split()) if scopes else frozenset(),
        request_id=values[REQUEST_ID] or None,
        key_id=key_id,
        signed_at=stamp,
    )
