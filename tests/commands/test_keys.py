"""``gateway keys ...``: the per-service bootstrap (env file 0600, key registered), add, rotate, retire."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.credentials import load_secret_box
from gateway.credentials.models import KeyState
from tests.commands.conftest import Gateway, one_line, write_config

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def env_values(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#")
    )


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    # Whatever the operator's umask, secret files must come out 0600 (and never be readable before).
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_generate_writes_0600_env_and_key_files_and_registers_the_key(
    gateway: Gateway, tmp_path: Path, permissive_umask: None
) -> None:
    service_dir = tmp_path / "billing"
    service_dir.mkdir()
    env_file = service_dir / ".env"
    env_file.write_text("AUTH_TIMESTAMP_WINDOW=300\nSERVICE_KEY=oldplaintextsecret\n")
    env_file.chmod(0o644)
    result = gateway("keys", "generate", "--service", "billing", "--env-file", str(env_file), "--register", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    key_file = service_dir / "service-keys" / "billing.key"
    assert report["key_file"] == str(key_file) and report["registered"] is True
    assert mode(env_file) == 0o600 and mode(key_file) == 0o600 and mode(key_file.parent) == 0o700
    secret = key_file.read_text()
    assert secret.endswith("\n") and HEX64.match(secret.strip())
    assert secret.strip() not in result.out + result.err  # written to the file, not printed
    values = env_values(env_file)
    assert values == {
        "AUTH_TIMESTAMP_WINDOW": "300",  # other lines kept
        "SERVICE_ID": "billing",
        "SERVICE_KEY_ID": report["key_id"],
        "SERVICE_KEY_FILE": str(key_file),
    }  # the plain SERVICE_KEY line is gone: the key file replaces it
    leftovers = [p.name for p in service_dir.rglob("*.tmp")]
    assert leftovers == []

    key = gateway.inspect(lambda store: store.get_service_key("billing", report["key_id"]))
    assert key is not None and key.state is KeyState.ACTIVE
    box = load_secret_box(kek_file=tmp_path / "kek")
    assert key.secret(box) == secret.strip()  # the store holds it encrypted under the KEK


def test_generate_alone_prints_a_256_bit_secret_and_stores_nothing(gateway: Gateway) -> None:
    result = gateway("keys", "generate", "--service", "billing")
    assert result.code == 0
    assert HEX64.match(result.out.strip())
    assert "not registered" in result.err
    assert gateway.inspect(lambda store: store.list_service_keys()) == []


def test_generate_refuses_to_overwrite_a_key_file(gateway: Gateway, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    assert gateway("keys", "generate", "--service", "billing", "--env-file", str(env_file)).code == 0
    key_file = tmp_path / "service-keys" / "billing.key"
    before = key_file.read_text()
    result = gateway("keys", "generate", "--service", "billing", "--env-file", str(env_file), "--register")
    assert result.code == 2
    assert "exists (a key may be in use)" in one_line(result)
    assert key_file.read_text() == before
    assert gateway.inspect(lambda store: store.list_service_keys()) == []
    forced = gateway("keys", "generate", "--service", "billing", "--env-file", str(env_file), "--force")
    assert forced.code == 0 and key_file.read_text() != before


def test_register_without_a_kek_fails_and_writes_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, url = write_config(tmp_path, kek=False)
    gateway = Gateway(config, url, capsys)
    env_file = tmp_path / ".env"
    result = gateway("keys", "generate", "--service", "billing", "--env-file", str(env_file), "--register")
    assert result.code == 2
    assert "credentials.kek_file" in one_line(result)
    assert not env_file.exists()
    assert not (tmp_path / "service-keys" / "billing.key").exists()
    assert list(tmp_path.rglob("*.tmp")) == []


def test_add_list_rotate_retire(gateway: Gateway, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("ab" * 32 + "\n")
    added = gateway("keys", "add", "--service", "billing", "--key-id", "k1", "--secret-file", str(secret_file))
    assert added.code == 0, added.err
    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(public)
    ed = gateway(
        "keys", "add", "--service", "reports", "--key-id", "e1", "--public-key-file", str(tmp_path / "pub.pem")
    )
    assert ed.code == 0, ed.err

    listed = gateway("keys", "list", "--json")
    keys = json.loads(listed.out)["keys"]
    assert [(k["service"], k["key_id"], k["algorithm"]) for k in keys] == [
        ("billing", "k1", "hmac-sha256"),
        ("reports", "e1", "ed25519"),
    ]
    assert "ab" * 32 not in listed.out

    env_file = tmp_path / ".env"
    env_file.write_text("OTHER=1\n")
    rotated = gateway("keys", "rotate", "--service", "billing", "--grace", "1h", "--env-file", str(env_file), "--json")
    assert rotated.code == 0, rotated.err
    report = json.loads(rotated.out)
    assert env_values(env_file)["SERVICE_KEY_ID"] == report["key_id"] != "k1"
    assert env_values(env_file)["OTHER"] == "1"
    old = gateway.inspect(lambda store: store.get_service_key("billing", "k1"))
    assert old is not None and old.expires is not None
    assert old.expires - datetime.now(UTC) <= timedelta(hours=1)
    assert "stays valid until" in rotated.err

    retired = gateway("keys", "retire", "--service", "billing", "--key-id", "k1", "--json")
    assert json.loads(retired.out)["keys"][0]["state"] == "retired"


def test_a_keys_tenant_and_scopes_are_registered_and_kept_by_rotation(gateway: Gateway) -> None:
    generated = gateway(
        "keys", "generate", "--service", "billing", "--register", "--tenant", "acme", "--scope", "orders:write"
    )
    assert generated.code == 0, generated.err
    rotated = gateway("keys", "rotate", "--service", "billing", "--json")
    assert rotated.code == 0, rotated.err
    assert json.loads(rotated.out)["key"]["scopes"] == ["orders:write"]  # the old key's
    rotated = gateway("keys", "rotate", "--service", "billing", "--scope", "a:read", "--json")
    assert json.loads(rotated.out)["key"]["scopes"] == ["a:read"]
    keys = gateway.inspect(lambda store: store.list_service_keys("billing"))
    assert [(key.tenant, sorted(key.scopes)) for key in keys] == [
        ("acme", ["orders:write"]),
        ("acme", ["orders:write"]),
        ("acme", ["a:read"]),
    ]
    listed = gateway("keys", "list")
    assert "orders:write" in listed.out and "acme" in listed.out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["keys", "generate", "--service", "bad service"], 2, "--service: a service id is"),
        (["keys", "generate", "--service", "b", "--scope", "a:read"], 2, "--tenant and --scope are stored"),
        (["keys", "generate", "--service", "b", "--register", "--tenant", "a b"], 2, "--tenant: "),
        (["keys", "generate", "--service", "b", "--lifetime", "forever"], 2, "--lifetime: not a duration"),
        (["keys", "generate", "--service", "b", "--key-file", "/tmp/x"], 2, "--key-file needs --env-file"),
        (["keys", "rotate", "--service", "nobody"], 1, "has no usable key to rotate"),
        (["keys", "retire", "--service", "billing", "--key-id", "nope"], 1, "has no key 'nope'"),
        (["keys", "rotate", "--service", "billing", "--grace", "100d"], 2, "--grace: a grace period is at most 90d"),
    ],
    ids=[
        "bad-service",
        "scope-unregistered",
        "bad-tenant",
        "bad-lifetime",
        "key-file-alone",
        "rotate-unknown",
        "retire-unknown",
        "long-grace",
    ],
)
def test_bad_input(gateway: Gateway, args: list[str], code: int, message: str) -> None:
    result = gateway(*args)
    assert result.code == code, result.err
    assert message in one_line(result)
    assert result.out == ""


def test_add_refuses_a_short_secret_without_echoing_it(gateway: Gateway, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("deadbeef\n")
    result = gateway("keys", "add", "--service", "billing", "--secret-file", str(secret_file))
    assert result.code == 2
    assert "at least 64 hex characters" in one_line(result)
    assert "deadbeef" not in result.err
