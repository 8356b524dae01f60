"""A store that refuses writes mid-operation (a real Redis out of memory): an error, never a half-written credential."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.commands.conftest import Gateway, one_line, write_config
from tests.redis_servers import RedisProcess, start_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_redis(tmp_path / "redis")  # a private server: its memory limit is ours to change
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def full_redis(redis_server: RedisProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Gateway]:
    config, url = write_config(tmp_path, store=f"redis://127.0.0.1:{redis_server.port}/0")
    client = redis.Redis(port=redis_server.port)
    try:
        # Reads (the connection check included) still work; every write is refused with OOM.
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)
        yield Gateway(config, url, capsys)
    finally:
        client.config_set("maxmemory", 0)
        client.close()


def test_token_create_fails_whole_and_prints_no_token(full_redis: Gateway, redis_server: RedisProcess) -> None:
    result = full_redis("tokens", "create", "--name", "ci", "--owner", "builds")
    assert result.code == 1
    line = one_line(result)
    assert "OutOfMemoryError" in line and "nothing was changed" in line
    assert result.out == ""  # no token handed out for a credential that does not exist
    redis.Redis(port=redis_server.port).config_set("maxmemory", 0)
    assert json.loads(full_redis("tokens", "list", "--all", "--json").out) == {"tokens": []}


def test_key_bootstrap_writes_no_file_when_the_store_fails(full_redis: Gateway, tmp_path: Path) -> None:
    env_file = tmp_path / "svc.env"
    result = full_redis("keys", "generate", "--service", "billing", "--env-file", str(env_file), "--register")
    assert result.code == 1
    assert "OutOfMemoryError" in one_line(result)
    assert not env_file.exists()
    assert not (tmp_path / "service-keys" / "billing.key").exists()
    assert list(tmp_path.rglob("*.tmp")) == []


def test_client_registration_fails_whole(full_redis: Gateway, redis_server: RedisProcess) -> None:
    result = full_redis("clients", "register", "--name", "app", "--tenant", "acme")
    assert result.code == 1 and result.out == ""
    redis.Redis(port=redis_server.port).config_set("maxmemory", 0)
    assert json.loads(full_redis("clients", "list", "--json").out) == {"clients": []}
