"""The pipeline's contracts: who the caller is, how an authenticator answers, how it fails.

An :class:`Authenticator` looks at a :class:`RequestView` and answers in one of
three ways (ory/oathkeeper's "not responsible" vs "bad credential")::

    None          the credential it handles is absent: ask the next authenticator
    Principal     the credential is present and good
    raise AuthError  the credential is present and bad (or cannot be checked)

The error tree, extending :mod:`gateway.errors`::

    GatewayError
    └── AuthError                 401  hmac.*, httpsig.*, token.*, apikey.*, jwt.*, auth.required
        ├── CredentialDenied      403  token.ip_denied, apikey.ip_denied, apikey.origin_denied
        ├── AccessDenied          403  ip.denied, origin.denied, scope.insufficient (the route's policy)
        ├── SignedBodyTooLarge    413  httpsig.body_too_large (also a PayloadTooLarge)
        └── AuthUnavailable       503  jwt.jwks_unavailable, store.unavailable, backend.unavailable (Retry-After)

An ``AuthError`` carries two codes. ``reason`` is precise and goes to metrics,
logs and the audit trail (``hmac.unknown_key``); ``code`` is what the client
reads in the problem document, and hides what a client should not learn
(``hmac.unknown_key`` and ``hmac.bad_signature`` both read
``hmac.invalid_signature``). ``log_detail`` is for operators and never holds a
secret; ``detail`` is for the client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, Protocol, runtime_checkable

from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.bodies import DEFAULT_BODY_TIMEOUT, body_chunks
from gateway.errors import GatewayError, PayloadTooLarge

# -- principals -------------------------------------------------------------------------------


class AuthMethod:
    """Values of ``Principal.method`` (forwarded upstream as ``X-Auth-Method``)."""

    HMAC_LEGACY: Final = "hmac_legacy"
    HTTP_SIGNATURE: Final = "rfc9421"
    SERVICE_TOKEN: Final = "service_token"  # noqa: S105 - a name, not a secret
    API_KEY: Final = "api_key"
    JWT: Final = "jwt"


class CredentialKind:
    """Values of ``Principal.credential_kind``: what ``credential_id`` names."""

    SERVICE_KEY: Final = "service_key"
    SERVICE_TOKEN: Final = "service_token"  # noqa: S105 - a name, not a secret
    STATIC_TOKEN: Final = "static_token"  # noqa: S105 - a name, not a secret
    API_KEY: Final = "api_key"
    JWT: Final = "jwt"


def service_subject(service_id: str) -> str:
    """The subject of a calling service, as upstreams see it in ``X-User-Id``."""
    return f"service:{service_id}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made the request, decided once at the edge. Immutable.

    ``subject`` becomes ``X-User-Id`` (``service:<id>`` for services), ``tenant``
    ``X-Tenant-Id``, ``service_id`` ``X-Service-Id``, ``method`` ``X-Auth-Method``
    and ``scopes`` ``X-Auth-Scopes``. ``credential_kind`` / ``credential_id``
    name the credential used (a key id, token id, API key id, JWT ``jti``) for
    logs and audit; never the secret itself. ``expires_at`` (Unix seconds) is
    when the credential stops being valid, if known (long-lived WebSockets use it).
    """

    subject: str
    method: str
    credential_kind: str
    credential_id: str
    tenant: str | None = None
    scopes: frozenset[str] = frozenset()
    service_id: str | None = None
    expires_at: float | None = None


# -- errors -----------------------------------------------------------------------------------

# What the client reads instead of the precise reason, where the precise one helps an attacker
# (key enumeration, learning that a stolen token was revoked rather than never existed).
_PUBLIC_CODES: Final[Mapping[str, str]] = {
    "hmac.unknown_key": "hmac.invalid_signature",
    "hmac.bad_signature": "hmac.invalid_signature",
    "httpsig.unknown_key": "httpsig.invalid_signature",
    "httpsig.bad_signature": "httpsig.invalid_signature",
    "httpsig.alg_mismatch": "httpsig.invalid_signature",
    "token.unknown": "token.invalid",
    "token.revoked": "token.invalid",
    "token.no_subject": "token.invalid",
    "apikey.unknown": "apikey.invalid",
    "apikey.revoked": "apikey.invalid",
    "jwt.kid_unknown": "jwt.invalid_signature",
    "jwt.bad_signature": "jwt.invalid_signature",
}

_DETAILS: Final[Mapping[str, str]] = {
    "hmac.malformed": "malformed service signature headers",
    "hmac.skew": "signature timestamp outside the allowed window",
    "hmac.invalid_signature": "invalid signature",
    "hmac.replay": "signature already used",
    "httpsig.malformed": "malformed HTTP message signature",
    "httpsig.created_missing": "signature must carry a 'created' parameter",
    "httpsig.nonce_missing": "signature must carry a 'nonce' parameter",
    "httpsig.skew": "signature created in the future",
    "httpsig.expired": "signature expired",
    "httpsig.components_missing": "signature does not cover the required components",
    "httpsig.invalid_signature": "invalid signature",
    "httpsig.digest_missing": "a request with a body must carry a signed Content-Digest",
    "httpsig.digest_mismatch": "Content-Digest does not match the body",
    "httpsig.replay": "signature nonce already used",
    "httpsig.body_too_large": "signed request body too large",
    "token.malformed": "malformed bearer token",
    "token.invalid": "invalid token",
    "token.expired": "token expired",
    "token.ip_denied": "token not allowed from this address",
    "token.inactive": "token is not active",
    "token.bad_audience": "token not issued for this service",
    "backend.unavailable": "the identity service is unavailable, retry later",
    "apikey.malformed": "malformed API key",
    "apikey.invalid": "invalid API key",
    "apikey.expired": "API key expired",
    "apikey.ip_denied": "API key not allowed from this address",
    "apikey.origin_denied": "API key not allowed from this origin",
    "jwt.malformed": "malformed JWT",
    "jwt.bad_header": "JWT header not accepted",
    "jwt.alg_not_allowed": "JWT algorithm not allowed",
    "jwt.invalid_signature": "invalid JWT signature",
    "jwt.expired": "JWT expired",
    "jwt.not_yet_valid": "JWT not yet valid",
    "jwt.bad_audience": "JWT audience not accepted",
    "jwt.bad_issuer": "JWT issuer not accepted",
    "jwt.missing_claim": "JWT lacks a required claim",
    "jwt.jwks_unavailable": "token keys unavailable, retry later",
    "auth.required": "authentication required",
    "ip.denied": "not allowed from this address",
    "origin.denied": "origin not allowed",
    "scope.insufficient": "insufficient scope",
    "store.unavailable": "credentials cannot be checked now, retry later",
}


def public_code(reason: str) -> str:
    """The code a client reads for a precise ``reason``."""
    return _PUBLIC_CODES.get(reason, reason)


class AuthError(GatewayError):
    """A credential was presented and is not acceptable (401 unless a subclass says otherwise).

    ``reason`` is the precise, stable code (``hmac.skew``, ``token.revoked``)
    for metrics, logs and audit; ``code`` the one the client reads (see
    :func:`public_code`). ``www_authenticate`` is the challenge for the scheme,
    also set as the ``WWW-Authenticate`` response header on 401s.
    """

    status: ClassVar[int] = 401
    code = "auth.failed"

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        log_detail: str = "",
        www_authenticate: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        code = public_code(reason)
        super().__init__(detail or _DETAILS.get(code, "authentication failed"), code=code, headers=headers)
        self.reason = reason
        self.log_detail = log_detail
        self.www_authenticate = www_authenticate
        if www_authenticate is not None and self.status == 401:
            self.headers["WWW-Authenticate"] = www_authenticate

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, log_detail={self.log_detail!r})"


class CredentialDenied(AuthError):
    """The credential is genuine but bound to other client IPs or origins (403)."""

    status: ClassVar[int] = 403


class AccessDenied(AuthError):
    """The route's policy refuses the request whoever sent it (IP, Origin) or refuses this principal (scopes): 403."""

    status: ClassVar[int] = 403


class SignedBodyTooLarge(AuthError, PayloadTooLarge):
    """A signed request's body is over the buffering limit (413); enforce in every mode.

    Also a :class:`~gateway.errors.PayloadTooLarge`: the request cannot be
    forwarded either, since only part of its body was read.
    """

    status: ClassVar[int] = 413


class AuthUnavailable(AuthError):
    """The authenticator cannot decide now (a key source is down): 503 with ``Retry-After``, fail closed."""

    status: ClassVar[int] = 503

    def __init__(self, reason: str, *, log_detail: str = "", retry_after: float = 5.0) -> None:
        super().__init__(reason, log_detail=log_detail, headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


# -- the request an authenticator sees --------------------------------------------------------


class RequestView:
    """What an authenticator reads: the aiohttp request, the resolved client IP, and the body on demand.

    ``client_ip`` comes from the trusted-proxy resolver (:mod:`gateway.clientip`),
    never from a client-chosen header. The body is read only by authenticators
    that need it (RFC 9421 with ``Content-Digest``), only after the credential
    was found responsible, and only up to a limit, through :meth:`read_body`.
    Once read, :attr:`body` holds it and the proxy must forward those bytes
    instead of streaming ``request.content`` (which is then consumed).
    """

    __slots__ = ("request", "client_ip", "_body")

    def __init__(self, request: web.Request, client_ip: str | None = None) -> None:
        self.request = request
        self.client_ip = client_ip if client_ip is not None else (request.remote or "")
        self._body: bytes | None = None

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self.request.headers

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def raw_path(self) -> str:
        """The request target exactly as sent (path and query, still percent-encoded)."""
        return self.request.raw_path

    @property
    def body(self) -> bytes | None:
        """The buffered body if an authenticator read it, else ``None`` (stream it)."""
        return self._body

    async def read_body(self, limit: int, idle: float = DEFAULT_BODY_TIMEOUT) -> bytes:
        """Buffer the whole body (``b""`` when there is none), refusing more than ``limit`` bytes and a pause
        of more than ``idle`` seconds (:class:`~gateway.errors.RequestBodyTimeout`)."""
        if self._body is not None:
            if len(self._body) > limit:
                raise SignedBodyTooLarge("httpsig.body_too_large", log_detail=f"body over {limit} bytes")
            return self._body
        request = self.request
        if not request.body_exists:
            self._body = b""
            return self._body
        length = request.content_length
        if length is not None and length > limit:
            raise SignedBodyTooLarge("httpsig.body_too_large", log_detail=f"Content-Length {length} over {limit}")
        chunks: list[bytes] = []
        received = 0
        async for chunk in body_chunks(request.content, idle):
            received += len(chunk)
            if received > limit:
                raise SignedBodyTooLarge("httpsig.body_too_large", log_detail=f"body over {limit} bytes")
            chunks.append(chunk)
        self._body = b"".join(chunks)
        return self._body


# -- the authenticator contract ---------------------------------------------------------------


class Authenticator(Protocol):
    """Decides whether a request carries a good credential of one kind.

    ``name`` is the kind as routes list it (``jwt``, ``service_token``, ...);
    ``challenge`` the ``WWW-Authenticate`` value to offer when no authenticator
    of a route was responsible. ``authenticate`` returns ``None`` when the
    request does not carry this kind of credential, a :class:`Principal` when
    it carries a good one, and raises :class:`AuthError` when it carries a bad
    one. It must never raise anything else for any header value a client can
    send (a property test holds every implementation to this).
    """

    @property
    def name(self) -> str: ...

    @property
    def challenge(self) -> str: ...

    async def authenticate(self, request: RequestView) -> Principal | None: ...


@runtime_checkable
class KeyRechecking(Protocol):
    """An authenticator whose proof expires long before the connection it opened: a signature is good for
    minutes, the WebSocket its upgrade opened may stay for hours. When a credential changes, the gateway
    asks ``recheck`` whether the key behind ``principal`` still holds: it returns the key's current
    principal, or raises :class:`AuthError`. Other authenticators are asked by authenticating the
    upgrade request again."""

    async def recheck(self, principal: Principal) -> Principal: ...
