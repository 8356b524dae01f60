"""The data plane: one handler that resolves context, routes and forwards, streaming.

Request flow (see docs/architecture.md)::

    client ip -> request id -> route -> policy -> upstream headers -> forward -> stream back

A route with a policy (``auth``, allowlists, CORS) runs it after the match
(:mod:`gateway.pipeline.policy`); a route without one pays nothing for it. On
success the upstream gets the trusted context headers (``X-User-Id``...) and not
the credential itself, unless the route says ``forward_credential``.

Bodies are never buffered whole: request bodies stream to the upstream as they
arrive (counted against the route's ``max_body``), response bodies stream back
(small ones with a known length are sent in one write). Bytes pass through as
sent: no decompression, no re-encoding of the path or query.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import weakref
from collections.abc import AsyncIterator
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import hdrs, web
from aiohttp.typedefs import LooseHeaders
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.bodies import body_chunks
from gateway.clientip import TrustedProxies
from gateway.context import (
    CLIENT_IP,
    FORWARDING_HEADERS,
    HOP_BY_HOP,
    REQUEST_ID,
    REQUEST_ID_HEADER,
    IdentityHeaderRules,
    accept_request_id,
    connection_listed,
    forwarded_pair,
)
from gateway.errors import (
    BadRequest,
    GatewayError,
    PayloadTooLarge,
    RequestBodyTimeout,
    UpstreamTimeout,
    UpstreamUnavailable,
    render,
)
from gateway.observability.access import AccessLog
from gateway.observability.logging import request_id_var
from gateway.observability.metrics import UNMATCHED_ROUTE, GatewayMetrics
from gateway.pipeline.policy import AuthOutcome, RoutePolicy
from gateway.routing import Route, RouteTable, without_query_parameter
from gateway.sdk import context as ctx
from gateway.settings import Settings
from gateway.websocket import CredentialWatch, proxy_websocket

if TYPE_CHECKING:
    from gateway.pipeline.assembly import AuthAssembly, AuthRuntime
    from gateway.store.base import Subscription

log = logging.getLogger("gateway.proxy")

# Bodies up to this size with a known length are read and sent in one write.
SMALL_BODY = 64 * 1024
CLIENT_CLOSED = 499  # nginx's convention for "client went away before the answer"

# Request headers never forwarded as sent: hop-by-hop, rebuilt by us, or handled by aiohttp.
_REQUEST_SKIP = HOP_BY_HOP | FORWARDING_HEADERS | {"host", "expect", REQUEST_ID_HEADER.lower()}
_RESPONSE_SKIP = HOP_BY_HOP | {REQUEST_ID_HEADER.lower()}
# On a route whose CORS the gateway answers, the upstream's own CORS headers would contradict it.
_CORS_RESPONSE_SKIP = _RESPONSE_SKIP | {
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
}
_NO_BODY_STATUSES = frozenset({204, 304})


class _BodyGuard:
    """Counts request body bytes on their way upstream and remembers an overrun or a stalled client
    (the upstream client reports either as a failed request: the guard says which it was)."""

    __slots__ = ("limit", "idle", "received", "failure")

    def __init__(self, limit: int, idle: float) -> None:
        self.limit = limit
        self.idle = idle  # the longest pause between two chunks (body_timeout)
        self.received = 0
        self.failure: GatewayError | None = None

    async def stream(self, content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
        try:
            async for chunk in body_chunks(content, self.idle):
                self.received += len(chunk)
                if self.received > self.limit:
                    raise PayloadTooLarge(f"request body exceeds {self.limit} bytes")
                yield chunk
        except (PayloadTooLarge, RequestBodyTimeout) as exc:
            self.failure = exc
            raise


class ForwardRequest(aiohttp.ClientRequest):
    """aiohttp's client request, taking the headers the gateway built for the upstream in two C calls.

    ``ClientRequest.update_headers`` copies the request's headers one Python step per header
    (about 2 % of a proxied request). Here the same result in two C calls: ``Host`` from the URL
    first, as aiohttp builds it, then every header as given. Headers naming ``Host`` (a route
    that preserves it) keep aiohttp's own path, which gives theirs precedence.
    """

    def update_headers(self, headers: LooseHeaders | None) -> None:
        if type(headers) is not CIMultiDict or hdrs.HOST in headers:
            super().update_headers(headers)
            return
        super().update_headers(None)  # Host, from the URL, as aiohttp builds it
        self.headers.extend(headers)


def forwarding_session(**options: Any) -> aiohttp.ClientSession:
    """A client session for upstream requests (:class:`ForwardRequest`) that takes the headers the gateway
    built as they are.

    ``ClientSession.request`` first merges its default headers into a new ``CIMultiDict``, one Python step
    per header (``_prepare_headers``, about 3 % of a proxied request). A session without default headers
    given a ``CIMultiDict`` makes an equal copy of it: here it hands that very object on instead, which the
    gateway built for this one request (:meth:`Gateway._upstream_headers`) and never touches again, and
    which ``ForwardRequest`` copies in C. Any other input keeps aiohttp's path; an aiohttp without
    ``_prepare_headers`` simply never calls the replacement.
    """
    session = aiohttp.ClientSession(**options, request_class=ForwardRequest)
    if not session.headers:
        merge = session._prepare_headers

        def prepare(headers: LooseHeaders | None) -> CIMultiDict[str]:
            return headers if type(headers) is CIMultiDict else merge(headers)

        session._prepare_headers = prepare  # type: ignore[method-assign]
    return session


class Gateway:
    """Holds what the data plane reads per request. Built once from Settings."""

    def __init__(self, settings: Settings, metrics: GatewayMetrics, runtime: AuthRuntime | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.routes = RouteTable.from_settings(settings.routes)
        self.trusted = TrustedProxies(settings.trusted_proxies)
        self.identity = IdentityHeaderRules(settings.identity_headers)
        # Policies by route name, built by attach(): empty until then, and for routes without one.
        self.runtime: AuthRuntime | None = None
        self.auth: AuthAssembly | None = None
        self.policies: dict[str, RoutePolicy] = {}
        self._request_skips: dict[str, frozenset[str]] = {}
        self._query_credentials: dict[str, str] = {}  # route -> the API key query parameter to remove
        signing = settings.context_signing
        self._context_key = signing.key if signing.enabled else None
        self._context_key_id = signing.key_id
        if runtime is not None:
            self.attach(runtime)
        self.sessions: dict[str, aiohttp.ClientSession] = {}
        self.websockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        # Open WebSockets of enforcing routes, asked again when the store announces a changed credential.
        self.credential_watch = CredentialWatch()
        self._watch_subscription: Subscription | None = None
        self.in_flight = 0
        metrics.in_flight.set_function(lambda: self.in_flight)  # read at scrape time, not locked per request
        # Set when a drain starts: responses then carry Connection: close so keep-alive
        # clients reconnect elsewhere instead of sending more requests here.
        self.draining = False
        self.access_log = AccessLog(sys.stderr, settings.log.format) if settings.log.access_log else None

    @property
    def needs_runtime(self) -> bool:
        """Whether some route has a policy to run (it needs the store, the cache and the audit trail)."""
        return any(r.policy is not None and r.policy.mode != "off" for r in self.settings.routes)

    def attach(self, runtime: AuthRuntime) -> None:
        """Build the route policies over ``runtime`` (once, before serving)."""
        from gateway.pipeline.assembly import AuthAssembly

        self.runtime = runtime
        self.auth = AuthAssembly(self.settings, runtime, self.metrics)
        self.policies = self.auth.policies
        # A route with a policy never forwards a client's copy of a context header: the identity rules drop
        # (and count) those they list; the rest are dropped here, so the gateway's own values are the only ones.
        unlisted_context = frozenset(
            lower for lower in (name.lower() for name in ctx.CONTEXT_HEADERS) if self.identity.match(lower) is None
        )
        self._request_skips = {
            name: _REQUEST_SKIP | unlisted_context | p.credential_headers for name, p in self.policies.items()
        }
        # An API key accepted from the query string is a credential in the URL: removed before forwarding,
        # like the credential headers, unless the route forwards credentials.
        query_param = self.settings.authn.api_key.query_param
        self._query_credentials = {
            route.name: query_param
            for route in self.settings.routes
            if query_param is not None
            and route.name in self.policies
            and route.policy is not None
            and "api_key" in route.policy.auth
            and not route.policy.forward_credential
        }

    # -- lifecycle ---------------------------------------------------------------------------
    async def start_auth(self) -> None:
        if self.auth is not None:
            await self.auth.start()
        if self.runtime is not None and self._watch_subscription is None:
            self._watch_subscription = await self.runtime.store.subscribe(self.credential_watch.changed)

    async def close_auth(self) -> None:
        if self._watch_subscription is not None:
            await self._watch_subscription.close()
            self._watch_subscription = None
        await self.credential_watch.close()
        if self.auth is not None:
            await self.auth.close()

    async def open_sessions(self) -> None:
        """One pooled ClientSession per upstream origin, shared by every route that uses it."""
        pool = self.settings.upstream_pool
        for route in self.routes.routes:
            if route.origin in self.sessions:
                continue
            connector = aiohttp.TCPConnector(
                limit=0,
                limit_per_host=pool.max_connections,
                keepalive_timeout=pool.keepalive_timeout,
                ttl_dns_cache=60,
            )
            self.sessions[route.origin] = forwarding_session(
                connector=connector,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),  # never carry one client's cookies to another
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                trust_env=False,
            )

    async def close_sessions(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()
        for session in self.sessions.values():
            await session.close()
        self.sessions.clear()

    async def close_websockets(self) -> None:
        for ws in list(self.websockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"gateway shutting down")

    # -- the handler -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = perf_counter()
        headers = request.headers
        peer = request.remote or ""
        trusted_peer = bool(self.trusted) and self.trusted.contains(peer)
        client_ip = self.trusted.resolve(peer, headers.getall("X-Forwarded-For", ())) if trusted_peer else peer
        request_id = accept_request_id(headers.get(REQUEST_ID_HEADER), trusted_peer)
        token = request_id_var.set(request_id)
        request[REQUEST_ID] = request_id
        request[CLIENT_IP] = client_ip
        route_name = UNMATCHED_ROUTE
        status = 500
        upstream_time: float | None = None
        sent = 0
        guard: _BodyGuard | None = None
        response: web.StreamResponse | None = None
        outcome: AuthOutcome | None = None
        self.in_flight += 1
        raw_path, _, query = request.raw_path.partition("?")
        try:
            route = self._match(request, raw_path)
            route_name = route.name
            if self._query_credentials and query and route_name in self._query_credentials:
                query = without_query_parameter(query, self._query_credentials[route_name])
            url = route.upstream_url(raw_path, query)
            policy = self.policies.get(route_name) if self.policies else None
            if policy is not None:
                outcome = await policy.evaluate(request, client_ip, request_id)
                if outcome.response is not None:  # answered here (CORS preflight)
                    response = outcome.response
                    status = response.status
                    return response
            if route.settings.websocket and "Upgrade" in headers and _is_websocket_upgrade(request):
                status = 101
                principal = outcome.principal if outcome is not None else None
                return await proxy_websocket(
                    self,
                    request,
                    route,
                    self._upstream_headers(request, route, peer, trusted_peer, request_id, url, outcome, True),
                    URL(url, encoded=True),
                    principal.expires_at if principal is not None else None,
                    # An enforcing route asks again when a credential changes (a revocation closes it).
                    partial(policy.recheck, outcome, request_id)
                    if policy is not None and outcome is not None and principal is not None and policy.enforce
                    else None,
                )
            upstream_headers = self._upstream_headers(request, route, peer, trusted_peer, request_id, url, outcome)
            data: AsyncIterator[bytes] | bytes | None = None
            buffered = outcome.body if outcome is not None else None
            if buffered is not None:
                # An authenticator read the body (to check its digest): forward exactly those bytes.
                if len(buffered) > route.settings.max_body:
                    raise PayloadTooLarge(f"request body exceeds {route.settings.max_body} bytes")
                data = buffered
            elif request.body_exists:
                length = request.content_length
                if length is not None and length > route.settings.max_body:
                    raise PayloadTooLarge(f"request body exceeds {route.settings.max_body} bytes")
                guard = _BodyGuard(route.settings.max_body, self.settings.body_timeout)
                data = guard.stream(request.content)
            session = self.sessions[route.origin]
            forwarded_at = perf_counter()
            try:
                async with session.request(
                    request.method,
                    URL(url, encoded=True),  # as sent: yarl would otherwise re-quote (%2F -> / in a query)
                    headers=upstream_headers,
                    data=data,
                    allow_redirects=False,
                    timeout=route.timeout,
                ) as upstream:
                    upstream_time = perf_counter() - forwarded_at
                    if guard is not None and guard.failure is not None:
                        raise guard.failure
                    cors = outcome.cors_headers if outcome is not None else None
                    response, sent, status = await self._respond(request, upstream, request_id, cors)
                    if status == UpstreamUnavailable.status and upstream.status != status:
                        self.metrics.upstream_errors.labels(route_name, "upstream.broken_response").inc()
                    return response
            except GatewayError:
                raise
            except (aiohttp.ClientError, TimeoutError, ConnectionResetError) as exc:
                raise self._upstream_error(route, exc, guard) from exc
        except GatewayError as error:
            status = error.status
            if isinstance(error, UpstreamUnavailable | UpstreamTimeout):
                self.metrics.upstream_errors.labels(route_name, error.code).inc()
            response = render(error, request_id)
            if outcome is not None and outcome.cors_headers is not None:
                response.headers.update(outcome.cors_headers)  # an upstream failure, readable by the page
            if isinstance(error, RequestBodyTimeout):
                response.force_close()  # the rest of the body may still come: never read it as a next request
            return response
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            self.in_flight -= 1
            if self.draining and response is not None and not response.prepared:
                response.force_close()
            duration = perf_counter() - started
            # A WebSocket's duration is its lifetime: it would swamp the request latency histogram.
            self.metrics.observe_request(
                route_name, request.method, status, None if status == 101 else duration, upstream_time
            )
            if self.access_log is not None:
                principal = outcome.principal if outcome is not None else None
                self.access_log.write(
                    request_id=request_id,
                    client_ip=client_ip,
                    route=route_name,
                    method=request.method,
                    path=raw_path,
                    status=status,
                    duration_ms=duration * 1000,
                    upstream_ms=None if upstream_time is None else upstream_time * 1000,
                    bytes_in=guard.received if guard is not None else 0,
                    bytes_out=sent,
                    principal=principal.subject if principal is not None else None,
                    auth_method=principal.method if principal is not None else None,
                )
            request_id_var.reset(token)

    # -- pieces ------------------------------------------------------------------------------

    def _match(self, request: web.Request, raw_path: str) -> Route:
        if not raw_path.startswith("/"):
            raise BadRequest("request target must be a path", code="request.bad_path")
        path = request.path  # percent-decoded: what the upstream's router will see
        if "." in path and any(segment in (".", "..") for segment in path.split("/")):
            raise BadRequest("path must not contain '.' or '..' segments", code="request.bad_path")
        if "\x00" in path:
            raise BadRequest("path must not contain NUL", code="request.bad_path")
        route = self.routes.match(request.method, path)
        if route.settings.strip_prefix and not raw_path.startswith(route.settings.prefix):
            # The prefix was percent-encoded in the request: refuse rather than guess where it ends.
            raise BadRequest("encoded route prefix cannot be stripped", code="request.bad_path")
        return route

    def _upstream_headers(
        self,
        request: web.Request,
        route: Route,
        peer: str,
        trusted_peer: bool,
        request_id: str,
        url: str,
        outcome: AuthOutcome | None = None,
        websocket: bool = False,
    ) -> CIMultiDict[str]:
        headers = request.headers
        base_skip = self._request_skips.get(route.name, _REQUEST_SKIP) if outcome is not None else _REQUEST_SKIP
        skip = base_skip | connection_listed(headers) if "Connection" in headers else base_skip
        out: CIMultiDict[str] = CIMultiDict()
        identity = self.identity
        for name, value in headers.items():
            lower = name.lower()
            if lower in skip or (websocket and (lower.startswith("sec-websocket-") or lower == "content-length")):
                continue
            rule = identity.match(lower)
            if rule is not None:
                self.metrics.spoofed_headers.labels(rule).inc()
                continue
            out.add(name, value)
        host = request.host
        if route.settings.preserve_host and "Host" in headers:
            out["Host"] = headers["Host"]
        scheme = request.scheme
        if trusted_peer:
            previous_for = ", ".join(headers.getall("X-Forwarded-For", ()))
            out["X-Forwarded-For"] = f"{previous_for}, {peer}" if previous_for else peer
            out["X-Forwarded-Proto"] = headers.get("X-Forwarded-Proto", scheme)
            out["X-Forwarded-Host"] = headers.get("X-Forwarded-Host", host)
            previous = ", ".join(headers.getall("Forwarded", ()))
            pair = forwarded_pair(peer, scheme, host)
            out["Forwarded"] = f"{previous}, {pair}" if previous else pair
        else:
            out["X-Forwarded-For"] = peer
            out["X-Forwarded-Proto"] = scheme
            out["X-Forwarded-Host"] = host
            out["Forwarded"] = forwarded_pair(peer, scheme, host)
        out[REQUEST_ID_HEADER] = request_id
        if outcome is not None:
            # Client-sent copies were dropped above (identity rules, or the route's skip set): one C call.
            out.extend(outcome.context)
        if self._context_key is not None:
            values = {name: out.get(name, "") for name in ctx.CONTEXT_HEADERS}
            target = url[len(route.origin) :]
            out[ctx.SIGNATURE] = ctx.sign_context(
                self._context_key_id, self._context_key, request.method, target, values, int(time.time())
            )
        return out

    async def _respond(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        request_id: str,
        cors: dict[str, str] | None = None,
    ) -> tuple[web.StreamResponse, int, int]:
        """Answer the client from the upstream response; returns (response, body bytes, status to record)."""
        headers = _response_headers(upstream.headers, cors is not None)
        headers[REQUEST_ID_HEADER] = request_id
        if cors is not None:
            _add_cors(headers, cors)
        length = upstream.content_length
        status = upstream.status
        if (
            length is not None
            and length <= SMALL_BODY
            and request.method != "HEAD"
            and status >= 200
            and status not in _NO_BODY_STATUSES
        ):
            body = await upstream.read()
            headers.popall("Content-Length", None)
            return web.Response(status=status, reason=upstream.reason, headers=headers, body=body), len(body), status
        response = web.StreamResponse(status=status, reason=upstream.reason, headers=headers)
        if self.draining:
            response.force_close()
        await response.prepare(request)
        sent = 0
        try:
            async for chunk in upstream.content.iter_any():
                try:
                    await response.write(chunk)
                except ConnectionResetError:
                    log.info("client closed the connection mid-response", extra={"bytes_out": sent})
                    return response, sent, CLIENT_CLOSED
                sent += len(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Headers are gone already: the only honest signal left is a broken connection.
            log.warning("upstream failed mid-response", extra={"error": repr(exc), "bytes_out": sent})
            if request.transport is not None:
                request.transport.abort()
            return response, sent, UpstreamUnavailable.status
        await response.write_eof()
        return response, sent, status

    def _upstream_error(self, route: Route, exc: BaseException, guard: _BodyGuard | None) -> GatewayError:
        if guard is not None and guard.failure is not None:
            return guard.failure
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            log.warning("upstream connect timeout", extra={"route": route.name, "error": repr(exc)})
            return UpstreamTimeout("upstream did not accept the connection in time", code="upstream.connect_timeout")
        if isinstance(exc, TimeoutError):
            log.warning("upstream timeout", extra={"route": route.name, "error": repr(exc)})
            return UpstreamTimeout("upstream did not answer in time")
        log.warning("upstream unavailable", extra={"route": route.name, "error": repr(exc)})
        return UpstreamUnavailable("upstream is unavailable")


def _response_headers(upstream_headers: CIMultiDictProxy[str], cors: bool = False) -> CIMultiDict[str]:
    base = _CORS_RESPONSE_SKIP if cors else _RESPONSE_SKIP
    skip = base | connection_listed(upstream_headers) if "Connection" in upstream_headers else base
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream_headers.items():
        if name.lower() not in skip:
            out.add(name, value)
    return out


def _is_websocket_upgrade(request: web.Request) -> bool:
    """A WebSocket opening handshake (RFC 6455 §4.1): ``GET`` with ``Upgrade: websocket`` named in
    ``Connection``. Anything else carrying an ``Upgrade`` header is an ordinary request, forwarded without it
    (a hop-by-hop header); :func:`proxy_websocket` checks the handshake's own headers."""
    headers = request.headers
    upgrade = headers.get("Upgrade")
    return (
        upgrade is not None
        and upgrade.lower() == "websocket"
        and request.method == "GET"
        and "upgrade" in connection_listed(headers)
    )


def _add_cors(headers: CIMultiDict[str], cors: dict[str, str]) -> None:
    for name, value in cors.items():
        if name == "Vary":
            existing = ", ".join(headers.getall("Vary", ()))
            headers["Vary"] = (
                f"{existing}, Origin" if existing and "origin" not in existing.lower() else existing or value
            )
        else:
            headers[name] = value
