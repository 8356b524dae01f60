"""The HTTP client for identity services: one session, one breaker per endpoint, bounded answers.

Every call to the auth backend (introspection, a validate endpoint, OIDC
discovery, JWKS) goes through :meth:`BackendClient.call`::

    breaker admits it?           no: CircuitOpen (fast, no network)        outcome open
    a concurrency slot in time?  no: BackendBusy                           outcome busy
    in its own task, counted by the breaker:
        send, whole answer within `timeout`       else BackendTimeout       timeout
        connection errors                         BackendTransportError     transport
        5xx                                       BackendHttpError          http_5xx
        body over `max_response` bytes            BadBackendResponse        bad_response
        parse(answer) -> the caller's value       BadBackendResponse        bad_response
                                                  BackendRejected (4xx)     rejected (not counted)

The call runs in a task of its own and the caller awaits it through
``asyncio.shield``: a client that hangs up (its handler is cancelled) neither
cancels the call for the others sharing it nor counts as a backend failure; the
call ends and is counted for what it was. ``parse`` runs inside the breaker so a
garbage answer is a failure like a 5xx, never a decision. Failures are logged
once per call with the endpoint and what was wrong (never the token or a secret).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Any, TypeVar

import aiohttp

from gateway import __version__
from gateway.backend.breaker import EndpointBreaker
from gateway.backend.errors import (
    BackendError,
    BackendHttpError,
    BackendTimeout,
    BackendTransportError,
    BadBackendResponse,
    CircuitOpen,
)
from gateway.backend.metrics import BackendMetrics

log = logging.getLogger("gateway.backend")

T = TypeVar("T")

DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_RESPONSE = 64 * 1024


@dataclass(frozen=True, slots=True)
class BackendLimits:
    """How every endpoint is called: per-call timeout, breaker thresholds, concurrency, answer size."""

    timeout: float = DEFAULT_TIMEOUT
    fail_max: int = 5
    reset_timeout: float = 30.0
    max_concurrent: int = 64
    queue_timeout: float = 0.05
    max_response: int = DEFAULT_MAX_RESPONSE


@dataclass(frozen=True, slots=True)
class BackendResponse:
    """A complete answer (the body read whole, within the size limit)."""

    status: int
    body: bytes
    content_type: str
    url: str


class BackendClient:
    """Calls identity-service endpoints (see the module docstring); :meth:`close` on shutdown."""

    def __init__(
        self,
        limits: BackendLimits | None = None,
        metrics: BackendMetrics | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.limits = limits or BackendLimits()
        self.metrics = metrics
        self.breakers: dict[str, EndpointBreaker] = {}
        self._session = session
        self._owns_session = session is None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def breaker(self, endpoint: str, limits: BackendLimits | None = None) -> EndpointBreaker:
        """The breaker of ``endpoint`` (created on first use, with ``limits`` or the client's)."""
        found = self.breakers.get(endpoint)
        if found is None:
            chosen = limits or self.limits
            found = self.breakers[endpoint] = EndpointBreaker(
                endpoint,
                fail_max=chosen.fail_max,
                reset_timeout=chosen.reset_timeout,
                max_concurrent=chosen.max_concurrent,
                queue_timeout=chosen.queue_timeout,
                metrics=self.metrics,
            )
        return found

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": f"gateway/{__version__}", "Accept": "application/json"},
                trust_env=False,
            )
        return self._session

    async def call(
        self,
        endpoint: str,
        method: str,
        url: str,
        parse: Callable[[BackendResponse], T],
        *,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        max_response: int | None = None,
    ) -> T:
        """Call ``url`` as ``endpoint`` and return ``parse(answer)``; a :class:`BackendError` otherwise."""
        if self._closed:
            raise CircuitOpen("the backend client is closed", backend=endpoint)
        breaker = self.breaker(endpoint)
        try:
            trial = breaker.admit()
        except BackendError as error:
            self._count(endpoint, error.outcome, None)
            raise
        try:
            await breaker.acquire_slot()
        except BaseException as error:
            breaker.release(trial)
            if isinstance(error, BackendError):
                self._count(endpoint, error.outcome, None)
            raise
        # The task owns the slot and the trial from here: it releases both when the call is over.
        task = asyncio.get_running_loop().create_task(
            self._guarded(breaker, trial, method, url, parse, data, json, headers, max_response)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            # shield: a caller that gives up leaves the call to finish and count for what it was.
            return await asyncio.shield(task)
        finally:
            del task  # this frame, in a failure's traceback, must not hold the task holding that failure

    async def _guarded(
        self,
        breaker: EndpointBreaker,
        trial: bool,
        method: str,
        url: str,
        parse: Callable[[BackendResponse], T],
        data: Mapping[str, str] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        max_response: int | None,
    ) -> T:
        try:
            return await self._counted(breaker, method, url, parse, data, json, headers, max_response)
        finally:
            breaker.release_slot()
            breaker.release(trial)

    async def _counted(
        self,
        breaker: EndpointBreaker,
        method: str,
        url: str,
        parse: Callable[[BackendResponse], T],
        data: Mapping[str, str] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        max_response: int | None,
    ) -> T:
        started = perf_counter()
        try:
            with breaker.counting():
                response = await self._send(breaker.name, method, url, data, json, headers, max_response)
                value = parse(response)
        except BackendError as error:
            error.backend = error.backend or breaker.name
            self._count(breaker.name, error.outcome, perf_counter() - started)
            level = logging.ERROR if error.outcome == "rejected" else logging.WARNING
            log.log(
                level,
                "auth backend call failed",
                extra={"backend": breaker.name, "url": url, "outcome": error.outcome, "detail": error.detail},
            )
            raise
        except Exception as exc:  # pybreaker's own error if the state changed under us, or a parse bug
            from pybreaker import CircuitBreakerError

            if isinstance(exc, CircuitBreakerError):
                self._count(breaker.name, "open", None)
                raise CircuitOpen(str(exc), backend=breaker.name) from None
            self._count(breaker.name, BadBackendResponse.outcome, perf_counter() - started)
            log.exception("auth backend answer could not be read", extra={"backend": breaker.name, "url": url})
            raise BadBackendResponse(f"answer could not be read: {type(exc).__name__}", backend=breaker.name) from exc
        self._count(breaker.name, "ok", perf_counter() - started)
        return value

    async def _send(
        self,
        name: str,
        method: str,
        url: str,
        data: Mapping[str, str] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        max_response: int | None,
    ) -> BackendResponse:
        limit = max_response or self.limits.max_response
        timeout = self.limits.timeout
        session = self._session_now()
        try:
            async with (
                asyncio.timeout(timeout),
                session.request(
                    method,
                    url,
                    data=data,
                    json=json,
                    headers=headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as response,
            ):
                if response.status >= 500:
                    raise BackendHttpError(f"HTTP {response.status} from {name}", backend=name)
                if 300 <= response.status < 400:
                    raise BadBackendResponse(f"HTTP {response.status} redirect from {name} (not followed)")
                if response.content_length is not None and response.content_length > limit:
                    raise BadBackendResponse(f"answer of {response.content_length} bytes, over {limit}")
                body = bytearray()
                async for chunk in response.content.iter_chunked(16384):
                    body += chunk
                    if len(body) > limit:
                        raise BadBackendResponse(f"answer over {limit} bytes")
                return BackendResponse(response.status, bytes(body), response.content_type, url)
        except BackendError:
            raise
        except TimeoutError:
            raise BackendTimeout(f"no complete answer from {name} within {timeout:g}s", backend=name) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise BackendTransportError(f"{type(exc).__name__}: {exc}"[:300], backend=name) from None

    def _count(self, endpoint: str, outcome: str, duration: float | None) -> None:
        if self.metrics is not None:
            self.metrics.call(endpoint, outcome, duration)

    async def close(self) -> None:
        """Cancel calls still in flight (shutdown) and close the session if it is ours."""
        self._closed = True
        for breaker in self.breakers.values():
            breaker.closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None
