"""Fixtures for the pipeline: dict-backed sources and a real aiohttp app around one authenticator.

The sources implement the project's own lookup protocols
(:mod:`gateway.pipeline.sources`) over plain dicts; the authenticators under
test are real, and so are the HTTP requests they see: each test sends a request
through a real server whose handler calls the authenticator and reports what it
answered as JSON.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.pipeline.base import Authenticator, AuthError, Principal, RequestView
from gateway.pipeline.sources import ApiClientRecord, TokenRecord, VerificationKey


@dataclass
class MemoryServiceKeys:
    """ServiceKeySource over a list of keys; counts lookups so tests can prove none happened."""

    keys: list[VerificationKey] = field(default_factory=list)
    lookups: int = 0

    async def verification_keys(self, service_id: str) -> Sequence[VerificationKey]:
        self.lookups += 1
        return [key for key in self.keys if key.service_id == service_id]

    async def key_by_id(self, key_id: str) -> VerificationKey | None:
        self.lookups += 1
        return next((key for key in self.keys if key.key_id == key_id), None)


@dataclass
class MemoryTokenSource:
    """TokenSource over a dict keyed by the token's SHA-256 hex."""

    records: dict[str, TokenRecord] = field(default_factory=dict)
    lookups: int = 0

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        self.lookups += 1
        return self.records.get(token_hash)


@dataclass
class MemoryApiKeySource:
    """ApiKeySource over a dict keyed by the key's SHA-256 hex."""

    records: dict[str, ApiClientRecord] = field(default_factory=dict)
    lookups: int = 0

    async def lookup(self, key_hash: str) -> ApiClientRecord | None:
        self.lookups += 1
        return self.records.get(key_hash)


@dataclass
class MemoryNonces:
    """NonceStore with expiry on a clock the test controls."""

    clock: Callable[[], float] = time.time
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    ttls: list[int] = field(default_factory=list)

    async def claim(self, scope: str, nonce: str, ttl: int) -> bool:
        now = self.clock()
        self.ttls.append(ttl)
        expires = self.seen.get((scope, nonce))
        if expires is not None and expires > now:
            return False
        self.seen[(scope, nonce)] = now + ttl
        return True


def outcome(result: Principal | None) -> dict[str, Any]:
    if result is None:
        return {"outcome": "none"}
    return {
        "outcome": "principal",
        "subject": result.subject,
        "method": result.method,
        "credential_kind": result.credential_kind,
        "credential_id": result.credential_id,
        "tenant": result.tenant,
        "scopes": sorted(result.scopes),
        "service_id": result.service_id,
        "expires_at": result.expires_at,
    }


AuthClient = TestClient[web.Request, web.Application]
AuthClientFactory = Callable[..., Awaitable[AuthClient]]


@pytest.fixture
def auth_client(aiohttp_client: AiohttpClient) -> AuthClientFactory:
    """A real server whose only handler runs ``authenticator`` and answers what it decided, as JSON.

    ``client_ip`` stands in for the trusted-proxy resolver's answer (the proxy's job, not the authenticator's).
    """

    async def factory(authenticator: Authenticator, *, client_ip: str | None = None) -> AuthClient:
        async def handler(request: web.Request) -> web.Response:
            view = RequestView(request, client_ip)
            try:
                result = await authenticator.authenticate(view)
            except AuthError as error:
                return web.json_response(
                    {
                        "outcome": "error",
                        "reason": error.reason,
                        "code": error.code,
                        "status": error.status,
                        "detail": error.detail,
                        "log_detail": error.log_detail,
                        "www_authenticate": error.headers.get("WWW-Authenticate"),
                        "headers": error.headers,
                    }
                )
            body = outcome(result)
            body["buffered_body"] = None if view.body is None else view.body.decode("latin-1")
            return web.json_response(body)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        return await aiohttp_client(app)

    return factory


async def decide(client: AuthClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """Send one request and return the authenticator's decision as the handler reported it."""
    async with client.request(method, path, **kwargs) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


class FakeClock:
    """A wall clock the test moves by hand (for expiry and skew, without sleeping)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now
