"""The shortcuts on the hot path give the same answers as the slow path they skip.

- ``rfc9421.fast_parse`` matches the common shape of Signature-Input / Signature with
  regular expressions: whatever it accepts, ``http_sf`` must parse to the same values.
- The JWT authenticator remembers verified tokens: never past ``exp`` (+ leeway) or the
  cache TTL, never a token that failed.
- Service-token and API-key shapes are remembered: a malformed token is still refused.
"""

from __future__ import annotations

import base64
from typing import Any

import http_sf
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.credentials.errors import MalformedCredential
from gateway.credentials.tokens import TokenKind, generate_service_token
from gateway.pipeline.authn.jwks import StaticJwtKeys
from gateway.pipeline.authn.jwt import JwtAuthenticator, JwtProvider
from gateway.pipeline.authn.rfc9421 import fast_fields, fast_parse
from gateway.pipeline.authn.shapes import ParsedTokens
from gateway.pipeline.authn.signature_base import serialize_parameters
from tests.pipeline.authn.test_jwt import AUDIENCE, ISSUER, RSA_KEY, claims, rs256
from tests.pipeline.conftest import AuthClientFactory, FakeClock, decide

KEYS = st.from_regex(r"[a-z*][a-z0-9_.*-]{0,6}", fullmatch=True)
COMPONENT = st.from_regex(r"[a-z0-9@_.-]{1,12}", fullmatch=True)
STRING = st.from_regex(r"[ !#-\[\]-~]{0,12}", fullmatch=True)
PARAM_VALUE = st.one_of(st.integers(-(10**15) + 1, 10**15 - 1).map(str), STRING.map(lambda v: f'"{v}"'))


@st.composite
def signature_fields(draw: st.DrawFn) -> tuple[str, str]:
    label = draw(KEYS)
    components = draw(st.lists(COMPONENT, max_size=5))
    params = draw(st.lists(st.tuples(KEYS, PARAM_VALUE), max_size=6))
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")" + "".join(f";{k}={v}" for k, v in params)
    signature = base64.b64encode(draw(st.binary(max_size=40))).decode()
    return f"{label}={inner}", f"{draw(KEYS)}=:{signature}:"


def reference(text: str) -> Any:
    return http_sf.parse(text.encode(), tltype="dictionary")


@settings(max_examples=300, deadline=None)
@given(fields=signature_fields())
def test_fast_parse_agrees_with_http_sf(fields: tuple[str, str]) -> None:
    signature_input, signature = fields
    fast = fast_parse(signature_input, signature)
    if fast is None:
        return  # left to http_sf (duplicate parameters)
    assert fast == (reference(signature_input), reference(signature))
    # same parameter order too: the signature base serializes them as received
    assert [list(v[1]) for v in fast[0].values()] == [list(v[1]) for v in reference(signature_input).values()]
    # the parameters' text, when used as is for @signature-params, is their serialization
    parsed = fast_fields(signature_input, signature)
    assert parsed is not None
    if parsed.params_text is not None:
        assert parsed.params_text == serialize_parameters(parsed.params)


def test_fast_fields_leave_non_canonical_integers_to_the_serializer() -> None:
    fields = fast_fields('sig=("@method");created=007;expires=-0;keyid="k"', "sig=:AAAA:")
    assert fields is not None and fields.params == {"created": 7, "expires": 0, "keyid": "k"}
    assert fields.params_text is None
    fields = fast_fields('sig=("@method");created=7;keyid="k;x"', "sig=:AAAA:")
    assert fields is None  # ';' in a String: http_sf
    fields = fast_fields('sig=("@method");created=-7;keyid="k"', "sig=:AAAA:")
    assert fields is not None and fields.params_text == ';created=-7;keyid="k"'


@settings(max_examples=300, deadline=None)
@given(signature_input=st.text(max_size=60), signature=st.text(max_size=30))
def test_fast_parse_never_accepts_what_http_sf_refuses(signature_input: str, signature: str) -> None:
    fast = fast_parse(signature_input, signature)
    if fast is not None:
        assert fast == (reference(signature_input), reference(signature))


def test_fast_parse_leaves_the_unusual_to_http_sf() -> None:
    assert fast_parse('sig=("@method");created=1;created=2', "sig=:AAAA:") is None  # duplicate: last wins
    assert fast_parse('sig=("@method";req)', "sig=:AAAA:") is None
    assert fast_parse('sig=("@method");alg=hmac', "sig=:AAAA:") is None  # a Token, not a String
    assert fast_parse('a=("@method"), b=("@path")', "a=:AAAA:") is None


def provider() -> JwtProvider:
    return JwtProvider(
        issuer=ISSUER, audiences=(AUDIENCE,), algorithms=("RS256",), keys=StaticJwtKeys({"k1": RSA_KEY.public_key()})
    )


class CountingKeys(StaticJwtKeys):
    lookups = 0

    async def key_for(self, kid: str | None) -> Any:
        self.lookups += 1
        return await super().key_for(kid)


async def test_remembered_jwt_is_never_served_past_its_expiry(auth_client: AuthClientFactory) -> None:
    clock = FakeClock()
    keys = CountingKeys({"k1": RSA_KEY.public_key()})
    remembered = JwtProvider(issuer=ISSUER, audiences=(AUDIENCE,), algorithms=("RS256",), keys=keys)
    authenticator = JwtAuthenticator([remembered], cache_ttl=600, clock=clock)
    client = await auth_client(authenticator)
    headers = {"Authorization": f"Bearer {rs256(claims(exp=int(clock.now) + 30))}"}
    assert (await decide(client, "GET", "/", headers=headers))["outcome"] == "principal"
    clock.now += 29 + 30  # exp + leeway (30 s) not yet passed: served from memory
    assert (await decide(client, "GET", "/", headers=headers))["outcome"] == "principal"
    assert keys.lookups == 1
    clock.now += 2  # past exp + leeway: forgotten, verified again (PyJWT judges exp by the real clock)
    await decide(client, "GET", "/", headers=headers)
    assert keys.lookups == 2


async def test_remembered_jwt_is_verified_again_after_the_ttl(auth_client: AuthClientFactory) -> None:
    clock = FakeClock()
    authenticator = JwtAuthenticator([provider()], cache_ttl=5, clock=clock)
    client = await auth_client(authenticator)
    headers = {"Authorization": f"Bearer {rs256()}"}
    assert (await decide(client, "GET", "/", headers=headers))["outcome"] == "principal"
    assert len(authenticator._verified) == 1
    clock.now += 6
    authenticator.providers[0].keys.keys.clear()  # type: ignore[attr-defined]  # the key is gone
    result = await decide(client, "GET", "/", headers=headers)
    assert (result["outcome"], result["reason"]) == ("error", "jwt.kid_unknown")


async def test_a_refused_jwt_is_never_remembered(auth_client: AuthClientFactory) -> None:
    authenticator = JwtAuthenticator([provider()])
    client = await auth_client(authenticator)
    forged = rs256(claims(aud="other"))
    for _ in range(2):
        result = await decide(client, "GET", "/", headers={"Authorization": f"Bearer {forged}"})
        assert result["reason"] == "jwt.bad_audience"
    assert authenticator._verified == {}


def test_remembered_token_shapes_still_refuse_malformed_tokens() -> None:
    shapes = ParsedTokens(TokenKind.SERVICE_TOKEN, max_entries=2)
    tokens = [generate_service_token() for _ in range(3)]
    for token in tokens * 2:
        assert shapes.parse(token).kind is TokenKind.SERVICE_TOKEN
    broken = tokens[0][:-1] + ("A" if tokens[0][-1] != "A" else "B")
    for _ in range(2):
        try:
            shapes.parse(broken)
        except MalformedCredential:
            pass
        else:
            raise AssertionError("a token with a wrong checksum was accepted")
    assert len(shapes._parsed) <= 2
