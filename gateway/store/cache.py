"""The data plane's view of the store: credentials it has seen are answered from memory.

::

    authenticator --token(hash)--> CredentialCache --miss--> Store.get_token
                                        ^
           Store.subscribe ------------ invalidate(kind, id)   (local changes at once,
                                                                 other replicas via pub/sub)

- Bounded (LRU, ``max_entries``) and short-lived: an entry is served for ``ttl``
  seconds; past ``ttl / 2`` a lookup still answers from memory and refreshes it in
  the background, so a credential in steady use never waits for the store.
- "Not found" is cached too, for ``negative_ttl``: a flood of made-up tokens costs
  one store lookup per hash, not one per request. Creating the credential drops it.
- Every change the store announces drops the affected entries (``ALL`` drops
  everything: a mass revocation, or a gap in the notifications).
- Concurrent misses for one credential share one store lookup; a lookup that races
  with an invalidation answers its callers but is not cached.
- Store failures propagate (fail closed): nothing is cached from an error.

Tokens and API keys, asked for on every request, also have a synchronous
``peek_*``: the same answer as the lookup when the record is in memory and fresh
(same hit counting, LRU order and background refresh), else ``None`` and the
caller awaits the lookup. A cache hit then costs no coroutine at all.

``epoch`` counts the changes to the entries (stored, refreshed, evicted, expired,
invalidated, cleared). A caller may keep what it derived from a peeked entry and
answer it again without peeking while ``epoch`` is unchanged and ``clock()`` is
before :meth:`CredentialCache.steady_until` (the entry's refresh point), counting
each such answer in ``stats.hits``: the entry is then the same object and needs no
refresh. Only the LRU order is not updated by those answers, at most for ``ttl / 2``.

The cache returns records whatever their state: the caller decides with
``usable_at(now)`` (revoked, expired and retired credentials are refused there).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from gateway.credentials.models import ApiCredential, ServiceKey, ServiceToken
from gateway.store.base import Invalidation, InvalidationKind, Store, Subscription, service_key_ref
from gateway.store.errors import StoreError

log = logging.getLogger("gateway.store.cache")

V = TypeVar("V")
# (what, id): an InvalidationKind (a str) for single records, or SERVICE_KEYS for a service's key list.
CacheKey = tuple[str, str]
SERVICE_KEYS = "service_keys"

# Cache keys of the per-request kinds as module constants: one global load, not a global and a class attribute.
_TOKEN = InvalidationKind.TOKEN
_API_KEY = InvalidationKind.API_KEY

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_TTL = 10.0
DEFAULT_NEGATIVE_TTL = 5.0


@dataclass(slots=True)
class _Entry:
    value: object
    stored_at: float


@dataclass(slots=True)
class _Flight:
    task: asyncio.Future[object]
    stale: bool = False  # an invalidation arrived while the lookup ran: answer, but do not cache


def _retrieve(task: asyncio.Future[object]) -> None:
    """Mark a lookup's failure as seen: its callers got it (or nobody waits any more, e.g. a refresh)."""
    if not task.cancelled() and isinstance(error := task.exception(), StoreError):
        # Callers report the failure themselves (and /readyz shows the store down): debug only.
        log.debug("credential lookup failed", extra={"error": error.detail})


@dataclass(slots=True)
class CacheStats:
    """Counters for metrics: hits include negative hits."""

    hits: int = 0
    misses: int = 0
    negative_hits: int = 0
    refreshes: int = 0
    evictions: int = 0
    invalidations: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _split_ref(ref: str) -> tuple[str, str]:
    """(service id, key id) of a :func:`~gateway.store.base.service_key_ref`."""
    service_id, _, key_id = ref.partition("/")
    return service_id, key_id


class CredentialCache:
    """An in-process cache in front of a :class:`Store`'s data-plane lookups."""

    def __init__(
        self,
        store: Store,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl: float = DEFAULT_TTL,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries <= 0 or ttl <= 0 or negative_ttl < 0:
            raise ValueError("max_entries and ttl must be positive, negative_ttl not negative")
        self.store = store
        self.max_entries = max_entries
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.stats = CacheStats()
        self.clock = clock
        self.epoch = 0  # changes to the entries (see the module docstring)
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._flights: dict[CacheKey, _Flight] = {}
        self._subscription: Subscription | None = None
        # token(hash) / api_key(hash) when the record is in memory and fresh, else None: await those.
        # (``self.store`` is read at refresh time, like the lookups do.)
        self.peek_token: Callable[[str], ServiceToken | None] = self._peeker(
            _TOKEN, lambda token_hash: self.store.get_token(token_hash)
        )
        self.peek_api_key: Callable[[str], ApiCredential | None] = self._peeker(
            _API_KEY, lambda key_hash: self.store.get_api_key(key_hash)
        )
        # service_keys(service_id) / service_key(service, key id) likewise, by service_key_ref.
        self.peek_service_keys: Callable[[str], list[ServiceKey] | None] = self._peeker(
            SERVICE_KEYS, lambda service_id: self.store.list_service_keys(service_id)
        )
        self.peek_service_key: Callable[[str], ServiceKey | None] = self._peeker(
            InvalidationKind.SERVICE_KEY, lambda ref: self.store.get_service_key(*_split_ref(ref))
        )

    def __len__(self) -> int:
        return len(self._entries)

    async def start(self) -> None:
        """Subscribe to the store's change notifications (call once, before serving)."""
        if self._subscription is None:
            self._subscription = await self.store.subscribe(self.invalidate)

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        tasks = [flight.task for flight in self._flights.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._entries.clear()
        self.epoch += 1

    # -- lookups -----------------------------------------------------------------------------
    async def token(self, token_hash: str) -> ServiceToken | None:
        """The service token with this SHA-256, from memory when seen recently."""
        return await self._lookup((InvalidationKind.TOKEN, token_hash), lambda: self.store.get_token(token_hash))

    async def api_key(self, key_hash: str) -> ApiCredential | None:
        """The API key with this SHA-256 and its client."""
        return await self._lookup((InvalidationKind.API_KEY, key_hash), lambda: self.store.get_api_key(key_hash))

    async def service_key(self, service_id: str, key_id: str) -> ServiceKey | None:
        """A service's signing key by key id."""
        ref = service_key_ref(service_id, key_id)
        return await self._lookup(
            (InvalidationKind.SERVICE_KEY, ref), lambda: self.store.get_service_key(service_id, key_id)
        )

    async def service_keys(self, service_id: str) -> list[ServiceKey]:
        """Every key of a service (the legacy HMAC scheme tries each; a change to any of them drops the list)."""
        found = await self._lookup((SERVICE_KEYS, service_id), lambda: self.store.list_service_keys(service_id))
        return found or []

    def _peeker(self, kind: str, fetch: Callable[[str], Awaitable[V | None]]) -> Callable[[str], V | None]:
        """A synchronous ``_lookup`` for one kind that answers only a fresh positive entry.

        The answer is counted and refreshed exactly as :meth:`_lookup` would; ``None`` means "not from
        memory" and has no effect at all (no count, no LRU move), so the caller's awaited lookup then
        does all of that. One closure per kind, so a hit costs a single Python call.
        """

        def peek(ident: str) -> V | None:
            key = (kind, ident)
            entry = self._entries.get(key)
            if entry is None or entry.value is None:
                return None
            age = self.clock() - entry.stored_at
            if age >= self.ttl:
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            if age >= self.ttl / 2 and key not in self._flights:
                self._refresh_in_background(key, lambda: fetch(ident))
            # The entry under this key was stored from ``fetch``: it holds a V. (No cast(): a call per hit.)
            return entry.value  # type: ignore[return-value]

        return peek

    async def _lookup(self, key: CacheKey, fetch: Callable[[], Awaitable[V | None]]) -> V | None:
        entry = self._entries.get(key)
        if entry is not None:
            age = self.clock() - entry.stored_at
            limit = self.ttl if entry.value is not None else self.negative_ttl
            if age < limit:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                if entry.value is None:
                    self.stats.negative_hits += 1
                elif age >= self.ttl / 2 and key not in self._flights:
                    self._refresh_in_background(key, fetch)
                return cast("V | None", entry.value)
            del self._entries[key]
            self.epoch += 1
        self.stats.misses += 1
        return await self._fetch(key, fetch)

    async def _fetch(self, key: CacheKey, fetch: Callable[[], Awaitable[V | None]]) -> V | None:
        flight = self._flights.get(key) or self._start_flight(key, fetch)
        # The lookup runs in its own task: a caller that gives up (client gone) does not
        # cancel it for the others sharing it, and its answer is still cached.
        return cast("V | None", await asyncio.shield(flight.task))

    def _start_flight(self, key: CacheKey, fetch: Callable[[], Awaitable[object]]) -> _Flight:
        async def run() -> object:
            try:
                value = await fetch()
            finally:
                flight = self._flights.pop(key, None)
            if flight is not None and not flight.stale:
                self._store(key, value)
            return value

        flight = _Flight(asyncio.ensure_future(run()))
        self._flights[key] = flight
        flight.task.add_done_callback(_retrieve)
        return flight

    def _refresh_in_background(self, key: CacheKey, fetch: Callable[[], Awaitable[object]]) -> None:
        self.stats.refreshes += 1
        self._start_flight(key, fetch)

    def steady_until(self, kind: str, ident: str) -> float:
        """Until when (``clock``) the positive entry of ``kind``/``ident`` is answered as it is, if
        ``epoch`` does not change: its refresh point. ``-inf``: no such entry."""
        entry = self._entries.get((kind, ident))
        if entry is None or entry.value is None:
            return float("-inf")
        return entry.stored_at + self.ttl / 2

    def _store(self, key: CacheKey, value: object) -> None:
        self.epoch += 1
        self._entries[key] = _Entry(value, self.clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.stats.evictions += 1

    # -- invalidation ------------------------------------------------------------------------
    def invalidate(self, invalidation: Invalidation) -> None:
        """Drop what ``invalidation`` names (the store calls this for every change it hears of)."""
        self.epoch += 1
        self.stats.invalidations += 1
        kind = invalidation.kind
        self.stats.by_kind[kind.value] = self.stats.by_kind.get(kind.value, 0) + 1
        if kind is InvalidationKind.ALL:
            self._entries.clear()
            for flight in self._flights.values():
                flight.stale = True
        elif kind is InvalidationKind.API_CLIENT:
            doomed = [
                key
                for key, entry in self._entries.items()
                if key[0] is InvalidationKind.API_KEY
                and isinstance(entry.value, ApiCredential)
                and entry.value.client.client_id == invalidation.id
            ]
            for key in doomed:
                del self._entries[key]
            for key, flight in self._flights.items():
                if key[0] is InvalidationKind.API_KEY:
                    flight.stale = True
        else:
            keys: tuple[CacheKey, ...] = ((kind, invalidation.id),)
            if kind is InvalidationKind.SERVICE_KEY:
                keys += ((SERVICE_KEYS, invalidation.id.partition("/")[0]),)
            for key in keys:
                self._entries.pop(key, None)
                if (pending := self._flights.get(key)) is not None:
                    pending.stale = True
