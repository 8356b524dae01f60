"""The pipeline's decisions in the SQLite store: one row per batch the audit trail writes.

Every authenticated request is audited, so appending decisions is the store's hottest
write. A row per decision costs a B-tree insert into the table and each of its indexes
plus a bound parameter per column (SQLite copies each): about 25,000 instructions a
decision on the store's thread, more than the rest of the audit trail together. Here a
batch of decisions (:data:`~gateway.store.codec.DECISION_COLUMNS` rows, up to the trail's
``batch_size``) is one ``audit_batches`` row:

- ``decisions``: the rows as one text (:mod:`gateway.store.decision_text`).
- ``first_time`` / ``last_time`` (microseconds) bound its decisions' times; ``events``
  counts them.
- ``audit_batch_keys`` lists each principal and each result a batch holds, with the
  batch's ``last_time``, so a query by principal or result reads only the batches that
  can match.

Queries read batches newest (or oldest) first and stop once no further batch can hold an
event among the first ``limit``. Retention deletes whole batches whose newest decision is
past the cut-off and rewrites the few that straddle it, so the cut-off is exact. Admin
actions, and decisions written by earlier versions, stay one row each in ``audit``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Final

from gateway.credentials.audit import AuditEvent
from gateway.store.base import AuditQuery
from gateway.store.codec import AuditRow, row_event, to_micros
from gateway.store.decision_text import (
    EVENT_ID,
    TIME,
    decode,
    encode,
    matching,
    principal_of,
    result_of,
    time_of,
)
from gateway.store.errors import StoreConfigError

# Through the view audit_batch_input (sqlite_schema): its trigger writes the batch, then its keys (the JSON
# array, through json_each, built into SQLite since 3.38), in the one step of this one statement. The
# sqlite3 module hands the GIL to the event loop's thread and takes it back around every step, and
# BEGIN / COMMIT would be two more.
_INSERT_BATCH: Final = (
    "INSERT INTO audit_batch_input (first_time, last_time, events, decisions, keys) VALUES (?, ?, ?, ?, ?)"
)

# (time in microseconds, event id): the trail's order, the same as ``audit``'s ORDER BY time, event_id.
SortKey = tuple[int, str]


def check_support(conn: sqlite3.Connection, url: str) -> None:
    """Refuse, naming what is missing, an SQLite library built without its JSON functions."""
    try:
        conn.execute("SELECT value FROM json_each('[1]')").fetchall()
    except sqlite3.OperationalError:
        raise StoreConfigError(
            f"store {url}: the SQLite library ({sqlite3.sqlite_version}) lacks json_each; 3.38 or newer has it built in"
        ) from None


def _keys(rows: Sequence[AuditRow]) -> list[str]:
    """The batch's entries in audit_batch_keys: each distinct principal and result."""
    principals, results = set(map(principal_of, rows)), set(map(result_of, rows))
    return [f"principal:{principal}" for principal in principals] + [f"result:{result}" for result in results]


def insert(conn: sqlite3.Connection, rows: Sequence[AuditRow]) -> None:
    """Write ``rows`` as one batch: one statement, atomic on its own (no BEGIN / COMMIT needed)."""
    if not rows:
        return
    times: list[int] = list(map(time_of, rows))
    conn.execute(_INSERT_BATCH, (min(times), max(times), len(rows), encode(rows), json.dumps(_keys(rows))))


def _batches(conn: sqlite3.Connection, query: AuditQuery) -> Iterator[tuple[int, int, str]]:
    """(first_time, last_time, decisions) of the batches that may hold a match, in the query's order."""
    clauses: list[str] = []
    params: list[object] = []
    for key in (
        None if query.principal is None else f"principal:{query.principal}",
        None if query.result is None else f"result:{query.result.value}",
    ):
        if key is not None:
            clauses.append("seq IN (SELECT seq FROM audit_batch_keys WHERE key = ?)")
            params.append(key)
    if query.since is not None:
        clauses.append("last_time >= ?")
        params.append(to_micros(query.since))
    if query.until is not None:
        clauses.append("first_time < ?")
        params.append(to_micros(query.until))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    # Newest first: by last_time down, so every later batch is at least as old. Oldest first: the mirror.
    order = "last_time DESC" if query.newest_first else "first_time ASC"
    sql = f"SELECT first_time, last_time, decisions FROM audit_batches {where} ORDER BY {order}, seq"  # noqa: S608
    for batch in conn.execute(sql, params):
        yield batch["first_time"], batch["last_time"], batch["decisions"]


def query(conn: sqlite3.Connection, query: AuditQuery) -> list[tuple[SortKey, AuditEvent]]:
    """The first ``query.limit`` decisions in batches that match ``query``, in its order, with their sort keys."""
    since = None if query.since is None else to_micros(query.since)
    until = None if query.until is None else to_micros(query.until)
    result = None if query.result is None else query.result.value
    found: list[tuple[SortKey, AuditRow]] = []
    newest = query.newest_first
    for first, last, text in _batches(conn, query):
        if len(found) >= query.limit:
            # Enough already: stop when this batch (and so every later one) lies wholly beyond the last kept.
            bound = found[query.limit - 1][0][0]
            if (last < bound) if newest else (first > bound):
                break
        for row in matching(decode(text), since, until, query.principal, result):
            found.append(((int(row[TIME]), str(row[EVENT_ID])), row))
        found.sort(key=lambda item: item[0], reverse=newest)
        del found[query.limit :]
    return [(key, row_event(row)) for key, row in found]


def prune(conn: sqlite3.Connection, cutoff: int) -> int:
    """Delete decisions older than ``cutoff`` (microseconds); returns how many (inside the caller's transaction)."""
    whole = conn.execute(
        "SELECT COALESCE(SUM(events), 0) AS events FROM audit_batches WHERE last_time < ?", (cutoff,)
    ).fetchone()["events"]
    conn.execute("DELETE FROM audit_batches WHERE last_time < ?", (cutoff,))
    conn.execute("DELETE FROM audit_batch_keys WHERE last_time < ?", (cutoff,))
    pruned = int(whole)
    # The few batches that straddle the cut-off keep only their newer decisions.
    straddling = conn.execute(
        "SELECT seq, decisions FROM audit_batches WHERE first_time < ? AND last_time >= ?", (cutoff, cutoff)
    ).fetchall()
    for batch in straddling:
        rows = decode(batch["decisions"])
        kept = [row for row in rows if int(row[TIME]) >= cutoff]
        pruned += len(rows) - len(kept)
        conn.execute(
            "UPDATE audit_batches SET first_time = ?, events = ?, decisions = ? WHERE seq = ?",
            (min(int(row[TIME]) for row in kept), len(kept), encode(kept), batch["seq"]),
        )
    return pruned
