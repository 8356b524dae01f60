"""Decisions reported by the pipeline as store rows reach the store as complete audit events."""

from __future__ import annotations

import gc
import re
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.observability.audit import AuditTrail, DecisionFacts, decision_facts
from gateway.store import AuditQuery, Store, open_store
from gateway.store.codec import (
    ADMIN_COLUMNS,
    AUDIT_COLUMNS,
    DECISION_COLUMNS,
    DECISION_FACT_COLUMNS,
    DECISION_REQUEST_COLUMNS,
    AuditRow,
)
from gateway.store.errors import StoreError, StoreUnavailable
from gateway.store.memory import MemoryStore

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'gw.db'}"
    opened = await open_store(url)
    yield opened
    await opened.close()


Decision = tuple[int, DecisionFacts, str, str, str, str]


def decision(ns: int, result: AuditResult = AuditResult.ALLOW, reason: str = "ok", detail: str = "jwt") -> Decision:
    """record_decision's arguments."""
    facts = decision_facts(result, reason, "user-api", "jwt", "jti-7", "user:42", "acme", detail)
    return (ns, facts, "GET", "req-1", "10.0.0.9", "cli/2")


async def written(store: Store) -> list[AuditEvent]:
    return await store.query_audit(AuditQuery(newest_first=False, limit=1000))


def test_a_decision_fills_the_stores_columns_but_the_admin_ones_in_their_order() -> None:
    assert sorted(DECISION_COLUMNS) == sorted(name for name in AUDIT_COLUMNS if name not in ADMIN_COLUMNS)
    assert DECISION_COLUMNS == DECISION_FACT_COLUMNS + DECISION_REQUEST_COLUMNS
    assert DECISION_COLUMNS[-1] == "event_id"
    assert DECISION_FACT_COLUMNS[0] == "result"


async def test_a_decision_is_written_with_every_field(store: Store) -> None:
    trail = AuditTrail(store)
    ns = time.time_ns()
    trail.record_decision(*decision(ns))
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
        trail.record_decision(*decision(ns, detail=f"d{index}"))
    await trail.flush()
    events = await written(store)
    assert len({e.event_id for e in events}) == 3
    assert [e.detail for e in sorted(events, key=lambda e: e.event_id)] == ["d0", "d1", "d2"]


async def test_events_and_decisions_are_written_in_arrival_order(store: Store) -> None:
    trail = AuditTrail(store)
    now = datetime.now(UTC)
    trail.record_decision(*decision(time.time_ns(), detail="first"))
    trail.record(AuditEvent(time=now, result=AuditResult.ADMIN, admin="alice", action="tokens.revoke", detail="second"))
    trail.record_decision(*decision(time.time_ns(), AuditResult.DENY, "jwt.expired", "jwt: expired"))
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
        trail.record_decision(*decision(ns, detail="a"))
        trail.record_decision(*decision(ns, detail="b"))
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


async def test_an_id_has_24_hex_digits_whatever_the_time(store: Store) -> None:
    trail = AuditTrail(store)
    trail.record_decision(*decision(5))  # a clock at the epoch: the id is still zero-padded
    await trail.flush()
    (event,) = await written(store)
    assert re.fullmatch("0{15}5[0-9a-f]{8}", event.event_id)


async def test_batches_of_one_kind_and_of_both_kinds_keep_arrival_order(store: Store) -> None:
    trail = AuditTrail(store, batch_size=2)
    ns = time.time_ns()
    for index in range(5):  # one kind only: taken without merging, in batches of 2
        trail.record_decision(*decision(ns, detail=f"a{index}"))
    for index, result in enumerate([AuditResult.DENY, AuditResult.ALLOW, AuditResult.WOULD_DENY, AuditResult.ALLOW]):
        trail.record_decision(*decision(ns, result, detail=f"m{index}"))
    assert await trail.flush() == 9
    events = sorted(await written(store), key=lambda e: e.event_id)  # same instant: the id orders arrivals
    assert [e.detail for e in events] == ["a0", "a1", "a2", "a3", "a4", "m0", "m1", "m2", "m3"]


class RefusingRows(MemoryStore):
    """A memory store whose decision writes fail while ``refuse`` is set (events are written)."""

    refuse = True

    async def append_audit_rows(self, rows: Sequence[AuditRow]) -> None:
        if self.refuse:
            raise StoreUnavailable("down")
        await super().append_audit_rows(rows)


async def test_a_batch_with_events_keeps_only_what_was_not_written() -> None:
    store = RefusingRows()
    trail = AuditTrail(store)
    admin = AuditEvent(time=datetime.now(UTC), result=AuditResult.ADMIN, admin="alice", action="tokens.revoke")
    trail.record_decision(*decision(time.time_ns(), detail="before"))
    trail.record(admin)
    trail.record_decision(*decision(time.time_ns(), AuditResult.DENY, "jwt.expired", "after"))
    with pytest.raises(StoreError):
        await trail.flush()
    assert await written(store) == [admin]  # the admin action is written, the decisions wait
    assert trail.pending == 2
    store.refuse = False
    assert await trail.flush() == 2
    events = await written(store)
    assert sorted(e.detail for e in events) == ["", "after", "before"]  # nothing twice


async def test_a_buffered_decision_is_not_walked_by_the_garbage_collector(store: Store) -> None:
    trail = AuditTrail(store)
    trail.record_decision(*decision(time.time_ns()))
    trail.record_decision(*decision(time.time_ns(), AuditResult.DENY, "jwt.expired", "jwt: expired"))
    gc.collect()  # the row: only ints and strings, no longer tracked
    gc.collect()  # then its entry: (arrival, row)
    # Never part of an older generation's walk, however long the buffer.
    assert not any(gc.is_tracked(entry) for entry in (*trail._successes, *trail._kept))
    assert await trail.flush() == 2


async def test_decisions_fill_the_buffer_like_events_do(store: Store) -> None:
    # The decision path queues inline: the same bound (oldest successes first) and the same wake-up.
    trail = AuditTrail(store, buffer=3, batch_size=100)
    ns = time.time_ns()
    trail.record_decision(*decision(ns, detail="a1"))
    trail.record_decision(*decision(ns + 1, AuditResult.DENY, "jwt.expired", "d1"))
    trail.record_decision(*decision(ns + 2, detail="a2"))
    trail.record_decision(*decision(ns + 3, AuditResult.WOULD_DENY, "jwt.expired", "w1"))
    assert trail.pending == 3 and trail.dropped[AuditResult.ALLOW] == 1
    await trail.flush()
    assert [e.detail for e in await written(store)] == ["d1", "a2", "w1"]

    batched = AuditTrail(store, batch_size=2)
    batched.record_decision(*decision(ns + 4))
    assert not batched._wake.is_set()
    batched.record_decision(*decision(ns + 5, AuditResult.DENY, "jwt.expired", "d2"))
    assert batched._wake.is_set()  # a whole batch: the writer is woken
