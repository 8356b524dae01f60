"""``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``: the embedded default.

The file (and its directory) is created on first use, in WAL mode so readers never
wait for the writer. The event loop never touches SQLite: one connection lives on
one dedicated thread and every statement runs there (``run_in_executor``), which
also serialises this process's writes. Each mutating call is one ``BEGIN
IMMEDIATE`` transaction: all of it or nothing.

Change notifications: a write appends to the ``changes`` table in its transaction
and tells this process's subscribers at once; while someone subscribes, the store
polls that table (``?poll=500ms`` by default) so changes made by another process on
the same file, the CLI revoking a token for instance, reach this one too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from gateway.credentials.audit import AuditEvent
from gateway.credentials.models import ApiClient, ApiCredential, ApiKey, ServiceKey, ServiceToken
from gateway.store import rules, sqlite_audit
from gateway.store.base import (
    AuditQuery,
    Invalidation,
    InvalidationKind,
    InvalidationListener,
    ListenerSet,
    Subscription,
    Usage,
    service_key_ref,
)
from gateway.store.batching import Batcher
from gateway.store.codec import (
    AUDIT_COLUMNS,
    AuditRow,
    audit_row,
    from_row,
    to_micros,
    to_row,
)
from gateway.store.errors import Conflict, NotFound, StoreConfigError, StoreError, StoreUnavailable
from gateway.store.registry import split_options
from gateway.store.sqlite_schema import ADDED_COLUMNS, SCHEMA, SCHEMA_VERSION
from gateway.units import parse_duration

log = logging.getLogger("gateway.store.sqlite")

T = TypeVar("T")
Changes = list[Invalidation]

BUSY_TIMEOUT = 5.0  # seconds another process may hold the write lock before we give up
KEPT_CHANGES = 10_000  # change-feed rows kept for pollers in other processes
_NONCE_SWEEP_EVERY = 1000


def sqlite_path(url: str) -> str:
    """``sqlite:///var/gateway.db`` -> ``var/gateway.db``; ``sqlite:////srv/gw.db`` -> ``/srv/gw.db``."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
        raise StoreConfigError(
            f"not an SQLite URL (sqlite:///relative/path.db or sqlite:////absolute/path.db): {url!r}"
        )
    return unquote(parts.path[1:])


# Admin actions (and the admin API's refusals), one row each in ``audit``: rare writes. The pipeline's
# decisions, the hottest write of the store, go in batches to audit_batches (gateway/store/sqlite_audit.py).
_INSERT_EVENT = f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})"  # noqa: S608 - names from the codec


def _audit_key(row: Mapping[str, Any]) -> sqlite_audit.SortKey:
    return int(row["time"]), str(row["event_id"])


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def _add_columns(conn: sqlite3.Connection) -> None:
    """Add the columns a file of an older schema lacks (:data:`ADDED_COLUMNS`)."""
    present: dict[str, set[str]] = {}  # table -> its columns, read once per table
    for table, column, definition in ADDED_COLUMNS:
        if table not in present:
            present[table] = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present[table]:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")  # names: sqlite_schema


def _insert(conn: sqlite3.Connection, table: str, row: Mapping[str, object], verb: str = "INSERT") -> None:
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    # Table and column names come from this module and the codec, never from input.
    conn.execute(f"{verb} INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))


# One statement per claim, so each is atomic on its own: insert, or take over an expired claim, otherwise
# change nothing. A nonce claimed twice in one batch: the first wins, as it would one statement at a time.
_CLAIM_NONCE = (
    "INSERT INTO nonces (scope, nonce, expires) VALUES (?, ?, ?) "
    "ON CONFLICT (scope, nonce) DO UPDATE SET expires = excluded.expires WHERE nonces.expires <= ?"
)


def _claim_nonces(
    conn: sqlite3.Connection, claims: Sequence[tuple[str, str, int, int]], sweep: bool, now: int
) -> list[bool]:
    """Claim each of ``claims`` ((scope, nonce, expires, now)) in one transaction; whether each was claimed."""
    if len(claims) == 1 and not sweep:  # one statement is a transaction of its own
        return [conn.execute(_CLAIM_NONCE, claims[0]).rowcount == 1]
    conn.execute("BEGIN IMMEDIATE")
    try:
        if sweep:
            conn.execute("DELETE FROM nonces WHERE expires <= ?", (now,))
        claimed = [conn.execute(_CLAIM_NONCE, claim).rowcount == 1 for claim in claims]
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return claimed


class SqliteStore:
    """The embedded store: one SQLite file, one thread."""

    def __init__(self, url: str) -> None:
        plain, options = split_options(url, frozenset({"poll"}))
        self._url = url
        self._path = sqlite_path(plain)
        try:
            self._poll_interval = parse_duration(options.get("poll", "500ms")) or 0.5
        except ValueError as exc:
            raise StoreConfigError(f"{url}: poll: {exc}") from None
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # touched only on the executor's thread
        self._listeners = ListenerSet()
        self._poller: asyncio.Task[None] | None = None
        self._last_seq = 0
        self._own_seqs: set[int] = set()
        self._nonce_claims = 0
        self._nonces = Batcher(
            self._claim_nonces, "gateway-sqlite-nonces", f"store {url}: a nonce claim was interrupted"
        )
        self._cache_writes = 0

    @property
    def url(self) -> str:
        return self._url

    # -- plumbing ----------------------------------------------------------------------------
    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise StoreUnavailable(f"store {self.url} is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, fn)

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StoreUnavailable(f"store {self.url} is not open")
        try:
            return fn(self._conn)
        except StoreError:
            raise
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"{self.url}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"store {self.url} failed: {exc}") from exc

    async def _transaction(self, fn: Callable[[sqlite3.Connection, Changes], T]) -> T:
        """Run ``fn`` in one write transaction; announce the changes it listed once committed."""

        def write(conn: sqlite3.Connection) -> tuple[T, Changes, list[int]]:
            changes: Changes = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, changes)
                seqs = [
                    int(conn.execute("INSERT INTO changes (kind, ident) VALUES (?, ?)", (c.kind, c.id)).lastrowid or 0)
                    for c in changes
                ]
                if seqs and seqs[-1] % 100 == 0:
                    conn.execute("DELETE FROM changes WHERE seq <= ?", (seqs[-1] - KEPT_CHANGES,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return result, changes, seqs

        result, changes, seqs = await self._call(write)
        if self._poller is not None:
            self._own_seqs.update(seqs)
        for change in changes:
            self._listeners.emit(change)
        return result

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-sqlite")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._connect)

    def _connect(self) -> None:
        try:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open store {self.url}: {exc}") from None
        try:
            sqlite_audit.check_support(conn, self.url)
            conn.row_factory = _dict_row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row["value"]) > SCHEMA_VERSION:
                raise StoreConfigError(
                    f"store {self.url} has schema version {row['value']}, newer than this gateway's {SCHEMA_VERSION}"
                )
            elif int(row["value"]) < SCHEMA_VERSION:  # the script above added what is new (tables, a view, its trigger)
                _add_columns(conn)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            conn.close()
            raise StoreUnavailable(f"cannot open store {self.url}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def check(self) -> str | None:
        try:
            await self._call(lambda conn: conn.execute("SELECT 1").fetchone())
        except StoreError as exc:
            return exc.detail
        return None

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        await self._nonces.drain()  # the claims already made are answered first
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self._disconnect)
        executor.shutdown(wait=False)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- service keys ------------------------------------------------------------------------
    async def add_service_key(self, key: ServiceKey) -> None:
        def op(conn: sqlite3.Connection, changes: Changes) -> None:
            if _service_key(conn, key.service_id, key.key_id) is not None:
                raise Conflict(f"service {key.service_id!r} already has a key {key.key_id!r}")
            _insert(conn, "service_keys", to_row(key))
            changes.append(Invalidation(InvalidationKind.SERVICE_KEY, service_key_ref(key.service_id, key.key_id)))

        await self._transaction(op)

    async def get_service_key(self, service_id: str, key_id: str) -> ServiceKey | None:
        return await self._call(lambda conn: _service_key(conn, service_id, key_id))

    async def list_service_keys(self, service_id: str | None = None) -> list[ServiceKey]:
        where, params = ("WHERE service_id = ?", (service_id,)) if service_id is not None else ("", ())
        sql = f"SELECT * FROM service_keys {where} ORDER BY service_id, created, key_id"  # noqa: S608
        rows = await self._call(lambda conn: conn.execute(sql, params).fetchall())
        return [from_row(ServiceKey, row) for row in rows]

    async def update_service_key(self, key: ServiceKey) -> None:
        def op(conn: sqlite3.Connection, changes: Changes) -> None:
            if _service_key(conn, key.service_id, key.key_id) is None:
                raise NotFound(f"service {key.service_id!r} has no key {key.key_id!r}")
            _insert(conn, "service_keys", to_row(key), "REPLACE")
            changes.append(Invalidation(InvalidationKind.SERVICE_KEY, service_key_ref(key.service_id, key.key_id)))

        await self._transaction(op)

    async def rotate_service_key(self, new: ServiceKey, *, old_key_id: str, grace_until: datetime) -> ServiceKey:
        def op(conn: sqlite3.Connection, changes: Changes) -> ServiceKey:
            old = _service_key(conn, new.service_id, old_key_id)
            if old is None:
                raise NotFound(f"service {new.service_id!r} has no key {old_key_id!r}")
            if _service_key(conn, new.service_id, new.key_id) is not None:
                raise Conflict(f"service {new.service_id!r} already has a key {new.key_id!r}")
            expires = rules.cut_expiry(old.expires, grace_until)
            conn.execute(
                "UPDATE service_keys SET expires = ? WHERE service_id = ? AND key_id = ?",
                (to_micros(expires), old.service_id, old.key_id),
            )
            _insert(conn, "service_keys", to_row(new))
            for key_id in (old.key_id, new.key_id):
                changes.append(Invalidation(InvalidationKind.SERVICE_KEY, service_key_ref(new.service_id, key_id)))
            updated = _service_key(conn, old.service_id, old.key_id)
            assert updated is not None  # noqa: S101 - written above in this transaction
            return updated

        return await self._transaction(op)

    # -- service tokens ----------------------------------------------------------------------
    async def create_token(self, token: ServiceToken) -> None:
        await self.import_tokens([token])

    async def import_tokens(self, tokens: Sequence[ServiceToken]) -> None:
        """Store many new tokens in one transaction (all or none); the same checks as ``create_token``."""
        if not tokens:
            return
        hashes = [t.token_hash for t in tokens]
        live_names = [t.name for t in tokens if t.live]
        if len(set(hashes)) < len(hashes):
            raise Conflict("a token with this hash is already stored")
        if len(set(live_names)) < len(live_names):
            raise rules.duplicate_name(next(n for n in live_names if live_names.count(n) > 1))
        rows = [to_row(t) for t in tokens]
        columns = ", ".join(rows[0])
        insert = f"INSERT INTO tokens ({columns}) VALUES ({', '.join('?' * len(rows[0]))})"  # noqa: S608

        def op(conn: sqlite3.Connection, changes: Changes) -> None:
            # Set-based checks: a bulk import of a million legacy tokens stays a matter of seconds.
            for chunk in _chunks(hashes):
                sql = f"SELECT 1 FROM tokens WHERE token_hash IN ({', '.join('?' * len(chunk))}) LIMIT 1"  # noqa: S608
                if conn.execute(sql, chunk).fetchone() is not None:
                    raise Conflict("a token with this hash is already stored")
            for chunk in _chunks(live_names):
                sql = (
                    f"SELECT name FROM tokens WHERE name IN ({', '.join('?' * len(chunk))}) "  # noqa: S608
                    "AND revoked_at IS NULL AND replaced_by IS NULL LIMIT 1"
                )
                if (row := conn.execute(sql, chunk).fetchone()) is not None:
                    raise rules.duplicate_name(row["name"])
            conn.executemany(insert, [tuple(row.values()) for row in rows])
            if len(tokens) <= 100:
                changes.extend(Invalidation(InvalidationKind.TOKEN, t.token_hash) for t in tokens)
            else:  # a bulk import: one message instead of thousands
                changes.append(Invalidation(InvalidationKind.ALL))

        await self._transaction(op)

    async def get_token(self, token_hash: str) -> ServiceToken | None:
        return await self._call(lambda conn: _token(conn, token_hash))

    async def get_token_by_name(self, name: str) -> ServiceToken | None:
        sql = "SELECT * FROM tokens WHERE name = ? AND revoked_at IS NULL AND replaced_by IS NULL"
        row = await self._call(lambda conn: conn.execute(sql, (name,)).fetchone())
        return None if row is None else from_row(ServiceToken, row)

    async def list_tokens(self, *, owner: str | None = None, name: str | None = None) -> list[ServiceToken]:
        clauses, params = _filters(owner=owner, name=name)
        sql = f"SELECT * FROM tokens {clauses} ORDER BY created, token_hash"  # noqa: S608
        rows = await self._call(lambda conn: conn.execute(sql, params).fetchall())
        return [from_row(ServiceToken, row) for row in rows]

    async def rotate_token(self, new: ServiceToken, *, grace_until: datetime) -> tuple[ServiceToken, ServiceToken]:
        def op(conn: sqlite3.Connection, changes: Changes) -> tuple[ServiceToken, ServiceToken]:
            row = conn.execute(
                "SELECT * FROM tokens WHERE name = ? AND revoked_at IS NULL AND replaced_by IS NULL", (new.name,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no live token named {new.name!r}")
            old = from_row(ServiceToken, row)
            if _token(conn, new.token_hash) is not None:
                raise Conflict("a token with this hash is already stored")
            expires = rules.cut_expiry(old.expires, grace_until)
            conn.execute(
                "UPDATE tokens SET replaced_by = ?, expires = ? WHERE token_hash = ?",
                (new.token_hash, to_micros(expires), old.token_hash),
            )
            stored = dataclasses.replace(new, rotated_from=old.token_hash, replaced_by=None)
            _insert(conn, "tokens", to_row(stored))
            changes.append(Invalidation(InvalidationKind.TOKEN, old.token_hash))
            changes.append(Invalidation(InvalidationKind.TOKEN, new.token_hash))
            updated = _token(conn, old.token_hash)
            assert updated is not None  # noqa: S101 - updated above in this transaction
            return updated, stored

        return await self._transaction(op)

    async def revoke_token(self, token_hash: str, *, reason: str, at: datetime) -> ServiceToken:
        def op(conn: sqlite3.Connection, changes: Changes) -> ServiceToken:
            conn.execute(
                "UPDATE tokens SET revoked_at = ?, revoked_reason = ? WHERE token_hash = ? AND revoked_at IS NULL",
                (to_micros(at), reason, token_hash),
            )
            token = _token(conn, token_hash)
            if token is None:
                raise NotFound("no such token")
            changes.append(Invalidation(InvalidationKind.TOKEN, token_hash))
            return token

        return await self._transaction(op)

    async def revoke_tokens(self, *, reason: str, at: datetime, owner: str | None = None) -> int:
        def op(conn: sqlite3.Connection, changes: Changes) -> int:
            sql = "UPDATE tokens SET revoked_at = ?, revoked_reason = ? WHERE revoked_at IS NULL"
            params: tuple[object, ...] = (to_micros(at), reason)
            if owner is not None:
                sql, params = sql + " AND owner = ?", (*params, owner)
            count = conn.execute(sql, params).rowcount
            if count:
                changes.append(Invalidation(InvalidationKind.ALL))
            return count

        return await self._transaction(op)

    async def delete_token(self, token_hash: str) -> bool:
        def op(conn: sqlite3.Connection, changes: Changes) -> bool:
            deleted = conn.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,)).rowcount > 0
            if deleted:
                changes.append(Invalidation(InvalidationKind.TOKEN, token_hash))
            return deleted

        return await self._transaction(op)

    async def delete_expired_tokens(self, before: datetime) -> int:
        # Expired and revoked tokens are refused whatever a cache holds: no notification needed.
        cutoff = to_micros(before)
        sql = (
            "DELETE FROM tokens WHERE (expires IS NOT NULL AND expires < ?) "
            "OR (revoked_at IS NOT NULL AND revoked_at < ?)"
        )
        return await self._transaction(lambda conn, _: conn.execute(sql, (cutoff, cutoff)).rowcount)

    async def list_expiring_tokens(self, *, now: datetime, until: datetime) -> list[ServiceToken]:
        sql = (
            "SELECT * FROM tokens WHERE revoked_at IS NULL AND expires >= ? AND expires < ? "
            "ORDER BY expires, token_hash"
        )
        rows = await self._call(lambda conn: conn.execute(sql, (to_micros(now), to_micros(until))).fetchall())
        return [from_row(ServiceToken, row) for row in rows]

    async def record_usage(self, usage: Mapping[str, Usage]) -> None:
        await self._record_usage("tokens", "token_hash", usage)

    async def _record_usage(self, table: str, key: str, usage: Mapping[str, Usage]) -> None:
        if not usage:
            return
        # One statement for every credential used (a JSON array through json_each), not a step each: the
        # sqlite3 module hands the GIL to the event loop's thread and back around every step (docs/store.md).
        sql = (
            f"UPDATE {table} SET usage_count = usage_count + used.count, "  # noqa: S608 - our table names
            "last_used = MAX(COALESCE(last_used, 0), used.last) "
            "FROM (SELECT json_extract(value, '$[0]') AS ident, json_extract(value, '$[1]') AS count, "
            "json_extract(value, '$[2]') AS last FROM json_each(?)) AS used "
            f"WHERE {table}.{key} = used.ident"
        )
        used = json.dumps([(ident, count, to_micros(last)) for ident, (count, last) in usage.items()])
        await self._transaction(lambda conn, _: conn.execute(sql, (used,)))

    # -- API clients and keys ----------------------------------------------------------------
    async def register_client(self, client: ApiClient, keys: Sequence[ApiKey] = ()) -> None:
        def op(conn: sqlite3.Connection, changes: Changes) -> None:
            if _client(conn, client.client_id) is not None:
                raise Conflict(f"client {client.client_id!r} already exists")
            _insert(conn, "api_clients", to_row(client))
            for key in keys:
                _check_new_key(conn, key, client.client_id)
                _insert(conn, "api_keys", to_row(key))
                changes.append(Invalidation(InvalidationKind.API_KEY, key.key_hash))
            changes.append(Invalidation(InvalidationKind.API_CLIENT, client.client_id))

        await self._transaction(op)

    async def get_client(self, client_id: str) -> ApiClient | None:
        return await self._call(lambda conn: _client(conn, client_id))

    async def list_clients(self, *, tenant: str | None = None) -> list[ApiClient]:
        clauses, params = _filters(tenant=tenant)
        sql = f"SELECT * FROM api_clients {clauses} ORDER BY created, client_id"  # noqa: S608
        rows = await self._call(lambda conn: conn.execute(sql, params).fetchall())
        return [from_row(ApiClient, row) for row in rows]

    async def update_client(self, client: ApiClient) -> None:
        def op(conn: sqlite3.Connection, changes: Changes) -> None:
            row = to_row(client)
            assignments = ", ".join(f"{column} = ?" for column in row)
            sql = f"UPDATE api_clients SET {assignments} WHERE client_id = ?"  # noqa: S608 - codec columns
            if conn.execute(sql, (*row.values(), client.client_id)).rowcount == 0:
                raise NotFound(f"no client {client.client_id!r}")
            changes.append(Invalidation(InvalidationKind.API_CLIENT, client.client_id))

        await self._transaction(op)

    async def add_api_key(self, key: ApiKey) -> None:
        def op(conn: sqlite3.Connection, changes: Changes) -> None:
            if _client(conn, key.client_id) is None:
                raise NotFound(f"no client {key.client_id!r}")
            _check_new_key(conn, key, key.client_id)
            _insert(conn, "api_keys", to_row(key))
            changes.append(Invalidation(InvalidationKind.API_KEY, key.key_hash))

        await self._transaction(op)

    async def get_api_key(self, key_hash: str) -> ApiCredential | None:
        def op(conn: sqlite3.Connection) -> ApiCredential | None:
            key = _api_key(conn, key_hash)
            client = None if key is None else _client(conn, key.client_id)
            return None if key is None or client is None else ApiCredential(key, client)

        return await self._call(op)

    async def list_api_keys(self, client_id: str) -> list[ApiKey]:
        sql = "SELECT * FROM api_keys WHERE client_id = ? ORDER BY created, key_hash"
        rows = await self._call(lambda conn: conn.execute(sql, (client_id,)).fetchall())
        return [from_row(ApiKey, row) for row in rows]

    async def rotate_api_key(self, new: ApiKey, *, old_key_hash: str, grace_until: datetime) -> tuple[ApiKey, ApiKey]:
        def op(conn: sqlite3.Connection, changes: Changes) -> tuple[ApiKey, ApiKey]:
            old = _api_key(conn, old_key_hash)
            if old is None:
                raise NotFound("no such API key")
            _check_new_key(conn, new, old.client_id)
            expires = rules.cut_expiry(old.expires, grace_until)
            conn.execute("UPDATE api_keys SET expires = ? WHERE key_hash = ?", (to_micros(expires), old.key_hash))
            stored = dataclasses.replace(new, rotated_from=old.key_hash)
            _insert(conn, "api_keys", to_row(stored))
            changes.append(Invalidation(InvalidationKind.API_KEY, old.key_hash))
            changes.append(Invalidation(InvalidationKind.API_KEY, new.key_hash))
            updated = _api_key(conn, old.key_hash)
            assert updated is not None  # noqa: S101 - updated above in this transaction
            return updated, stored

        return await self._transaction(op)

    async def revoke_api_key(self, key_hash: str, *, reason: str, at: datetime) -> ApiKey:
        def op(conn: sqlite3.Connection, changes: Changes) -> ApiKey:
            conn.execute(
                "UPDATE api_keys SET revoked_at = ?, revoked_reason = ? WHERE key_hash = ? AND revoked_at IS NULL",
                (to_micros(at), reason, key_hash),
            )
            key = _api_key(conn, key_hash)
            if key is None:
                raise NotFound("no such API key")
            changes.append(Invalidation(InvalidationKind.API_KEY, key_hash))
            return key

        return await self._transaction(op)

    async def record_api_key_usage(self, usage: Mapping[str, Usage]) -> None:
        await self._record_usage("api_keys", "key_hash", usage)

    # -- audit -------------------------------------------------------------------------------
    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        rows = [audit_row(event) for event in events]
        if rows:
            await self._transaction(lambda conn, _: conn.executemany(_INSERT_EVENT, rows))

    async def append_audit_rows(self, rows: Sequence[AuditRow]) -> None:
        if rows:
            await self._call(partial(sqlite_audit.insert, rows=rows))  # one statement: no transaction

    async def query_audit(self, query: AuditQuery) -> list[AuditEvent]:
        clauses: list[str] = []
        params: list[object] = []
        for clause, value in (
            ("time >= ?", None if query.since is None else to_micros(query.since)),
            ("time < ?", None if query.until is None else to_micros(query.until)),
            ("principal = ?", query.principal),
            ("result = ?", None if query.result is None else query.result.value),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "DESC" if query.newest_first else "ASC"
        sql = f"SELECT * FROM audit {where} ORDER BY time {order}, event_id {order} LIMIT ?"  # noqa: S608

        def read(conn: sqlite3.Connection) -> list[AuditEvent]:
            # Admin actions (and decisions of earlier versions) one row each, decisions in batches: merged.
            found = [(_audit_key(row), from_row(AuditEvent, row)) for row in conn.execute(sql, (*params, query.limit))]
            found += sqlite_audit.query(conn, query)
            found.sort(key=lambda item: item[0], reverse=query.newest_first)
            return [event for _, event in found[: query.limit]]

        return await self._call(read)

    async def prune_audit(self, before: datetime) -> int:
        cutoff = to_micros(before)

        def prune(conn: sqlite3.Connection, _: Changes) -> int:
            rows = conn.execute("DELETE FROM audit WHERE time < ?", (cutoff,)).rowcount
            return rows + sqlite_audit.prune(conn, cutoff)

        return await self._transaction(prune)

    # -- nonces ------------------------------------------------------------------------------
    async def claim_nonce(self, scope: str, nonce: str, ttl: float) -> bool:
        """Claimed in batches (:mod:`gateway.store.batching`): the claims made while the store's thread writes
        one batch go in the next, one transaction."""
        rules.check_ttl(ttl)
        return await self._nonces.submit((scope, nonce, int(ttl * 1_000_000)))

    async def _claim_nonces(self, batch: list[tuple[str, str, int]]) -> list[bool]:
        now = time.time_ns() // 1000
        before = self._nonce_claims
        self._nonce_claims += len(batch)
        sweep = before // _NONCE_SWEEP_EVERY != self._nonce_claims // _NONCE_SWEEP_EVERY
        claims = [(scope, nonce, now + ttl, now) for scope, nonce, ttl in batch]
        return await self._call(partial(_claim_nonces, claims=claims, sweep=sweep, now=now))

    # -- shared cache ------------------------------------------------------------------------
    async def cache_get(self, key: str) -> str | None:
        now = time.time_ns() // 1000
        row = await self._call(
            lambda conn: conn.execute("SELECT value FROM cache WHERE key = ? AND expires > ?", (key, now)).fetchone()
        )
        return None if row is None else str(row["value"])

    async def cache_set(self, key: str, value: str, ttl: float) -> None:
        rules.check_cache_ttl(ttl)
        now = time.time_ns() // 1000
        self._cache_writes += 1
        sweep = self._cache_writes % _NONCE_SWEEP_EVERY == 0

        def op(conn: sqlite3.Connection) -> None:
            if sweep:
                conn.execute("DELETE FROM cache WHERE expires <= ?", (now,))
            conn.execute(
                "INSERT OR REPLACE INTO cache (key, value, expires) VALUES (?, ?, ?)",
                (key, value, now + max(1, int(ttl * 1_000_000))),
            )

        await self._call(op)

    async def cache_delete(self, keys: Sequence[str]) -> int:
        now = time.time_ns() // 1000

        def op(conn: sqlite3.Connection) -> int:
            deleted = 0
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                live = conn.execute(
                    f"SELECT COUNT(*) AS n FROM cache WHERE key IN ({marks}) AND expires > ?",  # noqa: S608 - marks only
                    (*chunk, now),
                ).fetchone()
                conn.execute(f"DELETE FROM cache WHERE key IN ({marks})", tuple(chunk))  # noqa: S608 - marks only
                deleted += int(live["n"])
            return deleted

        return await self._call(op) if keys else 0

    async def cache_purge(self, prefix: str) -> int:
        now = time.time_ns() // 1000
        # A range over the primary key (BINARY collation: UTF-8 byte order), not LIKE: no escaping, no scan.
        upper = prefix + "\U0010ffff"

        def op(conn: sqlite3.Connection) -> int:
            live = conn.execute(
                "SELECT COUNT(*) AS n FROM cache WHERE key >= ? AND key < ? AND expires > ?", (prefix, upper, now)
            ).fetchone()
            conn.execute("DELETE FROM cache WHERE key >= ? AND key < ?", (prefix, upper))
            return int(live["n"])

        return await self._call(op)

    # -- notifications -----------------------------------------------------------------------
    async def publish_invalidation(self, kind: InvalidationKind, ident: str = "") -> None:
        def op(conn: sqlite3.Connection, changes: Changes) -> None:
            changes.append(Invalidation(kind, ident))

        await self._transaction(op)

    async def subscribe(self, listener: InvalidationListener) -> Subscription:
        if self._poller is None:
            row = await self._call(lambda conn: conn.execute("SELECT MAX(seq) AS seq FROM changes").fetchone())
            self._last_seq = int(row["seq"] or 0)
            self._poller = asyncio.create_task(self._poll(), name="gateway-sqlite-changes")
        subscription = self._listeners.add(listener)
        subscription.on_close = self._stop_polling_if_idle
        return subscription

    def _stop_polling_if_idle(self) -> None:
        if not self._listeners and self._poller is not None:
            self._poller.cancel()
            self._poller = None
            self._own_seqs.clear()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            last = self._last_seq
            try:
                rows = await self._call(partial(_changes_since, last=last))
            except StoreError as exc:
                log.warning("cannot read the change feed", extra={"store": self.url, "error": exc.detail})
                continue
            if rows and rows[0]["seq"] != last + 1:  # pruned past us: we may have missed some
                self._listeners.emit(Invalidation(InvalidationKind.ALL))
            for row in rows:
                self._last_seq = row["seq"]
                if row["seq"] in self._own_seqs:
                    self._own_seqs.discard(row["seq"])
                    continue
                self._listeners.emit(Invalidation.decode(f"{row['kind']}:{row['ident']}"))


def _chunks(values: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def _changes_since(conn: sqlite3.Connection, last: int) -> list[dict[str, Any]]:
    return conn.execute("SELECT seq, kind, ident FROM changes WHERE seq > ? ORDER BY seq", (last,)).fetchall()


def _filters(**equal: str | None) -> tuple[str, tuple[str, ...]]:
    chosen = {column: value for column, value in equal.items() if value is not None}
    if not chosen:
        return "", ()
    return "WHERE " + " AND ".join(f"{column} = ?" for column in chosen), tuple(chosen.values())


def _service_key(conn: sqlite3.Connection, service_id: str, key_id: str) -> ServiceKey | None:
    row = conn.execute(
        "SELECT * FROM service_keys WHERE service_id = ? AND key_id = ?", (service_id, key_id)
    ).fetchone()
    return None if row is None else from_row(ServiceKey, row)


def _token(conn: sqlite3.Connection, token_hash: str) -> ServiceToken | None:
    row = conn.execute("SELECT * FROM tokens WHERE token_hash = ?", (token_hash,)).fetchone()
    return None if row is None else from_row(ServiceToken, row)


def _client(conn: sqlite3.Connection, client_id: str) -> ApiClient | None:
    row = conn.execute("SELECT * FROM api_clients WHERE client_id = ?", (client_id,)).fetchone()
    return None if row is None else from_row(ApiClient, row)


def _api_key(conn: sqlite3.Connection, key_hash: str) -> ApiKey | None:
    row = conn.execute("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
    return None if row is None else from_row(ApiKey, row)


def _check_new_key(conn: sqlite3.Connection, key: ApiKey, client_id: str) -> None:
    if key.client_id != client_id:
        raise Conflict(f"API key belongs to client {key.client_id!r}, not {client_id!r}")
    if _api_key(conn, key.key_hash) is not None:
        raise Conflict("an API key with this hash is already stored")
