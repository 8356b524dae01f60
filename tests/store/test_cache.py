"""CredentialCache: answers seen credentials from memory, drops them on change, fails closed."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.credentials import ServiceToken
from gateway.store import Invalidation, InvalidationKind, StoreUnavailable, open_store
from gateway.store.cache import CredentialCache
from gateway.store.memory import MemoryStore
from tests.fakes.clock import Clock
from tests.store.records import NOW, api_key, client, hmac_key, token


class CountingStore(MemoryStore):
    """The real memory backend, counting token lookups and optionally slowing them down."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.lookups = 0
        self.delay = delay

    async def get_token(self, token_hash: str) -> ServiceToken | None:
        self.lookups += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().get_token(token_hash)


@pytest.fixture
async def counting() -> CountingStore:
    return CountingStore()


@pytest.fixture
async def cache(counting: CountingStore, clock: Clock) -> AsyncIterator[CredentialCache]:
    cache = CredentialCache(counting, ttl=10, negative_ttl=2, max_entries=100, clock=clock)
    await cache.start()
    yield cache
    await cache.close()


async def test_a_seen_token_is_answered_without_the_store(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    record = token()
    await store.create_token(record)
    cache = CredentialCache(store)
    assert await cache.token(record.token_hash) == record

    await store.close()  # the store is gone: any round trip would raise StoreUnavailable

    assert await cache.token(record.token_hash) == record
    with pytest.raises(StoreUnavailable):
        await cache.token("0" * 64)  # an unseen credential fails closed
    assert cache.stats.hits == 1 and cache.stats.misses == 2


async def test_not_found_is_cached_briefly(cache: CredentialCache, counting: CountingStore, clock: Clock) -> None:
    for _ in range(5):
        assert await cache.token("0" * 64) is None
    assert counting.lookups == 1 and cache.stats.negative_hits == 4

    clock.now += 2.5
    assert await cache.token("0" * 64) is None
    assert counting.lookups == 2


async def test_creating_a_credential_drops_its_cached_absence(cache: CredentialCache, counting: CountingStore) -> None:
    record = token()
    assert await cache.token(record.token_hash) is None
    await counting.create_token(record)
    assert await cache.token(record.token_hash) == record


async def test_a_revocation_is_seen_at_once(cache: CredentialCache, counting: CountingStore) -> None:
    record = token()
    await counting.create_token(record)
    assert await cache.token(record.token_hash) == record

    await counting.revoke_token(record.token_hash, reason="leak", at=NOW)

    found = await cache.token(record.token_hash)
    assert found is not None and found.revoked and not found.usable_at(NOW)


async def test_entries_refresh_in_the_background_then_expire(
    cache: CredentialCache, counting: CountingStore, clock: Clock
) -> None:
    record = token()
    await counting.create_token(record)
    await cache.token(record.token_hash)
    assert counting.lookups == 1

    clock.now += 4  # young: memory only
    await cache.token(record.token_hash)
    assert counting.lookups == 1

    clock.now += 2  # past ttl/2: answered from memory, refreshed behind the caller's back
    counting.delay = 0.05
    started = time.monotonic()
    assert await cache.token(record.token_hash) == record
    assert time.monotonic() - started < 0.04
    await asyncio.sleep(0.1)
    assert counting.lookups == 2 and cache.stats.refreshes == 1

    clock.now += 11  # past ttl since the refresh: the caller waits for the store
    counting.delay = 0
    await cache.token(record.token_hash)
    assert counting.lookups == 3


async def test_size_is_bounded_least_recently_used_first(counting: CountingStore, clock: Clock) -> None:
    cache = CredentialCache(counting, max_entries=3, clock=clock)
    records = [token(f"t{i}") for i in range(4)]
    for record in records:
        await counting.create_token(record)
    for record in records[:3]:
        await cache.token(record.token_hash)
    await cache.token(records[0].token_hash)  # t0 is now the most recently used
    await cache.token(records[3].token_hash)  # evicts t1

    assert len(cache) == 3 and cache.stats.evictions == 1
    lookups = counting.lookups
    await cache.token(records[0].token_hash)
    assert counting.lookups == lookups
    await cache.token(records[1].token_hash)
    assert counting.lookups == lookups + 1


async def test_concurrent_misses_share_one_lookup(cache: CredentialCache, counting: CountingStore) -> None:
    record = token()
    await counting.create_token(record)
    counting.delay = 0.05
    results = await asyncio.gather(*(cache.token(record.token_hash) for _ in range(20)))
    assert results == [record] * 20 and counting.lookups == 1


async def test_a_caller_giving_up_does_not_cancel_the_shared_lookup(
    cache: CredentialCache, counting: CountingStore
) -> None:
    record = token()
    await counting.create_token(record)
    counting.delay = 0.05
    impatient = asyncio.create_task(cache.token(record.token_hash))
    patient = asyncio.create_task(cache.token(record.token_hash))
    await asyncio.sleep(0.01)
    impatient.cancel()

    assert await patient == record
    assert impatient.cancelled()
    assert await cache.token(record.token_hash) == record and counting.lookups == 1


async def test_a_lookup_racing_a_change_is_not_cached(cache: CredentialCache, counting: CountingStore) -> None:
    record = token()
    await counting.create_token(record)
    counting.delay = 0.05
    racing = asyncio.create_task(cache.token(record.token_hash))
    await asyncio.sleep(0.01)
    await counting.revoke_token(record.token_hash, reason="leak", at=NOW)
    await racing
    counting.delay = 0

    found = await cache.token(record.token_hash)
    assert found is not None and found.revoked and counting.lookups == 2


async def test_api_keys_and_service_keys_go_through_the_cache(cache: CredentialCache, counting: CountingStore) -> None:
    app, other = client("a"), client("b")
    key, other_key = api_key(app.client_id), api_key(other.client_id)
    await counting.register_client(app, [key])
    await counting.register_client(other, [other_key])
    signing = hmac_key("billing", "k1")
    await counting.add_service_key(signing)

    found = await cache.api_key(key.key_hash)
    assert found is not None and found.client == app
    assert await cache.api_key(other_key.key_hash) is not None
    assert await cache.service_key("billing", "k1") == signing
    assert await cache.service_key("billing", "nope") is None

    edited = dataclasses.replace(app, allowed_origins=("https://elsewhere.example",))
    await counting.update_client(edited)  # drops the client's keys, not the other client's
    found = await cache.api_key(key.key_hash)
    assert found is not None and found.client == edited
    assert (InvalidationKind.API_KEY, other_key.key_hash) in cache._entries


async def test_invalidate_all_empties_the_cache(cache: CredentialCache, counting: CountingStore) -> None:
    for index in range(3):
        record = token(f"t{index}")
        await counting.create_token(record)
        await cache.token(record.token_hash)
    cache.invalidate(Invalidation(InvalidationKind.ALL))
    assert len(cache) == 0


async def test_store_errors_are_not_cached(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    cache = CredentialCache(store)
    await store.close()
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            await cache.token("0" * 64)
    assert len(cache) == 0 and cache.stats.misses == 2


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        CredentialCache(MemoryStore(), ttl=0)


async def test_revocation_on_one_replica_is_refused_on_another_within_a_second(shared_store_url: str) -> None:
    replica_a = await open_store(shared_store_url)
    replica_b = await open_store(shared_store_url)
    cache_b = CredentialCache(replica_b, ttl=60)
    await cache_b.start()
    try:
        record = token()
        await replica_a.create_token(record)
        seen = await cache_b.token(record.token_hash)
        assert seen is not None and seen.usable_at(NOW)

        await replica_a.revoke_token(record.token_hash, reason="leaked", at=NOW)
        revoked_at = time.monotonic()
        while (seen := await cache_b.token(record.token_hash)) is not None and seen.usable_at(NOW):
            assert time.monotonic() - revoked_at < 1.0, "replica B still accepts the revoked token"
            await asyncio.sleep(0.01)
        assert seen is not None and seen.revoked_reason == "leaked"
    finally:
        await cache_b.close()
        await replica_a.close()
        await replica_b.close()


async def test_peek_answers_like_the_lookup_only_from_memory(
    cache: CredentialCache, counting: CountingStore, clock: Clock
) -> None:
    record = token()
    await counting.create_token(record)
    assert cache.peek_token(record.token_hash) is None  # never seen: the caller awaits the lookup
    assert cache.stats.hits == 0 and cache.stats.misses == 0 and counting.lookups == 0

    found = await cache.token(record.token_hash)
    assert cache.peek_token(record.token_hash) is found  # the very object the lookup answers
    assert cache.stats.hits == 1 and counting.lookups == 1

    assert cache.peek_token("0" * 64) is None
    assert await cache.token("0" * 64) is None  # cached absence: peek leaves it to the lookup
    hits = cache.stats.hits
    assert cache.peek_token("0" * 64) is None and cache.stats.hits == hits

    clock.now += 6  # past ttl/2: answered, and refreshed behind the caller's back, like the lookup
    assert cache.peek_token(record.token_hash) is found
    await asyncio.sleep(0.01)
    assert counting.lookups == 3 and cache.stats.refreshes == 1

    clock.now += 11  # past ttl: peek does not answer, the lookup goes to the store
    assert cache.peek_token(record.token_hash) is None
    assert await cache.token(record.token_hash) == record and counting.lookups == 4


async def test_peek_sees_a_revocation_at_once(cache: CredentialCache, counting: CountingStore) -> None:
    record = token()
    await counting.create_token(record)
    await cache.token(record.token_hash)
    await counting.revoke_token(record.token_hash, reason="leak", at=NOW)
    assert cache.peek_token(record.token_hash) is None  # dropped: the caller awaits the lookup
    assert (found := await cache.token(record.token_hash)) is not None and found.revoked
    assert cache.peek_token(record.token_hash) is found


async def test_peek_api_key_follows_its_client(cache: CredentialCache, counting: CountingStore) -> None:
    app = client()
    key = api_key(app.client_id)
    await counting.register_client(app, [key])
    assert cache.peek_api_key(key.key_hash) is None
    found = await cache.api_key(key.key_hash)
    assert found is not None and cache.peek_api_key(key.key_hash) is found
    cache.invalidate(Invalidation(InvalidationKind.API_CLIENT, app.client_id))
    assert cache.peek_api_key(key.key_hash) is None
