"""API clients and their keys through the admin API."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.credentials import hash_token, parse_token
from gateway.runtime import Runtime
from tests.admin.conftest import AdminApi

REGISTER = {
    "name": "web-shop",
    "tenant": "acme",
    "allowed_ips": ["203.0.113.0/24"],
    "allowed_origins": ["https://shop.example.com:443"],
    "scopes": ["orders:read"],
}


async def register(api: AdminApi, **extra: object) -> dict[str, Any]:
    status, body = await api.call("registerClient", json={**REGISTER, **extra})
    assert status == 201, body
    return body  # type: ignore[no-any-return]


async def test_register_returns_client_id_and_api_key(api: AdminApi, runtime: Runtime) -> None:
    body = await register(api)
    client = body["client"]
    assert isinstance(client, dict) and str(client["client_id"]).startswith("cl_")
    assert client["allowed_origins"] == ["https://shop.example.com"]  # normalised
    key_text = str(body["api_key"])
    assert parse_token(key_text).hash == hash_token(key_text) and key_text.startswith("ak_")
    found = await runtime.store.get_api_key(hash_token(key_text))
    assert found is not None and found.client.client_id == client["client_id"]
    status, shown = await api.call("getClient", client_id=str(client["client_id"]))
    assert [k["id"] for k in shown["keys"]] == [hash_token(key_text)[:16]]
    assert key_text not in str(shown)
    status, listed = await api.call("listClients", params={"tenant": "acme"})
    assert [c["name"] for c in listed["clients"]] == ["web-shop"]
    assert (await api.call("listClients", params={"tenant": "other"}))[1] == {"clients": []}


async def test_keys_add_rotate_revoke(api: AdminApi, runtime: Runtime) -> None:
    body = await register(api)
    client_id = str(body["client"]["client_id"])
    first_id = str(body["key"]["id"])
    status, added = await api.call("addApiKey", client_id=client_id, json={"expires_in": "365d"})
    assert status == 201 and added["api_key"].startswith("ak_")
    status, rotated = await api.call("rotateApiKey", client_id=client_id, key=first_id, json={"grace": "0s"})
    assert status == 201 and rotated["previous"]["id"] == first_id
    assert rotated["key"]["rotated_from"] == first_id
    status, revoked = await api.call(
        "revokeApiKey", client_id=client_id, key=added["key"]["id"], json={"reason": "device lost"}
    )
    assert status == 200 and revoked["state"] == "revoked"
    states = {k["id"]: k["state"] for k in (await api.call("getClient", client_id=client_id))[1]["keys"]}
    assert states[added["key"]["id"]] == "revoked"
    assert states[rotated["key"]["id"]] == "active"


async def test_update_replaces_allowlists(api: AdminApi, runtime: Runtime) -> None:
    client_id = str((await register(api))["client"]["client_id"])
    status, updated = await api.call(
        "updateClient",
        client_id=client_id,
        json={"allowed_ips": ["198.51.100.7", "2001:db8::/32"], "allowed_origins": []},
    )
    assert status == 200
    assert updated["allowed_ips"] == ["198.51.100.7/32", "2001:db8::/32"]
    assert updated["allowed_origins"] == [] and updated["scopes"] == ["orders:read"]
    stored = await runtime.store.get_client(client_id)
    assert stored is not None and [str(n) for n in stored.allowed_ips] == ["198.51.100.7/32", "2001:db8::/32"]
    status, problem = await api.call("updateClient", client_id=client_id, json={})
    assert status == 400 and problem["detail"] == "nothing to change"


BAD_REGISTER = [
    ({"allowed_ips": ["10.0.0.300/8"]}, "allowed_ips: not a CIDR"),
    ({"allowed_ips": "10.0.0.0/8"}, "allowed_ips: expected an array of strings, got string"),
    ({"allowed_origins": ["https://shop.example.com/path"]}, "allowed_origins: an origin has no path"),
    ({"allowed_origins": ["ftp://x"]}, "allowed_origins: not an origin"),
    ({"scopes": ["a b"]}, "scopes: not a scope"),
    ({"tenant": 3}, "tenant: expected a string, got number"),
    ({"key_expires": "2000-01-01"}, "expiry is in the past"),
]


@pytest.mark.parametrize(("extra", "detail"), BAD_REGISTER, ids=[str(i) for i in range(len(BAD_REGISTER))])
async def test_bad_register_input(api: AdminApi, runtime: Runtime, extra: dict[str, object], detail: str) -> None:
    status, problem = await api.call("registerClient", json={**REGISTER, **extra})
    assert status == 400, problem
    assert detail in problem["detail"]
    assert await runtime.store.list_clients() == []


async def test_duplicate_name_and_unknown_ids(api: AdminApi) -> None:
    client_id = str((await register(api))["client"]["client_id"])
    status, problem = await api.call("registerClient", json=REGISTER)
    assert status == 409 and "a client named 'web-shop' already exists" in problem["detail"]
    status, problem = await api.call("getClient", client_id="cl_nope")
    assert status == 404
    status, problem = await api.call("revokeApiKey", client_id=client_id, key="0" * 16, json={"reason": "x"})
    assert status == 404 and problem["code"] == "admin.not_found"
    status, problem = await api.call("addApiKey", client_id="cl_nope", json={})
    assert status == 404
