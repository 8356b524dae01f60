"""Configuration: typed settings, environment overrides, and one clear line per problem."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import ConfigError, load_settings, parse_settings
from gateway.units import Address, parse_duration, parse_size

UPSTREAM = "http://127.0.0.1:9000"


def problems(raw: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, environ or {})
    return caught.value.problems


def test_defaults_are_usable() -> None:
    settings = parse_settings({}, {})
    assert settings.listen == Address("0.0.0.0", 8080)
    assert settings.admin_listen == Address("127.0.0.1", 9901)
    assert settings.routes == ()
    assert "X-Auth-*" in settings.identity_headers


def test_a_full_route_is_typed() -> None:
    settings = parse_settings(
        {
            "trusted_proxies": ["10.0.0.0/8", "2001:db8::/32"],
            "routes": [
                {
                    "name": "client-api",
                    "prefix": "/v1/client/",
                    "upstream": "http://127.0.0.1:9000/base/",
                    "strip_prefix": True,
                    "methods": ["get", "POST"],
                    "timeouts": {"connect": "500ms", "read": "1m"},
                    "max_body": "10MiB",
                }
            ],
        },
        {},
    )
    route = settings.routes[0]
    assert route.prefix == "/v1/client"
    assert route.upstream == "http://127.0.0.1:9000/base"
    assert route.methods == frozenset({"GET", "POST"})
    assert (route.timeouts.connect, route.timeouts.read) == (0.5, 60.0)
    assert route.max_body == 10 * 1024 * 1024
    assert settings.trusted_proxies[1] == ipaddress.ip_network("2001:db8::/32")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({"bogus": 1}, "bogus: unknown key", id="unknown-top-level-key"),
        pytest.param(
            {"routes": [{"name": "a", "prefix": "/a", "upstream": UPSTREAM, "retries": 3}]},
            "routes[0].retries: unknown key",
            id="unknown-route-key",
        ),
        pytest.param({"listen": 8080}, "listen: not a host:port address: 8080", id="wrong-type-listen"),
        pytest.param(
            {"routes": [{"name": "a", "prefix": "/a", "upstream": UPSTREAM, "strip_prefix": "yes"}]},
            "routes[0].strip_prefix: expected true or false, got 'yes'",
            id="wrong-type-bool",
        ),
        pytest.param({"routes": {"name": "a"}}, "routes: expected a list, got dict", id="wrong-type-routes"),
        pytest.param(
            {
                "routes": [
                    {"name": "a", "prefix": "/a", "upstream": UPSTREAM},
                    {"name": "b", "prefix": "/b", "upstream": "localhost:9000"},
                ]
            },
            "routes[1].upstream: not an http(s) URL: 'localhost:9000'",
            id="bad-url",
        ),
        pytest.param(
            {"routes": [{"name": "a", "prefix": "/a", "upstream": "ftp://files"}]},
            "routes[0].upstream: not an http(s) URL: 'ftp://files'",
            id="bad-url-scheme",
        ),
        pytest.param(
            {"trusted_proxies": ["10.0.0.0/33"]}, "trusted_proxies[0]: not a CIDR: '10.0.0.0/33'", id="bad-cidr"
        ),
        pytest.param(
            {"trusted_proxies": ["10.0.0.1/8"]}, "trusted_proxies[0]: not a CIDR: '10.0.0.1/8'", id="cidr-host-bits"
        ),
        pytest.param(
            {
                "routes": [
                    {"name": "a", "prefix": "/v1/user", "upstream": UPSTREAM},
                    {"name": "b", "prefix": "/v1/user/", "upstream": UPSTREAM, "methods": ["GET"]},
                ]
            },
            "routes[1]: duplicate prefix '/v1/user' overlaps routes[0]",
            id="overlapping-duplicate-prefix",
        ),
        pytest.param(
            {
                "routes": [
                    {"name": "a", "prefix": "/a", "upstream": UPSTREAM},
                    {"name": "a", "prefix": "/b", "upstream": UPSTREAM},
                ]
            },
            "routes[1]: duplicate route name 'a'",
            id="duplicate-name",
        ),
        pytest.param(
            {"admin": {"tokens_file": "/nonexistent/admin-tokens"}},
            "admin.tokens_file: secret file not found: '/nonexistent/admin-tokens'",
            id="missing-secret-file",
        ),
        pytest.param(
            {"admin": {"tokens_file": "/tmp/" + "a" * 5000}},  # os.stat fails with ENAMETOOLONG, found by fuzzing
            "admin.tokens_file: secret file not readable: '/tmp/aaaa",
            id="secret-file-name-too-long",
        ),
        pytest.param(
            {"authn": {"jwt": {"providers": [{"name": "p", "issuer": "i", "key_file": "/" + "k" * 5000}]}}},
            "authn.jwt.providers[0].key_file: file not readable",
            id="key-file-name-too-long",
        ),
        pytest.param(
            {"admin": {"tokens_file": "/tmp/x\x00"}}, "admin.tokens_file: secret file not found", id="nul-path"
        ),
        pytest.param({"header_timeout": "0s"}, "header_timeout: must be more than zero", id="zero-header-timeout"),
        pytest.param({"routes": [{"prefix": "/a"}]}, "routes[0].name: required", id="missing-name"),
        pytest.param(
            {"routes": [{"name": "a", "prefix": "v1", "upstream": UPSTREAM}]},
            "routes[0].prefix: a prefix starts with '/'",
            id="prefix-without-slash",
        ),
        pytest.param(
            {"routes": [{"name": "a", "prefix": "/a", "upstream": UPSTREAM, "timeouts": {"read": "soon"}}]},
            "routes[0].timeouts.read: not a duration",
            id="bad-duration",
        ),
        pytest.param(
            {"routes": [{"name": "a", "prefix": "/a", "upstream": UPSTREAM, "max_body": "lots"}]},
            "routes[0].max_body: not a size",
            id="bad-size",
        ),
        pytest.param({"store": "mongodb://x"}, "store: unknown store scheme 'mongodb'", id="unknown-store-scheme"),
        pytest.param(
            {"log": {"level": "loud"}}, "log.level: expected one of debug, info, warning, error", id="bad-choice"
        ),
    ],
)
def test_each_problem_names_its_key_path(raw: Any, expected: str) -> None:
    found = problems(raw)
    assert any(line.startswith(expected) for line in found), found


def test_a_huge_value_is_quoted_in_part() -> None:
    (found,) = problems({"listen": "x" * 5000})
    assert found.startswith("listen: not a host:port address: 'xxx") and found.endswith("...")
    assert len(found) < 320


def test_a_config_path_the_system_refuses_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings("/tmp/" + "c" * 5000, environ={})
    assert caught.value.problems[0].startswith("config: cannot read '/tmp/ccc")


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"listen": "nope", "trusted_proxies": ["x"], "routes": [{"name": "a", "prefix": "/a"}]})
    assert len(found) == 3, found


def test_overlapping_prefixes_with_disjoint_methods_are_allowed() -> None:
    settings = parse_settings(
        {
            "routes": [
                {"name": "r", "prefix": "/v1/user", "upstream": UPSTREAM, "methods": ["GET"]},
                {"name": "w", "prefix": "/v1/user", "upstream": UPSTREAM, "methods": ["POST"]},
            ]
        },
        {},
    )
    assert len(settings.routes) == 2


def test_environment_overrides_the_file() -> None:
    settings = parse_settings(
        {"listen": "0.0.0.0:8080", "log": {"format": "text"}},
        {
            "GATEWAY_LISTEN": "127.0.0.1:18080",
            "GATEWAY_ADMIN_LISTEN": "[::1]:19901",
            "GATEWAY_STORE": "redis://:secret@redis:6379/0",
            "GATEWAY_LOG_LEVEL": "debug",
            "GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.0.0/16",
        },
    )
    assert settings.listen == Address("127.0.0.1", 18080)
    assert settings.admin_listen == Address("::1", 19901)
    assert settings.store == "redis://:secret@redis:6379/0"
    assert settings.log.level == "debug"
    assert settings.log.format == "text"  # untouched keys of the same section survive
    assert len(settings.trusted_proxies) == 2


def test_a_bad_environment_value_names_the_key() -> None:
    assert problems({}, {"GATEWAY_LISTEN": "nope"}) == ["listen: not a host:port address: 'nope'"]


def test_load_settings_reads_the_file_named_by_gateway_config(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text("listen: 127.0.0.1:1234\nroutes:\n  - {name: a, prefix: /a, upstream: 'http://u:1'}\n")
    settings = load_settings(environ={"GATEWAY_CONFIG": str(config)})
    assert settings.listen.port == 1234
    assert settings.source == str(config)


def test_load_settings_errors_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text("routes: [\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(str(config), environ={})
    assert caught.value.problems[0].startswith("config: not valid YAML (line")
    with pytest.raises(ConfigError) as missing:
        load_settings(str(tmp_path / "absent.yaml"), environ={})
    assert missing.value.problems == [f"config: file not found: '{tmp_path / 'absent.yaml'}'"]


def test_the_shipped_config_is_valid() -> None:
    settings = load_settings("config/gateway.yaml", environ={})
    assert {route.prefix for route in settings.routes} == {"/v1/client", "/v1/sdk", "/v1/user"}


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("90d", 7776000.0), (3, 3.0)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("36501d", "too long (at most 36500d, 100 years)"),
        (10**400, "too long"),  # float() of it would overflow
        (float("inf"), "too long"),  # YAML .inf, JSON Infinity
        (float("nan"), "not a duration"),
        ("-1s", "not a duration"),
        (-5, "must not be negative"),
    ],
)
def test_durations_refused(value: object, detail: str) -> None:
    with pytest.raises(ValueError, match=re.escape(detail)):
        parse_duration(value)


def test_a_duration_of_100_years_is_accepted() -> None:
    assert parse_duration("36500d") == 36500 * 86400


@pytest.mark.parametrize(("text", "size"), [("10MiB", 10485760), ("1KB", 1000), ("64KiB", 65536), (512, 512)])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size
