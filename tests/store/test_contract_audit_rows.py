"""Store contract, the audit trail's form of a batch: rows of AUDIT_COLUMNS read back as the events they encode."""

from __future__ import annotations

from gateway.credentials import AuditResult
from gateway.store import AuditQuery, Store
from gateway.store.codec import AUDIT_COLUMNS, audit_row, row_event
from tests.store.records import event


async def test_rows_read_back_as_their_events_with_every_field(store: Store) -> None:
    events = [
        event(0),
        event(1, result=AuditResult.DENY, reason="token.revoked", detail="service_token: revoked", tenant=""),
        event(2, result=AuditResult.ADMIN, principal="", admin="alice", action="tokens.revoke", target="ci"),
        event(3, user_agent="ünïcode/1.0 ☃", detail='quotes " and \\ backslashes'),
    ]
    await store.append_audit_rows([audit_row(e) for e in events])
    await store.append_audit_rows([])

    assert await store.query_audit(AuditQuery(newest_first=False)) == events


async def test_a_large_batch_keeps_its_order(store: Store) -> None:
    # 77 rows: several multi-row statements (SQLite) and a remainder of each smaller size.
    events = [event(i, credential_id=f"c{i}") for i in range(77)]
    await store.append_audit_rows([audit_row(e) for e in events])

    stored = await store.query_audit(AuditQuery(newest_first=False, limit=100))
    assert [e.credential_id for e in stored] == [f"c{i}" for i in range(77)]


def test_a_row_is_the_event_in_column_order() -> None:
    original = event(0, admin="bob", detail="x")
    row = audit_row(original)
    assert len(row) == len(AUDIT_COLUMNS)
    assert dict(zip(AUDIT_COLUMNS, row, strict=True))["admin"] == "bob"
    assert row_event(row) == original
