"""Service signing keys through the admin API: secrets encrypted at rest, rotation, retirement."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pytest_aiohttp import AiohttpClient

from gateway.runtime import Runtime
from tests.admin.conftest import AdminApi, RuntimeFactory, admin_app_for

SECRET = "ab" * 32


async def test_generated_hmac_secret_is_returned_once_and_stored_encrypted(api: AdminApi, runtime: Runtime) -> None:
    status, body = await api.call("addServiceKey", json={"service": "billing", "key_id": "k1"})
    assert status == 201
    secret = body["secret"]
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert body["key"]["state"] == "active" and body["key"]["algorithm"] == "hmac-sha256"
    stored = await runtime.store.get_service_key("billing", "k1")
    assert stored is not None and stored.encrypted_secret is not None
    assert secret.encode() not in stored.encrypted_secret
    assert stored.secret(runtime.secret_box) == secret
    status, listed = await api.call("listServiceKeys", params={"service": "billing"})
    assert [k["key_id"] for k in listed["keys"]] == ["k1"]
    assert secret not in str(listed)
    expires = datetime.fromisoformat(listed["keys"][0]["expires"])
    assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)  # default lifetime


async def test_given_secret_and_ed25519_public_key(api: AdminApi) -> None:
    status, body = await api.call("addServiceKey", json={"service": "billing", "secret": SECRET, "lifetime": "7d"})
    assert status == 201 and body["secret"] is None
    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    status, body = await api.call(
        "addServiceKey",
        json={"service": "billing", "algorithm": "ed25519", "public_key": base64.b64encode(public).decode()},
    )
    assert status == 201
    assert base64.b64decode(body["key"]["public_key"]) == public
    status, problem = await api.call("addServiceKey", json={"service": "billing", "algorithm": "ed25519"})
    assert status == 400 and problem["detail"].startswith("public_key: required")


async def test_rotation_keeps_the_old_key_for_the_grace_period_and_retire_stops_it(api: AdminApi) -> None:
    await api.call("addServiceKey", json={"service": "billing", "key_id": "k1", "secret": SECRET})
    status, body = await api.call("rotateServiceKey", service="billing", json={"grace": "2h"})
    assert status == 201
    assert len(body["secret"]) == 64 and body["secret"] != SECRET
    assert body["previous"]["key_id"] == "k1" and body["previous"]["state"] == "active"
    old_expiry = datetime.fromisoformat(body["previous"]["expires"])
    assert timedelta(minutes=119) < old_expiry - datetime.now(UTC) <= timedelta(hours=2)
    new_id = body["key"]["key_id"]
    status, retired = await api.call("retireServiceKey", service="billing", key_id="k1")
    assert status == 200 and retired["state"] == "retired" and retired["usable"] is False
    status, shown = await api.call("getServiceKey", service="billing", key_id=new_id)
    assert shown["usable"] is True


BAD_KEYS = [
    ({"service": "billing", "secret": "abc"}, "a service secret is at least 64 hex characters"),
    ({"service": "bad service"}, "service: a service id is"),
    ({"service": "billing", "lifetime": "0s"}, "lifetime: must be more than zero"),
    ({"service": "billing", "algorithm": "rsa"}, "algorithm: expected one of hmac-sha256, ed25519"),
    ({"service": "billing", "public_key": "AAAA"}, "public_key: only for algorithm ed25519"),
    ({"service": "billing", "algorithm": "ed25519", "public_key": "-----BEGIN PRIVATE KEY-----"}, "private key"),
]


async def test_a_keys_tenant_and_scopes_are_kept_through_rotation_unless_replaced(api: AdminApi) -> None:
    status, body = await api.call(
        "addServiceKey",
        json={"service": "billing", "key_id": "k1", "secret": SECRET, "tenant": "acme", "scopes": ["b:w", "a:r"]},
    )
    assert status == 201
    assert body["key"]["tenant"] == "acme" and body["key"]["scopes"] == ["a:r", "b:w"]
    status, body = await api.call("rotateServiceKey", service="billing", json={})
    assert status == 201
    assert body["key"]["tenant"] == "acme" and body["key"]["scopes"] == ["a:r", "b:w"]  # the old key's
    status, body = await api.call("rotateServiceKey", service="billing", json={"scopes": [], "tenant": "other"})
    assert status == 201
    assert body["key"]["tenant"] == "other" and body["key"]["scopes"] == []
    status, problem = await api.call("addServiceKey", json={"service": "billing", "scopes": ["ok", 3]})
    assert status == 400 and problem["detail"].startswith("scopes[1]")
    status, problem = await api.call("addServiceKey", json={"service": "billing", "tenant": "no spaces"})
    assert status == 400 and problem["detail"].startswith("tenant")


@pytest.mark.parametrize(("body", "detail"), BAD_KEYS, ids=[str(i) for i in range(len(BAD_KEYS))])
async def test_bad_keys_are_refused_without_echoing_secrets(
    api: AdminApi, runtime: Runtime, body: dict[str, str], detail: str
) -> None:
    status, problem = await api.call("addServiceKey", json=body)
    assert status == 400, problem
    assert detail in problem["detail"]
    assert await runtime.store.list_service_keys() == []


async def test_duplicate_and_unknown_keys(api: AdminApi) -> None:
    await api.call("addServiceKey", json={"service": "billing", "key_id": "k1", "secret": SECRET})
    status, problem = await api.call("addServiceKey", json={"service": "billing", "key_id": "k1", "secret": SECRET})
    assert status == 409 and problem["code"] == "admin.conflict"
    status, problem = await api.call("getServiceKey", service="billing", key_id="k9")
    assert status == 404 and problem["code"] == "admin.not_found"
    status, problem = await api.call("rotateServiceKey", service="nobody", json={})
    assert status == 404 and "has no usable key" in problem["detail"]


async def test_hmac_keys_need_a_kek(make_runtime: RuntimeFactory, aiohttp_client: AiohttpClient) -> None:
    runtime = await make_runtime(kek=False)
    api = AdminApi(await aiohttp_client(admin_app_for(runtime)))
    status, problem = await api.call("addServiceKey", json={"service": "billing", "secret": SECRET})
    assert status == 409
    assert problem["code"] == "admin.kek_missing"
    assert "credentials.kek_file" in problem["detail"]
    assert SECRET not in problem["detail"]
