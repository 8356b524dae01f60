"""``memory://``: everything in this process's dictionaries (tests, throwaway demos).

Each operation runs without awaiting, so it is atomic with respect to the event
loop; change notifications reach this process's subscribers only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

from gateway.credentials.audit import AuditEvent
from gateway.credentials.models import ApiClient, ApiCredential, ApiKey, ServiceKey, ServiceToken
from gateway.store import rules
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
from gateway.store.codec import AuditRow, row_event
from gateway.store.errors import Conflict, NotFound

_NONCE_SWEEP_EVERY = 1024


class MemoryStore:
    """The reference backend: the contract suite defines behaviour, this shows it plainly."""

    def __init__(self, url: str = "memory://") -> None:
        self._url = url
        self._keys: dict[tuple[str, str], ServiceKey] = {}
        self._tokens: dict[str, ServiceToken] = {}
        self._token_names: dict[str, str] = {}  # live token name -> hash
        self._clients: dict[str, ApiClient] = {}
        self._api_keys: dict[str, ApiKey] = {}
        self._audit: list[AuditEvent] = []
        self._nonces: dict[tuple[str, str], float] = {}
        self._claims = 0
        self._cache: dict[str, tuple[str, float]] = {}  # key -> (value, expires, monotonic)
        self._cache_writes = 0
        self._listeners = ListenerSet()

    @property
    def url(self) -> str:
        return self._url

    async def open(self) -> None:
        return None

    async def check(self) -> str | None:
        return None

    async def close(self) -> None:
        return None

    def _changed(self, kind: InvalidationKind, ident: str = "") -> None:
        self._listeners.emit(Invalidation(kind, ident))

    # -- service keys ------------------------------------------------------------------------
    async def add_service_key(self, key: ServiceKey) -> None:
        ref = (key.service_id, key.key_id)
        if ref in self._keys:
            raise Conflict(f"service {key.service_id!r} already has a key {key.key_id!r}")
        self._keys[ref] = key
        self._changed(InvalidationKind.SERVICE_KEY, service_key_ref(*ref))

    async def get_service_key(self, service_id: str, key_id: str) -> ServiceKey | None:
        return self._keys.get((service_id, key_id))

    async def list_service_keys(self, service_id: str | None = None) -> list[ServiceKey]:
        keys = [k for k in self._keys.values() if service_id is None or k.service_id == service_id]
        return sorted(keys, key=lambda k: (k.service_id, k.created, k.key_id))

    async def update_service_key(self, key: ServiceKey) -> None:
        ref = (key.service_id, key.key_id)
        if ref not in self._keys:
            raise NotFound(f"service {key.service_id!r} has no key {key.key_id!r}")
        self._keys[ref] = key
        self._changed(InvalidationKind.SERVICE_KEY, service_key_ref(*ref))

    async def rotate_service_key(self, new: ServiceKey, *, old_key_id: str, grace_until: datetime) -> ServiceKey:
        old = self._keys.get((new.service_id, old_key_id))
        if old is None:
            raise NotFound(f"service {new.service_id!r} has no key {old_key_id!r}")
        if (new.service_id, new.key_id) in self._keys:
            raise Conflict(f"service {new.service_id!r} already has a key {new.key_id!r}")
        old = dataclasses.replace(old, expires=rules.cut_expiry(old.expires, grace_until))
        self._keys[(old.service_id, old.key_id)] = old
        self._keys[(new.service_id, new.key_id)] = new
        self._changed(InvalidationKind.SERVICE_KEY, service_key_ref(old.service_id, old.key_id))
        self._changed(InvalidationKind.SERVICE_KEY, service_key_ref(new.service_id, new.key_id))
        return old

    # -- service tokens ----------------------------------------------------------------------
    async def create_token(self, token: ServiceToken) -> None:
        await self.import_tokens([token])

    async def import_tokens(self, tokens: Sequence[ServiceToken]) -> None:
        hashes: set[str] = set()
        names: set[str] = set()
        for token in tokens:  # check everything before writing anything
            if token.token_hash in self._tokens or token.token_hash in hashes:
                raise Conflict("a token with this hash is already stored")
            if token.live and (token.name in self._token_names or token.name in names):
                raise rules.duplicate_name(token.name)
            hashes.add(token.token_hash)
            if token.live:
                names.add(token.name)
        for token in tokens:
            self._tokens[token.token_hash] = token
            if token.live:
                self._token_names[token.name] = token.token_hash
            self._changed(InvalidationKind.TOKEN, token.token_hash)

    async def get_token(self, token_hash: str) -> ServiceToken | None:
        return self._tokens.get(token_hash)

    async def get_token_by_name(self, name: str) -> ServiceToken | None:
        token_hash = self._token_names.get(name)
        return None if token_hash is None else self._tokens[token_hash]

    async def list_tokens(self, *, owner: str | None = None, name: str | None = None) -> list[ServiceToken]:
        tokens = [
            t for t in self._tokens.values() if (owner is None or t.owner == owner) and (name is None or t.name == name)
        ]
        return sorted(tokens, key=lambda t: (t.created, t.token_hash))

    async def rotate_token(self, new: ServiceToken, *, grace_until: datetime) -> tuple[ServiceToken, ServiceToken]:
        old_hash = self._token_names.get(new.name)
        if old_hash is None:
            raise NotFound(f"no live token named {new.name!r}")
        if new.token_hash in self._tokens:
            raise Conflict("a token with this hash is already stored")
        old = self._tokens[old_hash]
        old = dataclasses.replace(old, replaced_by=new.token_hash, expires=rules.cut_expiry(old.expires, grace_until))
        new = dataclasses.replace(new, rotated_from=old.token_hash, replaced_by=None)
        self._tokens[old.token_hash] = old
        self._tokens[new.token_hash] = new
        self._token_names[new.name] = new.token_hash
        self._changed(InvalidationKind.TOKEN, old.token_hash)
        self._changed(InvalidationKind.TOKEN, new.token_hash)
        return old, new

    async def revoke_token(self, token_hash: str, *, reason: str, at: datetime) -> ServiceToken:
        token = self._tokens.get(token_hash)
        if token is None:
            raise NotFound("no such token")
        token = rules.revoke(token, reason, at)
        self._tokens[token_hash] = token
        if self._token_names.get(token.name) == token_hash:
            del self._token_names[token.name]
        self._changed(InvalidationKind.TOKEN, token_hash)
        return token

    async def revoke_tokens(self, *, reason: str, at: datetime, owner: str | None = None) -> int:
        count = 0
        for token in list(self._tokens.values()):
            if token.revoked_at is None and (owner is None or token.owner == owner):
                self._tokens[token.token_hash] = rules.revoke(token, reason, at)
                if self._token_names.get(token.name) == token.token_hash:
                    del self._token_names[token.name]
                count += 1
        if count:
            self._changed(InvalidationKind.ALL)
        return count

    async def delete_token(self, token_hash: str) -> bool:
        token = self._tokens.pop(token_hash, None)
        if token is None:
            return False
        if self._token_names.get(token.name) == token_hash:
            del self._token_names[token.name]
        self._changed(InvalidationKind.TOKEN, token_hash)
        return True

    async def delete_expired_tokens(self, before: datetime) -> int:
        doomed = [t for t in self._tokens.values() if rules.expired_or_revoked_before(t, before)]
        for token in doomed:
            del self._tokens[token.token_hash]
            if self._token_names.get(token.name) == token.token_hash:
                del self._token_names[token.name]
        return len(doomed)

    async def list_expiring_tokens(self, *, now: datetime, until: datetime) -> list[ServiceToken]:
        tokens = [
            t
            for t in self._tokens.values()
            if t.revoked_at is None and t.expires is not None and now <= t.expires < until
        ]
        return sorted(tokens, key=lambda t: (t.expires, t.token_hash))

    async def record_usage(self, usage: Mapping[str, Usage]) -> None:
        for token_hash, (count, last_used) in usage.items():
            token = self._tokens.get(token_hash)
            if token is not None:
                self._tokens[token_hash] = rules.with_usage(token, count, last_used)

    # -- API clients and keys ----------------------------------------------------------------
    async def register_client(self, client: ApiClient, keys: Sequence[ApiKey] = ()) -> None:
        if client.client_id in self._clients:
            raise Conflict(f"client {client.client_id!r} already exists")
        for key in keys:
            self._check_new_key(key, client.client_id)
        self._clients[client.client_id] = client
        for key in keys:
            self._api_keys[key.key_hash] = key
            self._changed(InvalidationKind.API_KEY, key.key_hash)
        self._changed(InvalidationKind.API_CLIENT, client.client_id)

    def _check_new_key(self, key: ApiKey, client_id: str) -> None:
        if key.client_id != client_id:
            raise Conflict(f"API key belongs to client {key.client_id!r}, not {client_id!r}")
        if key.key_hash in self._api_keys:
            raise Conflict("an API key with this hash is already stored")

    async def get_client(self, client_id: str) -> ApiClient | None:
        return self._clients.get(client_id)

    async def list_clients(self, *, tenant: str | None = None) -> list[ApiClient]:
        clients = [c for c in self._clients.values() if tenant is None or c.tenant == tenant]
        return sorted(clients, key=lambda c: (c.created, c.client_id))

    async def update_client(self, client: ApiClient) -> None:
        if client.client_id not in self._clients:
            raise NotFound(f"no client {client.client_id!r}")
        self._clients[client.client_id] = client
        self._changed(InvalidationKind.API_CLIENT, client.client_id)

    async def add_api_key(self, key: ApiKey) -> None:
        if key.client_id not in self._clients:
            raise NotFound(f"no client {key.client_id!r}")
        self._check_new_key(key, key.client_id)
        self._api_keys[key.key_hash] = key
        self._changed(InvalidationKind.API_KEY, key.key_hash)

    async def get_api_key(self, key_hash: str) -> ApiCredential | None:
        key = self._api_keys.get(key_hash)
        if key is None:
            return None
        return ApiCredential(key, self._clients[key.client_id])

    async def list_api_keys(self, client_id: str) -> list[ApiKey]:
        keys = [k for k in self._api_keys.values() if k.client_id == client_id]
        return sorted(keys, key=lambda k: (k.created, k.key_hash))

    async def rotate_api_key(self, new: ApiKey, *, old_key_hash: str, grace_until: datetime) -> tuple[ApiKey, ApiKey]:
        old = self._api_keys.get(old_key_hash)
        if old is None:
            raise NotFound("no such API key")
        self._check_new_key(new, old.client_id)
        old = dataclasses.replace(old, expires=rules.cut_expiry(old.expires, grace_until))
        new = dataclasses.replace(new, rotated_from=old.key_hash)
        self._api_keys[old.key_hash] = old
        self._api_keys[new.key_hash] = new
        self._changed(InvalidationKind.API_KEY, old.key_hash)
        self._changed(InvalidationKind.API_KEY, new.key_hash)
        return old, new

    async def revoke_api_key(self, key_hash: str, *, reason: str, at: datetime) -> ApiKey:
        key = self._api_keys.get(key_hash)
        if key is None:
            raise NotFound("no such API key")
        key = self._api_keys[key_hash] = rules.revoke(key, reason, at)
        self._changed(InvalidationKind.API_KEY, key_hash)
        return key

    async def record_api_key_usage(self, usage: Mapping[str, Usage]) -> None:
        for key_hash, (count, last_used) in usage.items():
            key = self._api_keys.get(key_hash)
            if key is not None:
                self._api_keys[key_hash] = rules.with_usage(key, count, last_used)

    # -- audit -------------------------------------------------------------------------------
    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        self._audit.extend(events)

    async def append_audit_rows(self, rows: Sequence[AuditRow]) -> None:
        self._audit.extend([row_event(row) for row in rows])  # all or nothing: a bad row raises before any

    async def query_audit(self, query: AuditQuery) -> list[AuditEvent]:
        found = sorted((e for e in self._audit if query.matches(e)), key=lambda e: (e.time, e.event_id))
        if query.newest_first:
            found.reverse()
        return found[: query.limit]

    async def prune_audit(self, before: datetime) -> int:
        kept = [e for e in self._audit if e.time >= before]
        pruned = len(self._audit) - len(kept)
        self._audit = kept
        return pruned

    # -- nonces ------------------------------------------------------------------------------
    async def claim_nonce(self, scope: str, nonce: str, ttl: float) -> bool:
        rules.check_ttl(ttl)
        now = time.monotonic()
        self._claims += 1
        if self._claims % _NONCE_SWEEP_EVERY == 0:
            self._nonces = {k: v for k, v in self._nonces.items() if v > now}
        expiry = self._nonces.get((scope, nonce))
        if expiry is not None and expiry > now:
            return False
        self._nonces[(scope, nonce)] = now + ttl
        return True

    # -- shared cache ------------------------------------------------------------------------
    async def cache_get(self, key: str) -> str | None:
        found = self._cache.get(key)
        if found is None:
            return None
        if found[1] <= time.monotonic():
            del self._cache[key]
            return None
        return found[0]

    async def cache_set(self, key: str, value: str, ttl: float) -> None:
        rules.check_cache_ttl(ttl)
        now = time.monotonic()
        self._cache_writes += 1
        if self._cache_writes % _NONCE_SWEEP_EVERY == 0:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
        self._cache[key] = (value, now + ttl)

    async def cache_delete(self, keys: Sequence[str]) -> int:
        now = time.monotonic()
        deleted = 0
        for key in keys:
            found = self._cache.pop(key, None)
            if found is not None and found[1] > now:
                deleted += 1
        return deleted

    async def cache_purge(self, prefix: str) -> int:
        return await self.cache_delete([key for key in self._cache if key.startswith(prefix)])

    # -- notifications -----------------------------------------------------------------------
    async def publish_invalidation(self, kind: InvalidationKind, ident: str = "") -> None:
        self._changed(kind, ident)

    async def subscribe(self, listener: InvalidationListener) -> Subscription:
        return self._listeners.add(listener)
