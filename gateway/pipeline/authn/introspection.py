"""Opaque bearer tokens checked by the organisation's identity service (``auth: [introspection]``).

Responsible for ``Authorization: Bearer <token>`` when the token is neither a
JWT (it has a dot: the ``jwt`` authenticator's) nor one of the gateway's own
credentials (``sk_``, ``ak_``: never sent to a third party). The decision comes
from :class:`~gateway.backend.cache.DecisionCache` (memory, then the shared
store, then the backend through its circuit breaker)::

    active                                         Principal (method introspection)
    active: false, expired, wrong audience         401 token.inactive / token.bad_audience
    active but no subject                          401 token.no_subject (client reads token.invalid)
    backend unavailable (circuit open, timeout,    503 backend.unavailable with Retry-After (fail closed),
      5xx, garbage, too busy), no stale grace        or the cached decision within the route's stale_grace
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from gateway.backend.cache import CachedDecision, DecisionCache
from gateway.backend.decisions import Decision
from gateway.backend.errors import BackendError
from gateway.pipeline.authn.bearer import (
    BEARER_CHALLENGE,
    MalformedBearer,
    bearer_error_challenge,
    bearer_token,
    looks_like_jwt,
)
from gateway.pipeline.base import Authenticator, AuthError, AuthUnavailable, Principal, RequestView

INTROSPECTION: Final = "introspection"
# The gateway's own credentials: decided here, never disclosed to an identity service.
GATEWAY_PREFIXES: Final = ("sk_", "ak_")
MAX_TOKEN_LENGTH: Final = 4096


def introspected_principal(decision: Decision, digest_hex: str) -> Principal:
    """The principal of an active decision; ``credential_id`` is the token's ``jti`` or a short fingerprint."""
    return Principal(
        subject=decision.subject,
        method=INTROSPECTION,
        credential_kind=INTROSPECTION,
        credential_id=decision.token_id or f"sha256:{digest_hex[:16]}",
        tenant=decision.tenant,
        scopes=decision.scopes,
        expires_at=decision.expires_at,
    )


class IntrospectionAuthenticator:
    """See the module docstring. One per distinct ``stale_grace``; they share the backend's cache."""

    name: Final = INTROSPECTION
    challenge: Final = BEARER_CHALLENGE

    def __init__(self, cache: DecisionCache, *, stale_grace: float = 0.0) -> None:
        if stale_grace < 0:
            raise ValueError("stale_grace must not be negative")
        self.cache = cache
        self.stale_grace = stale_grace

    @staticmethod
    def _fail(reason: str, log_detail: str, error: str = "invalid_token") -> AuthError:
        return AuthError(reason, log_detail=log_detail, www_authenticate=bearer_error_challenge(error))

    async def authenticate(self, request: RequestView) -> Principal | None:
        try:
            token = bearer_token(request.headers)
        except MalformedBearer as exc:
            raise self._fail("token.malformed", str(exc), "invalid_request") from None
        if token is None or looks_like_jwt(token) or token.startswith(GATEWAY_PREFIXES):
            return None
        if len(token) > MAX_TOKEN_LENGTH:
            raise self._fail("token.malformed", f"bearer token longer than {MAX_TOKEN_LENGTH}", "invalid_request")
        entry = self.cache.fresh(token)  # the warm path: no coroutine below this one
        if entry is None:
            entry = await self._decide(token)
        principal = entry.principal
        if principal is None:
            reason = entry.decision.reason or "token.inactive"
            raise self._fail(reason, f"the identity service says {reason}")
        return principal

    async def _decide(self, token: str) -> CachedDecision:
        try:
            entry, _stale = await self.cache.decide(token, self.stale_grace)
        except BackendError as error:
            raise AuthUnavailable(
                "backend.unavailable",
                log_detail=f"{error.backend or self.cache.checker.endpoint}: {error.outcome}: {error.detail}"[:500],
                retry_after=error.retry_after,
            ) from None
        return entry


class OpaqueTokensToIntrospection:
    """A route's ``service_token`` authenticator that leaves unknown opaque bearer tokens to introspection.

    On a route listing both, a bearer token that is not ``sk_``, not a JWT and not
    a configured static token belongs to the identity service. Without this, the
    service-token authenticator would refuse it (``token.unknown`` or
    ``token.malformed``) before introspection saw it. The assembly also puts this one
    first, so a static internal token is matched here and never sent to the backend.
    """

    def __init__(self, inner: Authenticator) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def challenge(self) -> str:
        return self.inner.challenge

    async def authenticate(self, request: RequestView) -> Principal | None:
        try:
            return await self.inner.authenticate(request)
        except AuthError as error:
            if error.reason in ("token.unknown", "token.malformed") and _introspectable(request):
                return None
            raise


def _introspectable(request: RequestView) -> bool:
    try:
        token = bearer_token(request.headers)
    except MalformedBearer:
        return False
    return (
        token is not None
        and not looks_like_jwt(token)
        and not token.startswith(GATEWAY_PREFIXES)
        and len(token) <= MAX_TOKEN_LENGTH
    )


def arrange_for_introspection(authenticators: Sequence[Authenticator]) -> list[Authenticator]:
    """A route's authenticators with ``service_token`` (deferring, see above) ahead of ``introspection``."""
    names = [a.name for a in authenticators]
    if INTROSPECTION not in names or "service_token" not in names:
        return list(authenticators)
    arranged = [OpaqueTokensToIntrospection(a) if a.name == "service_token" else a for a in authenticators]
    token_index = names.index("service_token")
    introspection_index = names.index(INTROSPECTION)
    if token_index > introspection_index:
        arranged.insert(introspection_index, arranged.pop(token_index))
    return arranged
