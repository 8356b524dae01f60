"""Store contract, the audit trail's form of a batch: decision rows (DECISION_COLUMNS) read back as their events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.credentials import AuditResult
from gateway.credentials.audit import AuditEvent
from gateway.store import AuditQuery, Store
from gateway.store.codec import ADMIN_COLUMNS, AUDIT_COLUMNS, DECISION_COLUMNS, audit_row, decision_row, row_event
from tests.store.records import RECENT, event


async def test_rows_read_back_as_their_events_with_every_field(store: Store) -> None:
    events = [
        event(0),
        event(1, result=AuditResult.DENY, reason="token.revoked", detail="service_token: revoked", tenant=""),
        event(2, result=AuditResult.WOULD_DENY, principal="", credential_kind="", reason="auth.required"),
        event(3, user_agent="ünïcode/1.0 ☃", detail='quotes " and \\ backslashes'),
    ]
    await store.append_audit_rows([decision_row(e) for e in events])
    await store.append_audit_rows([])

    assert await store.query_audit(AuditQuery(newest_first=False)) == events


async def test_rows_and_events_share_one_trail(store: Store) -> None:
    admin = event(1, result=AuditResult.ADMIN, principal="", admin="alice", action="tokens.revoke", target="ci")
    decisions = [event(0), event(2, result=AuditResult.DENY, reason="token.revoked")]
    await store.append_audit([admin])
    await store.append_audit_rows([decision_row(e) for e in decisions])

    assert await store.query_audit(AuditQuery(newest_first=False)) == [decisions[0], admin, decisions[1]]
    assert await store.query_audit(AuditQuery(result=AuditResult.ADMIN)) == [admin]


async def test_a_large_batch_keeps_its_order(store: Store) -> None:
    # 77 rows: several multi-row statements (SQLite) and a remainder of each smaller size.
    events = [event(i, credential_id=f"c{i}") for i in range(77)]
    await store.append_audit_rows([decision_row(e) for e in events])

    stored = await store.query_audit(AuditQuery(newest_first=False, limit=100))
    assert [e.credential_id for e in stored] == [f"c{i}" for i in range(77)]


def test_a_row_is_the_event_in_column_order_without_the_admin_fields() -> None:
    original = event(0, detail="x")
    row = decision_row(original)
    assert len(row) == len(DECISION_COLUMNS) == len(AUDIT_COLUMNS) - len(ADMIN_COLUMNS)
    assert dict(zip(DECISION_COLUMNS, row, strict=True))["detail"] == "x"
    assert row_event(row) == original
    full = dict(zip(AUDIT_COLUMNS, audit_row(original), strict=True))
    assert row == tuple(full[name] for name in DECISION_COLUMNS)


def test_an_admin_action_is_not_a_decision_row() -> None:
    with pytest.raises(ValueError, match="admin action"):
        decision_row(event(0, result=AuditResult.ADMIN, admin="bob", action="tokens.revoke"))


async def test_queries_over_several_batches_filter_order_and_stop_at_the_limit(store: Store) -> None:
    # Three batches whose times interleave (a batch put back after a failed write is older than the next),
    # with principals and results spread across them.
    def decision(minute: int) -> AuditEvent:
        principal = "service:ci" if minute % 2 else "user:42"
        result = AuditResult.DENY if minute % 3 == 0 else AuditResult.ALLOW
        return event(minute, principal=principal, result=result, credential_id=f"c{minute}")

    batches = [[decision(m) for m in minutes] for minutes in ([0, 4, 8, 9], [1, 2, 3], [5, 6, 7, 10, 11])]
    for batch in batches:
        await store.append_audit_rows([decision_row(e) for e in batch])
    everything = sorted((e for batch in batches for e in batch), key=lambda e: (e.time, e.event_id))

    def ids(events: list[AuditEvent]) -> list[str]:
        return [e.credential_id for e in events]

    assert ids(await store.query_audit(AuditQuery(limit=100, newest_first=False))) == ids(everything)
    for limit in range(1, 13):
        assert ids(await store.query_audit(AuditQuery(limit=limit))) == ids(everything[::-1][:limit])
        assert ids(await store.query_audit(AuditQuery(limit=limit, newest_first=False))) == ids(everything[:limit])
    ci = [e for e in everything if e.principal == "service:ci"]
    assert ids(await store.query_audit(AuditQuery(principal="service:ci", limit=3))) == ids(ci[::-1][:3])
    denied = [e for e in everything if e.result is AuditResult.DENY]
    assert ids(await store.query_audit(AuditQuery(result=AuditResult.DENY))) == ids(denied[::-1])
    since, until = RECENT + timedelta(minutes=3), RECENT + timedelta(minutes=9)
    window = [e for e in everything if since <= e.time < until]
    assert ids(await store.query_audit(AuditQuery(since=since, until=until, newest_first=False))) == ids(window)
    assert await store.query_audit(AuditQuery(principal="service:ci", result=AuditResult.ADMIN)) == []


async def test_values_holding_control_characters_read_back_unchanged(store: Store) -> None:
    # \x1e and \x1f separate rows and fields in SQLite's batch text: a value holding one must not split.
    events = [event(0, user_agent="odd\x1fagent\x1e/1"), event(1, detail="line\nbreak\ttab\x00nul")]
    await store.append_audit_rows([decision_row(e) for e in events])

    assert await store.query_audit(AuditQuery(newest_first=False)) == events
