"""Runs a route's policy: network checks, CORS, authenticators in order, scopes, then the mode.

::

    ip allowlist (resolved client IP)                 ip.denied            403
    origin allowlist (a sent Origin)                  origin.denied        403
    CORS preflight (OPTIONS + Origin + ACRM)          answered here: 204 with the route's CORS headers
    authenticators, in the route's order: the first responsible one decides
        Principal                                     -> scopes
        AuthError                                     hmac.*, token.*, ...  401 / 403
        none responsible                              anonymous: pass (no identity); else auth.required 401
    scopes for the method                             scope.insufficient   403
    mode   enforce   the first refusal is the answer
           log_only  decided the same way, recorded as would_deny, the request passes
                     (with the principal's context if authentication succeeded)

Two refusals hold in every mode, because the request cannot be served either way:
``SignedBodyTooLarge`` (413: the body was only partly read) and ``AuthUnavailable``
(503: the gateway cannot decide, fail closed).

The network checks run before the authenticators so a refused client costs no
credential lookup and cannot burn a replay-protected signature. Every decision is
counted (``gateway_auth_decisions_total``), timed (``gateway_auth_duration_seconds``),
reported to the audit trail (no I/O on the request path) and, unless it allowed,
logged with its precise reason and operator detail.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Sequence
from time import perf_counter, time_ns
from typing import Final, NamedTuple, Protocol
from urllib.parse import quote

from aiohttp import web

from gateway.auth_settings import CorsSettings, PolicySettings
from gateway.credentials.audit import AuditResult
from gateway.observability.audit import DecisionFacts, decision_facts
from gateway.observability.metrics import AuthDecisions, GatewayMetrics
from gateway.pipeline.authz.ip import IpAuthorizer
from gateway.pipeline.authz.origin import OriginAuthorizer
from gateway.pipeline.authz.scopes import ScopeAuthorizer
from gateway.pipeline.base import (
    AccessDenied,
    Authenticator,
    AuthError,
    AuthUnavailable,
    KeyRechecking,
    Principal,
    RequestView,
    SignedBodyTooLarge,
)
from gateway.sdk import context as ctx

log = logging.getLogger("gateway.auth")

NO_METHOD: Final = "none"
ALLOWED: Final = "ok"
ANONYMOUS: Final = "anonymous"
PREFLIGHT: Final = "cors.preflight"
MAX_USER_AGENT: Final = 256
MAX_PRINCIPALS: Final = 4096  # principals whose _Allowed a route keeps
# Credentials are for the gateway: by default the upstream never sees them.
SIGNATURE_HEADERS: Final = (
    "X-Service-ID",
    "X-Service-Signature",
    "X-Service-Timestamp",
    "Signature",
    "Signature-Input",
)


class AuditSink(Protocol):
    """Where decisions are reported (the runtime's :class:`~gateway.observability.audit.AuditTrail`).

    ``record_decision`` takes the decision's facts (:func:`~gateway.observability.audit.decision_facts`),
    its time as ``time.time_ns()`` and the request's fields, and must not block: it keeps the decision's
    store row for the next batch, never an event object.
    """

    def record_decision(
        self, ns: int, facts: DecisionFacts, method: str, request_id: str, client_ip: str, user_agent: str
    ) -> None: ...


ContextHeaders = tuple[tuple[str, str], ...]


def _header_value(value: str) -> str:
    """Context values as safe header text: control and non-ASCII characters percent-encoded."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%"))


def context_headers(principal: Principal) -> ContextHeaders:
    """The trusted context headers the upstream receives for ``principal``, as (name, value) pairs."""
    headers = [(ctx.USER_ID, _header_value(principal.subject))]
    if principal.tenant:
        headers.append((ctx.TENANT_ID, _header_value(principal.tenant)))
    if principal.service_id:
        headers.append((ctx.SERVICE_ID, principal.service_id))
    headers.append((ctx.AUTH_METHOD, principal.method))
    if principal.scopes:
        headers.append((ctx.AUTH_SCOPES, _header_value(" ".join(sorted(principal.scopes)))))
    return tuple(headers)


class _Allowed(NamedTuple):
    """How a route reports allowing one principal, and what the upstream learns of it: the same for
    each of its requests, so kept (per principal object: authenticators answer the same one again)."""

    principal: Principal
    method: str  # the authenticator's name
    series: AuthDecisions
    facts: DecisionFacts | None  # None: the route does not audit what it allows
    context: ContextHeaders


class CorsPolicy:
    """The CORS headers of one route, built once; ``Access-Control-Allow-Origin`` echoes the allowed origin."""

    __slots__ = ("preflight_headers", "credentials", "expose")

    def __init__(self, settings: CorsSettings, api_key_header: str) -> None:
        allowed_headers = settings.headers or ("Authorization", "Content-Type", api_key_header)
        self.preflight_headers = {
            "Access-Control-Allow-Methods": ", ".join(settings.methods),
            "Access-Control-Allow-Headers": ", ".join(allowed_headers),
            "Access-Control-Max-Age": str(settings.max_age),
        }
        self.credentials = settings.credentials
        self.expose = ", ".join(settings.expose_headers)

    def response_headers(self, origin: str) -> dict[str, str]:
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if self.credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if self.expose:
            headers["Access-Control-Expose-Headers"] = self.expose
        return headers

    def preflight(self, origin: str, request_id: str) -> web.Response:
        headers = {**self.response_headers(origin), **self.preflight_headers, "X-Request-Id": request_id}
        headers.pop("Access-Control-Expose-Headers", None)  # meaningless on a preflight
        return web.Response(status=204, headers=headers)


class AuthOutcome(RequestView):
    """The request as the authenticators read it (a :class:`RequestView`), then what the decision adds
    for the proxy: one object per request."""

    __slots__ = ("principal", "context", "cors_headers", "response")

    def __init__(self, request: web.Request, client_ip: str) -> None:
        # RequestView's fields set here, not through super().__init__: this runs for every request.
        self.request = request
        self.client_ip = client_ip
        self._body = None  # the buffered body when an authenticator read it (RequestView.body)
        self.principal: Principal | None = None  # None: anonymous, or log_only after a failed authentication
        self.context: ContextHeaders = ()  # the principal's trusted context headers, for the upstream
        self.cors_headers: dict[str, str] | None = None  # to add to the response (allowed browser origin)
        self.response: web.Response | None = None  # answered by the gateway (CORS preflight): forward nothing


class RoutePolicy:
    """One route's policy, precomputed at start-up (see the module docstring)."""

    def __init__(
        self,
        route: str,
        settings: PolicySettings,
        authenticators: Sequence[Authenticator],
        *,
        metrics: GatewayMetrics,
        audit: AuditSink | None,
        api_key_header: str = "X-API-Key",
    ) -> None:
        self.route = route
        self.mode = settings.mode
        self.enforce = settings.mode == "enforce"
        self.authenticators = tuple(authenticators)
        self._by_name = {a.name: a for a in self.authenticators}
        self.challenge = ", ".join(dict.fromkeys(a.challenge for a in self.authenticators)) or None
        self.anonymous = settings.anonymous
        self.ip = IpAuthorizer(settings.ip_allow) if settings.ip_allow else None
        self.origins = OriginAuthorizer(settings.origins) if settings.origins else None
        self.scopes = ScopeAuthorizer(dict(settings.required_scopes.by_method)) if settings.required_scopes else None
        self.cors = CorsPolicy(settings.cors, api_key_header) if settings.cors is not None else None
        self.forward_credential = settings.forward_credential
        self.credential_headers = (
            frozenset()
            if settings.forward_credential or not self.authenticators
            else frozenset(name.lower() for name in ("Authorization", api_key_header, *SIGNATURE_HEADERS))
        )
        self.metrics = metrics
        self.audit = audit
        self.audit_allowed = settings.audit == "all"
        # id(principal) -> _Allowed, which holds the principal: its id cannot be reused while kept.
        self._allowed: dict[int, _Allowed] = {}
        # Checks before any credential; a route without them goes straight to its authenticators.
        self.screened = self.ip is not None or self.origins is not None or self.cors is not None

    # -- the decision ------------------------------------------------------------------------
    # One coroutine and plain locals: every request of every authenticated route runs this, and a nested
    # coroutine, a state object or a call per step each cost more than the bookkeeping they would tidy.
    async def evaluate(self, request: web.Request, client_ip: str, request_id: str) -> AuthOutcome:
        """Decide; raise the refusal (a :class:`AuthError`) or return how the request goes on."""
        started = perf_counter()
        outcome = AuthOutcome(request, client_ip)
        principal: Principal | None = None
        method = NO_METHOD
        refusal: AuthError | None = None  # log_only: the first refusal (the request goes on)
        try:
            if self.screened:
                refusal = self._screen(outcome, request_id)
                if outcome.response is not None:  # a CORS preflight, answered here
                    self.metrics.observe_auth(
                        self.route, NO_METHOD, "allow", PREFLIGHT, self.mode, perf_counter() - started
                    )
                    return outcome
            for authenticator in self.authenticators:
                try:
                    found = await authenticator.authenticate(outcome)
                except AuthError as error:
                    method = authenticator.name
                    refusal = self._refuse(refusal, error)
                    break  # log_only: this credential decided; nothing more to check
                if found is not None:
                    method = authenticator.name
                    principal = found
                    if self.scopes is not None:
                        try:
                            self.scopes.authorize(request.method, principal)
                        except AccessDenied as error:
                            refusal = self._refuse(refusal, error)
                    break
            else:
                if self.authenticators and not (self.anonymous and not self._needs_scopes(request.method)):
                    refusal = self._refuse(
                        refusal,
                        AuthError(
                            "auth.required",
                            log_detail="no credential of an accepted kind",
                            www_authenticate=self.challenge,
                        ),
                    )
        except AuthError as error:
            if outcome.cors_headers is not None:
                error.headers.update(outcome.cors_headers)  # so the browser lets the page read the refusal
            self._report(
                request, client_ip, request_id, principal, method, AuditResult.DENY, error, perf_counter() - started
            )
            raise
        if principal is None:
            if refusal is None:  # anonymous
                self._report(
                    request, client_ip, request_id, None, method, AuditResult.ALLOW, None, perf_counter() - started
                )
            else:
                self._report(
                    request,
                    client_ip,
                    request_id,
                    None,
                    method,
                    AuditResult.WOULD_DENY,
                    refusal,
                    perf_counter() - started,
                )
            return outcome
        # What allowing this principal reports and forwards, kept per principal (inline: every request).
        allowed = self._allowed.get(id(principal))
        if allowed is None or allowed.principal is not principal or allowed.method != method:
            allowed = self._allowed_of(principal, method)
        outcome.principal = principal
        outcome.context = allowed.context
        if refusal is not None:  # log_only: the principal goes on, with its context
            self._report(
                request,
                client_ip,
                request_id,
                principal,
                method,
                AuditResult.WOULD_DENY,
                refusal,
                perf_counter() - started,
            )
            return outcome
        # The common case: one metric update (AuthDecisions.observe, inline) and one audit row.
        series = allowed.series
        seconds = perf_counter() - started
        series.count += 1
        durations = series.durations
        durations.buckets[bisect_left(durations.bounds, seconds)] += 1
        durations.total += seconds
        if allowed.facts is not None and self.audit is not None:
            self.audit.record_decision(
                time_ns(),
                allowed.facts,
                request.method,
                request_id,
                client_ip,
                request.headers.get("User-Agent", "")[:MAX_USER_AGENT],
            )
        return outcome

    async def recheck(self, outcome: AuthOutcome, request_id: str) -> AuthError | None:
        """Whether what allowed a long-lived connection (a WebSocket upgrade) still holds, after a credential
        changed (a revocation, an expiry brought forward, scopes taken away).

        The authenticator that accepted ``outcome.principal`` answers again: a signature scheme by whether
        its key is still active (:class:`KeyRechecking`: the signature's time window has passed by then),
        any other by authenticating the same upgrade request again (the cache has dropped the changed
        record, so this asks the store); then the route's scopes. Returns the refusal, reported like any
        decision (metrics, log, audit), or ``None``: still allowed, a ``log_only`` route, or no answer now
        (the store is unavailable: the connection stays, and the next change asks again).
        """
        principal = outcome.principal
        authenticator = self._by_name.get(principal.method) if principal is not None else None
        if principal is None or authenticator is None or not self.enforce:
            return None
        started = perf_counter()
        request = outcome.request
        try:
            if isinstance(authenticator, KeyRechecking):
                current: Principal | None = await authenticator.recheck(principal)
            else:
                current = await authenticator.authenticate(outcome)
            if current is None:  # the same request: its credential cannot have gone
                raise AuthError("auth.required", log_detail="the upgrade request's credential is no longer found")
            if self.scopes is not None:
                self.scopes.authorize(request.method, current)
        except AuthUnavailable:
            return None
        except AuthError as error:
            self._report(
                request,
                outcome.client_ip,
                request_id,
                principal,
                principal.method,
                AuditResult.DENY,
                error,
                perf_counter() - started,
            )
            return error
        return None

    def _refuse(self, first: AuthError | None, error: AuthError) -> AuthError:
        """Enforce: raise the refusal, it is the answer. Log only: return the first one, to go on deciding."""
        if self.enforce or isinstance(error, SignedBodyTooLarge | AuthUnavailable):
            try:
                raise error
            finally:
                # This frame goes into the error's traceback: holding the error in it too would make a
                # reference cycle per refusal, freed only by the garbage collector (long pauses under a
                # flood of bad credentials or while an auth backend is down).
                del error
        return error if first is None else first

    def _screen(self, outcome: AuthOutcome, request_id: str) -> AuthError | None:
        """The checks before any credential; sets the outcome's CORS headers and a preflight's answer.
        Returns log_only's refusal."""
        refusal: AuthError | None = None
        if self.ip is not None:
            try:
                self.ip.authorize(outcome)
            except AccessDenied as error:
                refusal = self._refuse(refusal, error)
        headers = outcome.request.headers
        if self.origins is not None or self.cors is not None:
            origin = headers.get("Origin")
            if origin is not None:
                if self.origins is not None and not self.origins.allows(origin):
                    refusal = self._refuse(
                        refusal, AccessDenied("origin.denied", log_detail=f"origin {origin[:200]!r}")
                    )
                if self.cors is not None:
                    outcome.cors_headers = self.cors.response_headers(origin)
                    if outcome.request.method == "OPTIONS" and "Access-Control-Request-Method" in headers:
                        # No credential on a preflight, ever.
                        outcome.response = self.cors.preflight(origin, request_id)
        return refusal

    def _needs_scopes(self, method: str) -> bool:
        return self.scopes is not None and bool(self.scopes.required(method))

    # -- reporting ---------------------------------------------------------------------------
    def _allowed_of(self, principal: Principal, method: str) -> _Allowed:
        """How allowing ``principal`` (authenticated by ``method``) is counted, audited and forwarded; kept."""
        series = self.metrics.auth_series.decisions(self.route, method, AuditResult.ALLOW, ALLOWED, self.mode)
        facts = None
        if self.audit is not None and self.audit_allowed:
            facts = decision_facts(
                AuditResult.ALLOW,
                ALLOWED,
                self.route,
                principal.credential_kind,
                principal.credential_id,
                principal.subject,
                principal.tenant or "",
                method,
            )
        allowed = _Allowed(principal, method, series, facts, context_headers(principal))
        if len(self._allowed) >= MAX_PRINCIPALS:
            self._allowed.clear()  # rare: more principals than that; start over
        self._allowed[id(principal)] = allowed
        return allowed

    def _report(
        self,
        request: web.Request,
        client_ip: str,
        request_id: str,
        principal: Principal | None,
        method: str,
        result: AuditResult,
        error: AuthError | None,
        duration: float,
    ) -> None:
        if error is None:
            reason = ALLOWED if principal is not None else ANONYMOUS
            # AuditResult is a StrEnum: the member is its label value.
            self.metrics.observe_auth(self.route, method, result, reason, self.mode, duration)
            if self.audit is None or not self.audit_allowed:
                return
            detail = method
        else:
            reason = error.reason
            self.metrics.observe_auth(self.route, method, result, reason, self.mode, duration)
            log.info(
                "auth denied" if result is AuditResult.DENY else "auth would deny",
                extra={
                    "route": self.route,
                    "mode": self.mode,
                    "reason": reason,
                    "status": error.status,
                    "auth_method": method,
                    "detail": error.log_detail,
                    "client_ip": client_ip,
                    "principal": principal.subject if principal is not None else None,
                    "credential_id": (principal.credential_id or None) if principal is not None else None,
                },
            )
            if self.audit is None:
                return
            detail = f"{method}: {error.log_detail}"[:500]
        if principal is not None:
            kind, credential_id, subject, tenant = (
                principal.credential_kind,
                principal.credential_id,
                principal.subject,
                principal.tenant or "",
            )
        else:
            kind, credential_id, subject, tenant = (method if method != NO_METHOD else ""), "", "", ""
        self.audit.record_decision(
            time_ns(),
            decision_facts(result, reason, self.route, kind, credential_id, subject, tenant, detail),
            request.method,
            request_id,
            client_ip,
            request.headers.get("User-Agent", "")[:MAX_USER_AGENT],
        )
