"""Configuration of the auth pipeline: per-route policies, the authn section, context signing."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.settings import ConfigError, parse_settings

UPSTREAM = "http://127.0.0.1:9000"
STATIC_SECRET = "s" * 40


def route(**policy: Any) -> dict[str, Any]:
    return {"name": "r", "prefix": "/r", "upstream": UPSTREAM, **policy}


def problems(raw: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, environ or {})
    return caught.value.problems


@pytest.fixture
def pem_file(tmp_path: Path) -> str:
    key = generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "idp.pem"
    path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return str(path)


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "secret"
    path.write_text("# rotation: new first\n" + STATIC_SECRET + "\n")
    return str(path)


def test_a_route_without_policy_keys_has_no_policy() -> None:
    settings = parse_settings({"routes": [route()]}, {})
    assert settings.routes[0].policy is None


def test_a_full_policy_is_typed(pem_file: str) -> None:
    settings = parse_settings(
        {
            "authn": {
                "hmac_legacy": {"window": "2m", "replay_protection": True},
                "rfc9421": {"max_body": "64KiB", "require_nonce": True, "required_components": ["@method"]},
                "api_key": {"header": "X-Key"},
                "jwt": {
                    "providers": [
                        {
                            "name": "idp",
                            "issuer": "https://idp.example.com/",
                            "audiences": ["gateway"],
                            "algorithms": ["RS256"],
                            "key_file": pem_file,
                            "tenant_claim": "org",
                        }
                    ]
                },
            },
            "routes": [
                route(
                    auth=["jwt", "api_key"],
                    mode="LOG_ONLY",
                    anonymous=True,
                    required_scopes={"GET": ["r:read"], "*": ["r:write"]},
                    ip_allow=["10.0.0.0/8", "2001:db8::/32"],
                    origins=["https://app.example.com", "https://*.example.com"],
                    cors={"max_age": "1h", "credentials": True},
                    forward_credential=True,
                    jwt_providers=["idp"],
                )
            ],
        },
        {},
    )
    policy = settings.routes[0].policy
    assert policy is not None
    assert policy.auth == ("jwt", "api_key")
    assert policy.mode == "log_only"
    assert policy.anonymous and policy.forward_credential
    assert policy.required_scopes.for_method("GET") == {"r:read"}
    assert policy.required_scopes.for_method("DELETE") == {"r:write"}
    assert policy.ip_allow[1] == ipaddress.ip_network("2001:db8::/32")
    assert policy.origins == ("https://app.example.com", "https://*.example.com")
    assert policy.cors is not None and policy.cors.max_age == 3600 and policy.cors.credentials
    assert settings.authn.hmac_legacy.window == 120.0 and settings.authn.hmac_legacy.replay_protection
    assert settings.authn.rfc9421.max_body == 64 * 1024 and settings.authn.rfc9421.require_nonce
    assert settings.authn.api_key.header == "X-Key"
    assert settings.authn.jwt.providers[0].key_files[0][0] is None
    assert "scopes=GET=r:read *=r:write" in policy.describe()


def test_static_tokens_are_read_once_and_kept_as_digests(secret_file: str) -> None:
    settings = parse_settings(
        {"authn": {"service_token": {"static": {"billing": {"files": [secret_file], "scopes": ["x:read"]}}}}}, {}
    )
    tokens = settings.authn.service_token.static_tokens
    assert tokens is not None and tokens.match(STATIC_SECRET) is not None
    assert STATIC_SECRET not in repr(settings)


def test_context_signing_key_is_read_and_never_printed(tmp_path: Path) -> None:
    key = tmp_path / "ctx"
    key.write_text("k" * 40 + "\n")
    settings = parse_settings({"context_signing": {"key_file": str(key), "key_id": "gw-2025"}}, {})
    assert settings.context_signing.key == b"k" * 40 and settings.context_signing.key_id == "gw-2025"
    assert "kkkk" not in repr(settings)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({"routes": [route(auth=["kerberos"])]}, "routes[0].auth[0]: unknown authenticator", id="unknown"),
        pytest.param(
            {"routes": [route(auth=["jwt"])]},
            "routes[0].auth[0]: 'jwt' is not configured: add authn.jwt.providers",
            id="unconfigured-jwt",
        ),
        pytest.param(
            {"routes": [route(auth=["hmac_legacy"])]},
            "routes[0].auth[0]: 'hmac_legacy' needs the key-encryption key",
            id="legacy-without-kek",
        ),
        pytest.param({"routes": [route(auth="jwt")]}, "routes[0].auth: expected a list, got str", id="auth-not-list"),
        pytest.param(
            {"routes": [route(auth=["api_key", "api_key"])]},
            "routes[0].auth: an authenticator is listed twice",
            id="dup",
        ),
        pytest.param({"routes": [route(auth=["api_key"], mode="audit")]}, "routes[0].mode: expected one of", id="mode"),
        pytest.param(
            {"routes": [route(auth=["api_key"], audit="some")]},
            "routes[0].audit: expected one of all, denials",
            id="audit",
        ),
        pytest.param(
            {"routes": [route(auth=["api_key"], anonymous="yes")]},
            "routes[0].anonymous: expected true or false, got 'yes'",
            id="anonymous-type",
        ),
        pytest.param(
            {"routes": [route(required_scopes=["a:read"])]},
            "routes[0].required_scopes: needs auth",
            id="scopes-without-auth",
        ),
        pytest.param(
            {"routes": [route(auth=["api_key"], required_scopes={"GET": "a:read"})]},
            "routes[0].required_scopes.GET: expected a list of scopes, got str",
            id="scopes-type",
        ),
        pytest.param(
            {"routes": [route(auth=["api_key"], required_scopes=["read orders"])]},
            "routes[0].required_scopes[0]: not a scope",
            id="bad-scope",
        ),
        pytest.param(
            {"routes": [route(ip_allow=["10.0.0.1/8"])]}, "routes[0].ip_allow[0]: not a CIDR", id="ip-host-bits"
        ),
        pytest.param(
            {"routes": [route(origins=["https://*.com"])]},
            "routes[0].origins[0]: a wildcard origin",
            id="wide-wildcard",
        ),
        pytest.param(
            {"routes": [route(origins=["https://app.example.com/path"])]},
            "routes[0].origins[0]: an origin has no path",
            id="origin-path",
        ),
        pytest.param(
            {"routes": [route(cors={"max_age": "1h"})]}, "routes[0].cors: needs origins", id="cors-without-origins"
        ),
        pytest.param(
            {"routes": [route(origins=["https://a.example"], cors={"colour": 1})]},
            "routes[0].cors.colour: unknown key",
            id="cors-unknown-key",
        ),
        pytest.param({"authn": {"ldap": {}}}, "authn.ldap: unknown key", id="unknown-authenticator-section"),
        pytest.param(
            {"authn": {"hmac_legacy": {"window": "0s"}}},
            "authn.hmac_legacy.window: must be more than zero",
            id="window",
        ),
        pytest.param(
            {"authn": {"rfc9421": {"required_components": ["@Method"]}}},
            "authn.rfc9421.required_components[0]: not a component identifier",
            id="component",
        ),
        pytest.param(
            {"authn": {"service_token": {"static": {"billing": {"files": ["/nonexistent/token"]}}}}},
            "authn.service_token.static.billing.files[0]: file not found: '/nonexistent/token'",
            id="static-missing-file",
        ),
        pytest.param(
            {"authn": {"jwt": {"providers": [{"issuer": "i", "algorithms": ["RS256"]}]}}},
            "authn.jwt.providers[0]: exactly one of jwks_url, key_file, key_files, secret_file is required",
            id="jwt-no-key-source",
        ),
        pytest.param(
            {"authn": {"jwt": {"providers": [{"issuer": "i", "algorithms": ["RS256"], "secret_file": "/nope"}]}}},
            "authn.jwt.providers[0].secret_file: file not found: '/nope'",
            id="jwt-missing-secret-file",
        ),
        pytest.param(
            {
                "authn": {
                    "jwt": {
                        "providers": [
                            {"issuer": "i", "audiences": ["a"], "algorithms": ["none"], "jwks_url": "https://i/jwks"}
                        ]
                    }
                }
            },
            "authn.jwt.providers[0].algorithms: JWT provider 'provider0': algorithms not allowed: ['none']",
            id="jwt-alg-none",
        ),
        pytest.param(
            {"context_signing": {"key_id": "gw1"}}, "context_signing.key_file: required when key_id", id="ctx-no-key"
        ),
    ],
)
def test_problems_name_the_key(raw: Any, expected: str) -> None:
    found = problems(raw)
    assert any(line.startswith(expected) for line in found), found


def test_hs256_with_a_public_key_is_refused(pem_file: str) -> None:
    found = problems(
        {
            "authn": {
                "jwt": {
                    "providers": [{"issuer": "i", "audiences": ["a"], "algorithms": ["HS256"], "key_file": pem_file}]
                }
            }
        }
    )
    assert found == [
        "authn.jwt.providers[0].algorithms: JWT provider 'provider0': ['HS256'] cannot be used with public keys"
    ]


def test_a_short_static_token_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_text("tooshort-secret\n")
    found = problems({"authn": {"service_token": {"static": {"billing": [str(path)]}}}})
    assert len(found) == 1 and "shorter than 32 characters" in found[0] and "tooshort" not in found[0]


def test_an_unknown_jwt_provider_name_is_refused(pem_file: str) -> None:
    provider = {"name": "idp", "issuer": "i", "audiences": ["a"], "algorithms": ["RS256"], "key_file": pem_file}
    found = problems(
        {"authn": {"jwt": {"providers": [provider]}}, "routes": [route(auth=["jwt"], jwt_providers=["other"])]}
    )
    assert found == ["routes[0].jwt_providers[0]: no JWT provider named 'other' in authn.jwt.providers"]


def test_check_config_prints_each_routes_policy(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "store: 'memory://'\n"
        "routes:\n"
        "  - {name: open, prefix: /open, upstream: 'http://u:1'}\n"
        "  - name: api\n"
        "    prefix: /api\n"
        "    upstream: 'http://u:1'\n"
        "    auth: [service_token, api_key]\n"
        "    mode: log_only\n"
        "    required_scopes: [api:read]\n"
        "    ip_allow: [10.0.0.0/8]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    policy_lines = [line.strip() for line in lines if "policy:" in line]
    assert policy_lines == ["policy: auth=service_token,api_key  mode=log_only  scopes=api:read  ip_allow=10.0.0.0/8"]
    api_line = next(index for index, line in enumerate(lines) if line.strip().startswith("api "))
    assert "policy:" in lines[api_line + 1]
