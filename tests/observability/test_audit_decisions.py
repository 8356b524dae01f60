"""Decisions reported by the pipeline as tuples reach the store as complete audit events."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.observability.audit import DECISION_COLUMNS, AuditTrail, Decision
from gateway.store import AuditQuery, Store, open_store
from gateway.store.codec import AUDIT_COLUMNS
from gateway.store.errors import StoreError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'gw.db'}"
    opened = await open_store(url)
    yield opened
    await opened.close()


def decision(ns: int, result: AuditResult = AuditResult.ALLOW, reason: str = "ok", detail: str = "jwt") -> Decision:
    request = ("req-1", "user-api", "GET")
    return (ns, result, reason, *request, "jwt", "jti-7", "user:42", "acme", "10.0.0.9", "cli/2", detail)


async def written(store: Store) -> list[AuditEvent]:
    return await store.query_audit(AuditQuery(newest_first=False, limit=1000))


def test_a_decision_fills_the_stores_columns_in_their_order() -> None:
    assert DECISION_COLUMNS == AUDIT_COLUMNS


async def test_a_decision_is_written_with_every_field(store: Store) -> None:
    trail = AuditTrail(store)
    ns = time.time_ns()
    trail.record_decision(decision(ns))
    assert await trail.flush() == 1

    (event,) = await written(store)
    assert event == AuditEvent(
        time=EPOCH + timedelta(microseconds=ns // 1000),
        result=AuditResult.ALLOW,
        reason="ok",
        request_id="req-1",
        route="user-api",
        method="GET",
        credential_kind="jwt",
        credential_id="jti-7",
        principal="user:42",
        tenant="acme",
        client_ip="10.0.0.9",
        user_agent="cli/2",
        detail="jwt",
        event_id=event.event_id,
    )
    assert re.fullmatch(f"{ns:016x}[0-9a-f]{{8}}", event.event_id)  # time-ordered, then 8 hex digits


async def test_decisions_of_one_instant_get_distinct_ids_in_arrival_order(store: Store) -> None:
    trail = AuditTrail(store)
    ns = time.time_ns()
    for index in range(3):
        trail.record_decision(decision(ns, detail=f"d{index}"))
    await trail.flush()
    events = await written(store)
    assert len({e.event_id for e in events}) == 3
    assert [e.detail for e in sorted(events, key=lambda e: e.event_id)] == ["d0", "d1", "d2"]


async def test_events_and_decisions_are_written_in_arrival_order(store: Store) -> None:
    trail = AuditTrail(store)
    now = datetime.now(UTC)
    trail.record_decision(decision(time.time_ns(), detail="first"))
    trail.record(AuditEvent(time=now, result=AuditResult.ADMIN, admin="alice", action="tokens.revoke", detail="second"))
    trail.record_decision(decision(time.time_ns(), AuditResult.DENY, "jwt.expired", "jwt: expired"))
    await trail.flush()
    events = await written(store)
    assert sorted(e.detail for e in events) == ["first", "jwt: expired", "second"]
    admin = next(e for e in events if e.result is AuditResult.ADMIN)
    assert (admin.admin, admin.action, admin.principal) == ("alice", "tokens.revoke", "")
    denied = next(e for e in events if e.result is AuditResult.DENY)
    assert (denied.reason, denied.admin, denied.action, denied.target) == ("jwt.expired", "", "", "")


async def test_a_refused_batch_is_kept_and_written_once_later(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'gw.db'}")
    trail = AuditTrail(store)
    try:
        ns = time.time_ns()
        trail.record_decision(decision(ns, detail="a"))
        trail.record_decision(decision(ns, detail="b"))
        await store.close()
        with pytest.raises(StoreError):
            await trail.flush()
        assert trail.pending == 2
        await store.open()
        assert await trail.flush() == 2
        events = await written(store)
        assert sorted(e.detail for e in events) == ["a", "b"]
        assert len({e.event_id for e in events}) == 2
    finally:
        await store.close()
