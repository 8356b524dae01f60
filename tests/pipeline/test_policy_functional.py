"""Route policies through the real gateway in front of a real upstream: every authenticator, every mode,
allowlists, CORS, WebSockets, the trusted context, the audit trail, metrics and usage.

Credentials are written to the gateway's own store (memory://, opened by the app);
requests are real HTTP; what the upstream received is what it echoes back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jwt as pyjwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import MappingKeyResolver
from pytest_aiohttp import AiohttpServer
from yarl import URL

from gateway.credentials import AuditResult, KeyState, generate_service_token, hash_token
from gateway.sdk import GATEWAY_CONTEXT, gateway_context_middleware
from gateway.store import AuditQuery
from tests.authgw import (
    SERVICE_SECRET,
    Client,
    add_api_client,
    add_hmac_key,
    add_token,
    context_of,
    legacy_headers,
    past,
    problem,
    runtime_of,
    write_kek,
)
from tests.conftest import GatewayFactory
from tests.pipeline.authn.test_jwt import (
    AUDIENCE,
    ISSUER,
    RSA_KEY,
    RSA_OTHER,
    RSA_PUBLIC_PEM,
    b64json,
    claims,
    hs256_with_public_key,
    rs256,
    unsigned,
)
from tests.upstream import UpstreamState, header_values

LEGACY_SCRIPT = Path(__file__).parent / "authn" / "legacy_sign_script.py"


async def echo(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def api_route(**policy: Any) -> dict[str, Any]:
    return {"name": "api", "prefix": "/api", **policy}


# -- service tokens: the whole path -------------------------------------------------------------


async def test_service_token_reaches_the_upstream_as_trusted_context(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"])])
    token, _ = await add_token(client, name="deploy-bot", owner="ci", scopes=("b:write", "a:read"))
    response = await client.get(
        "/api/orders",
        headers={
            "Authorization": f"Bearer {token}",
            "X-User-Id": "admin",  # a client cannot choose its identity
            "X-Auth-Scopes": "everything",
            "X-Gateway-Signature": "forged",
        },
    )
    data = await echo(response)
    assert context_of(data) == {
        "X-User-Id": ["service:ci"],
        "X-Tenant-Id": [],
        "X-Service-Id": ["ci"],
        "X-Auth-Method": ["service_token"],
        "X-Auth-Scopes": ["a:read b:write"],
    }
    assert header_values(data, "X-Request-Id") == [response.headers["X-Request-Id"]]
    assert header_values(data, "Authorization") == []  # the credential stays at the gateway
    assert header_values(data, "X-Gateway-Signature") == []


@pytest.mark.parametrize("anonymous", [False, True], ids=["authenticated", "anonymous"])
async def test_context_headers_from_clients_never_pass_a_policy_route(
    make_gateway: GatewayFactory, anonymous: bool
) -> None:
    # identity_headers without the context headers: on a route with a policy the gateway drops them anyway.
    client = await make_gateway(
        identity_headers=["X-Internal-*"],
        routes=[api_route(auth=["service_token"], anonymous=anonymous), {"name": "open", "prefix": "/open"}],
    )
    token, _ = await add_token(client, name="deploy-bot", owner="ci")
    forged = {"X-User-Id": "admin", "X-Tenant-Id": "other", "X-Auth-Method": "jwt", "X-Auth-Scopes": "all"}
    credential = {} if anonymous else {"Authorization": f"Bearer {token}"}
    data = await echo(await client.get("/api/orders", headers={**forged, **credential}))
    expected: dict[str, list[str]] = (
        {name: [] for name in ("X-User-Id", "X-Tenant-Id", "X-Service-Id", "X-Auth-Method", "X-Auth-Scopes")}
        if anonymous
        else {
            "X-User-Id": ["service:ci"],
            "X-Tenant-Id": [],
            "X-Service-Id": ["ci"],
            "X-Auth-Method": ["service_token"],
            "X-Auth-Scopes": [],
        }
    )
    assert context_of(data) == expected
    # A route without a policy forwards what the configured rules let through, as before.
    data = await echo(await client.get("/open/x", headers=forged))
    assert header_values(data, "X-Tenant-Id") == ["other"]


async def test_no_credential_is_401_with_every_challenge(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["jwt", "api_key"])], authn=jwt_authn_static())
    response = await client.get("/api/x")
    assert response.status == 401
    assert (await problem(response))["code"] == "auth.required"
    challenge = response.headers["WWW-Authenticate"]
    assert 'Bearer realm="gateway"' in challenge and 'ApiKey realm="gateway", header="X-API-Key"' in challenge


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        pytest.param("unknown", 401, "token.invalid", id="unknown"),
        pytest.param("revoked", 401, "token.invalid", id="revoked"),
        pytest.param("expired", 401, "token.expired", id="expired"),
        pytest.param("malformed", 401, "token.malformed", id="bad-checksum"),
        pytest.param("ip", 403, "token.ip_denied", id="token-ip-allowlist"),
    ],
)
async def test_service_token_refusals(make_gateway: GatewayFactory, case: str, status: int, code: str) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"])])
    changes: dict[str, Any] = {}
    if case == "revoked":
        changes = {"revoked_at": past(), "revoked_reason": "leaked"}
    elif case == "expired":
        changes = {"expires": past()}
    token, _ = await add_token(client, allowed_ips=("10.0.0.0/8",) if case == "ip" else (), **changes)
    if case == "unknown":
        token = generate_service_token()  # well-formed, checksum and all, but never issued
    if case == "malformed":
        token = token[:-1] + ("a" if token[-1] != "a" else "b")
    response = await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})
    assert response.status == status
    body = await problem(response)
    assert body["code"] == code
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="gateway", error=')


async def test_static_internal_tokens_share_the_service_token_path(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text("o" * 40 + "\n")
    new.write_text("# rotated in 2025\n" + "n" * 40 + "\n")
    client = await make_gateway(
        routes=[api_route(auth=["service_token"])],
        authn={"service_token": {"static": {"reports": {"files": [str(old), str(new)], "scopes": ["r:read"]}}}},
    )
    for secret in ("o" * 40, "n" * 40):  # both valid during the rotation
        data = await echo(await client.get("/api/x", headers={"Authorization": f"Bearer {secret}"}))
        assert context_of(data)["X-User-Id"] == ["service:reports"]
        assert context_of(data)["X-Auth-Scopes"] == ["r:read"]
    response = await client.get("/api/x", headers={"Authorization": "Bearer " + "x" * 40})
    assert response.status == 401 and (await problem(response))["code"] == "token.invalid"


# -- API keys -----------------------------------------------------------------------------------


async def test_api_key_carries_the_clients_tenant_and_is_not_forwarded(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["api_key"])])
    key, api_client = await add_api_client(client, tenant="acme", scopes=("sdk:read",))
    data = await echo(await client.get("/api/x", headers={"X-API-Key": key}))
    assert context_of(data) == {
        "X-User-Id": [f"client:{api_client.client_id}"],
        "X-Tenant-Id": ["acme"],
        "X-Service-Id": [],
        "X-Auth-Method": ["api_key"],
        "X-Auth-Scopes": ["sdk:read"],
    }
    assert header_values(data, "X-API-Key") == []


async def test_api_key_client_allowlists_apply(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["api_key"])])
    key, _ = await add_api_client(client, allowed_origins=("https://app.example.com",))
    ok = await client.get("/api/x", headers={"X-API-Key": key, "Origin": "https://app.example.com"})
    assert ok.status == 200
    denied = await client.get("/api/x", headers={"X-API-Key": key, "Origin": "https://evil.example.net"})
    assert denied.status == 403 and (await problem(denied))["code"] == "apikey.origin_denied"
    fenced_key, _ = await add_api_client(client, allowed_ips=("10.0.0.0/8",))
    fenced = await client.get("/api/x", headers={"X-API-Key": fenced_key})
    assert fenced.status == 403 and (await problem(fenced))["code"] == "apikey.ip_denied"


async def test_api_key_header_name_is_configurable(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["api_key"])], authn={"api_key": {"header": "X-Client-Key"}})
    key, _ = await add_api_client(client)
    assert (await client.get("/api/x", headers={"X-API-Key": key})).status == 401
    data = await echo(await client.get("/api/x", headers={"X-Client-Key": key}))
    assert header_values(data, "X-Client-Key") == []


async def test_api_key_from_the_query_string_is_removed_before_forwarding(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["api_key"])], authn={"api_key": {"query_param": "api_key"}})
    key, _ = await add_api_client(client)
    data = await echo(await client.get(f"/api/x?a=1&api_key={key}&b=c%20d"))
    assert data["raw_path"] == "/api/x?a=1&b=c%20d"  # the rest of the query byte for byte
    assert context_of(data)["X-Auth-Method"] == ["api_key"]
    data = await echo(await client.get(f"/api/x?api_key={key}"))
    assert data["raw_path"] == "/api/x"


async def test_api_key_in_the_query_string_is_kept_when_the_route_forwards_credentials(
    make_gateway: GatewayFactory,
) -> None:
    client = await make_gateway(
        routes=[api_route(auth=["api_key"], forward_credential=True)], authn={"api_key": {"query_param": "api_key"}}
    )
    key, _ = await add_api_client(client)
    data = await echo(await client.get(f"/api/x?api_key={key}"))
    assert data["raw_path"] == f"/api/x?api_key={key}"


# -- legacy HMAC --------------------------------------------------------------------------------


@pytest.fixture
def kek(tmp_path: Path) -> Path:
    return write_kek(tmp_path)


async def legacy_gateway(make_gateway: GatewayFactory, kek: Path, **legacy: Any) -> Client:
    client = await make_gateway(
        routes=[api_route(auth=["hmac_legacy"])],
        credentials={"kek_file": str(kek)},
        authn={"hmac_legacy": legacy} if legacy else None,
    )
    await add_hmac_key(client, kek, service="billing", key_id="k1")
    return client


async def test_legacy_signature_from_an_independent_script_is_accepted(make_gateway: GatewayFactory, kek: Path) -> None:
    client = await legacy_gateway(make_gateway, kek)
    url = str(client.make_url("/api/orders/7?page=2"))
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(LEGACY_SCRIPT), "billing", SERVICE_SECRET, "GET", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert context_of(data)["X-User-Id"] == ["service:billing"]
    assert context_of(data)["X-Auth-Method"] == ["hmac_legacy"]
    assert context_of(data)["X-Service-Id"] == ["billing"]  # set by the gateway; the client's X-Service-ID is gone
    for name in ("X-Service-Signature", "X-Service-Timestamp"):
        assert header_values(data, name) == []


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        pytest.param(lambda h: {**h, "X-Service-Signature": "0" * 64}, "hmac.invalid_signature", id="bad-signature"),
        pytest.param(lambda h: {**h, "X-Service-ID": "nobody"}, "hmac.invalid_signature", id="unknown-service"),
        pytest.param(lambda h: {**h, "X-Service-Timestamp": "soon"}, "hmac.malformed", id="timestamp-not-a-number"),
        pytest.param(
            lambda h: {k: v for k, v in h.items() if k != "X-Service-Timestamp"}, "hmac.malformed", id="header-missing"
        ),
    ],
)
async def test_legacy_refusals(
    make_gateway: GatewayFactory, kek: Path, mutate: Callable[[dict[str, str]], dict[str, str]], code: str
) -> None:
    client = await legacy_gateway(make_gateway, kek)
    response = await client.get("/api/x", headers=mutate(legacy_headers("billing", "GET", "/api/x")))
    assert response.status == 401
    assert (await problem(response))["code"] == code
    assert response.headers["WWW-Authenticate"] == 'ServiceSignature realm="gateway"'


async def test_legacy_skew_is_refused(make_gateway: GatewayFactory, kek: Path) -> None:
    client = await legacy_gateway(make_gateway, kek, window="60s")
    headers = legacy_headers("billing", "GET", "/api/x", timestamp=int(datetime.now(UTC).timestamp()) - 120)
    response = await client.get("/api/x", headers=headers)
    assert response.status == 401 and (await problem(response))["code"] == "hmac.skew"


async def test_legacy_replay_protection_accepts_a_signature_once(make_gateway: GatewayFactory, kek: Path) -> None:
    client = await legacy_gateway(make_gateway, kek, replay_protection=True)
    headers = legacy_headers("billing", "GET", "/api/x")
    assert (await client.get("/api/x", headers=headers)).status == 200
    again = await client.get("/api/x", headers=headers)
    assert again.status == 401 and (await problem(again))["code"] == "hmac.replay"


async def test_signed_services_get_their_keys_tenant_and_scopes(make_gateway: GatewayFactory, kek: Path) -> None:
    client = await make_gateway(
        routes=[api_route(auth=["hmac_legacy", "rfc9421"], required_scopes={"POST": ["orders:write"]})],
        credentials={"kek_file": str(kek)},
    )
    await add_hmac_key(client, kek, service="billing", key_id="k1", tenant="acme", scopes=("orders:write", "a:read"))
    await add_hmac_key(client, kek, service="reports", key_id="k2")  # no scopes, no tenant

    data = await echo(await client.post("/api/orders", headers=legacy_headers("billing", "POST", "/api/orders")))
    assert context_of(data)["X-Tenant-Id"] == ["acme"]
    assert context_of(data)["X-Auth-Scopes"] == ["a:read orders:write"]
    url = str(client.make_url("/api/orders"))
    data = await echo(await send_exact(client, "POST", "/api/orders", library_signed("POST", url, None, key_id="k1")))
    assert context_of(data)["X-Auth-Method"] == ["rfc9421"]
    assert context_of(data)["X-Auth-Scopes"] == ["a:read orders:write"]

    # A service whose key lacks the scope is authenticated, then refused: 403 for both schemes.
    response = await client.post("/api/orders", headers=legacy_headers("reports", "POST", "/api/orders"))
    assert response.status == 403
    assert (await problem(response))["code"] == "scope.insufficient"
    response = await send_exact(client, "POST", "/api/orders", library_signed("POST", url, None, key_id="k2"))
    assert response.status == 403
    data = await echo(await client.get("/api/orders", headers=legacy_headers("reports", "GET", "/api/orders")))
    assert context_of(data)["X-Tenant-Id"] == []  # reads need no scope; no tenant registered, none sent
    assert context_of(data)["X-User-Id"] == ["service:reports"]


# -- RFC 9421 -----------------------------------------------------------------------------------


class Outgoing:
    """What http-message-signatures signs: method, encoded URL, mutable headers."""

    def __init__(self, method: str, url: str, headers: dict[str, str] | None = None) -> None:
        self.method = method
        self.url = url
        self.headers = dict(headers or {})


def library_signed(
    method: str, url: str, body: bytes | None, *, key_id: str, nonce: str | None = None
) -> dict[str, str]:
    """Sign with the reference implementation (http-message-signatures), not with the project's signer."""
    message = Outgoing(method, url, {"Content-Type": "application/json"} if body is not None else None)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.HMAC_SHA256,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: SERVICE_SECRET.encode()}),
    )
    signer.sign(
        message,
        key_id=key_id,
        nonce=nonce,
        covered_component_ids=("@method", "@authority", "@path", "@query"),
        body=body,
    )
    return message.headers


async def rfc9421_gateway(make_gateway: GatewayFactory, kek: Path, **rfc: Any) -> Client:
    client = await make_gateway(
        routes=[api_route(auth=["rfc9421", "service_token"])],
        credentials={"kek_file": str(kek)},
        authn={"rfc9421": rfc} if rfc else None,
    )
    await add_hmac_key(client, kek, service="billing", key_id="k1")
    return client


async def send_exact(
    client: Client, method: str, target: str, headers: dict[str, str], body: bytes | None = None
) -> aiohttp.ClientResponse:
    url = URL(str(client.make_url("")).rstrip("/") + target, encoded=True)
    return await client.session.request(method, url, headers=headers, data=body)


@pytest.mark.parametrize("key_id", ["k1", "billing/k1"], ids=["bare-keyid", "service-qualified-keyid"])
async def test_library_signed_request_is_accepted_and_the_body_forwarded(
    make_gateway: GatewayFactory, kek: Path, key_id: str
) -> None:
    client = await rfc9421_gateway(make_gateway, kek)
    body = b'{"amount": 12, "currency": "EUR"}'
    target = "/api/payments/a%20b?id=7&x=%2F"
    url = str(client.make_url("")).rstrip("/") + target
    headers = library_signed("POST", url, body, key_id=key_id, nonce="n-1")
    data = await echo(await send_exact(client, "POST", target, headers, body))
    assert data["raw_path"] == target
    assert data["body_sha256"] == hashlib.sha256(body).hexdigest()  # the buffered bytes, forwarded as signed
    assert context_of(data)["X-User-Id"] == ["service:billing"]
    assert context_of(data)["X-Auth-Method"] == ["rfc9421"]
    for name in ("Signature", "Signature-Input"):
        assert header_values(data, name) == []
    assert header_values(data, "Content-Digest") == [headers["Content-Digest"]]


async def test_library_signed_request_with_the_body_changed_is_refused(
    make_gateway: GatewayFactory, kek: Path, upstream_state: UpstreamState
) -> None:
    client = await rfc9421_gateway(make_gateway, kek)
    target = "/api/payments"
    url = str(client.make_url("")).rstrip("/") + target
    headers = library_signed("POST", url, b'{"amount": 12}', key_id="k1")
    before = upstream_state.requests
    response = await send_exact(client, "POST", target, headers, b'{"amount": 12000}')
    assert response.status == 401
    assert (await problem(response))["code"] == "httpsig.digest_mismatch"
    assert upstream_state.requests == before


async def test_rfc9421_nonce_is_accepted_once(make_gateway: GatewayFactory, kek: Path) -> None:
    client = await rfc9421_gateway(make_gateway, kek)
    url = str(client.make_url("/api/x"))
    headers = library_signed("GET", url, None, key_id="k1", nonce="once-only")
    assert (await send_exact(client, "GET", "/api/x", headers)).status == 200
    again = await send_exact(client, "GET", "/api/x", headers)
    assert again.status == 401 and (await problem(again))["code"] == "httpsig.replay"


async def test_oversized_signed_body_is_413_even_in_log_only(make_gateway: GatewayFactory, kek: Path) -> None:
    client = await make_gateway(
        routes=[api_route(auth=["rfc9421"], mode="log_only")],
        credentials={"kek_file": str(kek)},
        authn={"rfc9421": {"max_body": "1KiB"}},
    )
    await add_hmac_key(client, kek)
    body = b"x" * 4096
    url = str(client.make_url("/api/upload"))
    response = await send_exact(client, "POST", "/api/upload", library_signed("POST", url, body, key_id="k1"), body)
    assert response.status == 413
    assert (await problem(response))["code"] == "httpsig.body_too_large"


async def test_unknown_keyid_reads_as_invalid_signature(make_gateway: GatewayFactory, kek: Path) -> None:
    client = await rfc9421_gateway(make_gateway, kek)
    url = str(client.make_url("/api/x"))
    response = await send_exact(client, "GET", "/api/x", library_signed("GET", url, None, key_id="nope"))
    assert response.status == 401
    assert (await problem(response))["code"] == "httpsig.invalid_signature"
    await runtime_of(client).audit.flush()
    events = await runtime_of(client).store.query_audit(AuditQuery(result=AuditResult.DENY))
    assert events[0].reason == "httpsig.unknown_key"  # the audit trail knows which


async def test_a_key_registered_after_start_is_found_by_its_keyid(make_gateway: GatewayFactory, kek: Path) -> None:
    client = await rfc9421_gateway(make_gateway, kek)
    url = str(client.make_url("/api/x"))
    assert (await send_exact(client, "GET", "/api/x", library_signed("GET", url, None, key_id="k1"))).status == 200
    await add_hmac_key(client, kek, service="reports", key_id="k9")  # the index already loaded
    response = await send_exact(client, "GET", "/api/x", library_signed("GET", url, None, key_id="k9"))
    assert (await echo(response))["headers"]


# -- JWT ----------------------------------------------------------------------------------------


def jwt_authn_static(tmp: Path | None = None) -> dict[str, Any]:
    import tempfile

    directory = tmp or Path(tempfile.mkdtemp(prefix="gw-jwt-"))
    k1, k2 = directory / "k1.pem", directory / "k2.pem"
    k1.write_bytes(RSA_PUBLIC_PEM)
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    k2.write_bytes(RSA_OTHER.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return {
        "jwt": {
            "providers": [
                {
                    "name": "idp",
                    "issuer": ISSUER,
                    "audiences": [AUDIENCE],
                    "algorithms": ["RS256"],
                    "key_files": {"k1": str(k1), "k2": str(k2)},
                }
            ]
        }
    }


async def test_jwt_claims_become_the_context(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    client = await make_gateway(routes=[api_route(auth=["jwt"])], authn=jwt_authn_static(tmp_path))
    data = await echo(await client.get("/api/me", headers={"Authorization": f"Bearer {rs256()}"}))
    assert context_of(data) == {
        "X-User-Id": ["user-42"],
        "X-Tenant-Id": ["acme"],
        "X-Service-Id": [],
        "X-Auth-Method": ["jwt"],
        "X-Auth-Scopes": ["user:read user:write"],
    }


def _jwk_header_token() -> str:
    from jwt.algorithms import RSAAlgorithm

    jwk = json.loads(RSAAlgorithm.to_jwk(RSA_OTHER.public_key()))
    return pyjwt.encode(claims(), RSA_OTHER, algorithm="RS256", headers={"kid": "k1", "jwk": jwk})


JWT_ATTACKS = [
    pytest.param(lambda: unsigned("none"), "jwt.alg_not_allowed", id="alg-none"),
    pytest.param(hs256_with_public_key, "jwt.alg_not_allowed", id="hs256-keyed-with-rsa-public-key"),
    pytest.param(_jwk_header_token, "jwt.bad_header", id="embedded-jwk"),
    pytest.param(lambda: rs256(jku="https://evil.example.net/jwks.json"), "jwt.bad_header", id="jku-elsewhere"),
    pytest.param(lambda: rs256(claims(exp=int(datetime.now(UTC).timestamp()) - 3600)), "jwt.expired", id="expired"),
    pytest.param(
        lambda: rs256(claims(nbf=int(datetime.now(UTC).timestamp()) + 3600)), "jwt.not_yet_valid", id="not-yet-valid"
    ),
    pytest.param(lambda: rs256(claims(aud="someone-else")), "jwt.bad_audience", id="wrong-aud"),
    pytest.param(lambda: rs256(claims(iss="https://evil.example.net")), "jwt.bad_issuer", id="wrong-iss"),
    pytest.param(lambda: rs256(kid="k-unknown"), "jwt.invalid_signature", id="unknown-kid"),
    pytest.param(lambda: rs256(key=RSA_OTHER), "jwt.invalid_signature", id="signed-by-another-key"),
    pytest.param(lambda: "a.b.c.d", "jwt.malformed", id="four-segments"),
    pytest.param(lambda: f"{b64json({'alg': 'RS256'})}x.e30.sig", "jwt.malformed", id="bad-json-header"),
]


@pytest.mark.parametrize(("make_token", "code"), JWT_ATTACKS)
async def test_jwt_attacks_are_refused_through_the_gateway(
    make_gateway: GatewayFactory,
    tmp_path: Path,
    upstream_state: UpstreamState,
    make_token: Callable[[], str],
    code: str,
) -> None:
    client = await make_gateway(routes=[api_route(auth=["jwt"])], authn=jwt_authn_static(tmp_path))
    response = await client.get("/api/x", headers={"Authorization": f"Bearer {make_token()}"})
    assert response.status == 401
    assert (await problem(response))["code"] == code
    assert upstream_state.requests == 0


async def test_jwt_keys_from_a_jwks_url(make_gateway: GatewayFactory, aiohttp_server: AiohttpServer) -> None:
    from jwt.algorithms import RSAAlgorithm

    jwk = {**json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key())), "kid": "k1", "use": "sig", "alg": "RS256"}

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    idp = await aiohttp_server(app)
    provider = {
        "name": "idp",
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "algorithms": ["RS256"],
        "jwks_url": str(idp.make_url("/jwks.json")),
    }
    client = await make_gateway(routes=[api_route(auth=["jwt"])], authn={"jwt": {"providers": [provider]}})
    data = await echo(await client.get("/api/x", headers={"Authorization": f"Bearer {rs256()}"}))
    assert context_of(data)["X-User-Id"] == ["user-42"]
    unknown = await client.get("/api/x", headers={"Authorization": f"Bearer {rs256(kid='rotated')}"})
    assert unknown.status == 401 and (await problem(unknown))["code"] == "jwt.invalid_signature"


# -- modes --------------------------------------------------------------------------------------


async def test_log_only_lets_a_refused_request_through_and_records_would_deny(
    make_gateway: GatewayFactory, aiohttp_client: Any
) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"], mode="log_only")])
    data = await echo(await client.get("/api/x", headers={"Authorization": "Bearer sk_nope", "X-User-Id": "mallory"}))
    assert context_of(data)["X-User-Id"] == []  # no identity: the credential did not authenticate
    assert header_values(data, "Authorization") == []
    runtime = runtime_of(client)
    await runtime.audit.flush()
    (event,) = await runtime.store.query_audit(AuditQuery())
    assert (event.result, event.reason, event.route) == (AuditResult.WOULD_DENY, "token.malformed", "api")
    metrics = await metrics_text(client, aiohttp_client)
    assert (
        'gateway_auth_decisions_total{method="service_token",mode="log_only",reason="token.malformed",'
        'result="would_deny",route="api"} 1.0' in metrics
    )


async def test_log_only_keeps_the_identity_when_only_authorization_fails(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(
        routes=[api_route(auth=["service_token"], mode="log_only", required_scopes=["admin:write"])]
    )
    token, _ = await add_token(client, scopes=("a:read",))
    data = await echo(await client.get("/api/x", headers={"Authorization": f"Bearer {token}"}))
    assert context_of(data)["X-User-Id"] == ["service:ci"]
    await runtime_of(client).audit.flush()
    (event,) = await runtime_of(client).store.query_audit(AuditQuery())
    assert (event.result, event.reason, event.principal) == (AuditResult.WOULD_DENY, "scope.insufficient", "service:ci")


async def test_enforce_refuses_missing_scopes_with_403(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"], required_scopes=["admin:write"])])
    token, _ = await add_token(client, scopes=("a:read",))
    response = await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 403 and (await problem(response))["code"] == "scope.insufficient"
    wildcard, _ = await add_token(client, name="root", scopes=("admin:*",))
    assert (await client.get("/api/x", headers={"Authorization": f"Bearer {wildcard}"})).status == 200


async def test_off_mode_is_a_route_without_policy(make_gateway: GatewayFactory, upstream_state: UpstreamState) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"], mode="off", ip_allow=["10.0.0.0/8"])])
    data = await echo(await client.get("/api/x", headers={"Authorization": "Bearer whatever", "X-User-Id": "m"}))
    assert header_values(data, "Authorization") == ["Bearer whatever"]
    assert context_of(data)["X-User-Id"] == []  # identity headers are still never taken from clients


async def test_anonymous_route_with_scopes_for_writes(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(
        routes=[api_route(auth=["service_token"], anonymous=True, required_scopes={"POST": ["w:write"]})]
    )
    data = await echo(await client.get("/api/x"))
    assert context_of(data)["X-User-Id"] == []
    post = await client.post("/api/x", data=b"{}")
    assert post.status == 401 and (await problem(post))["code"] == "auth.required"
    token, _ = await add_token(client, scopes=("w:write",))
    assert (await client.post("/api/x", data=b"{}", headers={"Authorization": f"Bearer {token}"})).status == 200


async def test_forward_credential_passes_the_credential_on(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"], forward_credential=True)])
    token, _ = await add_token(client)
    data = await echo(await client.get("/api/x", headers={"Authorization": f"Bearer {token}"}))
    assert header_values(data, "Authorization") == [f"Bearer {token}"]
    assert context_of(data)["X-User-Id"] == ["service:ci"]


# -- network allowlists -------------------------------------------------------------------------


async def test_ip_allowlist_uses_the_resolved_client_ip(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"], ip_allow=["10.0.0.0/8"])])
    token, _ = await add_token(client)
    auth = {"Authorization": f"Bearer {token}"}
    denied = await client.get("/api/x", headers=auth)
    assert denied.status == 403 and (await problem(denied))["code"] == "ip.denied"
    spoofed = await client.get("/api/x", headers={**auth, "X-Forwarded-For": "10.1.2.3"})  # untrusted peer
    assert spoofed.status == 403 and (await problem(spoofed))["code"] == "ip.denied"


async def test_ip_allowlist_behind_a_trusted_proxy(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(
        routes=[api_route(auth=["service_token"], ip_allow=["10.0.0.0/8", "2001:db8::/32"])],
        trusted_proxies=["127.0.0.1/32"],
    )
    token, _ = await add_token(client)
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/x", headers={**auth, "X-Forwarded-For": "10.1.2.3"})).status == 200
    assert (await client.get("/api/x", headers={**auth, "X-Forwarded-For": "2001:db8::7"})).status == 200
    outside = await client.get("/api/x", headers={**auth, "X-Forwarded-For": "192.0.2.1"})
    assert outside.status == 403


async def test_ip_refusal_costs_no_credential_lookup(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"], ip_allow=["10.0.0.0/8"])])
    token, _ = await add_token(client)
    cache = runtime_of(client).credentials
    misses = cache.stats.misses
    assert (await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})).status == 403
    assert cache.stats.misses == misses


CORS_ROUTE = api_route(
    auth=["service_token"],
    origins=["https://app.example.com", "https://*.example.com"],
    cors={"methods": ["GET", "POST"], "headers": ["Authorization", "Content-Type"], "max_age": "10m"},
)


async def test_disallowed_origin_is_refused(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[dict(CORS_ROUTE)])
    token, _ = await add_token(client)
    response = await client.get(
        "/api/x", headers={"Authorization": f"Bearer {token}", "Origin": "https://example.com.evil.net"}
    )
    assert response.status == 403 and (await problem(response))["code"] == "origin.denied"
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("origin", ["https://app.example.com", "https://eu.shop.example.com"])
async def test_allowed_origin_gets_cors_headers(make_gateway: GatewayFactory, origin: str) -> None:
    client = await make_gateway(routes=[dict(CORS_ROUTE)])
    token, _ = await add_token(client)
    response = await client.get("/api/x", headers={"Authorization": f"Bearer {token}", "Origin": origin})
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in response.headers["Vary"]
    assert response.headers["Access-Control-Expose-Headers"] == "X-Request-Id"
    refused = await client.get("/api/x", headers={"Origin": origin})
    assert refused.status == 401  # a browser page can read why
    assert refused.headers["Access-Control-Allow-Origin"] == origin


async def test_cors_preflight_is_answered_by_the_gateway(
    make_gateway: GatewayFactory, upstream_state: UpstreamState
) -> None:
    client = await make_gateway(routes=[dict(CORS_ROUTE)])
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    response = await client.options("/api/x", headers=preflight)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert response.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert response.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert response.headers["Access-Control-Max-Age"] == "600"
    denied = await client.options("/api/x", headers={**preflight, "Origin": "https://evil.example.net"})
    assert denied.status == 403
    assert not any(name.startswith("Access-Control-") for name in denied.headers)
    assert upstream_state.requests == 0


# -- WebSockets ---------------------------------------------------------------------------------


async def test_websocket_upgrade_goes_through_the_policy(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[dict(CORS_ROUTE)])
    token, _ = await add_token(client)
    async with client.ws_connect(
        "/api/ws", headers={"Authorization": f"Bearer {token}", "Origin": "https://app.example.com"}
    ) as ws:
        await ws.send_str("headers")
        received = json.loads((await ws.receive()).data)
        await ws.send_str("ping")
        assert (await ws.receive()).data == "ping"
    names = {name.lower(): value for name, value in received}
    assert names["x-user-id"] == "service:ci" and "authorization" not in names
    with pytest.raises(aiohttp.WSServerHandshakeError) as no_token:
        await client.ws_connect("/api/ws", headers={"Origin": "https://app.example.com"})
    assert no_token.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as bad_origin:
        await client.ws_connect("/api/ws", headers={"Authorization": f"Bearer {token}", "Origin": "https://evil.net"})
    assert bad_origin.value.status == 403


async def test_a_websocket_is_closed_when_its_credential_expires(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[dict(CORS_ROUTE)])
    token, _ = await add_token(client, expires=datetime.now(UTC) + timedelta(seconds=1.5))
    headers = {"Authorization": f"Bearer {token}", "Origin": "https://app.example.com"}
    async with client.ws_connect("/api/ws", headers=headers) as ws:
        await ws.send_str("ping")
        assert (await ws.receive()).data == "ping"  # open while the token is valid
        closed = await ws.receive(timeout=10)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION and closed.extra == "credential expired"
    with pytest.raises(aiohttp.WSServerHandshakeError) as expired:
        await client.ws_connect("/api/ws", headers=headers)
    assert expired.value.status == 401


async def test_a_websocket_is_closed_when_its_token_is_revoked(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[dict(CORS_ROUTE)])
    revoked_token, revoked = await add_token(client, name="leaked")
    kept_token, _ = await add_token(client, name="kept")
    origin = {"Origin": "https://app.example.com"}
    async with (
        client.ws_connect("/api/ws", headers={"Authorization": f"Bearer {revoked_token}", **origin}) as ws,
        client.ws_connect("/api/ws", headers={"Authorization": f"Bearer {kept_token}", **origin}) as other,
    ):
        await ws.send_str("ping")
        assert (await ws.receive()).data == "ping"
        await runtime_of(client).store.revoke_token(revoked.token_hash, reason="leaked", at=datetime.now(UTC))
        closed = await ws.receive(timeout=10)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert (closed.data, closed.extra) == (aiohttp.WSCloseCode.POLICY_VIOLATION, "credential revoked")
        await other.send_str("still here")  # another credential's connection is untouched
        assert (await other.receive(timeout=10)).data == "still here"
    runtime = runtime_of(client)
    await runtime.audit.flush()
    events = await runtime.store.query_audit(AuditQuery(result=AuditResult.DENY))
    assert [(e.reason, e.principal) for e in events] == [("token.revoked", "service:ci")]  # reported like any refusal


async def test_a_websocket_is_closed_when_its_api_key_is_revoked(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["api_key"])])
    key, _ = await add_api_client(client)
    async with client.ws_connect("/api/ws", headers={"X-API-Key": key}) as ws:
        await ws.send_str("ping")
        assert (await ws.receive()).data == "ping"
        await runtime_of(client).store.revoke_api_key(hash_token(key), reason="leaked", at=datetime.now(UTC))
        closed = await ws.receive(timeout=10)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert (closed.data, closed.extra) == (aiohttp.WSCloseCode.POLICY_VIOLATION, "credential revoked")


async def test_a_websocket_signed_with_a_retired_service_key_is_closed(make_gateway: GatewayFactory, kek: Path) -> None:
    client = await legacy_gateway(make_gateway, kek)
    key = await runtime_of(client).store.get_service_key("billing", "k1")
    assert key is not None
    async with client.ws_connect("/api/ws", headers=legacy_headers("billing", "GET", "/api/ws")) as ws:
        await ws.send_str("ping")
        assert (await ws.receive()).data == "ping"
        # Long after its signature's window the connection holds on the key alone; retiring the key ends it.
        await runtime_of(client).store.update_service_key(dataclasses.replace(key, state=KeyState.RETIRED))
        closed = await ws.receive(timeout=10)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert (closed.data, closed.extra) == (aiohttp.WSCloseCode.POLICY_VIOLATION, "credential revoked")


async def test_a_websocket_signed_with_rfc9421_stays_open_while_its_key_is_active(
    make_gateway: GatewayFactory, kek: Path
) -> None:
    client = await rfc9421_gateway(make_gateway, kek)
    key = await runtime_of(client).store.get_service_key("billing", "k1")
    assert key is not None
    other_key = await add_hmac_key(client, kek, key_id="k2")
    signed = library_signed("GET", str(client.make_url("/api/ws")), None, key_id="billing/k1")
    async with client.ws_connect("/api/ws", headers=signed) as ws:
        store = runtime_of(client).store
        await store.update_service_key(dataclasses.replace(other_key, state=KeyState.RETIRED))  # another key
        await asyncio.sleep(0.2)
        await ws.send_str("ping")
        assert (await ws.receive(timeout=10)).data == "ping"
        await store.update_service_key(dataclasses.replace(key, state=KeyState.RETIRED))
        closed = await ws.receive(timeout=10)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert (closed.data, closed.extra) == (aiohttp.WSCloseCode.POLICY_VIOLATION, "credential revoked")


async def test_a_websocket_on_a_log_only_route_outlives_a_revocation(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"], mode="log_only")])
    token, record = await add_token(client)
    async with client.ws_connect("/api/ws", headers={"Authorization": f"Bearer {token}"}) as ws:
        await runtime_of(client).store.revoke_token(record.token_hash, reason="leaked", at=datetime.now(UTC))
        await asyncio.sleep(0.2)
        await ws.send_str("ping")
        assert (await ws.receive(timeout=10)).data == "ping"


# -- context signing ----------------------------------------------------------------------------


async def test_upstream_verifies_the_context_with_the_sdk_middleware(
    aiohttp_server: AiohttpServer, make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    key = b"c" * 48
    key_file = tmp_path / "context-key"
    key_file.write_bytes(key)
    seen: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request[GATEWAY_CONTEXT])
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[gateway_context_middleware({"gw-2025": key})])
    app.router.add_route("*", "/{tail:.*}", handler)
    verified: TestServer = await aiohttp_server(app)
    base = str(verified.make_url("")).rstrip("/")
    client = await make_gateway(
        routes=[{"name": "api", "prefix": "/api", "upstream": base, "auth": ["service_token"]}],
        context_signing={"key_file": str(key_file), "key_id": "gw-2025"},
    )
    token, _ = await add_token(client, scopes=("a:read",))
    response = await client.get("/api/x%20y?q=1", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200, await response.text()
    assert seen[0].user_id == "service:ci" and seen[0].scopes == {"a:read"} and seen[0].key_id == "gw-2025"
    assert seen[0].request_id == response.headers["X-Request-Id"]
    async with aiohttp.ClientSession() as direct:  # around the gateway: no signature, refused
        async with direct.get(f"{base}/api/x", headers={"X-User-Id": "service:ci"}) as bypass:
            assert bypass.status == 401
            assert (await bypass.json())["code"] == "gateway_context.missing"


# -- audit, metrics, usage, failures ------------------------------------------------------------


async def metrics_text(client: Client, aiohttp_client: Any) -> str:
    from gateway.app import GATEWAY, create_admin_app

    admin = await aiohttp_client(create_admin_app(client.app[GATEWAY]))
    response = await admin.get("/metrics")
    return str(await response.text())


async def test_every_decision_is_audited(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"])])
    token, _ = await add_token(client, name="deploy-bot")
    await client.get("/api/x", headers={"Authorization": f"Bearer {token}", "User-Agent": "deployer/1.0"})
    await client.get("/api/x")
    runtime = runtime_of(client)
    await runtime.audit.flush()
    allow, deny = await runtime.store.query_audit(AuditQuery(newest_first=False))
    assert (allow.result, allow.reason, allow.principal, allow.credential_kind, allow.credential_id) == (
        AuditResult.ALLOW,
        "ok",
        "service:ci",
        "service_token",
        "deploy-bot",
    )
    assert (allow.route, allow.method, allow.client_ip, allow.user_agent) == ("api", "GET", "127.0.0.1", "deployer/1.0")
    assert allow.request_id
    assert (deny.result, deny.reason, deny.principal) == (AuditResult.DENY, "auth.required", "")


async def test_a_route_can_audit_refusals_only(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"], audit="denials")])
    token, _ = await add_token(client)
    assert (await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})).status == 200
    assert (await client.get("/api/x")).status == 401
    runtime = runtime_of(client)
    await runtime.audit.flush()
    (event,) = await runtime.store.query_audit(AuditQuery())
    assert (event.result, event.reason) == (AuditResult.DENY, "auth.required")


async def test_token_use_is_counted(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"])])
    token, record = await add_token(client)
    for _ in range(3):
        assert (await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})).status == 200
    runtime = runtime_of(client)
    await runtime.usage.flush()
    stored = await runtime.store.get_token(record.token_hash)
    assert stored is not None and stored.usage_count == 3 and stored.last_used is not None


async def test_a_revoked_token_is_refused_at_once(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(routes=[api_route(auth=["service_token"])])
    token, record = await add_token(client)
    assert (await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})).status == 200
    await runtime_of(client).store.revoke_token(record.token_hash, reason="leaked", at=datetime.now(UTC))
    assert (await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})).status == 401


async def test_store_down_is_503_in_every_mode(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    from tests.redis_servers import start_redis

    server = start_redis(tmp_path)
    try:
        client = await make_gateway(
            routes=[api_route(auth=["service_token"], mode="log_only")],
            store=f"redis://127.0.0.1:{server.port}/0?timeout=0.5",
        )
        token, _ = await add_token(client)
        server.stop()
        response = await client.get("/api/x", headers={"Authorization": f"Bearer {token}"})
        assert response.status == 503
        assert (await problem(response))["code"] == "store.unavailable"
        assert int(response.headers["Retry-After"]) >= 1
    finally:
        server.stop()
