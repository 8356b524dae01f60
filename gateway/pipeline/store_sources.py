"""The authenticators' lookup protocols (:mod:`gateway.pipeline.sources`) over the credential store.

::

    LegacyHmac / HttpSignature --> StoreServiceKeys --> CredentialCache.service_keys / .service_key
                                        |                (decrypted once per key; a key-id index for keyid)
    ServiceToken              --> StoreTokens      --> CredentialCache.token      -> UsageRecorder.token_used
    ApiKey                    --> StoreApiKeys     --> CredentialCache.api_key    -> UsageRecorder.api_key_used
    replay protection         --> StoreNonces      --> Store.claim_nonce           (Redis SET NX PX)

Everything a request asks for twice is answered from memory: the cache holds the
records (and drops them when the store announces a change, from this process or
another replica), these adapters hold what was derived from them (the decrypted HMAC
secret, the converted record), keyed by the record object the cache returned, so a
refreshed or invalidated record is converted again and a stale derivation is never
served.

A store that cannot answer is :class:`~gateway.pipeline.base.AuthUnavailable`
(503 with ``Retry-After``): the gateway fails closed, in every mode.

On a cache hit ``StoreTokens.peek`` / ``StoreApiKeys.peek`` answer synchronously (no
coroutine); the authenticators await ``lookup`` only when they answer ``None``.

Usage (``usage_count``, ``last_used``) is counted when a token or API key that is
usable (not revoked, not expired) is presented, whatever the route then decides;
the counts go to the store in batches (:class:`~gateway.store.usage.UsageRecorder`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Final, Generic, TypeVar

from gateway.credentials.encryption import SecretBox
from gateway.credentials.errors import CredentialError
from gateway.credentials.models import ApiCredential, ServiceKey, ServiceToken
from gateway.pipeline.authn.derived import PerRecord
from gateway.pipeline.base import AuthUnavailable
from gateway.pipeline.sources import ApiClientRecord, KeyAlgorithm, TokenRecord, VerificationKey
from gateway.store.base import Invalidation, InvalidationKind, Store, Subscription, service_key_ref
from gateway.store.cache import SERVICE_KEYS, CredentialCache
from gateway.store.errors import StoreError
from gateway.store.usage import UsageRecorder

log = logging.getLogger("gateway.auth.store")

V = TypeVar("V")

RETRY_AFTER: Final = 5.0
MAX_DERIVED: Final = 10_000  # converted records kept; the cache bounds the records themselves


def _unavailable(exc: StoreError, what: str) -> AuthUnavailable:
    return AuthUnavailable("store.unavailable", log_detail=f"{what}: {exc.detail or exc.code}", retry_after=RETRY_AFTER)


def _timestamp(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


class _Derived:
    """Values derived from cached records, reused while the cache returns the very same record object."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[object, tuple[object, object]] = {}

    def get(self, key: object, record: object) -> object | None:
        found = self._values.get(key)
        return found[1] if found is not None and found[0] is record else None

    def put(self, key: object, record: object, value: object) -> None:
        if len(self._values) >= MAX_DERIVED:
            self._values.clear()
        self._values[key] = (record, value)


class _Windows(Generic[V]):
    """What was derived from a cached record (or a service's list of records) at one moment, reused while
    the cache returns the very same object and no ``not_before`` or ``expires`` of it has come since:
    which keys are usable cannot change in between (a revocation is a new record object).

    Hot paths read ``entries`` inline, as :meth:`get` does (a call costs about as much as the check).
    """

    __slots__ = ("entries",)

    def __init__(self) -> None:
        # key -> (source object, computed at, good until, value); Unix seconds
        self.entries: dict[str, tuple[object, float, float, V]] = {}

    def get(self, key: str, source: object, now: float) -> tuple[V] | None:
        """``(value,)`` if it still holds at ``now``, else ``None``."""
        found = self.entries.get(key)
        if found is not None and found[0] is source and found[1] <= now < found[2]:
            return (found[3],)
        return None

    def put(self, key: str, source: object, computed_at: float, until: float, value: V) -> None:
        if len(self.entries) >= MAX_DERIVED:
            self.entries.clear()
        self.entries[key] = (source, computed_at, until, value)


# The peeks' answers kept (see _Steady): service keys, then tokens.
_KeyPeek = tuple[int, float, float, float, float, V]  # epoch, cache until, index until, window from/until, answer
_TokenPeek = tuple[int, float, TokenRecord]  # epoch, cache until, answer
E = TypeVar("E")


class _Steady(Generic[E]):
    """Answers of a ``peek*`` kept, by its argument, while nothing they were derived from can change:
    the cache's ``epoch`` is the same and its entry not due for a refresh (``cache.clock``, up to
    :meth:`CredentialCache.steady_until`), and for service keys the source's own index is fresh (its
    ``clock``) and no key's start or end has come (Unix seconds).

    Hot paths read ``entries`` inline (a call costs about as much as the check); a hit stands for the
    cache hit it replaces and counts as one.
    """

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[str, E] = {}

    def put(self, key: str, entry: E) -> None:
        if len(self.entries) >= MAX_DERIVED:
            self.entries.clear()
        self.entries[key] = entry


def _next_change(records: Iterable[ServiceKey], moment: datetime) -> float:
    """The first ``not_before`` or ``expires`` of ``records`` after ``moment`` (Unix seconds; inf: none)."""
    until = math.inf
    for record in records:
        for edge in (record.not_before, record.expires):
            if edge is not None and edge > moment:
                until = min(until, edge.timestamp())
    return until


class StoreServiceKeys:
    """:class:`~gateway.pipeline.sources.ServiceKeySource` over the store: HMAC secrets decrypted once.

    RFC 9421 names a key by ``keyid`` alone, the store by ``(service, key id)``:
    ``keyid`` is either ``<service>/<key id>`` or a bare key id found through an
    index of every key id (loaded once, kept current by the store's change
    notifications, reloaded at most every ``index_ttl`` seconds and at most every
    ``miss_interval`` seconds on an unknown id). A bare key id held by two
    services is ambiguous and refused.
    """

    def __init__(
        self,
        cache: CredentialCache,
        secret_box: SecretBox | None,
        *,
        index_ttl: float = 60.0,
        miss_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.store: Store = cache.store
        self.secret_box = secret_box
        self.index_ttl = index_ttl
        self.miss_interval = miss_interval
        self.clock = clock
        self._derived = _Derived()
        self._usable_lists: _Windows[tuple[VerificationKey, ...]] = _Windows()  # by service id
        self._usable_keys: _Windows[VerificationKey | None] = _Windows()  # by RFC 9421 keyid
        self._steady_lists: _Steady[_KeyPeek[tuple[VerificationKey, ...]]] = _Steady()  # peek_verification_keys
        self._steady_keys: _Steady[_KeyPeek[tuple[VerificationKey | None]]] = _Steady()  # peek_key_by_id
        self._index: dict[str, set[str]] | None = None
        # Bare key id -> its cache ref, for the ids of the index that name exactly one service.
        self._refs: dict[str, str] = {}
        self._index_loaded_at = float("-inf")
        self._index_task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._warned: set[tuple[str, str]] = set()

    async def start(self) -> None:
        """Follow key changes (a key registered on another replica becomes findable by its id)."""
        if self._subscription is None:
            self._subscription = await self.store.subscribe(self._changed)

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        task, self._index_task = self._index_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- ServiceKeySource --------------------------------------------------------------------
    async def verification_keys(self, service_id: str) -> Sequence[VerificationKey]:
        try:
            records = await self.cache.service_keys(service_id)
        except StoreError as exc:
            raise _unavailable(exc, f"keys of service {service_id}") from None
        return self._usable_of(service_id, records)

    def peek_verification_keys(self, service_id: str) -> Sequence[VerificationKey] | None:
        """What :meth:`verification_keys` answers when the cache holds the service's keys; ``None``: await it."""
        cache = self.cache
        steady = self._steady_lists.entries.get(service_id)  # the answer kept (_Steady), checked inline
        if steady is not None and steady[0] == cache.epoch and cache.clock() < steady[1]:
            now = time.time()
            if steady[3] <= now < steady[4]:
                cache.stats.hits += 1
                return steady[5]
        epoch = cache.epoch
        records = cache.peek_service_keys(service_id)
        if records is None:
            return None
        keys = self._usable_of(service_id, records)
        window = self._usable_lists.entries.get(service_id)
        if window is not None and window[0] is records:
            until = cache.steady_until(SERVICE_KEYS, service_id)
            self._steady_lists.put(service_id, (epoch, until, math.inf, window[1], window[2], keys))
        return keys

    async def key_by_id(self, key_id: str) -> VerificationKey | None:
        service_id, sep, bare = key_id.partition("/")
        try:
            if sep:
                record = await self.cache.service_key(service_id, bare)
            else:
                services = await self._services_of(key_id)
                if len(services) != 1:
                    if len(services) > 1:
                        log.warning("ambiguous keyid", extra={"key_id": key_id, "services": sorted(services)})
                    return None
                record = await self.cache.service_key(next(iter(services)), key_id)
        except StoreError as exc:
            raise _unavailable(exc, f"key {key_id}") from None
        return None if record is None else self._usable_key(key_id, record)

    def peek_key_by_id(self, key_id: str) -> tuple[VerificationKey | None] | None:
        """``(what key_by_id answers,)`` when everything it needs is in memory and fresh; ``None``: await it.

        A bare key id is answered only from a fresh index naming exactly one service; anything else
        (unknown, ambiguous, stale index, a record not cached) takes the awaited path, which reloads,
        logs and caches as usual.
        """
        cache = self.cache
        steady = self._steady_keys.entries.get(key_id)  # the answer kept (_Steady), checked inline
        if steady is not None and steady[0] == cache.epoch and cache.clock() < steady[1] and self.clock() < steady[2]:
            now = time.time()
            if steady[3] <= now < steady[4]:
                cache.stats.hits += 1
                return steady[5]
        index_until = math.inf
        if "/" in key_id:
            ref = key_id
        else:
            found_ref = self._refs.get(key_id)
            if found_ref is None or self.clock() - self._index_loaded_at > self.index_ttl:
                return None
            ref = found_ref
            index_until = self._index_loaded_at + self.index_ttl
        epoch = cache.epoch
        record = cache.peek_service_key(ref)
        if record is None:
            return None
        answer = (self._usable_key(key_id, record),)
        window = self._usable_keys.entries.get(key_id)
        if window is not None and window[0] is record:
            until = cache.steady_until(InvalidationKind.SERVICE_KEY, ref)
            self._steady_keys.put(key_id, (epoch, until, index_until, window[1], window[2], answer))
        return answer

    def _usable_of(self, service_id: str, records: list[ServiceKey]) -> tuple[VerificationKey, ...]:
        """The usable verification keys among a service's records, remembered until one of them changes."""
        now = time.time()
        found = self._usable_lists.entries.get(service_id)  # _Windows.get, inline
        if found is not None and found[0] is records and found[1] <= now < found[2]:
            return found[3]
        moment = datetime.fromtimestamp(now, UTC)
        usable = (self._verification_key(record) for record in records if record.usable_at(moment))
        keys = tuple(key for key in usable if key is not None)
        self._usable_lists.put(service_id, records, now, _next_change(records, moment), keys)
        return keys

    def _usable_key(self, key_id: str, record: ServiceKey) -> VerificationKey | None:
        now = time.time()
        found_key = self._usable_keys.get(key_id, record, now)
        if found_key is not None:
            return found_key[0]
        moment = datetime.fromtimestamp(now, UTC)
        key = self._verification_key(record) if record.usable_at(moment) else None
        self._usable_keys.put(key_id, record, now, _next_change((record,), moment), key)
        return key

    # -- derivation --------------------------------------------------------------------------
    def _verification_key(self, record: ServiceKey) -> VerificationKey | None:
        ident = (record.service_id, record.key_id)
        cached = self._derived.get(ident, record)
        if isinstance(cached, VerificationKey):
            return cached
        material = self._material(record)
        if material is None:
            return None
        key = VerificationKey(
            key_id=record.key_id,
            service_id=record.service_id,
            algorithm=str(record.algorithm.value),
            material=material,
            tenant=record.tenant,
            scopes=record.scopes,
            expires_at=_timestamp(record.expires),
        )
        self._derived.put(ident, record, key)
        return key

    def _material(self, record: ServiceKey) -> bytes | None:
        if record.algorithm.value == KeyAlgorithm.ED25519:
            return record.public_key
        try:
            # The legacy scheme's key is the secret's UTF-8 bytes; RFC 9421 HMAC uses the same.
            return record.secret(self.secret_box).encode("utf-8")
        except (CredentialError, ValueError) as exc:
            ident = (record.service_id, record.key_id)
            if ident not in self._warned:  # once per key: a wrong KEK would otherwise flood the log
                self._warned.add(ident)
                log.error(
                    "service key unusable: its secret cannot be decrypted",
                    extra={"service_id": record.service_id, "key_id": record.key_id, "error": str(exc)},
                )
            return None

    # -- the key-id index --------------------------------------------------------------------
    async def _services_of(self, key_id: str) -> set[str]:
        now = self.clock()
        if self._index is None:
            await self._reload_index()
        elif now - self._index_loaded_at > self.index_ttl:
            self._start_reload()  # stale: refresh behind the request
        services = (self._index or {}).get(key_id)
        if services is None and self.clock() - self._index_loaded_at >= self.miss_interval:
            await self._reload_index()  # maybe registered elsewhere a moment ago (and the change was missed)
            services = (self._index or {}).get(key_id)
        return services or set()

    async def _reload_index(self) -> None:
        # shield: a caller giving up (client gone) does not cancel the load others wait for.
        await asyncio.shield(self._start_reload())

    def _start_reload(self) -> asyncio.Task[None]:
        if self._index_task is None:
            self._index_task = asyncio.ensure_future(self._load_index())
            self._index_task.add_done_callback(self._reload_done)
        return self._index_task

    def _reload_done(self, task: asyncio.Task[None]) -> None:
        self._index_task = None
        if not task.cancelled():
            task.exception()  # retrieved: callers waiting on it got it

    async def _load_index(self) -> None:
        loaded_at = self.clock()
        index: dict[str, set[str]] = {}
        for record in await self.store.list_service_keys():
            index.setdefault(record.key_id, set()).add(record.service_id)
        self._index = index
        self._refs = {key_id: service_key_ref(next(iter(s)), key_id) for key_id, s in index.items() if len(s) == 1}
        self._index_loaded_at = loaded_at
        self._steady_keys.entries.clear()

    def _changed(self, invalidation: Invalidation) -> None:
        self._steady_keys.entries.clear()  # the index may change (the cache drops its entries too)
        self._steady_lists.entries.clear()
        if invalidation.kind is InvalidationKind.SERVICE_KEY:
            service_id, _, key_id = invalidation.id.partition("/")
            if self._index is not None and key_id:
                services = self._index.setdefault(key_id, set())
                services.add(service_id)  # adding is safe: lookups check the key
                if len(services) == 1:
                    self._refs[key_id] = service_key_ref(service_id, key_id)
                else:
                    self._refs.pop(key_id, None)  # now ambiguous
        elif invalidation.kind is InvalidationKind.ALL:
            self._index_loaded_at = float("-inf")  # reload on the next lookup


class StoreTokens:
    """:class:`~gateway.pipeline.sources.TokenSource` over the credential cache; usage counted in batches.

    :meth:`peek` is :meth:`lookup` without a coroutine, for a record the cache holds: the
    authenticator tries it first and awaits :meth:`lookup` only when it answers ``None``.
    """

    def __init__(self, cache: CredentialCache, usage: UsageRecorder | None = None) -> None:
        self.cache = cache
        self.usage = usage
        # Converted again when the cache returns another record object (new or refreshed).
        self._converted = PerRecord(_token_record, limit=MAX_DERIVED)
        self._steady: _Steady[_TokenPeek] = _Steady()  # peek, by token hash

    def peek(self, token_hash: str) -> TokenRecord | None:
        """What :meth:`lookup` answers when the cache holds the record; ``None``: not in memory, await it."""
        cache = self.cache
        steady = self._steady.entries.get(token_hash)  # the answer kept (_Steady), checked inline
        if steady is not None and steady[0] == cache.epoch and cache.clock() < steady[1]:
            cache.stats.hits += 1  # it stands for the cache hit it replaces
            return self._used(token_hash, steady[2])
        epoch = cache.epoch
        record = cache.peek_token(token_hash)
        if record is None:
            return None
        found = self._converted.of(record)
        self._steady.put(token_hash, (epoch, cache.steady_until(InvalidationKind.TOKEN, token_hash), found))
        return self._used(token_hash, found)

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        try:
            record = await self.cache.token(token_hash)
        except StoreError as exc:
            raise _unavailable(exc, "service token") from None
        return None if record is None else self._answer(token_hash, record)

    def _answer(self, token_hash: str, record: ServiceToken) -> TokenRecord:
        return self._used(token_hash, self._converted.of(record))

    def _used(self, token_hash: str, found: TokenRecord) -> TokenRecord:
        """``found``, its use counted when it is usable now."""
        usage = self.usage
        if usage is not None:
            # record.usable_at(now), from the converted record: no datetime per request.
            now = time.time()
            if not found.revoked and (found.expires_at is None or now < found.expires_at):
                usage.count_token(token_hash, now)
        return found


def _token_record(token: ServiceToken) -> TokenRecord:
    return TokenRecord(
        token_id=token.name,
        service_id=token.owner,
        scopes=token.scopes,
        expires_at=_timestamp(token.expires),
        revoked=token.revoked,
        ip_allow=tuple(str(network) for network in token.allowed_ips),
    )


class StoreApiKeys:
    """:class:`~gateway.pipeline.sources.ApiKeySource` over the credential cache; usage counted in batches.

    :meth:`peek` is :meth:`lookup` without a coroutine, as for :class:`StoreTokens`.
    """

    def __init__(self, cache: CredentialCache, usage: UsageRecorder | None = None) -> None:
        self.cache = cache
        self.usage = usage
        self._converted = PerRecord(_api_client_record, limit=MAX_DERIVED)  # as for StoreTokens

    def peek(self, key_hash: str) -> ApiClientRecord | None:
        """What :meth:`lookup` answers when the cache holds the key; ``None``: not in memory, await it."""
        found = self.cache.peek_api_key(key_hash)
        return None if found is None else self._answer(key_hash, found)

    async def lookup(self, key_hash: str) -> ApiClientRecord | None:
        try:
            found = await self.cache.api_key(key_hash)
        except StoreError as exc:
            raise _unavailable(exc, "API key") from None
        return None if found is None else self._answer(key_hash, found)

    def _answer(self, key_hash: str, found: ApiCredential) -> ApiClientRecord:
        record = self._converted.of(found)
        if self.usage is not None:
            # found.key.usable_at(now), from the converted record: no datetime per request.
            now = time.time()
            if not record.revoked and (record.expires_at is None or now < record.expires_at):
                self.usage.count_api_key(key_hash, now)
        return record


def _api_client_record(found: ApiCredential) -> ApiClientRecord:
    key, client = found.key, found.client
    return ApiClientRecord(
        client_id=client.client_id,
        key_id=key.hint or key.key_hash[:12],
        tenant=client.tenant,
        scopes=client.scopes,
        expires_at=_timestamp(key.expires),
        revoked=key.revoked,
        ip_allow=tuple(str(network) for network in client.allowed_ips),
        origins=client.allowed_origins,
    )


class StoreNonces:
    """:class:`~gateway.pipeline.sources.NonceStore` over ``Store.claim_nonce`` (shared by every replica)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def claim(self, scope: str, nonce: str, ttl: int) -> bool:
        try:
            return await self.store.claim_nonce(scope, nonce, ttl)
        except StoreError as exc:
            raise _unavailable(exc, f"nonce in {scope}") from None
