"""The auth backend's decisions, cached in two layers, asked for once however many requests wait.

::

    decide(token) --> memory (LRU, this process) --hit--> the decision
                         | miss: one flight per token (single-flight; callers share it)
                         v
                      shared layer (the store: Redis across replicas, SQLite or memory locally)
                         | miss
                         v
                      the backend (through its circuit breaker) --> both layers

- **Key**: SHA-256 of the token, under the backend's id (a hash of its protocol,
  name and URL or issuer): a token one backend accepted is never looked up for
  another (the Oathkeeper cache-key confusion). The token itself is never stored.
- **Lifetimes**: an active token's decision is fresh until ``min(exp - now,
  max_ttl)``; an inactive one for ``negative_ttl``. A decision is kept past its
  freshness (never past the token's ``exp``) only as long as the longest stale
  grace of a route needs it. A backend failure is never cached.
- **Stale grace** (per route, opt-in): when the backend cannot answer (circuit
  open, timeout, 5xx, garbage), a token whose last successful validation is
  younger than the route's grace keeps working from the cache: counted as
  ``gateway_auth_cache_total{result="stale"}`` and logged (at most every few
  seconds). Inactive decisions and purged tokens are never served stale.
- **Purge** (explicit revocation): :func:`purge_token` deletes the shared entries
  and announces ``auth_cache:<sha256>`` through the store; every replica's memory
  layer drops its copy, and a flight already under way for that token is not
  cached (:meth:`DecisionCache.invalidate`).
- **Failures of the shared layer** (the store down) are logged and treated as
  misses: the backend still decides, fail closed when it cannot.
- **While the circuit is open** a token's cached decision within the grace is
  served straight from memory, and a token found in neither layer is not looked up
  in the shared layer again for ``ABSENT_MEMO`` seconds: clients retrying during an
  outage cost neither a backend call nor a store round trip each (the refusal is a
  503 at once).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gateway.backend.breaker import EndpointBreaker
from gateway.backend.decisions import Decision
from gateway.backend.errors import BackendError, CircuitOpen
from gateway.backend.introspect import TokenChecker
from gateway.backend.metrics import BackendMetrics
from gateway.pipeline.base import Principal
from gateway.store.base import Invalidation, InvalidationKind, Store, Subscription
from gateway.store.errors import StoreError

log = logging.getLogger("gateway.backend.cache")

CACHE_PREFIX: Final = "authcache:"
MEMORY: Final = "memory"
SHARED: Final = "shared"
HIT: Final = "hit"
MISS: Final = "miss"
STALE: Final = "stale"
STALE_LOG_INTERVAL: Final = 10.0
DEFAULT_MAX_ENTRIES: Final = 100_000
DEFAULT_MAX_TTL: Final = 300.0
DEFAULT_NEGATIVE_TTL: Final = 10.0
ABSENT_MEMO: Final = 1.0  # seconds a token missing from both layers is not looked up again while open
# Digests of the tokens served from memory, remembered by token text: a client sends the same token on every
# request, and a dict lookup costs less than SHA-256. A pure function of the text, so never stale; bounded in
# entries and (only tokens up to DIGEST_MEMO_MAX_LENGTH characters) in memory, ~5 MiB at most.
DIGEST_MEMO_ENTRIES: Final = 10_000
DIGEST_MEMO_MAX_LENGTH: Final = 512

PrincipalFactory = Callable[[Decision, str], Principal]


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def backend_id(*parts: str) -> str:
    """A short, stable id for one backend endpoint, from what configures it (protocol, name, URL or issuer)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def shared_key(backend: str, digest_hex: str) -> str:
    return f"{CACHE_PREFIX}{backend}:{digest_hex}"


@dataclass(slots=True)
class CachedDecision:
    """A decision and its times (Unix seconds). ``principal`` is built once, for active decisions."""

    decision: Decision
    validated_at: float
    fresh_until: float
    keep_until: float  # the end of the longest stale grace, never past the token's exp
    principal: Principal | None = None

    def encode(self) -> str:
        return json.dumps(
            {"d": self.decision.to_json(), "v": self.validated_at, "f": self.fresh_until, "k": self.keep_until},
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> CachedDecision:
        data = json.loads(text)
        times = [data.get(name) for name in ("v", "f", "k")]
        if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
            raise ValueError("bad times")
        return cls(Decision.from_json(data["d"]), float(times[0]), float(times[1]), float(times[2]))

    def servable_stale(self, grace: float, now: float) -> bool:
        """Whether this may answer while the backend is unavailable, under a route's ``grace``."""
        return self.decision.active and now < self.validated_at + grace and now < self.keep_until


@dataclass(slots=True)
class _Flight:
    task: asyncio.Task[_Resolution]
    stale: bool = False  # purged while in flight: answer the waiters, cache nothing


@dataclass(frozen=True, slots=True)
class _Resolution:
    entry: CachedDecision | None = None
    error: BackendError | None = None
    fallback: CachedDecision | None = None  # the newest decision seen, for a stale grace


class DecisionCache:
    """Decisions of one backend endpoint (see the module docstring)."""

    def __init__(
        self,
        checker: TokenChecker,
        principal_of: PrincipalFactory,
        *,
        backend: str,
        store: Store | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_ttl: float = DEFAULT_MAX_TTL,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        max_grace: float = 0.0,
        metrics: BackendMetrics | None = None,
        circuit: EndpointBreaker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries <= 0 or max_ttl <= 0 or negative_ttl < 0 or max_grace < 0:
            raise ValueError("max_entries and max_ttl must be positive, negative_ttl and max_grace not negative")
        self.checker = checker
        self.principal_of = principal_of
        self.backend = backend
        self.store = store
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self.max_grace = max_grace
        self.metrics = metrics
        self.circuit = circuit  # the backend endpoint's breaker: read (cheaply) to skip lookups while open
        self.clock = clock
        self.backend_calls = 0
        self._memory: OrderedDict[bytes, CachedDecision] = OrderedDict()
        self._digests: dict[str, bytes] = {}  # token -> token_digest(token), see DIGEST_MEMO_ENTRIES
        self._absent: dict[bytes, float] = {}  # digest -> until when it is not looked up again (circuit open)
        self._flights: dict[bytes, _Flight] = {}
        self._subscription: Subscription | None = None
        self._stale_served = 0
        self._stale_logged_at = float("-inf")

    def __len__(self) -> int:
        return len(self._memory)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Follow purges announced through the store (other replicas', the admin API's)."""
        if self.store is not None and self._subscription is None:
            self._subscription = await self.store.subscribe(self.invalidate)

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        tasks = [flight.task for flight in self._flights.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._memory.clear()

    # -- the decision ------------------------------------------------------------------------
    def fresh(self, token: str) -> CachedDecision | None:
        """``token``'s fresh decision from the memory layer (counted as a memory hit), else ``None``.

        The warm path without a coroutine: on ``None``, :meth:`decide` answers (and counts the miss).
        """
        digest = self._digests.get(token)
        if digest is None:
            digest = token_digest(token)
            entry = self._memory.get(digest)
            if entry is None:
                return None
            if len(token) <= DIGEST_MEMO_MAX_LENGTH:
                if len(self._digests) >= DIGEST_MEMO_ENTRIES:
                    self._digests.clear()  # rare: more distinct warm tokens than that; start over
                self._digests[token] = digest
        else:
            entry = self._memory.get(digest)
            if entry is None:
                return None
        if self.clock() >= entry.fresh_until:
            return None
        self._memory.move_to_end(digest)
        self._count(MEMORY, HIT)
        return entry

    async def decide(self, token: str, grace: float = 0.0) -> tuple[CachedDecision, bool]:
        """The decision for ``token`` and whether it is served stale; a :class:`BackendError` if there is none.

        ``grace`` is the route's stale grace (0: none): how long after its last
        successful validation a token may be served from cache while the backend
        cannot answer.
        """
        digest = token_digest(token)
        now = self.clock()
        entry = self._memory.get(digest)
        if entry is not None:
            if now < entry.fresh_until:
                self._memory.move_to_end(digest)
                self._count(MEMORY, HIT)
                return entry, False
            if now >= entry.keep_until:
                del self._memory[digest]
                entry = None
        self._count(MEMORY, MISS)
        circuit = self.circuit
        if circuit is not None and circuit.short_circuited():  # open: nobody is going to be asked
            if entry is not None and grace > 0 and entry.servable_stale(grace, now):
                return self._stale(entry, MEMORY), True
            absent_until = self._absent.get(digest)
            if absent_until is not None and now < absent_until:
                raise CircuitOpen(
                    f"circuit open for {circuit.name}", backend=circuit.name, retry_after=circuit.retry_after()
                )
        flight = self._flights.get(digest)
        if flight is None:
            flight = self._start(digest, token, entry)
        resolution = await asyncio.shield(flight.task)
        if resolution.entry is not None:
            return resolution.entry, False
        error = resolution.error
        assert error is not None  # noqa: S101 - a resolution holds an entry or an error
        fallback = resolution.fallback
        if grace > 0 and fallback is not None and fallback.servable_stale(grace, self.clock()):
            return self._stale(fallback, MEMORY if fallback is entry else SHARED, error), True
        raise error.again()  # the shared one stays traceback-free (see BackendError.again)

    def _start(self, digest: bytes, token: str, held: CachedDecision | None) -> _Flight:
        flight: _Flight

        async def run() -> _Resolution:
            try:
                return await self._resolve(digest, token, held, flight)
            finally:
                if self._flights.get(digest) is flight:
                    del self._flights[digest]

        flight = _Flight(asyncio.get_running_loop().create_task(run()))
        self._flights[digest] = flight
        return flight

    async def _resolve(self, digest: bytes, token: str, held: CachedDecision | None, flight: _Flight) -> _Resolution:
        key = shared_key(self.backend, digest.hex())
        shared = await self._shared_get(key)
        now = self.clock()
        if shared is not None and now < shared.fresh_until:
            self._count(SHARED, HIT)
            if not flight.stale:
                self._remember(digest, shared)
            return _Resolution(self._with_principal(shared, digest))
        if self.store is not None:
            self._count(SHARED, MISS)
        fallback = held
        if shared is not None and now < shared.keep_until and (held is None or shared.validated_at > held.validated_at):
            fallback = shared
        if fallback is not None:
            fallback = self._with_principal(fallback, digest)
        self.backend_calls += 1
        try:
            decision = await self.checker.check(token)
        except BackendError as error:
            if isinstance(error, CircuitOpen) and fallback is None:
                self._remember_absent(digest)
            # Without its traceback: the frames in it hold this flight, which will hold the error.
            return _Resolution(error=error.with_traceback(None), fallback=fallback)
        entry = self._with_principal(self._entry(decision, self.clock()), digest)
        if not flight.stale and entry.keep_until > entry.validated_at:
            self._remember(digest, entry)
            await self._shared_set(key, entry)
        return _Resolution(entry)

    def _entry(self, decision: Decision, now: float) -> CachedDecision:
        if not decision.active:
            return CachedDecision(decision, now, now + self.negative_ttl, now + self.negative_ttl)
        life = self.max_ttl
        horizon = float("inf") if decision.expires_at is None else decision.expires_at - now
        life = min(life, horizon)
        keep = min(max(life, self.max_grace), horizon)
        return CachedDecision(decision, now, now + life, now + keep)

    def _with_principal(self, entry: CachedDecision, digest: bytes) -> CachedDecision:
        if entry.principal is None and entry.decision.active:
            entry.principal = self.principal_of(entry.decision, digest.hex())
        return entry

    def _remember_absent(self, digest: bytes) -> None:
        if len(self._absent) >= self.max_entries:
            self._absent.clear()  # rare: a flood of distinct tokens during an outage; start over
        self._absent[digest] = self.clock() + ABSENT_MEMO

    def _remember(self, digest: bytes, entry: CachedDecision) -> None:
        self._memory[digest] = entry
        self._memory.move_to_end(digest)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)

    def _stale(self, entry: CachedDecision, layer: str, error: BackendError | None = None) -> CachedDecision:
        self._count(layer, STALE)
        self._stale_served += 1
        now = time.monotonic()
        if now - self._stale_logged_at >= STALE_LOG_INTERVAL:
            log.warning(
                "auth backend unavailable: serving cached decisions within the stale grace",
                extra={
                    "backend": self.checker.endpoint,
                    "stale_served": self._stale_served,
                    "reason": error.outcome if error is not None else "open",
                },
            )
            self._stale_logged_at = now
            self._stale_served = 0
        return entry

    def _count(self, layer: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.cache_event(layer, result)

    # -- the shared layer --------------------------------------------------------------------
    async def _shared_get(self, key: str) -> CachedDecision | None:
        if self.store is None:
            return None
        try:
            text = await self.store.cache_get(key)
        except StoreError as exc:
            log.warning("shared decision cache unreadable", extra={"error": exc.detail})
            return None
        if text is None:
            return None
        try:
            return CachedDecision.decode(text)
        except (ValueError, KeyError, TypeError):
            log.warning("shared decision cache entry unreadable: ignored", extra={"backend": self.checker.endpoint})
            return None

    async def _shared_set(self, key: str, entry: CachedDecision) -> None:
        if self.store is None:
            return
        ttl = entry.keep_until - entry.validated_at
        try:
            await self.store.cache_set(key, entry.encode(), ttl)
        except StoreError as exc:
            log.warning("shared decision cache not written", extra={"error": exc.detail})

    # -- purges ------------------------------------------------------------------------------
    def invalidate(self, invalidation: Invalidation) -> None:
        """Drop what a purge names: one token (its SHA-256 hex) or everything (``ALL``, or an empty id)."""
        if invalidation.kind is InvalidationKind.ALL or (
            invalidation.kind is InvalidationKind.AUTH_CACHE and not invalidation.id
        ):
            self._memory.clear()
            for flight in self._flights.values():
                flight.stale = True
            self._flights.clear()  # later requests ask again rather than join a pre-purge answer
            return
        if invalidation.kind is not InvalidationKind.AUTH_CACHE:
            return
        try:
            digest = bytes.fromhex(invalidation.id)
        except ValueError:
            return
        self._memory.pop(digest, None)
        pending = self._flights.pop(digest, None)
        if pending is not None:
            pending.stale = True


async def purge_token(store: Store, backends: list[str], token: str) -> int:
    """Explicit revocation: delete ``token``'s cached decisions of these backends, everywhere.

    The shared entries are deleted, then the purge is announced so that every
    replica drops its in-memory copy. Returns how many shared entries existed.
    """
    digest_hex = token_digest(token).hex()
    deleted = await store.cache_delete([shared_key(backend, digest_hex) for backend in backends])
    await store.publish_invalidation(InvalidationKind.AUTH_CACHE, digest_hex)
    return deleted


async def purge_all(store: Store) -> int:
    """Delete every cached decision of every backend, everywhere (e.g. after a mass revocation)."""
    deleted = await store.cache_purge(CACHE_PREFIX)
    await store.publish_invalidation(InvalidationKind.AUTH_CACHE, "")
    return deleted
