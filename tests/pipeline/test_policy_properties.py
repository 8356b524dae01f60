"""Whatever a client sends, the real gateway answers 2xx or a 4xx problem document, never a 5xx.

The same half-structured random header values the authenticator property tests
use (tests/pipeline/authn/test_properties.py), now sent over HTTP to a real
gateway whose route accepts every credential kind, with an Origin allowlist and
CORS on top, in front of a real upstream. The store is the gateway's own, with a
service key, a token and an API client in it.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.authgw import Client, add_api_client, add_hmac_key, add_token, write_kek
from tests.conftest import GatewayFactory
from tests.pipeline.authn.test_properties import _JWT, _RANDOM, _pieces
from tests.pipeline.test_policy_functional import jwt_authn_static

GATEWAY_PROPERTIES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

GatewayGetter = Callable[[], Awaitable[Client]]


@pytest.fixture
def gateway(make_gateway: GatewayFactory, tmp_path: Path) -> GatewayGetter:
    built: list[Client] = []

    async def get() -> Client:
        if not built:
            kek = write_kek(tmp_path)
            client = await make_gateway(
                routes=[
                    {
                        "name": "api",
                        "prefix": "/",
                        "auth": ["hmac_legacy", "rfc9421", "service_token", "api_key", "jwt"],
                        "required_scopes": {"DELETE": ["admin:write"]},
                        "origins": ["https://app.example.com", "https://*.example.com"],
                        "cors": True,
                        "ip_allow": ["127.0.0.0/8", "::1/128"],
                    }
                ],
                credentials={"kek_file": str(kek)},
                authn={**jwt_authn_static(tmp_path), "hmac_legacy": {"replay_protection": True}},
            )
            await add_hmac_key(client, kek, service="main-backend", key_id="hk1")
            await add_token(client)
            await add_api_client(client)
            built.append(client)
        return built[0]

    return get


async def check(client: Client, headers: dict[str, str], method: str = "POST", body: bytes = b"") -> None:
    async with client.request(method, "/v1/anything?x=1", headers=headers, data=body) as response:
        text = await response.text()
        assert response.status < 500, text
        if response.status >= 400:
            assert response.content_type == "application/problem+json", text


@GATEWAY_PROPERTIES
@given(
    service_id=st.one_of(st.sampled_from(["main-backend", "nobody", ""]), _RANDOM),
    signature=st.one_of(st.text(alphabet="0123456789abcdef", min_size=60, max_size=68), _RANDOM),
    timestamp=st.one_of(st.integers(0, 2**40).map(str), _RANDOM),
)
async def test_legacy_headers(gateway: GatewayGetter, service_id: str, signature: str, timestamp: str) -> None:
    headers = {"X-Service-ID": service_id, "X-Service-Signature": signature, "X-Service-Timestamp": timestamp}
    await check(await gateway(), headers)


@GATEWAY_PROPERTIES
@given(
    signature_input=_pieces(
        "sig1=",
        "(",
        ")",
        '"@method" "@authority" "@path" "@query"',
        '"content-digest"',
        ";created=1",
        ';keyid="hk1"',
        ';keyid="main-backend/hk1"',
        ';nonce="n"',
        ';alg="hmac-sha256"',
        ", ",
        "=?1",
    ),
    signature=_pieces("sig1=", ":", "AAAA", base64.b64encode(b"x" * 32).decode(), ", "),
    digest=st.one_of(st.none(), _pieces("sha-256=", "sha-512=", ":", "AAAA", "=", ", ")),
    body=st.binary(max_size=80),
)
async def test_rfc9421_headers(
    gateway: GatewayGetter, signature_input: str, signature: str, digest: str | None, body: bytes
) -> None:
    headers = {"Signature-Input": signature_input, "Signature": signature}
    if digest is not None:
        headers["Content-Digest"] = digest
    await check(await gateway(), headers, body=body)


@GATEWAY_PROPERTIES
@given(
    authorization=st.one_of(
        _RANDOM,
        _pieces("Bearer ", "bearer ", "Basic ", "sk_", "0123456789abcdef", "AAAAAAAAAA", ".", "="),
        st.from_regex(r"Bearer sk_[0-9A-Za-z]{40,52}", fullmatch=True),
    ),
    method=st.sampled_from(["GET", "DELETE", "OPTIONS"]),
)
async def test_bearer_headers(gateway: GatewayGetter, authorization: str, method: str) -> None:
    await check(await gateway(), {"Authorization": authorization}, method=method)


@GATEWAY_PROPERTIES
@given(
    key=st.one_of(_RANDOM, st.from_regex(r"ak_[0-9A-Za-z]{45,52}", fullmatch=True)),
    origin=st.one_of(st.none(), _RANDOM, _pieces("https://", "http://", "*.", "app.", "example.com", ":443", "null")),
    preflight=st.booleans(),
)
async def test_api_key_and_origin_headers(
    gateway: GatewayGetter, key: str, origin: str | None, preflight: bool
) -> None:
    headers = {"X-API-Key": key}
    if origin is not None:
        headers["Origin"] = origin
    if preflight:
        headers["Access-Control-Request-Method"] = "POST"
    await check(await gateway(), headers, method="OPTIONS" if preflight else "GET")


@GATEWAY_PROPERTIES
@given(token=_JWT, forwarded=st.one_of(st.none(), _RANDOM))
async def test_jwt_headers(gateway: GatewayGetter, token: str, forwarded: str | None) -> None:
    headers = {"Authorization": "Bearer " + token}
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    await check(await gateway(), headers)
