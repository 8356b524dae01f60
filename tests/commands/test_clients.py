"""``gateway clients ...``: register (client id + ak_ key), allowlist edits, keys add/rotate/revoke."""

from __future__ import annotations

import json

import pytest

from gateway.credentials import hash_token, parse_token
from gateway.credentials.tokens import TokenKind
from tests.commands.conftest import Gateway, one_line


def register(gateway: Gateway, name: str = "web-shop", *extra: str) -> dict[str, object]:
    result = gateway(
        "clients", "register", "--name", name, "--tenant", "acme",
        "--allow-ip", "203.0.113.0/24", "--allow-origin", "https://shop.example.com", "--scope", "orders:read",
        *extra, "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    body: dict[str, object] = json.loads(result.out)
    return body


def test_register_prints_client_id_and_api_key(gateway: Gateway) -> None:
    result = gateway("clients", "register", "--name", "app", "--tenant", "acme", "--allow-ip", "10.1.0.0/16")
    assert result.code == 0, result.err
    lines = dict(line.split() for line in result.out.strip().splitlines())
    assert lines["client_id"].startswith("cl_")
    assert parse_token(lines["api_key"], TokenKind.API_KEY).hash == hash_token(lines["api_key"])
    found = gateway.inspect(lambda store: store.get_api_key(hash_token(lines["api_key"])))
    assert found is not None and found.client.client_id == lines["client_id"]
    assert [str(n) for n in found.client.allowed_ips] == ["10.1.0.0/16"]


def test_show_update_and_keys(gateway: Gateway) -> None:
    body = register(gateway)
    client_id = str(body["client"]["client_id"])  # type: ignore[index]
    shown = gateway("clients", "show", client_id)
    assert "web-shop" in shown.out and str(body["api_key"]) not in shown.out

    updated = gateway(
        "clients", "update", client_id, "--allow-ip", "198.51.100.7", "--remove-ip", "203.0.113.0/24",
        "--remove-origin", "https://shop.example.com", "--scope", "orders:write", "--json",
    )  # fmt: skip
    assert updated.code == 0, updated.err
    [client] = json.loads(updated.out)["clients"]
    assert client["allowed_ips"] == ["198.51.100.7/32"]
    assert client["allowed_origins"] == []
    assert client["scopes"] == ["orders:read", "orders:write"]

    added = gateway("clients", "keys", "add", client_id, "--expires-in", "30d")
    assert added.code == 0 and added.out.startswith("ak_")
    first_key = str(body["key"]["id"])  # type: ignore[index]
    rotated = gateway("clients", "keys", "rotate", client_id, first_key, "--grace", "0s", "--json")
    assert rotated.code == 0, rotated.err
    assert json.loads(rotated.out)["previous"]["id"] == first_key
    revoked = gateway("clients", "keys", "revoke", client_id, first_key, "--reason", "rotated")
    assert revoked.code == 0 and f"revoked API key {first_key}" in revoked.out
    keys = json.loads(gateway("clients", "show", client_id, "--json").out)["keys"]
    assert sorted(k["state"] for k in keys) == ["active", "active", "revoked"]


BAD = [
    (["clients", "register", "--name", "x", "--tenant", "t", "--allow-ip", "10.0.0.0/33"], 2, "--allow-ip: not a CIDR"),
    (["clients", "register", "--name", "x", "--tenant", "t", "--allow-origin", "shop.example.com"], 2,
     "--allow-origin: not an origin"),
    (["clients", "register", "--name", "x", "--tenant", "t", "--scope", "*:*"], 2, "--scope: not a scope"),
    (["clients", "register", "--name", "web-shop", "--tenant", "t"], 1, "a client named 'web-shop' already exists"),
    (["clients", "register", "--name", "x", "--tenant", "t", "--key-expires", "2000-01-01"], 2,
     "expiry is in the past"),
    (["clients", "show", "cl_nope"], 1, "no client 'cl_nope'"),
    (["clients", "update", "CLIENT", "--remove-ip", "192.0.2.0/24"], 2, "--remove-ip: not in the list"),
    (["clients", "update", "CLIENT"], 2, "nothing to change"),
    (["clients", "keys", "revoke", "CLIENT", "0000000000000000", "--reason", "x"], 1, "has no key '0000000000000000'"),
    (["clients", "keys", "add", "cl_nope"], 1, "no client 'cl_nope'"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "code", "message"), BAD, ids=[f"{a[1]}-{i}" for i, (a, _, _) in enumerate(BAD)])
def test_bad_input(gateway: Gateway, args: list[str], code: int, message: str) -> None:
    client_id = str(register(gateway)["client"]["client_id"])  # type: ignore[index]
    before = gateway.inspect(lambda store: store.list_clients())
    result = gateway(*[client_id if arg == "CLIENT" else arg for arg in args])
    assert result.code == code, result.err
    assert message in one_line(result)
    assert gateway.inspect(lambda store: store.list_clients()) == before
