"""The store adapters remember which service keys are usable, but never past a key's start or end;
their synchronous ``peek`` answers what ``lookup`` would, and counts usage the same way."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway.credentials import ApiClient, ApiKey, ServiceKey, ServiceToken, generate_kek
from gateway.credentials.encryption import SecretBox
from gateway.credentials.models import KeyState
from gateway.pipeline.store_sources import StoreApiKeys, StoreServiceKeys, StoreTokens
from gateway.store import open_store
from gateway.store.cache import CredentialCache
from gateway.store.usage import UsageRecorder
from tests.fakes.clock import Clock

SECRET = "5f2c" * 16
BOX = SecretBox([generate_kek()])
SOON = 0.3  # seconds: a key starts or ends this long after the test begins


@pytest.fixture
async def cache() -> AsyncIterator[CredentialCache]:
    store = await open_store("memory://")
    credentials = CredentialCache(store, ttl=60)  # the record stays cached (the very same object) throughout
    await credentials.start()
    yield credentials
    await credentials.close()
    await store.close()


@pytest.fixture
async def clocked_cache(clock: Clock) -> AsyncIterator[CredentialCache]:
    """A cache (ttl 60 s) on ``clock``: refreshes and expiry happen when the test says."""
    store = await open_store("memory://")
    credentials = CredentialCache(store, ttl=60, clock=clock)
    await credentials.start()
    yield credentials
    await credentials.close()
    await store.close()


async def test_a_key_starts_to_verify_at_its_not_before(cache: CredentialCache) -> None:
    now = datetime.now(UTC)
    await cache.store.add_service_key(
        ServiceKey.new_hmac("billing", SECRET, BOX, key_id="k-next", now=now, not_before=now + timedelta(seconds=SOON))
    )
    keys = StoreServiceKeys(cache, BOX)
    assert await keys.verification_keys("billing") == ()
    assert await keys.key_by_id("billing/k-next") is None
    await asyncio.sleep(SOON + 0.05)
    assert [key.key_id for key in await keys.verification_keys("billing")] == ["k-next"]
    found = await keys.key_by_id("billing/k-next")
    assert found is not None and found.material == SECRET.encode()


async def test_a_key_stops_verifying_at_its_expiry(cache: CredentialCache) -> None:
    now = datetime.now(UTC)
    await cache.store.add_service_key(
        ServiceKey.new_hmac(
            "billing", SECRET, BOX, key_id="k-old", now=now - timedelta(days=1), lifetime=timedelta(days=1, seconds=0.3)
        )
    )
    keys = StoreServiceKeys(cache, BOX)
    assert [key.key_id for key in await keys.verification_keys("billing")] == ["k-old"]
    assert await keys.key_by_id("billing/k-old") is not None
    await asyncio.sleep(SOON + 0.05)
    assert await keys.verification_keys("billing") == ()
    assert await keys.key_by_id("billing/k-old") is None


async def test_a_retired_key_stops_verifying_at_once(cache: CredentialCache) -> None:
    key = ServiceKey.new_hmac("billing", SECRET, BOX, key_id="k1")
    await cache.store.add_service_key(key)
    keys = StoreServiceKeys(cache, BOX)
    assert len(await keys.verification_keys("billing")) == 1
    assert await keys.key_by_id("billing/k1") is not None
    await cache.store.update_service_key(dataclasses.replace(key, state=KeyState.RETIRED))
    assert await keys.verification_keys("billing") == ()
    assert await keys.key_by_id("billing/k1") is None


async def test_token_peek_agrees_with_lookup_and_counts_usage_once(cache: CredentialCache) -> None:
    _, record = ServiceToken.issue(name="ci-deploy", owner="ci", expires=datetime.now(UTC) + timedelta(days=1))
    await cache.store.create_token(record)
    usage = UsageRecorder(cache.store)
    tokens = StoreTokens(cache, usage)
    assert tokens.peek(record.token_hash) is None and usage.pending == 0  # not in memory: nothing counted

    found = await tokens.lookup(record.token_hash)
    assert found is not None and tokens.peek(record.token_hash) is found  # same converted record
    before = datetime.now(UTC)
    assert tokens.peek(record.token_hash) is found
    await usage.flush()
    stored = await cache.store.get_token(record.token_hash)
    assert stored is not None and stored.usage_count == 3
    assert stored.last_used is not None and before <= stored.last_used <= datetime.now(UTC)

    await cache.store.revoke_token(record.token_hash, reason="leak", at=datetime.now(UTC))
    assert tokens.peek(record.token_hash) is None  # the revocation dropped it from memory
    revoked = await tokens.lookup(record.token_hash)
    assert revoked is not None and revoked.revoked and tokens.peek(record.token_hash) is revoked
    assert usage.pending == 0  # a revoked token is not counted as used


async def test_api_key_peek_agrees_with_lookup_and_counts_usage_once(cache: CredentialCache) -> None:
    app = ApiClient.register(name="web-app", tenant="acme")
    _, key = ApiKey.issue(app.client_id, expires=datetime.now(UTC) + timedelta(seconds=SOON))
    await cache.store.register_client(app, [key])
    usage = UsageRecorder(cache.store)
    keys = StoreApiKeys(cache, usage)
    assert keys.peek(key.key_hash) is None

    found = await keys.lookup(key.key_hash)
    assert found is not None and keys.peek(key.key_hash) is found
    assert usage.pending == 1
    await usage.flush()
    await asyncio.sleep(SOON + 0.05)
    assert keys.peek(key.key_hash) is found  # still the cached record, now expired: answered, not counted
    assert usage.pending == 0
    stored = await cache.store.get_api_key(key.key_hash)
    assert stored is not None and stored.key.usage_count == 2


async def test_service_key_peeks_agree_with_the_awaited_lookups(cache: CredentialCache) -> None:
    key = ServiceKey.new_hmac("billing", SECRET, BOX, key_id="k1")
    await cache.store.add_service_key(key)
    keys = StoreServiceKeys(cache, BOX)
    # Nothing in memory yet: the peeks say "await", and change nothing.
    assert keys.peek_verification_keys("billing") is None
    assert keys.peek_key_by_id("billing/k1") is None
    assert keys.peek_key_by_id("k1") is None  # no key-id index loaded yet
    assert cache.stats.hits == 0

    listed = await keys.verification_keys("billing")
    by_ref = await keys.key_by_id("billing/k1")
    bare = await keys.key_by_id("k1")
    assert keys.peek_verification_keys("billing") is listed  # the very same tuple
    assert keys.peek_key_by_id("billing/k1") == (by_ref,)
    assert keys.peek_key_by_id("k1") == (bare,)
    assert bare is not None and bare.material == SECRET.encode()
    assert keys.peek_key_by_id("k-unknown") is None  # unknown ids are left to the awaited path (reload, log)

    await cache.store.update_service_key(dataclasses.replace(key, state=KeyState.RETIRED))
    # The change dropped the cached records: the peeks say "await", which then sees the retirement.
    assert keys.peek_verification_keys("billing") is None
    assert keys.peek_key_by_id("billing/k1") is None
    assert await keys.verification_keys("billing") == ()
    assert keys.peek_verification_keys("billing") == ()
    assert await keys.key_by_id("billing/k1") is None
    assert keys.peek_key_by_id("billing/k1") == (None,)


async def test_an_ambiguous_bare_key_id_is_never_peeked(cache: CredentialCache) -> None:
    await cache.store.add_service_key(ServiceKey.new_hmac("billing", SECRET, BOX, key_id="shared"))
    await cache.store.add_service_key(ServiceKey.new_hmac("payments", SECRET, BOX, key_id="shared"))
    keys = StoreServiceKeys(cache, BOX)
    assert await keys.key_by_id("shared") is None  # refused (and logged) by the awaited path
    assert keys.peek_key_by_id("shared") is None


async def test_a_bare_key_id_taken_by_a_second_service_stops_being_peeked(cache: CredentialCache) -> None:
    await cache.store.add_service_key(ServiceKey.new_hmac("billing", SECRET, BOX, key_id="k9"))
    keys = StoreServiceKeys(cache, BOX)
    await keys.start()
    try:
        key = await keys.key_by_id("k9")
        assert key is not None
        assert keys.peek_key_by_id("k9") == (key,)
        await cache.store.add_service_key(ServiceKey.new_hmac("payments", SECRET, BOX, key_id="k9"))
        for _ in range(100):  # the change notification arrives on the event loop
            if keys.peek_key_by_id("k9") is None:
                break
            await asyncio.sleep(0.01)
        assert keys.peek_key_by_id("k9") is None  # ambiguous now: the awaited path refuses it
        assert await keys.key_by_id("k9") is None
    finally:
        await keys.close()


async def test_repeated_service_key_peeks_count_every_hit_and_end_at_a_keys_expiry(cache: CredentialCache) -> None:
    now = datetime.now(UTC)
    lifetime = timedelta(days=1, seconds=SOON)
    await cache.store.add_service_key(
        ServiceKey.new_hmac("billing", SECRET, BOX, key_id="k-old", now=now - timedelta(days=1), lifetime=lifetime)
    )
    keys = StoreServiceKeys(cache, BOX)
    listed = await keys.verification_keys("billing")
    found = await keys.key_by_id("billing/k-old")
    assert [key.key_id for key in listed] == ["k-old"] and found is not None
    hits = cache.stats.hits
    for _ in range(3):  # the answers a peek keeps are the very same, and each stands for one cache hit
        assert keys.peek_verification_keys("billing") is listed
        assert keys.peek_key_by_id("billing/k-old") == (found,)
    assert cache.stats.hits == hits + 6
    await asyncio.sleep(SOON + 0.05)
    assert keys.peek_verification_keys("billing") == ()  # expired: no kept answer outlives the key
    assert keys.peek_key_by_id("billing/k-old") == (None,)


async def test_repeated_service_key_peeks_still_refresh_the_cache_at_half_its_ttl(
    clocked_cache: CredentialCache, clock: Clock
) -> None:
    cache = clocked_cache
    await cache.store.add_service_key(ServiceKey.new_hmac("billing", SECRET, BOX, key_id="k1"))
    keys = StoreServiceKeys(cache, BOX, clock=clock)
    listed = await keys.verification_keys("billing")
    assert await keys.key_by_id("k1") is not None
    assert keys.peek_verification_keys("billing") is listed and keys.peek_key_by_id("k1") is not None
    assert cache.stats.refreshes == 0
    clock.now += 31.0  # past half the ttl: the next peeks start a background refresh, as a lookup would
    assert keys.peek_verification_keys("billing") is listed
    assert keys.peek_key_by_id("k1") is not None
    assert cache.stats.refreshes == 2
    clock.now += 30.0  # 61 s on, the key-id index is stale too: the bare id takes the awaited path again
    assert keys.peek_key_by_id("k1") is None


async def test_repeated_token_peeks_count_every_hit_and_use_and_still_refresh_at_half_the_ttl(
    clocked_cache: CredentialCache, clock: Clock
) -> None:
    cache, store = clocked_cache, clocked_cache.store
    _, record = ServiceToken.issue(name="ci-deploy", owner="ci")
    await store.create_token(record)
    usage = UsageRecorder(store)
    tokens = StoreTokens(cache, usage)
    found = await tokens.lookup(record.token_hash)
    hits = cache.stats.hits
    for _ in range(3):
        assert tokens.peek(record.token_hash) is found
    assert cache.stats.hits == hits + 3 and cache.stats.refreshes == 0
    clock.now += 31.0  # past half the ttl: the next peek starts the background refresh, as a lookup would
    assert tokens.peek(record.token_hash) is found
    assert cache.stats.refreshes == 1
    await usage.flush()
    stored = await store.get_token(record.token_hash)
    assert stored is not None and stored.usage_count == 5  # the lookup and every peek
