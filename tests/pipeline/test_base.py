"""The pipeline contracts: AuthError's two codes and its problem document, RequestView's bounded body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.errors import GatewayError, PayloadTooLarge, RequestBodyTimeout, render
from gateway.pipeline.base import (
    AuthError,
    AuthUnavailable,
    CredentialDenied,
    Principal,
    RequestView,
    SignedBodyTooLarge,
    public_code,
)

BodyClient = TestClient[web.Request, web.Application]


def problem(error: GatewayError) -> tuple[int, dict[str, str], dict[str, object]]:
    response = render(error, "req-1")
    assert isinstance(response.body, bytes)
    return response.status, dict(response.headers), json.loads(response.body)


def test_the_client_reads_the_public_code_and_never_the_log_detail() -> None:
    error = AuthError(
        "hmac.unknown_key",
        log_detail="service billing has no key k9",
        www_authenticate='ServiceSignature realm="gateway"',
    )
    status, headers, body = problem(error)
    assert (error.reason, error.code) == ("hmac.unknown_key", "hmac.invalid_signature")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'ServiceSignature realm="gateway"'
    assert body["code"] == "hmac.invalid_signature"
    assert body["detail"] == "invalid signature"
    assert "billing" not in json.dumps(body) and "k9" not in json.dumps(body)
    assert "k9" in repr(error)  # operators see it in logs


@pytest.mark.parametrize(
    ("reason", "client_code"),
    [
        ("hmac.bad_signature", "hmac.invalid_signature"),
        ("httpsig.alg_mismatch", "httpsig.invalid_signature"),
        ("token.revoked", "token.invalid"),
        ("token.expired", "token.expired"),
        ("apikey.unknown", "apikey.invalid"),
        ("jwt.kid_unknown", "jwt.invalid_signature"),
        ("jwt.expired", "jwt.expired"),
        ("hmac.skew", "hmac.skew"),
    ],
)
def test_public_codes(reason: str, client_code: str) -> None:
    assert public_code(reason) == client_code


def test_status_by_kind_of_failure() -> None:
    denied = CredentialDenied("token.ip_denied", www_authenticate="Bearer")
    assert denied.status == 403
    assert "WWW-Authenticate" not in denied.headers  # a challenge only accompanies 401
    too_large = SignedBodyTooLarge("httpsig.body_too_large")
    assert (too_large.status, isinstance(too_large, PayloadTooLarge), isinstance(too_large, AuthError)) == (
        413,
        True,
        True,
    )
    unavailable = AuthUnavailable("jwt.jwks_unavailable", retry_after=2.2)
    status, headers, body = problem(unavailable)
    assert (status, headers["Retry-After"], body["code"]) == (503, "3", "jwt.jwks_unavailable")


def test_principal_is_immutable() -> None:
    principal = Principal(
        subject="service:billing", method="hmac_legacy", credential_kind="service_key", credential_id="k"
    )
    with pytest.raises(AttributeError):
        principal.subject = "service:admin"  # type: ignore[misc]
    assert principal.scopes == frozenset()


@pytest.fixture
async def body_client(aiohttp_client: AiohttpClient) -> AsyncIterator[BodyClient]:
    async def handler(request: web.Request) -> web.Response:
        view = RequestView(request)
        limit = int(request.query["limit"])
        try:
            first = await view.read_body(limit, float(request.query.get("idle", "60")))
        except SignedBodyTooLarge as error:
            return web.json_response({"error": error.reason, "log": error.log_detail})
        except RequestBodyTimeout as error:
            return web.json_response({"error": error.code, "log": error.detail})
        second = await view.read_body(limit)
        return web.json_response(
            {"size": len(first), "same": first is second, "cached": view.body is first, "ip": view.client_ip}
        )

    app = web.Application()
    app.router.add_post("/", handler)
    yield await aiohttp_client(app)


async def test_read_body_within_the_limit_is_buffered_once(body_client: BodyClient) -> None:
    async with body_client.post("/?limit=10", data=b"0123456789") as response:
        assert await response.json() == {"size": 10, "same": True, "cached": True, "ip": "127.0.0.1"}
    async with body_client.post("/?limit=10") as response:
        assert (await response.json())["size"] == 0


async def test_read_body_refuses_a_declared_length_over_the_limit(body_client: BodyClient) -> None:
    async with body_client.post("/?limit=10", data=b"x" * 11) as response:
        result = await response.json()
    assert result == {"error": "httpsig.body_too_large", "log": "Content-Length 11 over 10"}


async def test_read_body_refuses_a_chunked_body_over_the_limit(body_client: BodyClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 4

    async with body_client.post("/?limit=10", data=chunks()) as response:
        result = await response.json()
    assert result["error"] == "httpsig.body_too_large"


async def test_read_body_refuses_a_client_that_stalls(body_client: BodyClient) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b"x" * 4
        await asyncio.sleep(2)  # longer than idle: the handler answers first
        yield b"x" * 4

    async with body_client.post("/?limit=100&idle=0.2", data=stalls()) as response:
        result = await response.json()
    assert result == {"error": "request.body_timeout", "log": "no request body bytes for 0.2s"}
