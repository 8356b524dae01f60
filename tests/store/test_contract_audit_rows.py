"""Store contract, the audit trail's form of a batch: decision rows (DECISION_COLUMNS) read back as their events."""

from __future__ import annotations

import pytest

from gateway.credentials import AuditResult
from gateway.store import AuditQuery, Store
from gateway.store.codec import ADMIN_COLUMNS, AUDIT_COLUMNS, DECISION_COLUMNS, audit_row, decision_row, row_event
from tests.store.records import event


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
