"""Store contract, the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.credentials import AuditResult
from gateway.store import AuditQuery, Store
from tests.store.records import RECENT, event


async def test_batch_reads_back_newest_first_with_every_field(store: Store) -> None:
    events = [event(minutes=i) for i in range(5)]
    await store.append_audit(events)

    assert await store.query_audit(AuditQuery()) == list(reversed(events))
    assert await store.query_audit(AuditQuery(limit=2)) == [events[4], events[3]]
    assert await store.query_audit(AuditQuery(newest_first=False, limit=2)) == events[:2]
    await store.append_audit([])


async def test_filters_by_time_principal_and_result(store: Store) -> None:
    allow = event(0, principal="service:ci")
    deny = event(1, principal="service:ci", result=AuditResult.DENY, reason="token.revoked")
    other = event(2, principal="user:42", result=AuditResult.DENY, reason="jwt.expired")
    admin = event(
        3, principal="", result=AuditResult.ADMIN, admin="alice", action="tokens.revoke", target="ci", detail="leak"
    )
    await store.append_audit([allow, deny, other, admin])

    assert await store.query_audit(AuditQuery(principal="service:ci")) == [deny, allow]
    assert await store.query_audit(AuditQuery(result=AuditResult.DENY)) == [other, deny]
    assert await store.query_audit(AuditQuery(since=RECENT + timedelta(minutes=1))) == [admin, other, deny]
    assert await store.query_audit(AuditQuery(until=RECENT + timedelta(minutes=1))) == [allow]
    assert await store.query_audit(AuditQuery(principal="service:ci", result=AuditResult.DENY)) == [deny]
    assert await store.query_audit(AuditQuery(result=AuditResult.ADMIN)) == [admin]


async def test_retention_prunes_old_events(store: Store) -> None:
    # Event times are recent so that every backend agrees (Redis trims by time written).
    now = datetime.now(UTC)
    await store.append_audit([event(0, time=now - timedelta(seconds=1)), event(0, time=now)])

    assert await store.prune_audit(now - timedelta(hours=1)) == 0
    assert len(await store.query_audit(AuditQuery())) == 2
    assert await store.prune_audit(now + timedelta(minutes=1)) == 2
    assert await store.query_audit(AuditQuery()) == []
