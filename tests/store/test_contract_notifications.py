"""Store contract: replay nonces and change notifications."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta

import pytest

from gateway.credentials import KeyState
from gateway.store import DuplicateName, Invalidation, InvalidationKind, Store, open_store
from tests.store.records import NOW, api_key, client, hmac_key, token

TOKEN = InvalidationKind.TOKEN


async def test_first_nonce_claim_wins_per_scope(store: Store) -> None:
    assert await store.claim_nonce("hmac:billing", "n-1", 60) is True
    assert await store.claim_nonce("hmac:billing", "n-1", 60) is False
    assert await store.claim_nonce("hmac:orders", "n-1", 60) is True
    assert await store.claim_nonce("hmac:billing", "n-2", 60) is True


async def test_nonce_is_claimable_again_after_its_ttl(store: Store) -> None:
    assert await store.claim_nonce("s", "n", 0.05) is True
    assert await store.claim_nonce("s", "n", 0.05) is False
    await asyncio.sleep(0.12)
    assert await store.claim_nonce("s", "n", 60) is True


async def test_concurrent_claims_of_one_nonce_let_exactly_one_win(store: Store) -> None:
    results = await asyncio.gather(*(store.claim_nonce("s", "race", 60) for _ in range(20)))
    assert results.count(True) == 1


async def test_many_concurrent_claims_each_answered_for_its_own_nonce(store: Store) -> None:
    # SQLite writes the claims made together as one batch: each must still get its own answer.
    nonces = [f"n-{i % 150}" for i in range(200)]  # 50 nonces claimed twice
    results = await asyncio.gather(*(store.claim_nonce("s", nonce, 60) for nonce in nonces))
    assert results.count(True) == 150
    won = {nonce for nonce, claimed in zip(nonces, results, strict=True) if claimed}
    assert won == set(nonces)
    assert await store.claim_nonce("s", "n-7", 60) is False


async def test_a_cancelled_claim_leaves_the_others_answered(store: Store) -> None:
    claims = [asyncio.ensure_future(store.claim_nonce("s", f"c-{i}", 60)) for i in range(10)]
    claims[3].cancel()
    results = await asyncio.gather(*claims, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 3] == [True] * 9
    assert await store.claim_nonce("s", "c-9", 60) is False


async def test_claims_from_two_stores_sharing_one_backend_let_one_win(shared_store_url: str) -> None:
    first, second = await open_store(shared_store_url), await open_store(shared_store_url)
    try:
        results = await asyncio.gather(
            *(store.claim_nonce("s", f"shared-{i}", 60) for i in range(40) for store in (first, second))
        )
    finally:
        await first.close()
        await second.close()
    assert [results[2 * i] + results[2 * i + 1] for i in range(40)] == [1] * 40


@pytest.mark.parametrize("ttl", [0, -1.0])
async def test_nonce_ttl_must_be_positive(store: Store, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await store.claim_nonce("s", "n", ttl)


async def test_every_change_is_announced_before_the_call_returns(store: Store) -> None:
    seen: list[Invalidation] = []
    subscription = await store.subscribe(seen.append)
    record = token()
    app = client()
    key = api_key(app.client_id)
    signing_key = hmac_key("billing", "k1")

    await store.create_token(record)
    assert Invalidation(TOKEN, record.token_hash) in seen
    seen.clear()
    await store.revoke_token(record.token_hash, reason="x", at=NOW)
    assert Invalidation(TOKEN, record.token_hash) in seen
    seen.clear()
    await store.register_client(app, [key])
    assert {
        Invalidation(InvalidationKind.API_KEY, key.key_hash),
        Invalidation(InvalidationKind.API_CLIENT, app.client_id),
    } <= set(seen)
    seen.clear()
    await store.update_client(dataclasses.replace(app, scopes=frozenset()))
    assert Invalidation(InvalidationKind.API_CLIENT, app.client_id) in seen
    seen.clear()
    await store.revoke_api_key(key.key_hash, reason="x", at=NOW)
    assert Invalidation(InvalidationKind.API_KEY, key.key_hash) in seen
    seen.clear()
    await store.add_service_key(signing_key)
    await store.update_service_key(dataclasses.replace(signing_key, state=KeyState.RETIRED))
    assert seen.count(Invalidation(InvalidationKind.SERVICE_KEY, "billing/k1")) >= 2
    seen.clear()
    await store.create_token(token("other"))
    seen.clear()
    await store.revoke_tokens(reason="breach", at=NOW)
    assert Invalidation(InvalidationKind.ALL) in seen
    seen.clear()
    await store.publish_invalidation(InvalidationKind.API_KEY, "abc")
    assert Invalidation(InvalidationKind.API_KEY, "abc") in seen

    await subscription.close()
    seen.clear()
    await store.create_token(token("after-close"))
    await asyncio.sleep(0.05)
    assert seen == []


async def test_failed_changes_announce_nothing(store: Store) -> None:
    seen: list[Invalidation] = []
    subscription = await store.subscribe(seen.append)
    await store.create_token(token("taken"))
    # The successful create announces itself, locally and (Redis) once more through pub/sub,
    # which can arrive a little later: let every copy land before looking at the failure.
    deadline = time.monotonic() + 2
    while not seen and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert seen
    seen.clear()
    with pytest.raises(DuplicateName, match="taken"):
        await store.create_token(token("taken"))
    await asyncio.sleep(0.1)
    assert seen == []
    await subscription.close()


async def test_a_broken_listener_does_not_starve_the_others(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: Invalidation) -> None:
        raise RuntimeError("listener bug")

    seen: list[Invalidation] = []
    first = await store.subscribe(broken)
    second = await store.subscribe(seen.append)
    await store.publish_invalidation(InvalidationKind.TOKEN, "x")
    assert Invalidation(TOKEN, "x") in seen
    assert "invalidation listener failed" in caplog.text
    await first.close()
    await second.close()


async def test_changes_reach_another_instance_within_a_second(shared_store_url: str) -> None:
    writer = await open_store(shared_store_url)
    reader = await open_store(shared_store_url)
    try:
        arrived: asyncio.Queue[Invalidation] = asyncio.Queue()
        subscription = await reader.subscribe(arrived.put_nowait)
        record = token()
        await writer.create_token(record)

        started = time.monotonic()
        await writer.revoke_token(record.token_hash, reason="leaked", at=NOW + timedelta(seconds=1))
        while (change := await asyncio.wait_for(arrived.get(), 1.0)) != Invalidation(TOKEN, record.token_hash):
            pass
        assert time.monotonic() - started < 1.0
        assert change.id == record.token_hash

        await writer.revoke_tokens(reason="breach", at=NOW)  # nothing left to revoke: no announcement
        await writer.publish_invalidation(InvalidationKind.ALL)
        while (change := await asyncio.wait_for(arrived.get(), 1.0)).kind is not InvalidationKind.ALL:
            pass
        await subscription.close()
    finally:
        await writer.close()
        await reader.close()
