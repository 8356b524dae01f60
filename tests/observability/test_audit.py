"""The audit trail writer against real stores: batching, the drop policy, store failures, retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.observability.audit import AuditTrail
from gateway.store import AuditQuery, Store, open_store

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def event(result: AuditResult, name: str, at: datetime = NOW) -> AuditEvent:
    return AuditEvent(
        time=at,
        result=result,
        reason="ok" if result is AuditResult.ALLOW else "token.revoked",
        credential_id=name,
        principal=f"service:{name}",
    )


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'gw.db'}"
    opened = await open_store(url)
    yield opened
    await opened.close()


async def stored(store: Store) -> list[str]:
    events = await store.query_audit(AuditQuery(limit=1000, newest_first=False))
    return [e.credential_id for e in events]


def dropped(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("gateway_audit_events_dropped_total", {"result": result}) or 0.0


async def test_full_buffer_drops_the_oldest_successes_first_and_counts_them(store: Store) -> None:
    registry = CollectorRegistry()
    trail = AuditTrail(store, registry=registry, buffer=4, batch_size=100)
    for name, result in [
        ("a1", AuditResult.ALLOW),
        ("d1", AuditResult.DENY),
        ("a2", AuditResult.ALLOW),
        ("x1", AuditResult.ADMIN),
        ("a3", AuditResult.ALLOW),
        ("w1", AuditResult.WOULD_DENY),
    ]:
        trail.record(event(result, name))
    assert trail.pending == 4
    assert trail.dropped[AuditResult.ALLOW] == 2
    assert dropped(registry, "allow") == 2.0
    await trail.flush()
    # a1 and a2 (the oldest successes) went; every denial and admin action stayed, in arrival order.
    assert await stored(store) == ["d1", "x1", "a3", "w1"]


async def test_denials_are_dropped_only_when_nothing_else_is_left(store: Store) -> None:
    registry = CollectorRegistry()
    trail = AuditTrail(store, registry=registry, buffer=3, batch_size=100)
    trail.record(event(AuditResult.ALLOW, "a1"))
    for index in range(4):
        trail.record(event(AuditResult.DENY, f"d{index}"))
    assert dropped(registry, "allow") == 1.0
    assert dropped(registry, "deny") == 1.0  # the buffer held nothing but denials: the oldest went
    trail.record(event(AuditResult.ALLOW, "a2"))  # a new success never pushes out a denial
    assert dropped(registry, "allow") == 2.0
    await trail.flush()
    assert await stored(store) == ["d1", "d2", "d3"]


async def test_a_store_error_keeps_the_events_for_the_next_try(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'gw.db'}")
    registry = CollectorRegistry()
    trail = AuditTrail(store, registry=registry, buffer=3, batch_size=2)
    try:
        await store.close()  # the store goes away
        trail.record(event(AuditResult.DENY, "d1"))
        trail.record(event(AuditResult.ALLOW, "a1"))
        with pytest.raises(Exception, match="not open"):
            await trail.flush()
        assert trail.pending == 2
        assert registry.get_sample_value("gateway_audit_write_failures_total") == 1.0
        trail.record(event(AuditResult.DENY, "d2"))
        trail.record(event(AuditResult.DENY, "d3"))  # still bounded: the kept success goes first
        assert trail.pending == 3 and trail.dropped[AuditResult.ALLOW] == 1
        await store.open()  # and comes back
        assert await trail.flush() == 3
        assert await stored(store) == ["d1", "d2", "d3"]
        assert registry.get_sample_value("gateway_audit_events_written_total") == 3.0
    finally:
        await store.close()


async def test_the_writer_flushes_on_interval_and_when_a_batch_fills(store: Store) -> None:
    slow = AuditTrail(store, flush_interval=0.05, batch_size=100)
    await slow.start()
    try:
        slow.record(event(AuditResult.ALLOW, "interval"))
        for _ in range(100):
            if await stored(store):
                break
            await asyncio.sleep(0.01)
        assert await stored(store) == ["interval"]
    finally:
        await slow.close()
    batched = AuditTrail(store, flush_interval=30, batch_size=3)
    await batched.start()
    try:
        for index in range(3):
            batched.record(event(AuditResult.DENY, f"b{index}"))
        for _ in range(100):
            if len(await stored(store)) == 4:
                break
            await asyncio.sleep(0.01)
        assert await stored(store) == ["interval", "b0", "b1", "b2"]  # long before the 30 s interval
    finally:
        await batched.close()


async def test_close_writes_what_is_left(store: Store) -> None:
    trail = AuditTrail(store, flush_interval=30)
    await trail.start()
    trail.record(event(AuditResult.DENY, "last"))
    await trail.close()
    await trail.close()  # idempotent
    assert await stored(store) == ["last"]


async def test_record_now_writes_at_once_or_keeps_the_event(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'gw.db'}")
    trail = AuditTrail(store)
    try:
        await trail.record_now(event(AuditResult.ADMIN, "now"))
        assert await stored(store) == ["now"]
        await store.close()
        await trail.record_now(event(AuditResult.ADMIN, "later"))  # does not raise: kept
        assert trail.pending == 1
        await store.open()
        await trail.close()
        assert await stored(store) == ["now", "later"]
    finally:
        await store.close()


async def test_retention_prunes_old_events(store: Store) -> None:
    registry = CollectorRegistry()
    trail = AuditTrail(store, registry=registry, retention=7 * 86400, clock=lambda: NOW)
    trail.record(event(AuditResult.DENY, "old", NOW - timedelta(days=8)))
    trail.record(event(AuditResult.DENY, "recent", NOW - timedelta(days=6)))
    await trail.flush()
    assert await trail.prune() == 1
    assert await stored(store) == ["recent"]
    assert registry.get_sample_value("gateway_audit_events_pruned_total") == 1.0
    assert await AuditTrail(store, retention=0).prune() == 0  # 0 keeps everything


async def test_the_writer_prunes_at_start(store: Store) -> None:
    await store.append_audit([event(AuditResult.DENY, "ancient", NOW - timedelta(days=400))])
    trail = AuditTrail(store, flush_interval=0.02, clock=lambda: NOW)
    await trail.start()
    try:
        for _ in range(100):
            if not await stored(store):
                break
            await asyncio.sleep(0.01)
        assert await stored(store) == []
    finally:
        await trail.close()
