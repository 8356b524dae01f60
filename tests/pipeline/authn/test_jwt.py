"""JWT bearer tokens: table of not responsible / attacks and invalid tokens / valid, over real requests.

Tokens are made with PyJWT's encoder, or by hand where an attack needs bytes no
honest encoder would produce (``alg: none``, HS256 keyed with the RSA public key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.pipeline.authn.jwks import StaticJwtKeys
from gateway.pipeline.authn.jwt import JwtAuthenticator, JwtProvider
from tests.pipeline.conftest import AuthClientFactory, decide

ISSUER = "https://idp.example.com"
AUDIENCE = "gateway"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = Ed25519PrivateKey.generate()
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
EC_PUBLIC_PEM = EC_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
ED_PUBLIC_PEM = ED_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
HS_SECRET = b"s" * 48


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "exp": now + 300,
        "iat": now,
        "tenant": "acme",
        "scope": "user:read user:write",
        "jti": "tok-123",
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def rs256(payload: dict[str, Any] | None = None, *, key: Any = RSA_KEY, kid: str | None = "k1", **headers: Any) -> str:
    extra = {"kid": kid, **headers} if kid is not None else headers
    return pyjwt.encode(payload or claims(), key, algorithm="RS256", headers=extra)


def unsigned(alg: str) -> str:
    return f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(claims())}."


def hs256_with_public_key() -> str:
    """The classic confusion attack: HMAC keyed with the verifier's own public key bytes."""
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'})}.{b64json(claims())}"
    signature = hmac.new(RSA_PUBLIC_PEM, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def embedded_jwk() -> str:
    attacker = RSA_OTHER.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "n": b64(attacker.n.to_bytes(256, "big")),
        "e": b64(attacker.e.to_bytes(3, "big")),
    }
    return rs256(key=RSA_OTHER, jwk=jwk)


def tampered() -> str:
    header, _, signature = rs256().split(".")
    return f"{header}.{b64json(claims(sub='admin'))}.{signature}"


def b64_false() -> str:
    return pyjwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1", "b64": False, "crit": ["b64"]})


def provider(**overrides: Any) -> JwtProvider:
    settings: dict[str, Any] = {
        "issuer": ISSUER,
        "audiences": (AUDIENCE, "other-api"),
        "algorithms": ("RS256", "ES256", "EdDSA"),
        "keys": StaticJwtKeys.from_pem({"k1": RSA_PUBLIC_PEM, "e1": EC_PUBLIC_PEM, "d1": ED_PUBLIC_PEM}),
    }
    settings.update(overrides)
    return JwtProvider(**settings)


@dataclass(frozen=True)
class Case:
    id: str
    token: Callable[[], str]
    expect: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CASES = [
    # not responsible
    Case("opaque-service-token", lambda: "sk_" + "a" * 64, "none"),
    # malformed
    Case("two-segments", lambda: rs256().rsplit(".", 1)[0], "jwt.malformed"),
    Case("four-segments", lambda: rs256() + ".extra", "jwt.malformed"),
    Case("jwe-five-segments", lambda: "a.b.c.d.e", "jwt.malformed"),
    Case("header-not-json", lambda: f"{b64(b'{not json')}.{b64json(claims())}.sig", "jwt.malformed"),
    Case("header-json-array", lambda: f"{b64json(['RS256'])}.{b64json(claims())}.sig", "jwt.malformed"),
    Case("header-not-base64", lambda: f"%%%.{b64json(claims())}.sig", "jwt.malformed"),
    Case("header-huge", lambda: rs256(padding="x" * 3000), "jwt.malformed"),
    Case("token-huge", lambda: rs256(claims(blob="y" * 5000)), "jwt.malformed"),
    Case("payload-not-json", lambda: rs256().split(".")[0] + "." + b64(b"[[[") + ".sig", "jwt.bad_signature"),
    Case(
        "kid-not-a-string", lambda: f"{b64json({'alg': 'RS256', 'kid': 7})}.{b64json(claims())}.c2ln", "jwt.malformed"
    ),
    Case("b64-false-detached", b64_false, "jwt.malformed"),
    # algorithm attacks
    Case("alg-none", lambda: unsigned("none"), "jwt.alg_not_allowed"),
    Case("alg-None-capitalised", lambda: unsigned("None"), "jwt.alg_not_allowed"),
    Case("alg-missing", lambda: f"{b64json({'typ': 'JWT'})}.{b64json(claims())}.", "jwt.alg_not_allowed"),
    Case("hs256-keyed-with-rsa-public-key", hs256_with_public_key, "jwt.alg_not_allowed"),
    Case("alg-not-in-provider-list", lambda: pyjwt.encode(claims(), RSA_KEY, algorithm="RS512"), "jwt.alg_not_allowed"),
    # key attacks
    Case("embedded-jwk", embedded_jwk, "jwt.bad_header"),
    Case("jku-elsewhere", lambda: rs256(key=RSA_OTHER, jku="https://attacker.example/jwks.json"), "jwt.bad_header"),
    Case("x5u", lambda: rs256(x5u="https://attacker.example/cert.pem"), "jwt.bad_header"),
    Case("x5c", lambda: rs256(x5c=["MIIB..."]), "jwt.bad_header"),
    Case("kid-unknown", lambda: rs256(kid="k9"), "jwt.kid_unknown"),
    Case("no-kid-with-several-keys", lambda: rs256(kid=None), "jwt.kid_unknown"),
    Case("signed-by-another-key", lambda: rs256(key=RSA_OTHER), "jwt.bad_signature"),
    Case("payload-tampered", tampered, "jwt.bad_signature"),
    Case(
        "es256-under-an-rsa-kid",
        lambda: pyjwt.encode(claims(), EC_KEY, "ES256", headers={"kid": "k1"}),
        "jwt.bad_signature",
    ),
    # claims
    Case("expired", lambda: rs256(claims(exp=int(time.time()) - 60)), "jwt.expired"),
    Case("not-yet-valid-nbf", lambda: rs256(claims(nbf=int(time.time()) + 600)), "jwt.not_yet_valid"),
    Case("issued-in-the-future", lambda: rs256(claims(iat=int(time.time()) + 600)), "jwt.not_yet_valid"),
    Case("wrong-audience", lambda: rs256(claims(aud="someone-else")), "jwt.bad_audience"),
    Case("wrong-issuer", lambda: rs256(claims(iss="https://evil.example")), "jwt.bad_issuer"),
    Case("missing-exp", lambda: rs256(claims(exp=None)), "jwt.missing_claim"),
    Case("missing-sub", lambda: rs256(claims(sub=None)), "jwt.missing_claim"),
    Case("missing-aud", lambda: rs256(claims(aud=None)), "jwt.missing_claim"),
    Case("sub-not-a-string", lambda: rs256(claims(sub=42)), "jwt.malformed"),
    Case("exp-not-a-number", lambda: rs256(claims(exp="tomorrow")), "jwt.malformed"),
    # valid
    Case("valid-rs256", lambda: rs256(), "ok"),
    Case("valid-es256", lambda: pyjwt.encode(claims(), EC_KEY, "ES256", headers={"kid": "e1"}), "ok"),
    Case("valid-eddsa", lambda: pyjwt.encode(claims(), ED_KEY, "EdDSA", headers={"kid": "d1"}), "ok"),
    Case("valid-audience-list", lambda: rs256(claims(aud=["x", AUDIENCE])), "ok"),
    Case("valid-second-audience", lambda: rs256(claims(aud="other-api")), "ok"),
    Case("valid-expired-within-leeway", lambda: rs256(claims(exp=int(time.time()) - 10)), "ok"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_jwt_table(auth_client: AuthClientFactory, case: Case) -> None:
    # 4096 rather than the default 8192: aiohttp's own header limit (8190 bytes) would answer first.
    client = await auth_client(JwtAuthenticator([provider()], max_token_length=4096))
    result = await decide(client, "GET", "/v1/user/me", headers=bearer(case.token()))
    if case.expect == "none":
        assert result["outcome"] == "none", result
    elif case.expect == "ok":
        assert result["outcome"] == "principal", result
        assert (result["subject"], result["method"], result["tenant"]) == ("user-42", "jwt", "acme")
    else:
        assert result["outcome"] == "error", result
        assert result["reason"] == case.expect, result
        assert result["status"] == 401
        assert result["www_authenticate"] == 'Bearer realm="gateway", error="invalid_token"'


async def test_not_responsible_without_a_bearer_jwt(auth_client: AuthClientFactory) -> None:
    client = await auth_client(JwtAuthenticator([provider()]))
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"X-API-Key": "ak_x"}):
        assert (await decide(client, "GET", "/", headers=headers))["outcome"] == "none"


async def test_claims_map_to_the_principal(auth_client: AuthClientFactory) -> None:
    client = await auth_client(JwtAuthenticator([provider(tenant_claim="org_id")]))
    exp = int(time.time()) + 120
    token = rs256(claims(exp=exp, org_id=1234, scope="a b", scp=["c", "b", 5], tenant="ignored"))
    result = await decide(client, "GET", "/", headers=bearer(token))
    assert result == {
        "outcome": "principal",
        "subject": "user-42",
        "method": "jwt",
        "credential_kind": "jwt",
        "credential_id": "tok-123",
        "tenant": "1234",
        "scopes": ["a", "b", "c"],
        "service_id": None,
        "expires_at": float(exp),
        "buffered_body": None,
    }
    azure = rs256(claims(scope=None, scp="files.read files.write", jti=None))
    result = await decide(client, "GET", "/", headers=bearer(azure))
    assert (result["scopes"], result["credential_id"], result["tenant"]) == (["files.read", "files.write"], "", None)


async def test_required_claims_and_leeway_are_configurable(auth_client: AuthClientFactory) -> None:
    client = await auth_client(
        JwtAuthenticator([provider(required_claims=("exp", "iss", "aud", "sub", "jti"), leeway=0)])
    )
    assert (await decide(client, "GET", "/", headers=bearer(rs256(claims(jti=None)))))["reason"] == "jwt.missing_claim"
    late = rs256(claims(exp=int(time.time()) - 10))
    assert (await decide(client, "GET", "/", headers=bearer(late)))["reason"] == "jwt.expired"


async def test_client_reads_invalid_signature_for_unknown_kid_and_bad_signature(auth_client: AuthClientFactory) -> None:
    client = await auth_client(JwtAuthenticator([provider()]))
    unknown = await decide(client, "GET", "/", headers=bearer(rs256(kid="nope")))
    forged = await decide(client, "GET", "/", headers=bearer(rs256(key=RSA_OTHER)))
    assert (unknown["reason"], forged["reason"]) == ("jwt.kid_unknown", "jwt.bad_signature")
    assert unknown["code"] == forged["code"] == "jwt.invalid_signature"


async def test_one_static_key_verifies_whatever_kid_a_token_names(auth_client: AuthClientFactory) -> None:
    single = provider(algorithms=("RS256",), keys=StaticJwtKeys.from_pem({None: RSA_PUBLIC_PEM}))
    client = await auth_client(JwtAuthenticator([single]))
    for token in (rs256(kid=None), rs256(kid="any")):
        assert (await decide(client, "GET", "/", headers=bearer(token)))["outcome"] == "principal"


async def test_several_providers_are_chosen_by_issuer(auth_client: AuthClientFactory, tmp_path: Path) -> None:
    secret_file = tmp_path / "hs.secret"
    secret_file.write_bytes(HS_SECRET + b"\n")
    internal = JwtProvider(
        issuer="https://internal.example",
        audiences=(AUDIENCE,),
        algorithms=("HS256",),
        keys=StaticJwtKeys.from_files({None: secret_file}, secret=True),
        tenant_claim=None,
    )
    client = await auth_client(JwtAuthenticator([provider(), internal]))
    hs = pyjwt.encode(claims(iss="https://internal.example"), HS_SECRET, algorithm="HS256")
    assert (await decide(client, "GET", "/", headers=bearer(hs)))["outcome"] == "principal"
    assert (await decide(client, "GET", "/", headers=bearer(rs256())))["outcome"] == "principal"
    # An RS256 token claiming the HS256 issuer is refused by that issuer's algorithm list.
    crossed = rs256(claims(iss="https://internal.example"))
    assert (await decide(client, "GET", "/", headers=bearer(crossed)))["reason"] == "jwt.alg_not_allowed"
    stranger = rs256(claims(iss="https://stranger.example"))
    assert (await decide(client, "GET", "/", headers=bearer(stranger)))["reason"] == "jwt.bad_issuer"
    garbage_payload = rs256().split(".")[0] + ".%%%." + "sig"
    assert (await decide(client, "GET", "/", headers=bearer(garbage_payload)))["reason"] == "jwt.malformed"


def test_unsafe_provider_configurations_are_refused(tmp_path: Path) -> None:
    public = StaticJwtKeys.from_pem({None: RSA_PUBLIC_PEM})
    secret = StaticJwtKeys({None: HS_SECRET})
    with pytest.raises(ValueError, match="'none' never is"):
        provider(algorithms=("RS256", "none"))
    with pytest.raises(ValueError, match="cannot be used with public keys"):
        provider(algorithms=("RS256", "HS256"), keys=public)
    with pytest.raises(ValueError, match="cannot be used with a shared secret"):
        provider(algorithms=("RS256",), keys=secret)
    with pytest.raises(ValueError, match="no algorithm"):
        provider(algorithms=())
    with pytest.raises(ValueError, match="no audience"):
        provider(audiences=())
    with pytest.raises(ValueError, match="at least 32 bytes"):
        StaticJwtKeys({None: b"short"})
    with pytest.raises(ValueError, match="not both"):
        StaticJwtKeys({"a": HS_SECRET, "b": RSA_KEY.public_key()})
    with pytest.raises(ValueError, match="not a PEM public key"):
        StaticJwtKeys.from_pem({"k": b"-----BEGIN NOTHING-----"})
    with pytest.raises(ValueError, match="missing.pem"):
        StaticJwtKeys.from_files({None: tmp_path / "missing.pem"})
    with pytest.raises(ValueError, match="share an issuer"):
        JwtAuthenticator([provider(), provider()])
    with pytest.raises(ValueError, match="at least one provider"):
        JwtAuthenticator([])
    # Without "aud" among the required claims, a provider may leave the audience open.
    open_audience = provider(audiences=(), required_claims=("exp", "iss", "sub"))
    assert open_audience.audiences == ()
