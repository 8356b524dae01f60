"""SQLite's batches of decisions: exact retention, the text of a batch, a store of the first schema."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.store import AuditQuery, Store, open_store
from gateway.store.codec import decision_row
from gateway.store.decision_text import decode, encode
from gateway.store.sqlite_schema import SCHEMA_VERSION
from tests.store.records import event


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    yield opened
    await opened.close()


async def test_retention_is_exact_in_a_batch_that_straddles_the_cut_off(store: Store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old = [event(0, time=now - timedelta(seconds=30 + i), credential_id=f"old{i}") for i in range(3)]
    straddling = [event(0, time=now - timedelta(seconds=s), credential_id=f"mid{s}") for s in (12, 11, 9, 8)]
    new = [event(0, time=now - timedelta(seconds=1), credential_id="new")]
    for batch in (old, straddling, new):
        await store.append_audit_rows([decision_row(e) for e in batch])

    assert await store.prune_audit(now - timedelta(seconds=10)) == 5
    kept = await store.query_audit(AuditQuery(newest_first=False))
    assert [e.credential_id for e in kept] == ["mid9", "mid8", "new"]
    # The rewritten batch is found by its new bounds.
    since = now - timedelta(seconds=9)
    assert [e.credential_id for e in await store.query_audit(AuditQuery(since=since, limit=1))] == ["new"]
    assert await store.prune_audit(now - timedelta(seconds=10)) == 0
    assert await store.prune_audit(now) == 3
    assert await store.query_audit(AuditQuery()) == []


def test_a_batch_is_separated_text_unless_a_value_holds_a_separator() -> None:
    plain = [decision_row(event(i)) for i in range(3)]
    text = encode(plain)
    assert not text.startswith("[") and text.count("\x1e") == 2
    assert decode(text) == plain

    odd = [*plain, decision_row(event(3, user_agent="a\x1fb"))]
    text = encode(odd)
    assert text.startswith("[")  # JSON, rather than a split in the wrong place
    assert decode(text) == odd


async def test_a_store_of_the_first_schema_gains_the_batch_tables(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
        "INSERT INTO meta VALUES ('schema_version', '1');"
    )
    conn.close()

    opened = await open_store(f"sqlite:///{path}")
    try:
        await opened.append_audit_rows([decision_row(event(0))])
        assert len(await opened.query_audit(AuditQuery())) == 1
    finally:
        await opened.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    conn.close()
