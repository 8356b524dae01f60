"""Admin tokens file and the admin listener's start-up rules (settings validation)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.admin.tokens import admin_token_line, generate_admin_token, parse_admin_tokens
from gateway.settings import ConfigError, parse_settings

TOKEN = "gwa_" + "x" * 40


def test_hashed_and_plain_lines_authenticate_by_name() -> None:
    other = generate_admin_token()
    tokens = parse_admin_tokens(
        f"# comment\n\nops:sha256:{hashlib.sha256(TOKEN.encode()).hexdigest()}\ndash:{other} read-only\n"
    )
    ops = tokens.authenticate(TOKEN)
    dash = tokens.authenticate(other)
    assert ops is not None and ops.name == "ops" and not ops.read_only
    assert dash is not None and dash.name == "dash" and dash.read_only
    assert tokens.authenticate(TOKEN + "x") is None
    assert tokens.authenticate("") is None


def test_generated_line_round_trips() -> None:
    token = generate_admin_token()
    assert token.startswith("gwa_") and len(token) > 40
    line = admin_token_line("ci", token, read_only=True)
    assert token not in line
    found = parse_admin_tokens(line).authenticate(token)
    assert found is not None and found.name == "ci" and found.read_only


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no admin token"),
        ("ops\n", "line 1: expected NAME:sha256:HEX or NAME:TOKEN"),
        ("ops:sha256:abc\n", "line 1: sha256: must be followed by 64 hex characters"),
        ("ops:short\n", "line 1: a plain admin token is at least 32 characters"),
        (f"bad name:{TOKEN}\n", "line 1: unknown flag"),
        (f"-x:{TOKEN}\n", "line 1: an admin token name"),
        (f"a:{TOKEN}\na:{TOKEN}y\n", "line 2: duplicate admin token name 'a'"),
        (f"a:{TOKEN}\nb:{TOKEN}\n", "line 2: the same token is listed twice"),
        (f"a:{TOKEN} admin\n", "line 1: unknown flag"),
    ],
    ids=[
        "empty",
        "no-secret",
        "short-hash",
        "short-token",
        "space-in-name",
        "bad-name",
        "dup-name",
        "dup-token",
        "flag",
    ],
)
def test_malformed_files_name_the_line_never_the_token(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_admin_tokens(text)
    assert message in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_non_loopback_admin_listener_requires_tokens_file() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"admin_listen": "0.0.0.0:9901"}, environ={})
    [problem] = caught.value.problems
    assert problem.startswith("admin_listen: 0.0.0.0:9901 is not a loopback address")
    assert "admin.tokens_file" in problem


def test_non_loopback_admin_listener_with_tokens_is_accepted(tmp_path: Path) -> None:
    tokens_file = tmp_path / "admin-tokens"
    tokens_file.write_text(admin_token_line("ops", TOKEN) + "\n")
    settings = parse_settings({"admin_listen": "0.0.0.0:9901"}, environ={"GATEWAY_ADMIN_TOKENS_FILE": str(tokens_file)})
    assert settings.admin.tokens.authenticate(TOKEN) is not None
    assert TOKEN not in repr(settings)


def test_malformed_tokens_file_is_a_configuration_error(tmp_path: Path) -> None:
    tokens_file = tmp_path / "admin-tokens"
    tokens_file.write_text(f"ops {TOKEN}\n")
    with pytest.raises(ConfigError) as caught:
        parse_settings({"admin": {"tokens_file": str(tokens_file)}}, environ={})
    [problem] = caught.value.problems
    assert problem.startswith("admin.tokens_file: ")
    assert "line 1" in problem and TOKEN not in problem


def test_audit_and_credentials_sections(tmp_path: Path) -> None:
    from gateway.credentials import generate_kek

    kek_file = tmp_path / "kek"
    kek_file.write_text(generate_kek() + "\n")
    settings = parse_settings(
        {
            "audit": {"retention": "7d", "buffer": 100, "flush_interval": "250ms", "batch_size": 10},
            "credentials": {"kek_file": str(kek_file), "cache_ttl": "3s"},
        },
        environ={},
    )
    assert settings.audit.retention == 7 * 86400
    assert (settings.audit.buffer, settings.audit.flush_interval, settings.audit.batch_size) == (100, 0.25, 10)
    assert settings.credentials.kek_file == kek_file and settings.credentials.cache_ttl == 3.0


def test_bad_kek_and_audit_values_name_their_keys(tmp_path: Path) -> None:
    kek_file = tmp_path / "kek"
    kek_file.write_text("not-a-fernet-key\n")
    with pytest.raises(ConfigError) as caught:
        parse_settings(
            {"audit": {"buffer": 0, "flush_interval": "0s"}, "credentials": {"kek_file": str(kek_file)}},
            environ={"GATEWAY_KEK": "ignored when the file is set"},
        )
    problems = "\n".join(caught.value.problems)
    assert "audit.buffer: expected a positive integer" in problems
    assert "audit.flush_interval: must be more than zero" in problems
    assert "credentials.kek_file: " in problems and "not a Fernet key" in problems
    with pytest.raises(ConfigError) as caught:
        parse_settings({}, environ={"GATEWAY_KEK": "nope"})
    assert caught.value.problems[0].startswith("credentials: GATEWAY_KEK: ")
