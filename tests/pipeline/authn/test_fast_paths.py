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
from gateway.pipeline.authn.rfc9421 import HttpSignatureAuthenticator, common_parameters, fast_parse
from gateway.pipeline.authn.shapes import ParsedTokens
from gateway.pipeline.authn.signature_base import serialize_parameters
from gateway.pipeline.base import AuthError
from tests.pipeline.authn.test_jwt import AUDIENCE, ISSUER, RSA_KEY, claims, rs256
from tests.pipeline.conftest import AuthClientFactory, FakeClock, MemoryServiceKeys, decide

KEYS = st.from_regex(r"[a-z*][a-z0-9_.*-]{0,6}", fullmatch=True)
PARAM_NAMES = st.one_of(st.sampled_from(["created", "expires", "keyid", "nonce", "alg", "tag"]), KEYS)
COMPONENT = st.one_of(
    st.sampled_from(["@method", "@authority", "@path", "@query", "@target-uri", "content-digest"]),
    st.from_regex(r"[a-z0-9@_.-]{1,12}", fullmatch=True),
)
STRING = st.from_regex(r"[ !#-\[\]-~]{0,12}", fullmatch=True)
PARAM_VALUE = st.one_of(
    st.integers(-(10**15) + 1, 10**15 - 1).map(str),
    st.sampled_from(["0", "-0", "007", "-01"]),
    STRING.map(lambda v: f'"{v}"'),
)


@st.composite
def signature_fields(draw: st.DrawFn) -> tuple[str, str]:
    label = draw(KEYS)
    components = draw(st.lists(COMPONENT, max_size=5))
    params = draw(st.lists(st.tuples(PARAM_NAMES, PARAM_VALUE), max_size=6))
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")" + "".join(f";{k}={v}" for k, v in params)
    signature = base64.b64encode(draw(st.binary(max_size=40))).decode()
    return f"{label}={inner}", f"{draw(st.one_of(st.just(label), KEYS))}=:{signature}:"


@st.composite
def usual_signature_fields(draw: st.DrawFn) -> tuple[str, str]:
    """Mostly what signers send (known parameters of their type, keyid and created present), sometimes not."""
    params = [("created", str(draw(st.integers(0, 2**40))))]
    params += [("keyid", f'"{draw(STRING)}"')]
    params += draw(st.lists(st.tuples(st.sampled_from(["expires", "nonce", "alg", "tag"]), PARAM_VALUE), max_size=3))
    params = draw(st.permutations(params))
    if draw(st.booleans()):
        params = params[1:] + draw(st.lists(st.tuples(PARAM_NAMES, PARAM_VALUE), max_size=2))
    components = draw(st.lists(COMPONENT, max_size=5))
    label = draw(st.sampled_from(["sig", "sig1", "*x"]))
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")" + "".join(f";{k}={v}" for k, v in params)
    signature = base64.b64encode(draw(st.binary(max_size=40))).decode()
    return f"{label}={inner}", f"{draw(st.sampled_from([label, 'other']))}=:{signature}:"


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
    # the parameters' text, used as is for @signature-params, is their serialization
    params_text = signature_input.partition(")")[2]
    assert params_text == serialize_parameters(fast[0][signature_input.partition("=")[0]][1])


class GeneralPathOnly(HttpSignatureAuthenticator):
    """The authenticator with its common-shape path switched off."""

    def _shape(self, head: str) -> Any:
        return None


def selection(authenticator: HttpSignatureAuthenticator, signature_input: str, signature: str) -> Any:
    try:
        selected = authenticator._select([signature_input], [signature])
    except AuthError as exc:
        return exc.reason, exc.log_detail
    if selected is None:
        return None
    label, coverage, covered, params, value = selected
    return label, coverage.items, coverage.digest, covered, params, value


@settings(max_examples=600, deadline=None)
@given(
    fields=st.one_of(
        usual_signature_fields(), signature_fields(), st.tuples(st.text(max_size=60), st.text(max_size=30))
    ),
    tag=st.sampled_from([None, "", "t"]),
    required=st.sampled_from([("@method",), ("@method", "@path"), ("content-digest",)]),
)
def test_authenticator_common_shape_path_agrees_with_the_general_path(
    fields: tuple[str, str], tag: str | None, required: tuple[str, ...]
) -> None:
    """Whatever the two fields, selecting the signature gives the same answer (or the same error) both ways."""
    keys = MemoryServiceKeys([])
    fast = HttpSignatureAuthenticator(keys, tag=tag, required_components=required)
    general = GeneralPathOnly(keys, tag=tag, required_components=required)
    for _ in range(2):  # the second time from the remembered shape
        assert selection(fast, *fields) == selection(general, *fields)


def test_common_parameters_leave_the_unusual_to_http_sf() -> None:
    assert common_parameters(';created=7;keyid="k"') == {"created": 7, "keyid": "k"}
    assert common_parameters(';keyid="k";created=-7') == {"keyid": "k", "created": -7}
    assert common_parameters("") == {}
    assert common_parameters(';created=007;keyid="k"') is None  # serialized as 7: the general path
    assert common_parameters(';expires=-0;keyid="k"') is None
    assert common_parameters(';created=7;keyid="k;x"') is None  # ';' in a String
    assert common_parameters(';created=7;keyid="k\\"') is None  # an escape
    assert common_parameters(';created="7";keyid="k"') is None  # wrong type: the general path names it
    assert common_parameters(";keyid=7") is None
    assert common_parameters(';created=7;foo="k"') is None  # unknown parameter
    assert common_parameters(';created=7x;keyid="k"') is None
    assert common_parameters("x;created=7") is None
    assert common_parameters(';created=7;;keyid="k"') is None
    assert common_parameters(';created=7; keyid="k"') is None
    assert common_parameters(";created=7;created=8") is None  # duplicate: last wins in RFC 8941
    assert common_parameters(f';nonce="{"n" * 256}"') is not None
    assert common_parameters(f';nonce="{"n" * 257}"') is None  # too long: the general path refuses it


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
