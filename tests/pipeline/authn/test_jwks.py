"""JWKS keys against a real aiohttp JWKS server: caching, rate-limited refresh, single flight, failure."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt as pyjwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from pytest_aiohttp import AiohttpServer

from gateway.pipeline.authn.jwks import JwksKeys, parse_jwks
from gateway.pipeline.authn.jwt import JwtAuthenticator, JwtProvider
from gateway.pipeline.base import AuthUnavailable
from tests.pipeline.conftest import AuthClientFactory, FakeClock, decide

ISSUER = "https://idp.example.com"
KEY_1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {**data, "kid": kid, "use": "sig", "alg": "RS256", **extra}


def token(key: rsa.RSAPrivateKey, kid: str, **headers: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": "gateway", "sub": "u1", "exp": now + 300, "iat": now}
    return pyjwt.encode(payload, key, algorithm="RS256", headers={"kid": kid, **headers})


@dataclass
class JwksState:
    keys: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0
    status: int = 200
    gate: asyncio.Event | None = None


JWKS_STATE = web.AppKey("jwks_state", JwksState)


@pytest.fixture
async def jwks_server(aiohttp_server: AiohttpServer) -> AsyncIterator[TestServer]:
    async def serve(request: web.Request) -> web.Response:
        state = request.app[JWKS_STATE]
        state.hits += 1
        if state.gate is not None:
            await state.gate.wait()
        if state.status != 200:
            return web.Response(status=state.status, text="identity provider down")
        return web.json_response({"keys": state.keys})

    app = web.Application()
    app[JWKS_STATE] = JwksState(keys=[jwk(KEY_1, "k1")])
    app.router.add_get("/.well-known/jwks.json", serve)
    yield await aiohttp_server(app)


def state_of(server: TestServer) -> JwksState:
    return server.app[JWKS_STATE]


def jwks_url(server: TestServer) -> str:
    return str(server.make_url("/.well-known/jwks.json"))


@pytest.fixture
async def keys_factory() -> AsyncIterator[list[JwksKeys]]:
    """JwksKeys built by a test are closed after it, whatever happened."""
    made: list[JwksKeys] = []
    yield made
    for keys in made:
        await keys.close()


def make_keys(made: list[JwksKeys], server: TestServer, clock: FakeClock, **options: Any) -> JwksKeys:
    keys = JwksKeys(jwks_url(server), clock=clock, min_refresh_interval=30, refresh_interval=300, **options)
    made.append(keys)
    return keys


def authenticator(keys: JwksKeys) -> JwtAuthenticator:
    return JwtAuthenticator([JwtProvider(issuer=ISSUER, audiences=("gateway",), algorithms=("RS256",), keys=keys)])


async def test_keys_are_fetched_once_and_cached(
    auth_client: AuthClientFactory, jwks_server: TestServer, keys_factory: list[JwksKeys]
) -> None:
    keys = make_keys(keys_factory, jwks_server, FakeClock())
    client = await auth_client(authenticator(keys))
    for _ in range(5):
        result = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {token(KEY_1, 'k1')}"})
        assert result["outcome"] == "principal", result
    assert state_of(jwks_server).hits == 1


async def test_a_jku_naming_the_providers_own_jwks_url_is_accepted(
    auth_client: AuthClientFactory, jwks_server: TestServer, keys_factory: list[JwksKeys]
) -> None:
    keys = make_keys(keys_factory, jwks_server, FakeClock())
    client = await auth_client(authenticator(keys))
    own = token(KEY_1, "k1", jku=jwks_url(jwks_server))
    other = token(KEY_1, "k1", jku=jwks_url(jwks_server) + "?x=1")
    assert (await decide(client, "GET", "/", headers={"Authorization": f"Bearer {own}"}))["outcome"] == "principal"
    assert (await decide(client, "GET", "/", headers={"Authorization": f"Bearer {other}"}))[
        "reason"
    ] == "jwt.bad_header"


async def test_unknown_kid_refreshes_at_most_once_per_interval(
    auth_client: AuthClientFactory, jwks_server: TestServer, keys_factory: list[JwksKeys]
) -> None:
    clock = FakeClock()
    keys = make_keys(keys_factory, jwks_server, clock)
    client = await auth_client(authenticator(keys))
    state = state_of(jwks_server)
    assert (await decide(client, "GET", "/", headers={"Authorization": f"Bearer {token(KEY_1, 'k1')}"}))[
        "outcome"
    ] == "principal"
    clock.now += 31
    for _ in range(5):
        forged = token(KEY_2, f"random-{_}")
        assert (await decide(client, "GET", "/", headers={"Authorization": f"Bearer {forged}"}))[
            "reason"
        ] == "jwt.kid_unknown"
    assert state.hits == 2  # one refresh for the first unknown kid, none for the next four
    clock.now += 30
    await decide(client, "GET", "/", headers={"Authorization": f"Bearer {token(KEY_2, 'random-x')}"})
    assert state.hits == 3


async def test_a_rotated_key_is_picked_up_on_its_first_token(
    auth_client: AuthClientFactory, jwks_server: TestServer, keys_factory: list[JwksKeys]
) -> None:
    clock = FakeClock()
    keys = make_keys(keys_factory, jwks_server, clock)
    client = await auth_client(authenticator(keys))
    await decide(client, "GET", "/", headers={"Authorization": f"Bearer {token(KEY_1, 'k1')}"})
    state_of(jwks_server).keys = [jwk(KEY_1, "k1"), jwk(KEY_2, "k2")]
    clock.now += 31
    rotated = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {token(KEY_2, 'k2')}"})
    assert rotated["outcome"] == "principal", rotated
    old = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {token(KEY_1, 'k1')}"})
    assert old["outcome"] == "principal"
    assert state_of(jwks_server).hits == 2


async def test_concurrent_callers_share_one_fetch(jwks_server: TestServer, keys_factory: list[JwksKeys]) -> None:
    state = state_of(jwks_server)
    state.gate = asyncio.Event()
    keys = make_keys(keys_factory, jwks_server, FakeClock())
    waiting = [asyncio.ensure_future(keys.key_for("k1")) for _ in range(20)]
    await asyncio.sleep(0.05)
    state.gate.set()
    results = await asyncio.gather(*waiting)
    assert all(result is not None for result in results)
    assert state.hits == 1
    assert keys.fetches == 1


async def test_a_caller_giving_up_does_not_cancel_the_fetch_for_others(
    jwks_server: TestServer, keys_factory: list[JwksKeys]
) -> None:
    state = state_of(jwks_server)
    state.gate = asyncio.Event()
    keys = make_keys(keys_factory, jwks_server, FakeClock())
    impatient = asyncio.ensure_future(keys.key_for("k1"))
    patient = asyncio.ensure_future(keys.key_for("k1"))
    await asyncio.sleep(0.05)
    impatient.cancel()
    state.gate.set()
    assert await patient is not None
    assert impatient.cancelled()


async def test_provider_down_at_start_is_503_then_recovers(
    auth_client: AuthClientFactory, jwks_server: TestServer, keys_factory: list[JwksKeys]
) -> None:
    clock = FakeClock()
    state = state_of(jwks_server)
    state.status = 503
    keys = make_keys(keys_factory, jwks_server, clock)
    client = await auth_client(authenticator(keys))
    headers = {"Authorization": f"Bearer {token(KEY_1, 'k1')}"}
    first = await decide(client, "GET", "/", headers=headers)
    assert (first["reason"], first["status"], first["headers"]["Retry-After"]) == ("jwt.jwks_unavailable", 503, "30")
    again = await decide(client, "GET", "/", headers=headers)
    assert again["reason"] == "jwt.jwks_unavailable"
    assert state.hits == 1  # a down provider is not hammered by every request
    state.status = 200
    clock.now += 30
    assert (await decide(client, "GET", "/", headers=headers))["outcome"] == "principal"
    assert state.hits == 2


async def test_stale_keys_refresh_in_the_background_and_survive_a_failed_refresh(
    jwks_server: TestServer, keys_factory: list[JwksKeys]
) -> None:
    clock = FakeClock()
    state = state_of(jwks_server)
    keys = make_keys(keys_factory, jwks_server, clock)
    assert await keys.key_for("k1") is not None
    state.status = 500
    clock.now += 301
    assert await keys.key_for("k1") is not None  # served from the held keys while the refresh runs
    for _ in range(50):
        if keys.fetches == 2 and keys._inflight is None:
            break
        await asyncio.sleep(0.01)
    assert state.hits == 2
    assert await keys.key_for("k1") is not None  # the failed refresh kept them
    state.status = 200
    state.keys = [jwk(KEY_2, "k2")]
    clock.now += 31
    assert await keys.key_for("k2") is not None


async def test_close_stops_a_fetch_in_flight(jwks_server: TestServer) -> None:
    state = state_of(jwks_server)
    state.gate = asyncio.Event()
    keys = JwksKeys(jwks_url(jwks_server))
    pending = asyncio.ensure_future(keys.key_for("k1"))
    await asyncio.sleep(0.05)
    await keys.close()
    with pytest.raises((asyncio.CancelledError, AuthUnavailable)):
        await pending
    state.gate.set()


async def test_a_jwks_over_the_size_limit_is_refused(jwks_server: TestServer, keys_factory: list[JwksKeys]) -> None:
    state_of(jwks_server).keys = [jwk(KEY_1, f"k{n}") for n in range(20)]
    keys = make_keys(keys_factory, jwks_server, FakeClock(), max_bytes=2048)
    with pytest.raises(AuthUnavailable):
        await keys.key_for("k1")


def test_parse_jwks_keeps_only_signature_keys() -> None:
    document = {
        "keys": [
            jwk(KEY_1, "sig-key"),
            jwk(KEY_2, "enc-key", use="enc"),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "kid": "broken"},
            "not a key",
        ]
    }
    keys = parse_jwks(json.dumps(document).encode())
    assert list(keys) == ["sig-key"]
    assert keys["sig-key"][1] == "RS256"
    for bad in (b"not json", b"[]", b'{"keys": "x"}', b'{"keys": [{"kty": "oct", "k": "AA"}]}'):
        with pytest.raises(ValueError):
            parse_jwks(bad)
