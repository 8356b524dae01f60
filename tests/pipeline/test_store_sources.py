"""The store adapters remember which service keys are usable, but never past a key's start or end."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway.credentials import ServiceKey, generate_kek
from gateway.credentials.encryption import SecretBox
from gateway.credentials.models import KeyState
from gateway.pipeline.store_sources import StoreServiceKeys
from gateway.store import open_store
from gateway.store.cache import CredentialCache

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
