"""Redis-specific behaviour against real servers: outages, sentinel, cluster key layout, the capped stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from gateway.credentials.audit import AuditResult
from gateway.store import (
    AuditQuery,
    Invalidation,
    InvalidationKind,
    Store,
    StoreConfigError,
    StoreUnavailable,
    open_store,
    store_from_url,
)
from gateway.store.codec import DECISION_COLUMNS, NO_ADMIN, decision_row
from tests.redis_servers import RedisProcess, delete_prefixed, start_redis, unique_prefix, with_prefix
from tests.store.records import NOW, RECENT, event, token


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A server this test may stop and restart (never the shared session server)."""
    server = start_redis(tmp_path)
    yield server
    server.stop()


async def wait_for(queue: asyncio.Queue[Invalidation], wanted: Invalidation, within: float) -> None:
    async with asyncio.timeout(within):
        while await queue.get() != wanted:
            pass


async def test_outage_mid_operation_is_store_unavailable_then_recovers(own_redis: RedisProcess) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/0?timeout=0.5"
    store = await open_store(url)
    try:
        changes: asyncio.Queue[Invalidation] = asyncio.Queue()
        subscription = await store.subscribe(changes.put_nowait)
        record = token()
        await store.create_token(record)

        own_redis.stop()
        with pytest.raises(StoreUnavailable) as caught:
            await store.get_token(record.token_hash)
        assert caught.value.status == 503 and caught.value.headers["Retry-After"] == "1"
        with pytest.raises(StoreUnavailable):
            await store.create_token(token("during-outage"))
        assert await store.check() is not None
        # Notifications may be lost while disconnected: subscribers are told to drop everything.
        await wait_for(changes, Invalidation(InvalidationKind.ALL), 2.0)

        restarted = start_redis(own_redis.workdir.parent, port=own_redis.port)
        try:
            assert await store.check() is None
            assert await store.get_token(record.token_hash) is None  # a fresh, empty server
            await wait_for(changes, Invalidation(InvalidationKind.ALL), 6.0)  # resubscribed
            other = await open_store(url)
            await other.publish_invalidation(InvalidationKind.TOKEN, "after-restart")
            await other.close()
            await wait_for(changes, Invalidation(InvalidationKind.TOKEN, "after-restart"), 1.0)
        finally:
            await subscription.close()
            restarted.stop()
    finally:
        await store.close()


@pytest.fixture
async def sentinel_store(redis_sentinel_url: str) -> AsyncIterator[tuple[Store, str]]:
    url = with_prefix(redis_sentinel_url, unique_prefix())
    store = await open_store(url)
    yield store, url
    await store.close()


async def test_sentinel_url_finds_the_primary_and_shares_changes(sentinel_store: tuple[Store, str]) -> None:
    store, url = sentinel_store
    record = token()
    await store.create_token(record)
    assert await store.get_token(record.token_hash) == record

    other = await open_store(url)
    try:
        changes: asyncio.Queue[Invalidation] = asyncio.Queue()
        subscription = await other.subscribe(changes.put_nowait)
        await store.revoke_token(record.token_hash, reason="test", at=NOW)
        await wait_for(changes, Invalidation(InvalidationKind.TOKEN, record.token_hash), 1.0)
        revoked = await other.get_token(record.token_hash)
        assert revoked is not None and revoked.revoked
        await subscription.close()
    finally:
        await other.close()


async def test_cluster_keeps_each_credential_family_in_one_slot(redis_cluster_url: str) -> None:
    prefix = unique_prefix()
    url = with_prefix(redis_cluster_url, prefix)
    store = await open_store(url)
    try:
        for index in range(5):
            await store.create_token(token(f"t{index}", owner=f"owner{index}"))
        await store.append_audit([event()])
        for index in range(5):
            await store.claim_nonce("hmac", f"nonce-{index}", 60)
    finally:
        await store.close()

    addresses = redis_cluster_url.split("://", 1)[1].split(",")
    slots: dict[str, set[int]] = {}
    for address in addresses:
        host, port = address.rsplit(":", 1)
        client = redis.Redis(host=host, port=int(port), decode_responses=True)
        try:
            for key in client.scan_iter(match=f"{prefix}:*"):
                family = key.split(":")[1]
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))  # type: ignore[no-untyped-call]
                slots.setdefault(family, set()).add(slot)
        finally:
            client.close()
    delete_prefixed(redis_cluster_url, prefix)

    assert len(slots["{tokens}"]) == 1  # names, indexes and records move together
    assert len(slots["{audit}"]) == 1
    assert len(slots["nonce"]) > 1  # nonces spread over the cluster


async def test_audit_stream_is_capped(redis_url: str) -> None:
    prefix = unique_prefix()
    store = await open_store(with_prefix(redis_url, prefix) + "&audit_maxlen=100")
    try:
        for _ in range(10):
            await store.append_audit([event() for _ in range(100)])
        client = redis.Redis.from_url(redis_url)
        try:
            length = client.xlen(f"{prefix}:{{audit}}:events")
        finally:
            client.close()
    finally:
        await store.close()
        delete_prefixed(redis_url, prefix)
    assert 100 <= length < 1000  # approximate trimming: whole stream nodes at a time


async def test_a_batch_of_decisions_is_one_stream_entry_and_earlier_entries_still_read(redis_url: str) -> None:
    prefix = unique_prefix()
    store = await open_store(with_prefix(redis_url, prefix))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    stream = f"{prefix}:{{audit}}:events"
    try:
        # A decision as an earlier version wrote it: one entry of its fields.
        earlier = event(0, credential_id="earlier")
        fields = {**NO_ADMIN, **dict(zip(DECISION_COLUMNS, map(str, decision_row(earlier)), strict=True))}
        client.xadd(stream, dict(fields.items()))
        batch = [event(i, credential_id=f"c{i}", principal=f"service:s{i % 3}") for i in range(1, 201)]
        await store.append_audit_rows([decision_row(e) for e in batch])
        admin = event(300, result=AuditResult.ADMIN, principal="", admin="alice", action="tokens.revoke")
        await store.append_audit([admin])

        assert client.xlen(stream) == 3  # the earlier decision, the batch, the admin action
        everything = await store.query_audit(AuditQuery(newest_first=False, limit=1000))
        assert everything == [earlier, *batch, admin]
        s1 = [e for e in batch if e.principal == "service:s1"]
        assert await store.query_audit(AuditQuery(principal="service:s1", limit=5)) == s1[::-1][:5]
        window = await store.query_audit(
            AuditQuery(since=RECENT + timedelta(minutes=10), until=RECENT + timedelta(minutes=20), newest_first=False)
        )
        assert [e.credential_id for e in window] == [f"c{i}" for i in range(10, 20)]
    finally:
        client.close()
        await store.close()
        delete_prefixed(redis_url, prefix)


async def test_retention_counts_the_decisions_of_the_batches_it_trims(redis_url: str) -> None:
    prefix = unique_prefix()
    store = await open_store(with_prefix(redis_url, prefix))
    try:
        await store.append_audit_rows([decision_row(event(i)) for i in range(7)])
        await store.append_audit([event(8)])
        await store.append_audit_rows([decision_row(event(i)) for i in range(10, 15)])
        assert await store.prune_audit(datetime.now(UTC) - timedelta(hours=1)) == 0  # written just now

        assert await store.prune_audit(datetime.now(UTC) + timedelta(seconds=1)) == 13
        assert await store.query_audit(AuditQuery()) == []
        assert await store.prune_audit(datetime.now(UTC) + timedelta(seconds=1)) == 0
    finally:
        await store.close()
        delete_prefixed(redis_url, prefix)


async def test_audit_maxlen_counts_decisions_in_batches(redis_url: str) -> None:
    prefix = unique_prefix()
    store = await open_store(with_prefix(redis_url, prefix) + "&audit_maxlen=1000")
    try:
        for n in range(250):  # 2,500 decisions in batches of 10: about 100 entries kept
            await store.append_audit_rows([decision_row(event(0, credential_id=f"b{n}-{i}")) for i in range(10)])
        kept = await store.query_audit(AuditQuery(limit=10_000))
    finally:
        await store.close()
        delete_prefixed(redis_url, prefix)
    assert 1000 <= len(kept) < 2500  # approximate trimming: whole stream nodes (100 entries) at a time
    assert kept[0].credential_id.startswith("b249-")  # the newest batch stays


async def test_more_operations_than_connections_wait_for_one_instead_of_failing(redis_url: str) -> None:
    # redis-py's pool refuses a connection over its cap at once (MaxConnectionsError): a burst of replay-protected
    # requests then got 503 store.unavailable. The store queues its operations for a free connection instead.
    prefix = unique_prefix()
    store = await open_store(with_prefix(redis_url, prefix) + "&max_connections=2")
    try:
        results = await asyncio.gather(*(store.claim_nonce("burst", f"n-{i}", 60) for i in range(50)))
        tokens = await asyncio.gather(*(store.get_token(f"{i:064x}") for i in range(20)))
    finally:
        await store.close()
        delete_prefixed(redis_url, prefix)
    assert results == [True] * 50
    assert tokens == [None] * 20


async def test_the_password_can_come_from_a_file(tmp_path: Path) -> None:
    server = start_redis(tmp_path, "--requirepass", "s3cret-from-a-file")
    try:
        secret = tmp_path / "redis-password"
        secret.write_text("s3cret-from-a-file\n")  # as a mounted secret often ends
        store = await open_store(f"redis://127.0.0.1:{server.port}/0?password_file={secret}&timeout=0.5")
        try:
            await store.cache_set("greeting", "hello", 10)
            assert await store.cache_get("greeting") == "hello"
        finally:
            await store.close()
        secret.write_text("wrong\n")
        with pytest.raises(StoreUnavailable) as refused:
            await open_store(f"redis://127.0.0.1:{server.port}/0?password_file={secret}&timeout=0.5")
        assert "wrong" not in str(refused.value)
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("url", "content", "message"),
    [
        ("redis://cache/0?password_file={file}", None, "cannot be read"),
        ("redis://cache/0?password_file={file}", "", "is empty"),
        ("redis://:s3cret@cache/0?password_file={file}", "s3cret", "give it once"),
        ("redis://cache/0?password=s3cret&password_file={file}", "s3cret", "give it once"),
    ],
    ids=["missing", "empty", "also-in-userinfo", "also-in-query"],
)
def test_a_bad_password_file_is_a_configuration_error(
    tmp_path: Path, url: str, content: str | None, message: str
) -> None:
    secret = tmp_path / "redis-password"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(StoreConfigError) as caught:
        store_from_url(url.format(file=secret))
    assert message in caught.value.detail and "password_file" in caught.value.detail
    assert "s3cret" not in caught.value.detail
