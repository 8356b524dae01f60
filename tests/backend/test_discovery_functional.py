"""OIDC discovery and JWKS through the backend client: from the issuer URL to a verified token."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.app import GATEWAY
from gateway.backend.breaker import CircuitState
from gateway.backend.client import BackendClient, BackendLimits
from gateway.backend.discovery import OidcDiscovery
from gateway.backend.errors import BadBackendResponse, CircuitOpen
from tests.authgw import problem
from tests.conftest import GatewayFactory
from tests.fakes.identity_service import IdentityService
from tests.upstream import header_values

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def publish_key(identity: IdentityService) -> None:
    jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    identity.jwks = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}


def signed(identity: IdentityService, sub: str = "ivy") -> str:
    now = int(time.time())
    claims = {"iss": identity.issuer, "aud": "api", "sub": sub, "exp": now + 600, "iat": now}
    return pyjwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
async def client() -> AsyncIterator[BackendClient]:
    backend = BackendClient(BackendLimits(timeout=0.5, fail_max=2, reset_timeout=30))
    yield backend
    await backend.close()


async def test_metadata_is_fetched_once_for_concurrent_callers(
    client: BackendClient, identity: IdentityService
) -> None:
    discovery = OidcDiscovery(client, identity.issuer)
    uris = await asyncio.gather(*(discovery.jwks_uri() for _ in range(20)))
    assert set(uris) == {f"{identity.issuer}/jwks"}
    assert await discovery.introspection_endpoint() == f"{identity.issuer}/introspect"
    assert identity.calls["discovery"] == 1


async def test_a_document_naming_another_issuer_is_refused(client: BackendClient, identity: IdentityService) -> None:
    discovery = OidcDiscovery(client, identity.issuer)
    real = identity.issuer
    identity.issuer = "https://attacker.example"  # the document now names another issuer
    with pytest.raises(BadBackendResponse, match="names issuer"):
        await discovery.metadata()
    identity.issuer = real
    with pytest.raises(CircuitOpen, match="failed recently"):  # not asked again at once
        await discovery.metadata()
    assert identity.calls["discovery"] == 1


async def test_a_jwt_provider_finds_its_jwks_by_discovery_through_the_breaker(
    make_gateway: GatewayFactory, identity: IdentityService
) -> None:
    publish_key(identity)
    client = await make_gateway(
        routes=[{"name": "api", "prefix": "/api", "auth": ["jwt"]}],
        authn={
            "jwt": {
                "providers": [
                    {
                        "name": "idp",
                        "issuer": identity.issuer,
                        "audiences": ["api"],
                        "algorithms": ["RS256"],
                        "discovery": True,
                    }
                ]
            }
        },
    )
    response = await client.get("/api/echo", headers={"Authorization": f"Bearer {signed(identity)}"})
    assert response.status == 200
    assert header_values(await response.json(), "X-User-Id") == ["ivy"]
    assert identity.calls["discovery"] == 1 and identity.calls["jwks"] == 1
    backends = client.app[GATEWAY].auth.backends  # type: ignore[union-attr]
    assert set(backends.client.breakers) >= {"jwks:idp", f"discovery:{identity.issuer.split('//')[1]}"}


async def test_a_jwks_url_is_fetched_through_the_breaker_and_fails_closed(
    make_gateway: GatewayFactory, identity: IdentityService
) -> None:
    identity.mode = "error"
    client = await make_gateway(
        routes=[{"name": "api", "prefix": "/api", "auth": ["jwt"]}],
        authn={
            "backend": {"fail_max": 1, "reset_timeout": "30s"},
            "jwt": {
                "providers": [
                    {
                        "name": "idp",
                        "issuer": identity.issuer,
                        "audiences": ["api"],
                        "algorithms": ["RS256"],
                        "jwks_url": f"{identity.issuer}/jwks",
                        "min_refresh_interval": "10ms",
                    }
                ]
            },
        },
    )
    await asyncio.sleep(0.1)  # the start-up prefetch fails and opens the circuit
    response = await client.get("/api/echo", headers={"Authorization": f"Bearer {signed(identity)}"})
    assert response.status == 503 and (await problem(response))["code"] == "jwt.jwks_unavailable"
    breaker = client.app[GATEWAY].auth.backends.client.breakers["jwks:idp"]  # type: ignore[union-attr]
    assert breaker.state is CircuitState.OPEN
    assert identity.calls["jwks"] == 1  # the open circuit kept the gateway from asking again


async def test_introspection_by_discovery(make_gateway: GatewayFactory, identity: IdentityService) -> None:
    identity.add("opaque", "jack")
    client = await make_gateway(
        routes=[{"name": "api", "prefix": "/api", "auth": ["introspection"]}],
        authn={"introspection": {"issuer": identity.issuer}},
    )
    for _ in range(3):
        response = await client.get("/api/echo", headers={"Authorization": "Bearer opaque"})
        assert response.status == 200
        assert header_values(await response.json(), "X-User-Id") == ["jack"]
    assert identity.calls["discovery"] == 1 and identity.calls["introspect"] == 1


def test_discovery_url_and_endpoint_checks() -> None:
    from gateway.backend.discovery import _endpoint_url, discovery_url

    assert discovery_url("https://idp.example/") == "https://idp.example/.well-known/openid-configuration"
    assert discovery_url("https://idp.example/realms/a") == (
        "https://idp.example/realms/a/.well-known/openid-configuration"
    )
    with pytest.raises(BadBackendResponse, match="not https"):
        _endpoint_url("http://idp.example/jwks", "jwks_uri", "https://idp.example")
    with pytest.raises(BadBackendResponse, match="not an http"):
        _endpoint_url("javascript:alert(1)", "jwks_uri", "https://idp.example")
    bad: Any = 5
    with pytest.raises(BadBackendResponse):
        _endpoint_url(bad, "jwks_uri", "https://idp.example")
