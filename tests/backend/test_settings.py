"""Configuration of the auth backend: authn.backend, authn.introspection, route stale_grace, JWT discovery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.backend.decisions import FieldMap
from gateway.settings import ConfigError, Settings, parse_settings

UPSTREAM = "http://127.0.0.1:9000"
IDP = "https://idp.example.com"


def settings(authn: dict[str, Any], **policy: Any) -> Settings:
    route = {"name": "r", "prefix": "/r", "upstream": UPSTREAM, "auth": ["introspection"], **policy}
    return parse_settings({"store": "memory://", "authn": authn, "routes": [route]}, {})


def problems(authn: dict[str, Any], **policy: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings(authn, **policy)
    return caught.value.problems


@pytest.fixture
def secret(tmp_path: Path) -> str:
    path = tmp_path / "introspection-secret"
    path.write_text("# client secret\ns3cret-value\n")
    return str(path)


def test_defaults_and_a_full_section(secret: str) -> None:
    loaded = settings(
        {
            "backend": {
                "timeout": "1s",
                "fail_max": 3,
                "reset_timeout": "10s",
                "max_concurrent": 8,
                "queue_timeout": "20ms",
                "max_response": "16KiB",
            },
            "introspection": {
                "url": f"{IDP}/introspect",
                "client_auth": "basic",
                "client_id": "gateway",
                "client_secret_file": secret,
                "audiences": ["api"],
                "fields": {"subject": ["sub", "email"], "tenant": "org.id", "token_id": None},
                "cache": {"size": 10, "max_ttl": "1m", "negative_ttl": "2s", "shared": False},
            },
        },
        stale_grace="5m",
    )
    backend, introspection = loaded.authn.backend, loaded.authn.introspection
    assert (backend.timeout, backend.fail_max, backend.reset_timeout) == (1.0, 3, 10.0)
    assert (backend.max_concurrent, backend.queue_timeout, backend.max_response) == (8, 0.02, 16384)
    assert introspection is not None
    assert introspection.client_secret == "s3cret-value" and "s3cret" not in repr(introspection)
    assert introspection.fields == FieldMap(subject=("sub", "email"), tenant="org.id", token_id=None)
    assert (introspection.cache.size, introspection.cache.max_ttl, introspection.cache.shared) == (10, 60.0, False)
    policy = loaded.routes[0].policy
    assert policy is not None and policy.stale_grace == 300.0
    assert "stale_grace=300s" in policy.describe()


def test_validate_endpoints_map_no_active_field_by_default() -> None:
    loaded = settings({"introspection": {"protocol": "validate", "url": f"{IDP}/validate"}})
    assert loaded.authn.introspection is not None
    assert loaded.authn.introspection.fields.active is None


@pytest.mark.parametrize(
    ("introspection", "expected"),
    [
        ({}, "authn.introspection: one of url or issuer (OIDC discovery) is required"),
        ({"url": f"{IDP}/i", "issuer": IDP}, "authn.introspection: give url or issuer"),
        ({"url": "ftp://x/i"}, "authn.introspection.url: not an http(s) URL"),
        ({"protocol": "validate", "issuer": IDP}, "authn.introspection.issuer: OIDC discovery finds an RFC 7662"),
        ({"url": f"{IDP}/i", "protocol": "soap"}, "authn.introspection.protocol: expected one of rfc7662, validate"),
        ({"url": f"{IDP}/i", "client_auth": "basic"}, "authn.introspection.client_id: required with client_auth"),
        ({"url": f"{IDP}/i", "client_auth": "bearer"}, "authn.introspection.client_secret_file: required"),
        (
            {"url": f"{IDP}/i", "client_auth": "bearer", "client_secret_file": "/nonexistent/secret"},
            "authn.introspection.client_secret_file: secret file not found",
        ),
        ({"url": f"{IDP}/i", "fields": {"tenant": "a b"}}, "authn.introspection.fields.tenant: a field is a JSON key"),
        ({"url": f"{IDP}/i", "fields": {"active": None}}, "authn.introspection.fields.active: RFC 7662 answers"),
        ({"url": f"{IDP}/i", "fields": {"color": "c"}}, "authn.introspection.fields.color: unknown key"),
        ({"url": f"{IDP}/i", "invalid_statuses": [401]}, "authn.introspection.invalid_statuses: only for protocol"),
        (
            {"url": f"{IDP}/i", "protocol": "validate", "invalid_statuses": [500]},
            "authn.introspection.invalid_statuses[0]: expected a 4xx status code",
        ),
        ({"url": f"{IDP}/i", "cache": {"max_ttl": "0s"}}, "authn.introspection.cache.max_ttl: must be more than zero"),
    ],
)
def test_introspection_problems_name_the_key(introspection: dict[str, Any], expected: str) -> None:
    found = problems({"introspection": introspection})
    assert any(line.startswith(expected) for line in found), found


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    found = problems({"introspection": {"url": f"{IDP}/i", "client_auth": "bearer", "client_secret_file": str(empty)}})
    assert any("client_secret_file" in line and "holds no secret" in line for line in found), found


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ({"fail_max": 0}, "authn.backend.fail_max: expected a positive integer"),
        ({"timeout": "0s"}, "authn.backend.timeout: must be more than zero"),
        ({"max_response": "lots"}, "authn.backend.max_response: not a size"),
        ({"retries": 3}, "authn.backend.retries: unknown key"),
    ],
)
def test_backend_problems_name_the_key(backend: dict[str, Any], expected: str) -> None:
    found = problems({"backend": backend, "introspection": {"url": f"{IDP}/i"}})
    assert any(line.startswith(expected) for line in found), found


def test_a_route_listing_introspection_needs_it_configured() -> None:
    found = problems({})
    assert "routes[0].auth[0]: 'introspection' is not configured: add authn.introspection" in found


def test_stale_grace_needs_introspection_and_a_sane_length() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(
            {
                "store": "memory://",
                "authn": {"introspection": {"url": f"{IDP}/i"}},
                "routes": [
                    {"name": "a", "prefix": "/a", "upstream": UPSTREAM, "auth": ["api_key"], "stale_grace": "1m"},
                    {"name": "b", "prefix": "/b", "upstream": UPSTREAM, "stale_grace": "1m"},
                    {"name": "c", "prefix": "/c", "upstream": UPSTREAM, "auth": ["introspection"], "stale_grace": "2d"},
                ],
            },
            {},
        )
    found = caught.value.problems
    assert any(line.startswith("routes[0].stale_grace: needs introspection in auth") for line in found), found
    assert any(line.startswith("routes[1].stale_grace: needs auth") for line in found), found
    assert any(line.startswith("routes[2].stale_grace: stale_grace is between 0 and 24h") for line in found), found


def test_a_jwt_provider_may_find_its_keys_by_discovery() -> None:
    provider = {"name": "idp", "issuer": IDP, "audiences": ["api"], "algorithms": ["RS256"], "discovery": True}
    loaded = parse_settings(
        {
            "store": "memory://",
            "authn": {"jwt": {"providers": [provider]}},
            "routes": [{"name": "r", "prefix": "/r", "upstream": UPSTREAM, "auth": ["jwt"]}],
        },
        {},
    )
    assert loaded.authn.jwt.providers[0].discovery is True
    with pytest.raises(ConfigError) as caught:
        parse_settings(
            {"store": "memory://", "authn": {"jwt": {"providers": [{**provider, "jwks_url": f"{IDP}/jwks"}]}}}, {}
        )
    assert any("exactly one of jwks_url" in line for line in caught.value.problems)
