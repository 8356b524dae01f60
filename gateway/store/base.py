"""The ``Store`` protocol every backend implements, and the small types it speaks.

One protocol, several backends chosen by URL scheme (:func:`gateway.store.open_store`).
One contract suite (``tests/store/test_contract.py``) runs against each of them.

Every mutating method is atomic: it writes all of its records or none of them,
and announces what changed (:class:`Invalidation`) to this process's subscribers
and, where the backend is shared (Redis, an SQLite file), to other processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.credentials.models import ApiClient, ApiCredential, ApiKey, ServiceKey, ServiceToken
from gateway.store.codec import AuditRow

log = logging.getLogger("gateway.store")

# (requests counted since the last flush, time of the latest one), per credential hash.
Usage = tuple[int, datetime]


class InvalidationKind(StrEnum):
    """What a change notification is about; the id's meaning depends on it."""

    TOKEN = "token"  # noqa: S105 - id: token hash
    API_KEY = "api_key"  # id: key hash
    API_CLIENT = "api_client"  # id: client id (its keys' cached lookups carry the client)
    SERVICE_KEY = "service_key"  # id: "<service_id>/<key_id>"
    AUTH_CACHE = "auth_cache"  # id: SHA-256 of a token whose cached auth-backend decisions were purged ("" = all)
    ALL = "all"  # id: "" (mass revocation, or notifications may have been missed)


@dataclass(frozen=True, slots=True)
class Invalidation:
    kind: InvalidationKind
    id: str = ""

    def encode(self) -> str:
        return f"{self.kind.value}:{self.id}"

    @classmethod
    def decode(cls, text: str) -> Invalidation:
        """Parse :meth:`encode`'s form; anything unrecognised means "drop everything" (fail safe)."""
        kind, _, ident = text.partition(":")
        try:
            return cls(InvalidationKind(kind), ident)
        except ValueError:
            return cls(InvalidationKind.ALL)


def service_key_ref(service_id: str, key_id: str) -> str:
    return f"{service_id}/{key_id}"


InvalidationListener = Callable[[Invalidation], None]


class Subscription(Protocol):
    """A registered invalidation listener; ``close()`` unregisters it."""

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which audit events to read. ``since``/``until`` bound the event time (inclusive, exclusive)."""

    since: datetime | None = None
    until: datetime | None = None
    principal: str | None = None
    result: AuditResult | None = None
    limit: int = 100
    newest_first: bool = True  # False: oldest first (following the trail)

    def matches(self, event: AuditEvent) -> bool:
        return (
            (self.since is None or event.time >= self.since)
            and (self.until is None or event.time < self.until)
            and (self.principal is None or event.principal == self.principal)
            and (self.result is None or event.result == self.result)
        )


class Store(Protocol):
    """Where credentials, audit events and replay nonces live.

    Lookups return ``None`` for an unknown credential; updates raise
    :class:`~gateway.store.errors.NotFound`. Any backend failure is raised as
    :class:`~gateway.store.errors.StoreUnavailable` and leaves nothing half-written.
    Lookups return records whatever their state: deciding whether a revoked, expired
    or retired credential is acceptable is the caller's (``usable_at``).
    """

    @property
    def url(self) -> str:
        """The store URL with any password masked: safe for logs and errors."""
        ...

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect (and create the schema); :class:`StoreUnavailable` naming the URL if unreachable."""
        ...

    async def check(self) -> str | None:
        """Readiness probe: ``None`` when the store answers, else a short reason."""
        ...

    async def close(self) -> None:
        """Stop background tasks and release connections. Idempotent."""
        ...

    # -- service signing keys --------------------------------------------------------------
    async def add_service_key(self, key: ServiceKey) -> None:
        """Register a key; :class:`Conflict` if ``(service_id, key_id)`` exists."""
        ...

    async def get_service_key(self, service_id: str, key_id: str) -> ServiceKey | None: ...

    async def list_service_keys(self, service_id: str | None = None) -> list[ServiceKey]:
        """Keys of one service (or of every service), oldest first."""
        ...

    async def update_service_key(self, key: ServiceKey) -> None:
        """Write back an edited key (state, expiry); :class:`NotFound` if it does not exist."""
        ...

    async def rotate_service_key(self, new: ServiceKey, *, old_key_id: str, grace_until: datetime) -> ServiceKey:
        """Add ``new`` and cut the old key's expiry to ``grace_until`` (if sooner), atomically.

        Returns the old key as updated. :class:`NotFound` if the old key does not exist.
        """
        ...

    # -- service tokens --------------------------------------------------------------------
    async def create_token(self, token: ServiceToken) -> None:
        """Store a new token. :class:`DuplicateName` if a live token has its name,
        :class:`Conflict` if its hash is already stored."""
        ...

    async def import_tokens(self, tokens: Sequence[ServiceToken]) -> None:
        """Store many new tokens (a legacy import) in one transaction: all of them or none.

        The same checks as :meth:`create_token`, also between the tokens of the batch.
        Pass batches of a few thousand.
        """
        ...

    async def get_token(self, token_hash: str) -> ServiceToken | None:
        """The data-plane lookup, by SHA-256 of the presented token."""
        ...

    async def get_token_by_name(self, name: str) -> ServiceToken | None:
        """The live token holding ``name``."""
        ...

    async def list_tokens(self, *, owner: str | None = None, name: str | None = None) -> list[ServiceToken]:
        """Every stored token (revoked and replaced included), filtered, oldest first."""
        ...

    async def rotate_token(self, new: ServiceToken, *, grace_until: datetime) -> tuple[ServiceToken, ServiceToken]:
        """Replace the live token named ``new.name`` by ``new``; the old one stays usable until ``grace_until``.

        Returns ``(old, new)`` as stored (``old.replaced_by``, ``new.rotated_from`` set).
        :class:`NotFound` if no live token has that name.
        """
        ...

    async def revoke_token(self, token_hash: str, *, reason: str, at: datetime) -> ServiceToken:
        """Revoke one token (idempotent: a revoked token keeps its first reason)."""
        ...

    async def revoke_tokens(self, *, reason: str, at: datetime, owner: str | None = None) -> int:
        """Emergency: revoke every token (or every token of ``owner``) in one step; returns how many."""
        ...

    async def delete_token(self, token_hash: str) -> bool: ...

    async def delete_expired_tokens(self, before: datetime) -> int:
        """Cleanup: delete tokens that expired, or were revoked, before ``before``; returns how many."""
        ...

    async def list_expiring_tokens(self, *, now: datetime, until: datetime) -> list[ServiceToken]:
        """Unrevoked tokens with ``now <= expires < until``, soonest first."""
        ...

    async def record_usage(self, usage: Mapping[str, Usage]) -> None:
        """Add request counts and move ``last_used`` forward, per token hash; unknown hashes are ignored."""
        ...

    # -- API clients and keys --------------------------------------------------------------
    async def register_client(self, client: ApiClient, keys: Sequence[ApiKey] = ()) -> None:
        """Store a client with its first keys. :class:`Conflict` if the client id or a key hash exists."""
        ...

    async def get_client(self, client_id: str) -> ApiClient | None: ...

    async def list_clients(self, *, tenant: str | None = None) -> list[ApiClient]: ...

    async def update_client(self, client: ApiClient) -> None:
        """Write back an edited client (name, allowlists, scopes); :class:`NotFound` if unknown."""
        ...

    async def add_api_key(self, key: ApiKey) -> None:
        """:class:`NotFound` if the client is unknown, :class:`Conflict` if the hash exists."""
        ...

    async def get_api_key(self, key_hash: str) -> ApiCredential | None:
        """The data-plane lookup: the key and its client."""
        ...

    async def list_api_keys(self, client_id: str) -> list[ApiKey]: ...

    async def rotate_api_key(self, new: ApiKey, *, old_key_hash: str, grace_until: datetime) -> tuple[ApiKey, ApiKey]:
        """Add ``new`` and cut the old key's expiry to ``grace_until``; both of the same client."""
        ...

    async def revoke_api_key(self, key_hash: str, *, reason: str, at: datetime) -> ApiKey: ...

    async def record_api_key_usage(self, usage: Mapping[str, Usage]) -> None: ...

    # -- audit trail -----------------------------------------------------------------------
    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        """Append a batch of events in one write."""
        ...

    async def append_audit_rows(self, rows: Sequence[AuditRow]) -> None:
        """Append a batch of decisions given as rows (:data:`~gateway.store.codec.DECISION_COLUMNS`) in one write.

        What the audit trail writes: the pipeline's decisions reach the store without becoming event objects.
        Their admin fields (``admin``, ``action``, ``target``) are empty; admin actions go through
        :meth:`append_audit`.
        """
        ...

    async def query_audit(self, query: AuditQuery) -> list[AuditEvent]: ...

    async def prune_audit(self, before: datetime) -> int:
        """Retention: delete events older than ``before`` (Redis: stream entries added before it)."""
        ...

    # -- replay protection -----------------------------------------------------------------
    async def claim_nonce(self, scope: str, nonce: str, ttl: float) -> bool:
        """True for the first claim of ``(scope, nonce)`` within ``ttl`` seconds, False for a replay."""
        ...

    # -- shared cache ----------------------------------------------------------------------
    # Short-lived values any replica may compute and every replica may reuse (the auth
    # backend's decisions). Keys are opaque text chosen by the caller; a value lives until
    # its TTL ends or it is deleted, whichever comes first. Not a change: nothing is announced.
    async def cache_get(self, key: str) -> str | None:
        """The value stored under ``key``, or ``None`` when absent or expired."""
        ...

    async def cache_set(self, key: str, value: str, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (replacing any value); ``ValueError`` if ttl <= 0."""
        ...

    async def cache_delete(self, keys: Sequence[str]) -> int:
        """Delete these keys; returns how many existed."""
        ...

    async def cache_purge(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` (an operator action, not for the request path); how many."""
        ...

    # -- change notifications --------------------------------------------------------------
    async def publish_invalidation(self, kind: InvalidationKind, ident: str = "") -> None:
        """Tell every subscriber, in this process and (where shared) in others, that a record changed."""
        ...

    async def subscribe(self, listener: InvalidationListener) -> Subscription:
        """Call ``listener`` for every change, local or remote, from now on (it must not block)."""
        ...


class ListenerSet:
    """The in-process half of change notifications, shared by every backend."""

    def __init__(self) -> None:
        self._listeners: list[InvalidationListener] = []

    def __len__(self) -> int:
        return len(self._listeners)

    def add(self, listener: InvalidationListener) -> _LocalSubscription:
        self._listeners.append(listener)
        return _LocalSubscription(self, listener)

    def discard(self, listener: InvalidationListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, invalidation: Invalidation) -> None:
        for listener in list(self._listeners):
            try:
                listener(invalidation)
            except Exception:  # one broken listener must not starve the others
                log.exception("invalidation listener failed", extra={"invalidation": invalidation.encode()})


class _LocalSubscription:
    def __init__(self, listeners: ListenerSet, listener: InvalidationListener) -> None:
        self._listeners = listeners
        self._listener = listener
        self.on_close: Callable[[], None] | None = None

    async def close(self) -> None:
        self._listeners.discard(self._listener)
        if self.on_close is not None:
            self.on_close()
