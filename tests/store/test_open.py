"""Opening a store: URL forms, clear errors naming the masked URL, lazy imports."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.store import (
    StoreConfigError,
    StoreUnavailable,
    mask_url,
    open_store,
    register_backend,
    store_from_url,
)
from gateway.store.memory import MemoryStore
from tests.redis_servers import free_port


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://gateway:s3cret@cache:6380/1", "rediss://gateway:***@cache:6380/1"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("redis://gateway@cache:6379", "redis://gateway@cache:6379"),
        (
            "redis+sentinel://:s3cret@s1:26379,s2:26379/primary?sentinel_password=other",
            "redis+sentinel://:***@s1:26379,s2:26379/primary?sentinel_password=***",
        ),
        ("redis://cache/0?password=s3cret&prefix=gw", "redis://cache/0?password=***&prefix=gw"),
        ("redis://:p@ss@word@cache:6379", "redis://:***@cache:6379"),
        ("sqlite:///var/gateway.db", "sqlite:///var/gateway.db"),
        ("not a url", "not a url"),
    ],
    ids=["password", "user-password", "none", "user-only", "sentinel", "query", "at-in-password", "sqlite", "garbage"],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mongodb://admin:s3cret@db/gw", "unknown store scheme 'mongodb' in 'mongodb://admin:***@db/gw'"),
        ("gateway.db", "not a store URL"),
        ("sqlite://host/gateway.db", "not an SQLite URL"),
        ("sqlite:///", "not an SQLite URL"),
        ("sqlite:///x.db?poll=often", "poll"),
        ("redis://:s3cret@cache/0?prefix={tag}", "prefix"),
        ("redis://cache/0?audit_maxlen=lots", "audit_maxlen"),
        ("redis://cache/0?max_connections=0", "max_connections must be positive"),
        ("redis+cluster://:s3cret@h1:7000?db=2", "unknown option"),
        ("redis+sentinel://:s3cret@h1:26379", "service_name"),
        ("redis+cluster://h1:port", "host[:port]"),
    ],
    ids=[
        "scheme",
        "no-scheme",
        "sqlite-host",
        "sqlite-empty",
        "poll",
        "prefix",
        "maxlen",
        "max-connections",
        "cluster-option",
        "sentinel-service",
        "cluster-port",
    ],
)
def test_bad_urls_are_configuration_errors_naming_the_masked_url(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError) as caught:
        store_from_url(url)
    assert message in caught.value.detail
    assert "s3cret" not in caught.value.detail


async def test_sqlite_file_and_parent_directories_are_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "gateway.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        assert await store.check() is None
    finally:
        await store.close()
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_sqlite_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///var/gateway.db")
    await store.close()
    assert (tmp_path / "var" / "gateway.db").is_file()


async def test_sqlite_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(f"sqlite:///{blocker}/gateway.db")
    assert f"sqlite:///{blocker}/gateway.db" in caught.value.detail
    assert caught.value.status == 503


async def test_a_store_reopened_keeps_its_data(tmp_path: Path) -> None:
    from tests.store.records import token

    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    record = token()
    first = await open_store(url)
    await first.create_token(record)
    await first.close()
    second = await open_store(url)
    try:
        assert await second.get_token(record.token_hash) == record
    finally:
        await second.close()


# service_keys as schema version 2 wrote it (before tenant and scopes).
_SERVICE_KEYS_V2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE service_keys (
    service_id TEXT NOT NULL, key_id TEXT NOT NULL, algorithm TEXT NOT NULL, created INTEGER NOT NULL,
    not_before INTEGER NOT NULL, expires INTEGER, state TEXT NOT NULL, encrypted_secret TEXT, public_key TEXT,
    PRIMARY KEY (service_id, key_id)
) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema_version', '2');
"""


async def test_an_older_sqlite_file_gains_the_new_columns_and_keeps_its_keys(tmp_path: Path) -> None:
    from gateway.credentials import ServiceKey, generate_service_secret
    from gateway.store.codec import to_row
    from tests.store.records import BOX

    path = tmp_path / "gateway.db"
    old = ServiceKey.new_hmac("billing", generate_service_secret(), BOX, key_id="k1")
    row = {name: value for name, value in to_row(old).items() if name not in ("tenant", "scopes")}
    with sqlite3.connect(path) as conn:
        conn.executescript(_SERVICE_KEYS_V2)
        insert = f"INSERT INTO service_keys ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"  # noqa: S608
        conn.execute(insert, list(row.values()))
    conn.close()

    store = await open_store(f"sqlite:///{path}")
    try:
        assert await store.get_service_key("billing", "k1") == old  # no tenant, no scopes
        granted = ServiceKey.new_hmac("billing", generate_service_secret(), BOX, key_id="k2", scopes=["a:read"])
        await store.add_service_key(granted)
        assert await store.get_service_key("billing", "k2") == granted
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("3",)
    conn.close()


def test_a_service_key_stored_before_tenant_and_scopes_reads_without_them() -> None:
    import json

    from gateway.credentials import ServiceKey, generate_service_secret
    from gateway.store.codec import from_json, to_row
    from tests.store.records import BOX

    key = ServiceKey.new_hmac("billing", generate_service_secret(), BOX, key_id="k1")
    row = {name: value for name, value in to_row(key).items() if name not in ("tenant", "scopes")}
    assert from_json(ServiceKey, json.dumps(row)) == key  # as Redis holds a key written before them
    del row["state"]
    with pytest.raises(ValueError, match="lacks 'state'"):  # any other missing field is still an error
        from_json(ServiceKey, json.dumps(row))


async def test_unreachable_redis_at_start_up_is_a_clear_error_without_the_password() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(f"redis://:s3cret@127.0.0.1:{port}/0?timeout=0.5")
    assert time.monotonic() - started < 3
    assert f"redis://:***@127.0.0.1:{port}/0" in caught.value.detail
    assert "s3cret" not in str(caught.value)


async def test_unreachable_redis_cluster_at_start_up_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(f"redis+cluster://:s3cret@127.0.0.1:{port}?timeout=0.5")
    assert "redis+cluster://:***@127.0.0.1" in caught.value.detail
    assert "s3cret" not in str(caught.value)


async def test_register_backend_serves_a_new_scheme() -> None:
    register_backend("scratch", lambda url: MemoryStore(url))
    store = await open_store("scratch://anything")
    assert store.url == "scratch://anything" and await store.check() is None
    await store.close()


def test_the_redis_client_is_imported_only_for_redis_urls(tmp_path: Path) -> None:
    program = (
        "import asyncio, sys\n"
        "from gateway.store import open_store\n"
        "async def main():\n"
        f"    for url in ('memory://', 'sqlite:///{tmp_path}/x.db'):\n"
        "        store = await open_store(url)\n"
        "        await store.close()\n"
        "asyncio.run(main())\n"
        "assert 'redis' not in sys.modules, 'redis imported'\n"
        "from gateway.store import store_from_url\n"
        "store_from_url('redis://127.0.0.1:1/0')\n"
        "assert 'redis' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
