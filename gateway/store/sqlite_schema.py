"""The SQLite schema. Column names are the field names of :mod:`gateway.store.codec`.

Times are integer microseconds since the epoch. ``changes`` is the change feed
other processes on the same file poll (the CLI revokes, the gateway's cache drops
its copy): every write transaction appends to it before committing.
"""

from __future__ import annotations

SCHEMA_VERSION = 3  # 2: audit_batches, audit_batch_keys; 3: service_keys.tenant, service_keys.scopes

# Columns added to tables that CREATE TABLE IF NOT EXISTS leaves as they are in an older file:
# (table, column, its definition), added by ALTER TABLE when missing.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("service_keys", "tenant", "TEXT"),
    ("service_keys", "scopes", "TEXT NOT NULL DEFAULT '[]'"),
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS service_keys (
    service_id       TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    algorithm        TEXT NOT NULL,
    created          INTEGER NOT NULL,
    not_before       INTEGER NOT NULL,
    expires          INTEGER,
    state            TEXT NOT NULL,
    encrypted_secret TEXT,
    public_key       TEXT,
    tenant           TEXT,
    scopes           TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (service_id, key_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS tokens (
    token_hash     TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    owner          TEXT NOT NULL,
    created        INTEGER NOT NULL,
    format         TEXT NOT NULL,
    hint           TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    allowed_ips    TEXT NOT NULL,
    expires        INTEGER,
    revoked_at     INTEGER,
    revoked_reason TEXT,
    last_used      INTEGER,
    usage_count    INTEGER NOT NULL DEFAULT 0,
    rotated_from   TEXT,
    replaced_by    TEXT
) WITHOUT ROWID;
-- A name belongs to at most one live token.
CREATE UNIQUE INDEX IF NOT EXISTS tokens_live_name ON tokens (name)
    WHERE revoked_at IS NULL AND replaced_by IS NULL;
CREATE INDEX IF NOT EXISTS tokens_name ON tokens (name);
CREATE INDEX IF NOT EXISTS tokens_owner ON tokens (owner);
CREATE INDEX IF NOT EXISTS tokens_expires ON tokens (expires) WHERE expires IS NOT NULL;

CREATE TABLE IF NOT EXISTS api_clients (
    client_id       TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    created         INTEGER NOT NULL,
    allowed_ips     TEXT NOT NULL,
    allowed_origins TEXT NOT NULL,
    scopes          TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS api_clients_tenant ON api_clients (tenant);

CREATE TABLE IF NOT EXISTS api_keys (
    key_hash       TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES api_clients (client_id),
    created        INTEGER NOT NULL,
    hint           TEXT NOT NULL,
    expires        INTEGER,
    revoked_at     INTEGER,
    revoked_reason TEXT,
    last_used      INTEGER,
    usage_count    INTEGER NOT NULL DEFAULT 0,
    rotated_from   TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS api_keys_client ON api_keys (client_id);

CREATE TABLE IF NOT EXISTS audit (
    seq             INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL,
    time            INTEGER NOT NULL,
    result          TEXT NOT NULL,
    reason          TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    route           TEXT NOT NULL,
    method          TEXT NOT NULL,
    credential_kind TEXT NOT NULL,
    credential_id   TEXT NOT NULL,
    principal       TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    client_ip       TEXT NOT NULL,
    user_agent      TEXT NOT NULL,
    admin           TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT NOT NULL,
    detail          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
CREATE INDEX IF NOT EXISTS audit_principal ON audit (principal, time);

-- The pipeline's decisions, a row per batch the audit trail writes (gateway/store/sqlite_audit.py).
CREATE TABLE IF NOT EXISTS audit_batches (
    seq        INTEGER PRIMARY KEY,
    first_time INTEGER NOT NULL,
    last_time  INTEGER NOT NULL,
    events     INTEGER NOT NULL,
    decisions  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_batches_last ON audit_batches (last_time);
CREATE INDEX IF NOT EXISTS audit_batches_first ON audit_batches (first_time);
-- Each principal ('principal:<id>') and result ('result:<value>') a batch holds.
CREATE TABLE IF NOT EXISTS audit_batch_keys (
    key       TEXT NOT NULL,
    last_time INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_batch_keys_last ON audit_batch_keys (last_time);
-- Writing a batch: one INSERT into this view (its keys a JSON array of text) writes the batch and its
-- keys in one statement, so one step of SQLite's: each step is a GIL hand-over with the event loop.
CREATE VIEW IF NOT EXISTS audit_batch_input AS
    SELECT first_time, last_time, events, decisions, '[]' AS keys FROM audit_batches WHERE 0;
CREATE TRIGGER IF NOT EXISTS audit_batch_input_insert INSTEAD OF INSERT ON audit_batch_input
BEGIN
    INSERT INTO audit_batches (first_time, last_time, events, decisions)
        VALUES (NEW.first_time, NEW.last_time, NEW.events, NEW.decisions);
    INSERT INTO audit_batch_keys (key, last_time, seq)
        SELECT value, NEW.last_time, last_insert_rowid() FROM json_each(NEW.keys);
END;

CREATE TABLE IF NOT EXISTS nonces (
    scope   TEXT NOT NULL,
    nonce   TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (scope, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires);

-- Shared cache (the auth backend's decisions): value text until expires (microseconds).
CREATE TABLE IF NOT EXISTS cache (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cache_expires ON cache (expires);

CREATE TABLE IF NOT EXISTS changes (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT NOT NULL,
    ident TEXT NOT NULL
);
"""
