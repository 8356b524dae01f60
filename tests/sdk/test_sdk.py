"""The client side: signing functions checked by independent verifiers, the signed aiohttp client and
``gateway sign`` through a real gateway, and the context verifier for upstreams."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from http_message_signatures import HTTPMessageVerifier, InvalidSignature, algorithms
from http_message_signatures.resolvers import MappingKeyResolver

from gateway.credentials import ServiceKey
from gateway.sdk import (
    ContextSignatureError,
    ServiceIdentity,
    SignedClient,
    SigningConfigError,
    sign_legacy,
    sign_rfc9421,
    verify_context,
)
from gateway.sdk.context import sign_context
from tests.authgw import SERVICE_SECRET, Client, add_hmac_key, context_of, runtime_of, write_kek
from tests.conftest import GatewayFactory

NOW = int(time.time())


class Message:
    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method, self.url, self.headers = method, url, headers


def test_sign_legacy_follows_the_formula() -> None:
    headers = sign_legacy("billing", SERVICE_SECRET, "get", "https://gw.example/v1/orders/a%20b?page=2", timestamp=NOW)
    expected = hmac.new(
        SERVICE_SECRET.encode(), f"billing:GET:/v1/orders/a%20b:{NOW}".encode(), hashlib.sha256
    ).hexdigest()
    assert headers == {"X-Service-ID": "billing", "X-Service-Signature": expected, "X-Service-Timestamp": str(NOW)}


@pytest.mark.parametrize("body", [None, b'{"amount": 3}'], ids=["no-body", "body"])
def test_sign_rfc9421_hmac_verifies_with_the_reference_library(body: bytes | None) -> None:
    url = "https://gw.example.com:8443/v1/pay/a%20b?x=%2F&y=1"
    headers = sign_rfc9421("POST", url, key_id="k1", key=SERVICE_SECRET, body=body, created=NOW, nonce="n1")
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.HMAC_SHA256,
        key_resolver=MappingKeyResolver(public_keys={"k1": SERVICE_SECRET.encode()}, private_keys={}),
    )
    (result,) = verifier.verify(Message("POST", url, headers), body=body, max_age=None)
    assert result.parameters["nonce"] == "n1"
    if body is not None:
        with pytest.raises(InvalidSignature):
            verifier.verify(Message("POST", url, headers), body=b'{"amount": 3000}', max_age=None)


def test_sign_rfc9421_ed25519_verifies_with_the_reference_library() -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    url = "https://gw.example.com/v1/reports"
    headers = sign_rfc9421("GET", url, key_id="ek1", key=pem, created=NOW)
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={"ek1": private.public_key()}, private_keys={}),
    )
    assert verifier.verify(Message("GET", url, headers), max_age=None)


def test_identity_from_env_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(SigningConfigError, match="SERVICE_ID is not set"):
        ServiceIdentity.from_env({})
    with pytest.raises(SigningConfigError, match="cannot read key file"):
        ServiceIdentity.from_env({"SERVICE_ID": "billing", "SERVICE_KEY_FILE": str(tmp_path / "nope")})
    key = tmp_path / "billing.key"
    key.write_text(SERVICE_SECRET + "\n")
    legacy = ServiceIdentity.from_env({"SERVICE_ID": "billing", "SERVICE_KEY_FILE": str(key)})
    assert (legacy.scheme, legacy.key) == ("legacy", SERVICE_SECRET)
    modern = ServiceIdentity.from_env({"SERVICE_ID": "billing", "SERVICE_KEY_FILE": str(key), "SERVICE_KEY_ID": "k1"})
    assert modern.scheme == "rfc9421"
    with pytest.raises(SigningConfigError, match="SERVICE_KEY_ID"):
        ServiceIdentity.from_env({"SERVICE_ID": "billing", "SERVICE_KEY_FILE": str(key)}, scheme="rfc9421")


# -- through a real gateway -----------------------------------------------------------------------


async def signed_gateway(make_gateway: GatewayFactory, tmp_path: Path) -> Client:
    kek = write_kek(tmp_path)
    client = await make_gateway(
        routes=[{"name": "api", "prefix": "/api", "auth": ["rfc9421", "hmac_legacy"]}],
        credentials={"kek_file": str(kek)},
        authn={"rfc9421": {"require_nonce": True}},
    )
    await add_hmac_key(client, kek, service="billing", key_id="k1")
    return client


@pytest.mark.parametrize("scheme", ["rfc9421", "legacy"])
async def test_signed_client_from_env_through_the_gateway(
    make_gateway: GatewayFactory, tmp_path: Path, scheme: str
) -> None:
    client = await signed_gateway(make_gateway, tmp_path)
    key = tmp_path / "billing.key"
    key.write_text(SERVICE_SECRET + "\n")
    env = {"SERVICE_ID": "billing", "SERVICE_KEY_FILE": str(key), "SERVICE_KEY_ID": "k1"}
    data: dict[str, Any] = {}
    async with SignedClient.from_env(env, scheme=scheme) as signed:
        for _ in range(2):  # a fresh nonce each time: both accepted
            async with signed.post(str(client.make_url("/api/orders?q=a b")), json={"id": 1}) as response:
                assert response.status == 200, await response.text()
                data = await response.json()
    assert context_of(data)["X-Auth-Method"] == ["rfc9421" if scheme == "rfc9421" else "hmac_legacy"]
    assert data["raw_path"] == "/api/orders?q=a+b"  # encoded once by the client, forwarded as signed


async def test_ed25519_key_registered_by_public_half(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    client = await signed_gateway(make_gateway, tmp_path)
    private = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import PublicFormat

    public_pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    await runtime_of(client).store.add_service_key(ServiceKey.new_ed25519("reports", public_pem, key_id="ek1"))
    identity = ServiceIdentity("reports", private, "ek1")
    async with SignedClient(identity) as signed, signed.get(str(client.make_url("/api/r"))) as response:
        assert response.status == 200
        assert context_of(await response.json())["X-User-Id"] == ["service:reports"]


async def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "sign", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


async def test_gateway_sign_command(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    client = await signed_gateway(make_gateway, tmp_path)
    key = tmp_path / "billing.key"
    key.write_text(SERVICE_SECRET + "\n")
    env = {"SERVICE_ID": "billing", "SERVICE_KEY_FILE": str(key), "SERVICE_KEY_ID": "k1"}
    url = str(client.make_url("/api/check"))
    modern = await run_cli("POST", url, "-d", '{"ping": 1}', "-H", "Content-Type: application/json", env=env)
    assert modern.returncode == 0, modern.stderr
    assert modern.stdout.startswith("HTTP/1.1 200 OK\n")
    assert '"X-Auth-Method", "rfc9421"' in modern.stdout
    legacy = await run_cli("--scheme", "legacy", "GET", url, env=env)
    assert legacy.returncode == 0 and '"X-Auth-Method", "hmac_legacy"' in legacy.stdout
    wrong = tmp_path / "wrong.key"
    wrong.write_text("0" * 64 + "\n")
    refused = await run_cli("GET", url, "--key-file", str(wrong), env=env)
    assert refused.returncode == 1 and refused.stdout.startswith("HTTP/1.1 401 Unauthorized\n")
    unusable = await run_cli("GET", url, env={"SERVICE_ID": "", "SERVICE_KEY_FILE": ""})
    assert unusable.returncode == 2 and "SERVICE_ID" in unusable.stderr
    # What aiohttp refuses to send is bad input, not a traceback (found by trying every command with bad values).
    for args, message in (
        (("BAD METHOD", url), "not an HTTP method: 'BAD METHOD'"),
        (("GET", "http://[::1"), "cannot send this request: Invalid IPv6 URL"),
        (("GET", url, "-H", "X-A: a\x01b"), "cannot send this request: Forbidden control character"),
    ):
        bad = await run_cli(*args, env=env)
        assert bad.returncode == 2 and bad.stderr.startswith(f"gateway sign: {message}"), bad.stderr
        assert "Traceback" not in bad.stderr


# -- context signatures ---------------------------------------------------------------------------


def signed_headers(**overrides: str) -> dict[str, str]:
    values = {"X-User-Id": "user-1", "X-Auth-Method": "jwt", "X-Auth-Scopes": "a b", "X-Request-Id": "r1"}
    headers = {**values, "X-Gateway-Signature": sign_context("gw1", b"k" * 32, "GET", "/x?y=1", values, NOW)}
    headers.update(overrides)
    return headers


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({}, "missing", id="missing"),
        pytest.param({"X-Gateway-Signature": "v1;kid=gw1;ts=1;sig=abc"}, "malformed", id="malformed"),
        pytest.param(signed_headers(**{"X-User-Id": "admin"}), "mismatch", id="header-changed"),
    ],
)
def test_context_verification_refuses(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(ContextSignatureError) as caught:
        verify_context("GET", "/x?y=1", headers, {"gw1": b"k" * 32}, clock=lambda: NOW)
    assert caught.value.reason == reason


def test_context_verification_binds_key_time_and_request() -> None:
    headers = signed_headers()
    context = verify_context("GET", "/x?y=1", headers, {"gw1": b"k" * 32}, clock=lambda: NOW + 10)
    assert context.user_id == "user-1" and context.scopes == {"a", "b"} and context.tenant_id is None
    for method, target, keys, now, reason in [
        ("POST", "/x?y=1", {"gw1": b"k" * 32}, NOW, "mismatch"),
        ("GET", "/x?y=2", {"gw1": b"k" * 32}, NOW, "mismatch"),
        ("GET", "/x?y=1", {"gw2": b"k" * 32}, NOW, "unknown_key"),
        ("GET", "/x?y=1", {"gw1": b"k" * 32}, NOW + 61, "expired"),
    ]:
        with pytest.raises(ContextSignatureError) as caught:
            verify_context(method, target, headers, keys, clock=float(now).__float__)
        assert caught.value.reason == reason
