"""Store contract: the shared cache (values with a TTL, deleted by key or by prefix).

The auth backend keeps its decisions there so every replica reuses what one of
them learnt; these tests hold every backend (memory, SQLite, Redis, Redis Cluster)
to the same behaviour.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.store import Store, open_store


async def test_a_value_reads_back_until_replaced(store: Store) -> None:
    assert await store.cache_get("authcache:b1:abc") is None
    await store.cache_set("authcache:b1:abc", '{"a":1}', 60)
    assert await store.cache_get("authcache:b1:abc") == '{"a":1}'
    await store.cache_set("authcache:b1:abc", '{"a":0}', 60)
    assert await store.cache_get("authcache:b1:abc") == '{"a":0}'


async def test_values_keep_any_text(store: Store) -> None:
    value = '{"s":"üser ☃ \\u0000","t":"x"}' + "y" * 5000
    await store.cache_set("k:text", value, 60)
    assert await store.cache_get("k:text") == value


async def test_a_value_is_gone_after_its_ttl(store: Store) -> None:
    await store.cache_set("k:short", "v", 0.05)
    await store.cache_set("k:long", "v", 60)
    await asyncio.sleep(0.15)
    assert await store.cache_get("k:short") is None
    assert await store.cache_get("k:long") == "v"


@pytest.mark.parametrize("ttl", [0, -1.0])
async def test_ttl_must_be_positive(store: Store, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await store.cache_set("k", "v", ttl)


async def test_delete_removes_exactly_the_given_keys(store: Store) -> None:
    for key in ("a:1", "a:2", "a:3"):
        await store.cache_set(key, "v", 60)
    assert await store.cache_delete(["a:1", "a:3", "a:missing"]) == 2
    assert await store.cache_get("a:1") is None
    assert await store.cache_get("a:2") == "v"
    assert await store.cache_get("a:3") is None
    assert await store.cache_delete([]) == 0


async def test_purge_removes_every_key_with_the_prefix_and_nothing_else(store: Store) -> None:
    keys = [f"authcache:{i}:{'f' * 8}" for i in range(30)]  # spread over cluster slots
    for key in keys:
        await store.cache_set(key, "v", 60)
    await store.cache_set("authcachex:1", "other", 60)  # shares the text, not the prefix with its colon
    await store.cache_set("other:authcache:1", "other", 60)
    # Glob characters in a prefix are literal (Redis SCAN MATCH would treat them as patterns).
    await store.cache_set("we*rd[1]:k", "v", 60)
    await store.cache_set("weXrd1]:k", "other", 60)

    assert await store.cache_purge("authcache:") == 30
    assert await store.cache_purge("we*rd[1]:") == 1

    for key in keys:
        assert await store.cache_get(key) is None
    assert await store.cache_get("authcachex:1") == "other"
    assert await store.cache_get("other:authcache:1") == "other"
    assert await store.cache_get("weXrd1]:k") == "other"
    assert await store.cache_purge("authcache:") == 0


async def test_the_cache_is_shared_by_store_instances(shared_store_url: str) -> None:
    first, second = await open_store(shared_store_url), await open_store(shared_store_url)
    try:
        await first.cache_set("shared:k", "from-first", 60)
        assert await second.cache_get("shared:k") == "from-first"
        await second.cache_delete(["shared:k"])
        assert await first.cache_get("shared:k") is None
    finally:
        await first.close()
        await second.close()
