"""Credential records built from operator input: validation names the field, secrets never show."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.credentials import ApiClient, ApiKey, ServiceToken, TokenFormat, hash_token, parse_token
from gateway.credentials.validation import parse_origin, parse_reason

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_issued_token_is_shown_once_and_stored_by_hash() -> None:
    text, record = ServiceToken.issue(
        name="ci-deploy",
        owner="ci",
        scopes=["deploy:write", "orders:*"],
        allowed_ips=["10.0.0.0/8", "192.0.2.7"],
        expires=NOW + timedelta(days=30),
        now=NOW,
    )
    assert record.token_hash == parse_token(text).hash
    assert text not in repr(record)
    assert record.scopes == frozenset({"deploy:write", "orders:*"})
    assert record.allowed_ips == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.7/32"))
    assert record.live and record.usable_at(NOW) and not record.usable_at(NOW + timedelta(days=30))


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"name": ""}, "name"),
        ({"name": "has space"}, "name"),
        ({"owner": "-x"}, "owner"),
        ({"scopes": ["read orders"]}, "not a scope"),
        ({"scopes": "orders:read"}, "expected a list"),
        ({"allowed_ips": ["10.0.0.1/8"]}, "not a CIDR"),
        ({"allowed_ips": ["somewhere"]}, "not a CIDR"),
        ({"expires": NOW - timedelta(seconds=1)}, "in the past"),
        ({"expires": datetime(2031, 1, 1)}, "timezone"),
    ],
    ids=[
        "empty-name",
        "name-space",
        "owner",
        "scope-syntax",
        "scopes-string",
        "cidr-host-bits",
        "cidr",
        "past",
        "naive",
    ],
)
def test_token_input_is_validated(kwargs: dict[str, Any], reason: str) -> None:
    values: dict[str, Any] = {"name": "ci", "owner": "ci", "now": NOW} | kwargs
    with pytest.raises(ValueError, match=reason):
        ServiceToken.issue(**values)


def test_legacy_import_by_hash() -> None:
    legacy = "sk_" + "ab" * 32
    record = ServiceToken.import_legacy(hash_token(legacy).upper(), name="old", owner="ci", now=NOW)
    assert record.token_hash == hash_token(legacy) and record.format is TokenFormat.LEGACY_HEX
    with pytest.raises(ValueError, match="SHA-256"):
        ServiceToken.import_legacy(legacy, name="old", owner="ci")


def test_api_client_and_keys() -> None:
    app = ApiClient.register(
        name="web-app",
        tenant="acme",
        allowed_ips=["2001:db8::/32"],
        allowed_origins=["https://App.Example.com:443/", "http://localhost:3000"],
        scopes=["orders:read"],
        now=NOW,
    )
    assert app.client_id.startswith("cl_") and len(app.client_id) == 19
    assert app.allowed_origins == ("https://app.example.com", "http://localhost:3000")
    text, key = ApiKey.issue(app.client_id, now=NOW)
    assert text.startswith("ak_") and key.key_hash == parse_token(text).hash and text not in repr(key)
    assert key.usable_at(NOW)


@pytest.mark.parametrize(
    "origin",
    ["app.example.com", "ftp://example.com", "https://example.com/path", "https://u:p@example.com", "https://"],
)
def test_bad_origins(origin: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        parse_origin(origin)


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501, "line\nbreak"])
def test_bad_reasons(reason: str) -> None:
    with pytest.raises(ValueError, match="reason"):
        parse_reason(reason)
