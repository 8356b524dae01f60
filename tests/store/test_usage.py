"""UsageRecorder: counts in memory, writes in batches, loses nothing when a write fails."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta

import pytest

from gateway.store import Store, StoreUnavailable, Usage
from gateway.store.memory import MemoryStore
from gateway.store.usage import UsageRecorder
from tests.store.records import NOW, api_key, client, token


class FlakyStore(MemoryStore):
    """The memory backend whose usage writes fail while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.writes = 0

    async def record_usage(self, usage: Mapping[str, Usage]) -> None:
        self.writes += 1
        if self.down:
            raise StoreUnavailable("store down")
        await super().record_usage(usage)


async def test_usage_reaches_the_store_in_one_write_per_flush(store: Store) -> None:
    record = token()
    app = client()
    key = api_key(app.client_id)
    await store.create_token(record)
    await store.register_client(app, [key])
    recorder = UsageRecorder(store)

    for second in range(5):
        recorder.token_used(record.token_hash, NOW + timedelta(seconds=second))
    recorder.api_key_used(key.key_hash, NOW)
    assert recorder.pending == 2
    await recorder.flush()

    found = await store.get_token(record.token_hash)
    assert found is not None and found.usage_count == 5 and found.last_used == NOW + timedelta(seconds=4)
    credential = await store.get_api_key(key.key_hash)
    assert credential is not None and credential.key.usage_count == 1
    assert recorder.pending == 0


async def test_a_failed_write_keeps_the_counts_for_the_next_flush() -> None:
    store = FlakyStore()
    record = token()
    await store.create_token(record)
    recorder = UsageRecorder(store)
    recorder.token_used(record.token_hash, NOW)
    store.down = True

    with pytest.raises(StoreUnavailable):
        await recorder.flush()
    recorder.token_used(record.token_hash, NOW + timedelta(seconds=1))
    store.down = False
    await recorder.flush()

    found = await store.get_token(record.token_hash)
    assert found is not None and found.usage_count == 2 and found.last_used == NOW + timedelta(seconds=1)


async def test_periodic_flush_and_final_flush_on_close() -> None:
    store = FlakyStore()
    record = token()
    await store.create_token(record)
    recorder = UsageRecorder(store, interval=0.02)
    await recorder.start()
    recorder.token_used(record.token_hash, NOW)
    await asyncio.sleep(0.1)
    found = await store.get_token(record.token_hash)
    assert found is not None and found.usage_count == 1

    recorder.token_used(record.token_hash, NOW)
    await recorder.close()
    found = await store.get_token(record.token_hash)
    assert found is not None and found.usage_count == 2


async def test_the_buffer_is_bounded_by_distinct_credentials() -> None:
    recorder = UsageRecorder(MemoryStore(), max_pending=2)
    for ident in ("a", "b", "c", "a"):
        recorder.token_used(ident, NOW)
    assert recorder.pending == 2 and recorder.dropped == 1


async def test_float_timestamps_count_with_datetimes_and_flush_as_the_same_datetime(store: Store) -> None:
    record = token()
    await store.create_token(record)
    recorder = UsageRecorder(store)
    recorder.count_token(record.token_hash, (NOW + timedelta(seconds=2)).timestamp())
    recorder.token_used(record.token_hash, NOW + timedelta(seconds=1))  # older: last_used stays
    recorder.count_token(record.token_hash, NOW.timestamp())
    await recorder.flush()

    found = await store.get_token(record.token_hash)
    assert found is not None and found.usage_count == 3
    assert found.last_used == NOW + timedelta(seconds=2)  # microseconds survive the float


async def test_count_api_key_is_bounded_like_api_key_used() -> None:
    recorder = UsageRecorder(MemoryStore(), max_pending=1)
    recorder.count_api_key("a", NOW.timestamp())
    recorder.count_api_key("b", NOW.timestamp())
    recorder.count_api_key("a", NOW.timestamp())
    assert recorder.pending == 1 and recorder.dropped == 1
