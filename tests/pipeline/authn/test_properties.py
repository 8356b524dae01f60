"""Whatever a client puts in the headers, an authenticator answers None, a Principal, or an AuthError.

Hypothesis throws random and half-structured header values (enough structure
to get past the first parser and into the later checks) at every
authenticator, through real HTTP requests. The handler reports AuthError as a
decision; anything else escaping would be a 500 and fail ``decide``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.pipeline.authn.api_key import ApiKeyAuthenticator
from gateway.pipeline.authn.hmac_legacy import LegacyHmacAuthenticator
from gateway.pipeline.authn.jwt import JwtAuthenticator
from gateway.pipeline.authn.rfc9421 import HttpSignatureAuthenticator
from gateway.pipeline.authn.service_token import ServiceTokenAuthenticator
from gateway.pipeline.base import Authenticator
from tests.pipeline.authn import test_api_key, test_hmac_legacy, test_jwt, test_rfc9421, test_service_token
from tests.pipeline.conftest import AuthClient, AuthClientFactory, FakeClock, MemoryNonces, decide

NOW = test_rfc9421.NOW
PROPERTY_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Field values a client can actually send: visible ASCII, spaces, tabs and some non-ASCII.
_VALUE_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0x17F, blacklist_characters="\x7f")
_RANDOM = st.text(_VALUE_CHARS, max_size=80).map(str.strip)


def _pieces(*pieces: str) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(st.sampled_from(pieces), _RANDOM), max_size=14).map("".join)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
_HEADER_KEYS = st.sampled_from(["alg", "kid", "typ", "jku", "jwk", "x5u", "x5c", "crit", "b64", "zip"])
_CLAIM_KEYS = st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat", "scope", "scp", "tenant", "jti"])
_JWT_HEADER = st.dictionaries(
    _HEADER_KEYS, st.one_of(_JSON_VALUE, st.sampled_from(["RS256", "HS256", "none", "k1", "e1", "ES256"])), max_size=5
)
_JWT_PAYLOAD = st.dictionaries(
    _CLAIM_KEYS, st.one_of(_JSON_VALUE, st.sampled_from([test_jwt.ISSUER, test_jwt.AUDIENCE, int(NOW)])), max_size=8
)
_JWT = st.one_of(
    st.tuples(_JWT_HEADER, _JWT_PAYLOAD, st.binary(max_size=64)).map(
        lambda parts: ".".join(
            (_b64(json.dumps(parts[0]).encode()), _b64(json.dumps(parts[1]).encode()), _b64(parts[2]))
        )
    ),
    st.lists(st.text(alphabet="abcXYZ019-_=", max_size=30), min_size=1, max_size=6).map(".".join),
)


async def _check(client: AuthClient, headers: dict[str, str], method: str = "POST", body: bytes = b"") -> None:
    result = await decide(client, method, "/v1/anything?x=1", headers=headers, data=body)
    assert result["outcome"] in ("none", "principal", "error"), result
    if result["outcome"] == "error":
        assert result["status"] in (401, 403, 413, 503)
        assert result["reason"].split(".")[0] in ("hmac", "httpsig", "token", "apikey", "jwt")


Factory = Callable[[], Authenticator]


@pytest.fixture
def client_for(auth_client: AuthClientFactory) -> Callable[[Factory], Any]:
    clients: dict[Factory, AuthClient] = {}

    async def get(factory: Factory) -> AuthClient:
        if factory not in clients:
            clients[factory] = await auth_client(factory(), client_ip="203.0.113.9")
        return clients[factory]

    return get


def legacy() -> Authenticator:
    clock = FakeClock(NOW)
    return LegacyHmacAuthenticator(
        test_hmac_legacy.service_keys(), replay_protection=True, nonces=MemoryNonces(clock=clock), clock=clock
    )


def http_signature() -> Authenticator:
    clock = FakeClock(NOW)
    return HttpSignatureAuthenticator(
        test_rfc9421.service_keys(), nonces=MemoryNonces(clock=clock), max_body=64, clock=clock
    )


def service_token() -> Authenticator:
    return ServiceTokenAuthenticator(
        test_service_token.token_source(), static=test_service_token.static_tokens(), clock=FakeClock(NOW)
    )


def api_key() -> Authenticator:
    return ApiKeyAuthenticator(test_api_key.api_keys(), query_param="api_key", clock=FakeClock(NOW))


def jwt_bearer() -> Authenticator:
    return JwtAuthenticator([test_jwt.provider()], max_token_length=4096)


@PROPERTY_SETTINGS
@given(
    service_id=st.one_of(st.sampled_from(["main-backend", "nobody", ""]), _RANDOM),
    signature=st.one_of(st.text(alphabet="0123456789abcdefABCDEF", min_size=60, max_size=68), _RANDOM),
    timestamp=st.one_of(st.integers(int(NOW) - 400, int(NOW) + 400).map(str), _RANDOM),
    drop=st.sets(st.sampled_from(["X-Service-ID", "X-Service-Signature", "X-Service-Timestamp"]), max_size=2),
)
async def test_legacy_hmac_never_raises_anything_else(
    client_for: Callable[[Factory], Any], service_id: str, signature: str, timestamp: str, drop: set[str]
) -> None:
    headers = {"X-Service-ID": service_id, "X-Service-Signature": signature, "X-Service-Timestamp": timestamp}
    await _check(await client_for(legacy), {k: v for k, v in headers.items() if k not in drop})


@PROPERTY_SETTINGS
@given(
    signature_input=_pieces(
        "pyhms=",
        "sig1=",
        "(",
        ")",
        '"@method" "@authority" "@path" "@query"',
        '"content-digest"',
        '"content-digest";sf',
        '"x-dict";key="a"',
        '"x-dict";bs',
        '"@query-param";name="x"',
        '"@status"',
        '"@target-uri"',
        ";req",
        f";created={int(NOW)}",
        f";expires={int(NOW) + 5}",
        ';keyid="hk1"',
        ';keyid="ek1"',
        ';alg="hmac-sha256"',
        ';alg="ed25519"',
        ';nonce="n"',
        ";tag=1",
        ", ",
        "=?1",
        "=1.5",
        "=:AAAA:",
    ),
    signature=_pieces("pyhms=", "sig1=", ":", "AAAA", base64.b64encode(b"x" * 32).decode(), "(", ")", ", "),
    digest=st.one_of(st.none(), _pieces("sha-256=", "sha-512=", ":", "AAAA", "=", ", ", "md5=:AA==:")),
    dictionary=_pieces("a=1", ";p", ", ", "b=(1 2)", "=", "?0"),
    body=st.binary(max_size=80),
)
async def test_rfc9421_never_raises_anything_else(
    client_for: Callable[[Factory], Any],
    signature_input: str,
    signature: str,
    digest: str | None,
    dictionary: str,
    body: bytes,
) -> None:
    headers = {"Signature-Input": signature_input, "Signature": signature, "X-Dict": dictionary}
    if digest is not None:
        headers["Content-Digest"] = digest
    await _check(await client_for(http_signature), headers, body=body)


@PROPERTY_SETTINGS
@given(
    authorization=st.one_of(
        _RANDOM,
        _pieces("Bearer ", "bearer ", "Basic ", "sk_", "ak_", "0123456789abcdef", "AAAAAAAAAA", ".", "="),
        st.from_regex(r"Bearer sk_[0-9A-Za-z]{40,52}", fullmatch=True),
    )
)
async def test_service_token_never_raises_anything_else(
    client_for: Callable[[Factory], Any], authorization: str
) -> None:
    await _check(await client_for(service_token), {"Authorization": authorization})


@PROPERTY_SETTINGS
@given(
    key=st.one_of(_RANDOM, st.from_regex(r"ak_[0-9A-Za-z]{45,52}", fullmatch=True)),
    origin=st.one_of(st.none(), _RANDOM, _pieces("https://", "http://", "*.", "app.", "example.com", ":443", "null")),
)
async def test_api_key_never_raises_anything_else(
    client_for: Callable[[Factory], Any], key: str, origin: str | None
) -> None:
    headers = {"X-API-Key": key}
    if origin is not None:
        headers["Origin"] = origin
    await _check(await client_for(api_key), headers)


@PROPERTY_SETTINGS
@given(token=_JWT, scheme=st.sampled_from(["Bearer ", "bearer ", "Bearer  "]))
async def test_jwt_never_raises_anything_else(client_for: Callable[[Factory], Any], token: str, scheme: str) -> None:
    await _check(await client_for(jwt_bearer), {"Authorization": scheme + token})
