"""OpenID Connect discovery: the JWKS URL and the introspection endpoint from an issuer URL.

``GET {issuer}/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0 §4),
through the backend client (its own breaker, timeout and size limit). The document
is checked before anything in it is used:

- its ``issuer`` must equal the configured issuer exactly (§4.3: otherwise another
  provider's keys could be substituted);
- ``jwks_uri`` and ``introspection_endpoint`` (RFC 8414), when present, must be
  absolute http(s) URLs, and https when the issuer is https.

The document is fetched when first needed (not at start-up: a provider down when
the gateway starts must not stop it), shared by concurrent callers, kept for
``refresh_interval`` and then refreshed in the background while the old one keeps
serving. A failed fetch is retried at most once per ``retry_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from gateway.backend.client import BackendClient, BackendResponse
from gateway.backend.decisions import parse_json_object
from gateway.backend.errors import BackendError, BackendRejected, BadBackendResponse, CircuitOpen

log = logging.getLogger("gateway.backend")

WELL_KNOWN: Final = "/.well-known/openid-configuration"
DEFAULT_REFRESH_INTERVAL: Final = 3600.0
DEFAULT_RETRY_INTERVAL: Final = 10.0


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    jwks_uri: str | None
    introspection_endpoint: str | None


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + WELL_KNOWN


def _endpoint_url(value: object, name: str, issuer: str) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadBackendResponse(f"discovery document: {name} is not an http(s) URL")
    if issuer.startswith("https://") and parts.scheme != "https":
        raise BadBackendResponse(f"discovery document: {name} is not https while the issuer is")
    return str(value)


class OidcDiscovery:
    """The provider metadata of one issuer (see the module docstring)."""

    def __init__(
        self,
        client: BackendClient,
        issuer: str,
        *,
        endpoint: str = "discovery",
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.issuer = issuer
        self.url = discovery_url(issuer)
        self.endpoint = endpoint
        self.refresh_interval = refresh_interval
        self.retry_interval = retry_interval
        self.clock = clock
        self._metadata: ProviderMetadata | None = None
        self._fetched_at = float("-inf")
        self._failed_at = float("-inf")
        self._inflight: asyncio.Task[ProviderMetadata] | None = None

    async def metadata(self) -> ProviderMetadata:
        """The metadata, fetched if never fetched; a :class:`BackendError` when it cannot be had."""
        now = self.clock()
        held = self._metadata
        if held is not None:
            if now - self._fetched_at > self.refresh_interval and now - self._failed_at >= self.retry_interval:
                self._start()  # refresh behind the request; the held document keeps serving
            return held
        if self._inflight is None and now - self._failed_at < self.retry_interval:
            raise CircuitOpen(
                f"discovery of {self.issuer} failed recently", backend=self.endpoint, retry_after=self.retry_interval
            )
        return await asyncio.shield(self._start())

    async def jwks_uri(self) -> str:
        found = (await self.metadata()).jwks_uri
        if found is None:
            raise BackendRejected(f"{self.issuer} publishes no jwks_uri", backend=self.endpoint)
        return found

    async def introspection_endpoint(self) -> str:
        found = (await self.metadata()).introspection_endpoint
        if found is None:
            raise BackendRejected(f"{self.issuer} publishes no introspection_endpoint", backend=self.endpoint)
        return found

    def _start(self) -> asyncio.Task[ProviderMetadata]:
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_task(self._fetch())
            self._inflight.add_done_callback(self._done)
        return self._inflight

    def _done(self, task: asyncio.Task[ProviderMetadata]) -> None:
        self._inflight = None
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self._metadata = task.result()
            self._fetched_at = self.clock()
        else:
            self._failed_at = self.clock()

    async def _fetch(self) -> ProviderMetadata:
        try:
            return await self.client.call(self.endpoint, "GET", self.url, self._parse)
        except BackendError as error:
            log.warning(
                "OIDC discovery failed",
                extra={"issuer": self.issuer, "outcome": error.outcome, "detail": error.detail},
            )
            raise

    def _parse(self, response: BackendResponse) -> ProviderMetadata:
        if response.status != 200:
            raise BackendRejected(f"HTTP {response.status} for {self.url}")
        document = parse_json_object(response.body)
        issuer = document.get("issuer")
        if issuer != self.issuer:
            raise BadBackendResponse(f"discovery document names issuer {str(issuer)[:200]!r}, expected {self.issuer!r}")
        return ProviderMetadata(
            issuer=self.issuer,
            jwks_uri=_endpoint_url(document.get("jwks_uri"), "jwks_uri", self.issuer),
            introspection_endpoint=_endpoint_url(
                document.get("introspection_endpoint"), "introspection_endpoint", self.issuer
            ),
        )

    async def close(self) -> None:
        task = self._inflight
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
