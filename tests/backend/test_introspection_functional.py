"""Acceptance: opaque bearer tokens through the real gateway, a real upstream and the fake identity service.

Every request goes over HTTP to a gateway app built from Settings (``make_gateway``);
the gateway asks the fake identity service over HTTP; the upstream echoes what it
received. The fake counts the calls it gets: that count is what the acceptance
criteria are about.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import GATEWAY
from gateway.backend.breaker import CircuitState
from tests.authgw import problem
from tests.conftest import GatewayFactory
from tests.fakes.identity_service import IdentityService
from tests.upstream import header_values

Client = TestClient[web.Request, web.Application]

FAIL_MAX = 3
RESET = 0.5


def backend_config(identity: IdentityService, **introspection: Any) -> dict[str, Any]:
    return {
        "backend": {"timeout": "300ms", "fail_max": FAIL_MAX, "reset_timeout": f"{RESET}s"},
        "introspection": {"url": f"{identity.issuer}/introspect", **introspection},
    }


async def gateway_for(
    make_gateway: GatewayFactory,
    identity: IdentityService,
    *,
    auth: list[str] | None = None,
    route: dict[str, Any] | None = None,
    authn: dict[str, Any] | None = None,
    **introspection: Any,
) -> Client:
    return await make_gateway(
        routes=[{"name": "api", "prefix": "/api", "auth": auth or ["introspection"], **(route or {})}],
        authn={**backend_config(identity, **introspection), **(authn or {})},
        log={"access_log": False},
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def breaker_of(client: Client) -> Any:
    gateway = client.app[GATEWAY]
    assert gateway.auth is not None
    return gateway.auth.backends.client.breakers["introspection"]


async def status(client: Client, token: str) -> int:
    async with client.get("/api/echo", headers=bearer(token)) as response:
        await response.read()
        return response.status


async def statuses(client: Client, token: str, count: int) -> list[int]:
    """``count`` concurrent requests (they share one backend call when the token is not cached)."""
    return list(await asyncio.gather(*(status(client, token) for _ in range(count))))


async def one_by_one(client: Client, token: str, count: int) -> list[int]:
    """``count`` requests, each after the previous one's answer (a failure is never cached: one call each)."""
    return [await status(client, token) for _ in range(count)]


# -- the happy path and the cache -------------------------------------------------------------


async def test_an_active_token_reaches_the_upstream_as_trusted_context(
    make_gateway: GatewayFactory, identity: IdentityService
) -> None:
    identity.add("opaque-token-1", "alice", tenant="acme", scope="orders:read")
    client = await gateway_for(make_gateway, identity)
    response = await client.get("/api/echo", headers={**bearer("opaque-token-1"), "X-User-Id": "admin"})
    assert response.status == 200
    echo = await response.json()
    assert header_values(echo, "X-User-Id") == ["alice"]
    assert header_values(echo, "X-Tenant-Id") == ["acme"]
    assert header_values(echo, "X-Auth-Method") == ["introspection"]
    assert header_values(echo, "X-Auth-Scopes") == ["orders:read"]
    assert header_values(echo, "Authorization") == []  # the credential stays at the gateway


async def test_1000_requests_with_10_tokens_cause_at_most_10_backend_calls(
    make_gateway: GatewayFactory, identity: IdentityService
) -> None:
    tokens = [f"opaque-{i:02d}" for i in range(10)]
    for token in tokens:
        identity.add(token, f"user-{token}")
    client = await gateway_for(make_gateway, identity)
    answered = []
    for batch in range(20):  # 20 batches of 50 concurrent requests, every token in each batch
        answered += await asyncio.gather(*(statuses(client, tokens[(batch * 50 + i) % 10], 1) for i in range(50)))
    assert [s for group in answered for s in group] == [200] * 1000
    assert identity.backend_calls <= 10  # hit rate >= 99 %


async def test_100_concurrent_requests_with_one_new_token_cause_one_call(
    make_gateway: GatewayFactory, identity: IdentityService
) -> None:
    identity.add("brand-new")
    identity.hold = asyncio.Event()
    client = await gateway_for(make_gateway, identity)
    pending = asyncio.ensure_future(statuses(client, "brand-new", 100))
    await asyncio.sleep(0.2)
    identity.hold.set()
    assert await pending == [200] * 100
    assert identity.backend_calls == 1


async def test_an_inactive_token_is_refused_and_that_answer_is_cached(
    make_gateway: GatewayFactory, identity: IdentityService
) -> None:
    client = await gateway_for(make_gateway, identity)
    for _ in range(3):
        response = await client.get("/api/echo", headers=bearer("revoked-or-unknown"))
        assert response.status == 401
        assert (await problem(response))["code"] == "token.inactive"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="gateway", error="invalid_token"'
    assert identity.backend_calls == 1


async def test_the_tokens_expiry_bounds_the_cache_lifetime(
    make_gateway: GatewayFactory, identity: IdentityService
) -> None:
    client = await gateway_for(make_gateway, identity, cache={"max_ttl": "1h"})
    # exp is in whole seconds: 3 s leaves room for a loaded machine before the first request.
    identity.add("short-lived", ttl=3.0)
    assert await statuses(client, "short-lived", 5) == [200] * 5
    assert identity.backend_calls == 1
    await asyncio.sleep(3.2)
    identity.revoke("short-lived")
    assert await statuses(client, "short-lived", 1) == [401]
    assert identity.backend_calls == 2


# -- which tokens go to the backend ----------------------------------------------------------


async def test_only_opaque_tokens_go_to_the_backend(make_gateway: GatewayFactory, identity: IdentityService) -> None:
    identity.add("opaque-ok", "erin")
    client = await gateway_for(make_gateway, identity, auth=["introspection", "service_token"])
    sk_token = "sk_" + "a" * 64  # a legacy-format service token: never disclosed to the identity service
    response = await client.get("/api/echo", headers=bearer(sk_token))
    assert response.status == 401 and (await problem(response))["code"] == "token.invalid"
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    response = await client.get("/api/echo", headers=bearer(jwt_like))
    assert response.status == 401 and (await problem(response))["code"] == "auth.required"
    response = await client.get("/api/echo", headers=bearer("opaque-ok"))  # listed after service_token: still here
    assert response.status == 200
    assert [seen["form"]["token"] for seen in identity.seen] == ["opaque-ok"]


async def test_a_static_internal_token_is_never_sent_to_the_backend(
    make_gateway: GatewayFactory, identity: IdentityService, tmp_path: Any
) -> None:
    secret = "static-" + "s" * 40
    (tmp_path / "billing.token").write_text(secret + "\n")
    client = await gateway_for(
        make_gateway,
        identity,
        auth=["introspection", "service_token"],
        authn={"service_token": {"static": {"billing": [str(tmp_path / "billing.token")]}}},
    )
    response = await client.get("/api/echo", headers=bearer(secret))
    assert response.status == 200
    assert header_values(await response.json(), "X-User-Id") == ["service:billing"]
    assert identity.seen == []


# -- the backend failing ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["error", "garbage", "missing_active", "wrong_types", "huge", "hang", "down"])
async def test_a_broken_backend_is_a_503_never_a_500_nor_a_success(
    make_gateway: GatewayFactory, identity: IdentityService, mode: str
) -> None:
    identity.add("tok")
    identity.mode = mode
    identity.huge_bytes = 256 * 1024
    client = await gateway_for(make_gateway, identity)
    response = await client.get("/api/echo", headers=bearer("tok"))
    assert response.status == 503
    body = await problem(response)
    assert body["code"] == "backend.unavailable" and "tok" not in str(body)
    assert int(response.headers["Retry-After"]) >= 1


async def test_the_circuit_opens_fails_fast_tries_once_and_recovers(
    make_gateway: GatewayFactory, identity: IdentityService
) -> None:
    identity.add("tok")
    identity.mode = "down"
    client = await gateway_for(make_gateway, identity)
    assert await one_by_one(client, "tok", FAIL_MAX) == [503] * FAIL_MAX
    assert identity.backend_calls == FAIL_MAX
    assert breaker_of(client).state is CircuitState.OPEN

    started = time.perf_counter()
    response = await client.get("/api/echo", headers=bearer("tok"))
    elapsed = time.perf_counter() - started
    assert response.status == 503 and (await problem(response))["code"] == "backend.unavailable"
    assert 1 <= int(response.headers["Retry-After"]) <= 1 + RESET
    assert identity.backend_calls == FAIL_MAX  # no call while open
    assert elapsed < 0.1  # fail fast (the bench measures the gateway's time precisely)

    await asyncio.sleep(RESET + 0.1)
    identity.mode = "slow"
    identity.delay = 0.1
    tokens = [f"tok-{i}" for i in range(10)]
    for token in tokens:
        identity.add(token)
    trial = await asyncio.gather(*(status(client, token) for token in tokens))  # ten different new tokens
    assert identity.backend_calls == FAIL_MAX + 1  # exactly one trial call; the others fail fast
    assert sorted(trial) == [200] + [503] * 9
    assert breaker_of(client).state is CircuitState.CLOSED
    assert await asyncio.gather(*(status(client, token) for token in tokens)) == [200] * 10


async def test_a_client_hanging_up_is_not_a_backend_failure(
    make_gateway: GatewayFactory, identity: IdentityService
) -> None:
    identity.add("tok")
    identity.mode = "slow"
    identity.delay = 0.15
    client = await gateway_for(make_gateway, identity)
    for i in range(FAIL_MAX + 1):
        with pytest.raises(asyncio.TimeoutError):
            await client.get("/api/echo", headers=bearer(f"tok-{i}"), timeout=aiohttp.ClientTimeout(total=0.03))
    await asyncio.sleep(0.3)
    breaker = breaker_of(client)
    assert breaker.state is CircuitState.CLOSED and breaker.fail_counter == 0


async def test_stale_grace_serves_validated_tokens_while_open_and_stops_at_its_end(
    make_gateway: GatewayFactory, identity: IdentityService, caplog: pytest.LogCaptureFixture
) -> None:
    identity.add("seen-before", "gina")
    identity.add("never-seen")
    client = await gateway_for(make_gateway, identity, route={"stale_grace": "1s"}, cache={"max_ttl": "100ms"})
    assert await statuses(client, "seen-before", 1) == [200]
    identity.mode = "error"
    await asyncio.sleep(0.15)  # the decision is no longer fresh
    assert await one_by_one(client, "seen-before", FAIL_MAX) == [200] * FAIL_MAX  # failures, served stale
    assert breaker_of(client).state is CircuitState.OPEN
    calls = identity.backend_calls

    response = await client.get("/api/echo", headers=bearer("seen-before"))
    assert response.status == 200 and header_values(await response.json(), "X-User-Id") == ["gina"]
    assert await statuses(client, "never-seen", 1) == [503]  # nothing to fall back on: fail closed
    assert identity.backend_calls == calls
    assert any("stale grace" in record.getMessage() for record in caplog.records)

    await asyncio.sleep(1.0)  # the grace is over
    assert await statuses(client, "seen-before", 1) == [503]


async def test_metrics_and_readiness_say_which_backend_is_open(
    make_gateway: GatewayFactory, identity: IdentityService, admin_client: Any
) -> None:
    identity.add("tok")
    client = await gateway_for(make_gateway, identity)
    admin = await admin_client(client)
    assert await one_by_one(client, "tok", 2) == [200, 200]
    ready = await admin.get("/readyz")
    assert ready.status == 200 and "auth_backend" in (await ready.json())["checks"]

    identity.mode = "error"
    identity.revoke("tok")
    await one_by_one(client, "other", FAIL_MAX)
    ready = await admin.get("/readyz")
    body = await ready.json()
    assert ready.status == 503  # the only route cannot authenticate anybody new
    assert "introspection circuit open" in body["checks"]["auth_backend"]
    assert "routes that cannot authenticate: api" in body["checks"]["auth_backend"]

    text = await (await admin.get("/metrics")).text()
    assert 'gateway_circuit_state{backend="introspection"} 1.0' in text
    assert 'gateway_circuit_transitions_total{backend="introspection",to="open"} 1.0' in text
    assert 'gateway_auth_cache_total{layer="memory",result="hit"} 1.0' in text
    assert 'gateway_auth_backend_calls_total{backend="introspection",outcome="http_5xx"} 3.0' in text
    assert 'gateway_auth_decisions_total{method="introspection",mode="enforce",reason="backend.unavailable"' in text


async def test_readiness_stays_up_while_a_stale_grace_can_serve(
    make_gateway: GatewayFactory, identity: IdentityService, admin_client: Any
) -> None:
    client = await gateway_for(make_gateway, identity, route={"stale_grace": "5m"})
    admin = await admin_client(client)
    identity.mode = "error"
    await one_by_one(client, "x", FAIL_MAX)
    ready = await admin.get("/readyz")
    body = await ready.json()
    assert ready.status == 200
    assert "introspection circuit open" in body["checks"]["auth_backend"]
    assert "every route can still serve" in body["checks"]["auth_backend"]


# -- other protocols -------------------------------------------------------------------------


async def test_a_json_validate_endpoint_with_field_mapping(
    make_gateway: GatewayFactory, identity: IdentityService
) -> None:
    identity.add("in-house-token", "henry", tenant="acme", scope="read write")
    client = await gateway_for(
        make_gateway,
        identity,
        protocol="validate",
        url=f"{identity.issuer}/validate",
        fields={"subject": "user.id", "tenant": "org", "scopes": "permissions", "expires_at": "expiresAt"},
    )
    response = await client.get("/api/echo", headers=bearer("in-house-token"))
    assert response.status == 200
    echo = await response.json()
    assert header_values(echo, "X-User-Id") == ["henry"] and header_values(echo, "X-Tenant-Id") == ["acme"]
    assert header_values(echo, "X-Auth-Scopes") == ["read write"]
    response = await client.get("/api/echo", headers=bearer("unknown"))
    assert response.status == 401 and (await problem(response))["code"] == "token.inactive"


async def test_basic_client_auth_from_a_secret_file(
    make_gateway: GatewayFactory, identity: IdentityService, tmp_path: Any
) -> None:
    identity.client_id, identity.client_secret = "gateway", "introspection-secret"
    (tmp_path / "secret").write_text("introspection-secret\n")
    identity.add("tok")
    client = await gateway_for(
        make_gateway,
        identity,
        client_auth="basic",
        client_id="gateway",
        client_secret_file=str(tmp_path / "secret"),
    )
    assert await statuses(client, "tok", 1) == [200]
    assert identity.seen[-1]["authorization"].startswith("Basic ")
