"""The decision cache: lifetimes, single-flight, two layers, stale grace and purges.

The backend is the fake identity service over real HTTP, the shared layer a real
store (memory, or SQLite where two processes' view matters).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.backend import cache as cache_module
from gateway.backend.cache import ABSENT_MEMO, DecisionCache, purge_all, purge_token, shared_key, token_digest
from gateway.backend.client import BackendClient, BackendLimits
from gateway.backend.errors import BackendError, CircuitOpen
from gateway.backend.introspect import Rfc7662Introspection
from gateway.backend.metrics import BackendMetrics
from gateway.pipeline.authn.introspection import introspected_principal
from gateway.store import Store, open_store
from gateway.store.base import Invalidation, InvalidationKind
from gateway.store.memory import MemoryStore
from tests.fakes.identity_service import IdentityService

LIMITS = BackendLimits(timeout=0.5, fail_max=2, reset_timeout=30)


@pytest.fixture
async def client() -> AsyncIterator[BackendClient]:
    backend = BackendClient(LIMITS)
    yield backend
    await backend.close()


@pytest.fixture
def metrics() -> BackendMetrics:
    return BackendMetrics(CollectorRegistry())


CacheFactory = Callable[..., DecisionCache]


@pytest.fixture
async def make_cache(
    client: BackendClient, identity: IdentityService, metrics: BackendMetrics
) -> AsyncIterator[CacheFactory]:
    made: list[DecisionCache] = []

    def factory(store: Store | None = None, *, backend: str = "b1", **options: object) -> DecisionCache:
        checker = Rfc7662Introspection(client, f"{identity.issuer}/introspect")
        breaker = client.breaker("introspection")
        cache = DecisionCache(
            checker,
            introspected_principal,
            backend=backend,
            store=store,
            metrics=metrics,
            circuit=breaker,
            **options,  # type: ignore[arg-type]
        )
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        await cache.close()


def counted(metrics: BackendMetrics, layer: str, result: str) -> float:
    return metrics.registry.get_sample_value("gateway_auth_cache_total", {"layer": layer, "result": result}) or 0.0


async def test_1000_lookups_of_10_tokens_ask_the_backend_10_times(
    make_cache: CacheFactory, identity: IdentityService, metrics: BackendMetrics
) -> None:
    tokens = [f"opaque-{i}" for i in range(10)]
    for token in tokens:
        identity.add(token, f"user-{token}")
    cache = make_cache(MemoryStore())
    for i in range(1000):
        entry, stale = await cache.decide(tokens[i % 10])
        assert entry.principal is not None and entry.principal.subject == f"user-{tokens[i % 10]}" and not stale
    assert identity.calls["introspect"] == 10
    assert counted(metrics, "memory", "hit") == 990
    assert counted(metrics, "memory", "miss") == 10 and counted(metrics, "shared", "miss") == 10


async def test_concurrent_lookups_of_one_new_token_make_one_call(
    make_cache: CacheFactory, identity: IdentityService
) -> None:
    identity.add("fresh")
    identity.hold = asyncio.Event()
    cache = make_cache(MemoryStore())
    waiting = [asyncio.ensure_future(cache.decide("fresh")) for _ in range(100)]
    await asyncio.sleep(0.05)
    identity.hold.set()
    results = await asyncio.gather(*waiting)
    assert identity.calls["introspect"] == 1
    assert {entry.principal.subject for entry, _ in results if entry.principal} == {"user-1"}


async def test_a_caller_leaving_does_not_cancel_the_lookup_for_the_others(
    make_cache: CacheFactory, identity: IdentityService
) -> None:
    identity.add("fresh")
    identity.hold = asyncio.Event()
    cache = make_cache()
    leaving = asyncio.ensure_future(cache.decide("fresh"))
    staying = asyncio.ensure_future(cache.decide("fresh"))
    await asyncio.sleep(0.02)
    leaving.cancel()
    identity.hold.set()
    entry, _ = await staying
    assert entry.decision.active and identity.calls["introspect"] == 1


async def test_the_tokens_exp_bounds_the_cache_lifetime(make_cache: CacheFactory, identity: IdentityService) -> None:
    identity.add("short", ttl=0.6)
    cache = make_cache(MemoryStore(), max_ttl=300)
    entry, _ = await cache.decide("short")
    assert entry.fresh_until <= entry.decision.expires_at  # type: ignore[operator]
    await cache.decide("short")
    assert identity.calls["introspect"] == 1
    await asyncio.sleep(0.7)
    identity.revoke("short")  # expired: the backend now says inactive
    entry, _ = await cache.decide("short")
    assert not entry.decision.active and identity.calls["introspect"] == 2


async def test_max_ttl_bounds_a_long_lived_token(make_cache: CacheFactory, identity: IdentityService) -> None:
    identity.add("long", ttl=3600)
    cache = make_cache(max_ttl=0.2)
    await cache.decide("long")
    await cache.decide("long")
    await asyncio.sleep(0.25)
    await cache.decide("long")
    assert identity.calls["introspect"] == 2


async def test_inactive_answers_are_cached_for_the_negative_ttl(
    make_cache: CacheFactory, identity: IdentityService
) -> None:
    cache = make_cache(negative_ttl=0.2)
    for _ in range(5):
        entry, _ = await cache.decide("nobody")
        assert entry.principal is None and entry.decision.reason == "token.inactive"
    assert identity.calls["introspect"] == 1
    await asyncio.sleep(0.25)
    identity.add("nobody")  # became valid: asked again after the negative TTL
    entry, _ = await cache.decide("nobody")
    assert entry.decision.active and identity.calls["introspect"] == 2


async def test_failures_are_never_cached(make_cache: CacheFactory, identity: IdentityService) -> None:
    identity.add("tok")
    identity.mode = "error"
    cache = make_cache(MemoryStore())
    with pytest.raises(BackendError):
        await cache.decide("tok")
    identity.mode = "ok"
    entry, _ = await cache.decide("tok")
    assert entry.decision.active and identity.calls["introspect"] == 2


async def test_replicas_share_decisions_through_the_store(
    make_cache: CacheFactory, identity: IdentityService, metrics: BackendMetrics
) -> None:
    store = MemoryStore()
    identity.add("tok", "dave")
    first, second = make_cache(store), make_cache(store)
    await first.decide("tok")
    entry, _ = await second.decide("tok")
    assert entry.principal is not None and entry.principal.subject == "dave"
    assert identity.calls["introspect"] == 1 and counted(metrics, "shared", "hit") == 1
    # The token itself is never stored: only its SHA-256 names the entry.
    text = await store.cache_get(shared_key("b1", token_digest("tok").hex()))
    assert text is not None and "tok" not in text.replace("token", "")


async def test_a_decision_of_one_backend_is_never_used_for_another(
    make_cache: CacheFactory, identity: IdentityService
) -> None:
    store = MemoryStore()
    identity.add("tok")
    await make_cache(store, backend="idp-a").decide("tok")
    await make_cache(store, backend="idp-b").decide("tok")
    assert identity.calls["introspect"] == 2


async def test_a_broken_shared_layer_falls_back_to_the_backend(
    make_cache: CacheFactory, identity: IdentityService, tmp_path: Path
) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'gw.db'}")
    await store.close()  # every call now fails with StoreUnavailable
    identity.add("tok")
    entry, _ = await make_cache(store).decide("tok")
    assert entry.decision.active and identity.calls["introspect"] == 1


async def test_a_corrupt_shared_entry_is_ignored(make_cache: CacheFactory, identity: IdentityService) -> None:
    store = MemoryStore()
    await store.cache_set(shared_key("b1", token_digest("tok").hex()), '{"d": {"a": 1, "s": 5}}', 60)
    identity.add("tok", "erin")
    entry, _ = await make_cache(store).decide("tok")
    assert entry.principal is not None and entry.principal.subject == "erin"


# -- stale grace ------------------------------------------------------------------------------


async def open_circuit(cache: DecisionCache, identity: IdentityService) -> None:
    identity.mode = "error"
    for _ in range(LIMITS.fail_max):
        with pytest.raises(BackendError):
            await cache.decide("other")


async def test_a_recently_validated_token_is_served_stale_within_the_grace_only(
    make_cache: CacheFactory, identity: IdentityService, metrics: BackendMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    identity.add("tok", "frank")
    cache = make_cache(MemoryStore(), max_ttl=0.1, max_grace=0.6)
    await cache.decide("tok")
    await open_circuit(cache, identity)
    await asyncio.sleep(0.15)  # no longer fresh

    entry, stale = await cache.decide("tok", grace=0.6)
    assert stale and entry.principal is not None and entry.principal.subject == "frank"
    assert counted(metrics, "memory", "stale") == 1
    assert any("stale grace" in r.getMessage() for r in caplog.records)
    with pytest.raises(CircuitOpen):
        await cache.decide("tok", grace=0)  # a route without a grace fails closed
    await asyncio.sleep(0.5)  # the grace is over
    with pytest.raises(CircuitOpen):
        await cache.decide("tok", grace=0.6)
    assert identity.calls["introspect"] == 3  # 1 validation + 2 failures; nothing while open


async def test_stale_decisions_come_from_the_shared_layer_too(
    make_cache: CacheFactory, identity: IdentityService, metrics: BackendMetrics
) -> None:
    store = MemoryStore()
    identity.add("tok")
    await make_cache(store, max_ttl=0.1, max_grace=5).decide("tok")
    replica = make_cache(store, max_ttl=0.1, max_grace=5)
    await asyncio.sleep(0.15)
    identity.mode = "error"
    entry, stale = await replica.decide("tok", grace=5)
    assert stale and entry.decision.active
    assert counted(metrics, "shared", "stale") == 1


async def test_inactive_decisions_are_never_served_stale(make_cache: CacheFactory, identity: IdentityService) -> None:
    cache = make_cache(negative_ttl=0.1, max_grace=5)
    entry, _ = await cache.decide("nobody")
    assert not entry.decision.active
    await open_circuit(cache, identity)
    await asyncio.sleep(0.15)
    with pytest.raises(CircuitOpen):
        await cache.decide("nobody", grace=5)


async def test_stale_never_outlives_the_tokens_exp(make_cache: CacheFactory, identity: IdentityService) -> None:
    identity.add("tok", ttl=0.3)
    cache = make_cache(max_ttl=0.1, max_grace=60)
    await cache.decide("tok")
    await open_circuit(cache, identity)
    await asyncio.sleep(0.12)  # past max_ttl, within exp
    assert (await cache.decide("tok", grace=60))[1]
    await asyncio.sleep(0.25)  # past exp
    with pytest.raises(CircuitOpen):
        await cache.decide("tok", grace=60)


# -- purges -----------------------------------------------------------------------------------


async def test_a_purge_drops_the_token_everywhere(make_cache: CacheFactory, identity: IdentityService) -> None:
    store = MemoryStore()
    identity.add("tok")
    first, second = make_cache(store), make_cache(store)
    await first.start()
    await second.start()
    await first.decide("tok")
    await second.decide("tok")
    identity.revoke("tok")

    assert await purge_token(store, ["b1"], "tok") == 1

    for replica in (first, second):
        entry, _ = await replica.decide("tok")
        assert not entry.decision.active
    assert identity.calls["introspect"] == 2  # one more: the second replica found the new answer shared


async def test_a_purged_token_is_not_served_stale(make_cache: CacheFactory, identity: IdentityService) -> None:
    store = MemoryStore()
    identity.add("tok")
    cache = make_cache(store, max_ttl=0.1, max_grace=60)
    await cache.start()
    await cache.decide("tok")
    await purge_token(store, ["b1"], "tok")
    await open_circuit(cache, identity)
    with pytest.raises(CircuitOpen):
        await cache.decide("tok", grace=60)


async def test_an_answer_in_flight_during_a_purge_is_not_cached(
    make_cache: CacheFactory, identity: IdentityService
) -> None:
    store = MemoryStore()
    identity.add("tok")
    identity.hold = asyncio.Event()
    cache = make_cache(store)
    await cache.start()
    pending = asyncio.ensure_future(cache.decide("tok"))
    await asyncio.sleep(0.05)
    await purge_token(store, ["b1"], "tok")
    identity.revoke("tok")
    identity.hold.set()
    entry, _ = await pending
    assert entry.decision.active  # it answers the request that was waiting...
    entry, _ = await cache.decide("tok")
    assert not entry.decision.active  # ...but was not kept
    assert await store.cache_get(shared_key("b1", token_digest("tok").hex())) is not None  # the new answer is


async def test_purge_all(make_cache: CacheFactory, identity: IdentityService) -> None:
    store = MemoryStore()
    for token in ("a", "b"):
        identity.add(token)
    cache = make_cache(store)
    await cache.start()
    for token in ("a", "b"):
        await cache.decide(token)
    assert await purge_all(store) == 2
    assert len(cache) == 0


def test_lifetimes_are_checked() -> None:
    with pytest.raises(ValueError, match="max_ttl"):
        DecisionCache(None, introspected_principal, backend="b", max_ttl=0)  # type: ignore[arg-type]


def test_the_clock_is_wall_time() -> None:
    # Entries are shared between processes: their times must be comparable across them.
    cache = DecisionCache(None, introspected_principal, backend="b")  # type: ignore[arg-type]
    assert abs(cache.clock() - time.time()) < 1


async def test_while_open_an_unknown_token_costs_one_shared_lookup_per_second(
    make_cache: CacheFactory, identity: IdentityService, metrics: BackendMetrics
) -> None:
    cache = make_cache(MemoryStore())
    await open_circuit(cache, identity)
    before = counted(metrics, "shared", "miss")
    for _ in range(10):  # a client retrying during the outage
        with pytest.raises(CircuitOpen):
            await cache.decide("never-seen")
    assert counted(metrics, "shared", "miss") == before + 1
    await asyncio.sleep(ABSENT_MEMO + 0.05)
    with pytest.raises(CircuitOpen):
        await cache.decide("never-seen")
    assert counted(metrics, "shared", "miss") == before + 2


# -- the warm path without a coroutine (DecisionCache.fresh) -------------------------------------


async def test_fresh_gives_what_decide_gives_for_a_warm_token_and_nothing_else(
    make_cache: CacheFactory, identity: IdentityService, metrics: BackendMetrics
) -> None:
    identity.add("tok")
    cache = make_cache(MemoryStore(), negative_ttl=5)
    assert cache.fresh("tok") is None and cache.fresh("nobody") is None  # cold: decide() asks
    entry, _ = await cache.decide("tok")
    inactive, _ = await cache.decide("nobody")
    hits = counted(metrics, "memory", "hit")
    for _ in range(3):  # the second time on, the digest comes from the memo
        assert cache.fresh("tok") is entry and entry.principal is not None
        assert cache.fresh("nobody") is inactive and inactive.principal is None
    assert counted(metrics, "memory", "hit") == hits + 6
    assert counted(metrics, "memory", "miss") == 2  # only decide() counts misses
    assert identity.calls["introspect"] == 2


async def test_fresh_is_nothing_once_the_decision_is_stale_or_purged(
    make_cache: CacheFactory, identity: IdentityService
) -> None:
    identity.add("tok", ttl=3600)
    identity.add("other", ttl=3600)
    cache = make_cache(max_ttl=0.2, max_grace=60)
    await cache.decide("tok")
    await cache.decide("other")
    assert cache.fresh("tok") is not None and cache.fresh("other") is not None
    await asyncio.sleep(0.25)
    assert cache.fresh("tok") is None  # kept for a stale grace, but not fresh: decide() judges
    entry, stale = await cache.decide("tok")
    assert not stale and identity.calls["introspect"] == 3
    assert cache.fresh("tok") is entry
    cache.invalidate(Invalidation(InvalidationKind.AUTH_CACHE, token_digest("tok").hex()))
    assert cache.fresh("tok") is None  # the memo knows its digest, the memory no longer has it


async def test_the_digest_memo_is_bounded(
    make_cache: CacheFactory, identity: IdentityService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "DIGEST_MEMO_ENTRIES", 3)
    tokens = [f"opaque-{i}" for i in range(5)] + ["x" * (cache_module.DIGEST_MEMO_MAX_LENGTH + 1)]
    for token in tokens:
        identity.add(token, f"user-{token}")
    cache = make_cache()
    for token in tokens:
        await cache.decide(token)
    for _ in range(2):
        for token in tokens:
            entry = cache.fresh(token)
            assert entry is not None and entry.principal is not None and entry.principal.subject == f"user-{token}"
            assert len(cache._digests) <= 3
    assert tokens[-1] not in cache._digests  # too long to be remembered by its text
    assert all(token_digest(token) == digest for token, digest in cache._digests.items())


def test_cache_counts_are_exported_at_scrape_time(metrics: BackendMetrics) -> None:
    for _ in range(3):
        metrics.cache_event("memory", "hit")
    metrics.cache_event("shared", "miss")
    text = generate_latest(metrics.registry).decode()
    assert 'gateway_auth_cache_total{layer="memory",result="hit"} 3.0' in text
    assert 'gateway_auth_cache_total{layer="shared",result="miss"} 1.0' in text
    assert "# TYPE gateway_auth_cache_total counter" in text or "# TYPE gateway_auth_cache counter" in text
    assert "gateway_auth_cache_created" not in text  # counted without a lock, like the per-request series
