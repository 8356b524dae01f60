"""``redis://``, ``rediss://``, ``redis+sentinel://`` and ``redis+cluster://``: the store shared by replicas.

Built on redis-py's asyncio client (hiredis parser when installed). This module,
and with it the Redis client library, is imported only when a Redis URL is used.

Layout (``prefix`` defaults to ``gw``; see :mod:`gateway.store.redis_scripts`)::

    gw:{tokens}:...    service tokens and their indexes     one hash tag: one cluster slot
    gw:{keys}:...      service signing keys
    gw:{clients}:...   API clients and keys
    gw:{audit}:events  the audit stream (capped: ?audit_maxlen=, default 1,000,000)
    gw:nonce:<scope>:<nonce>   replay nonces, SET NX PX (spread over the cluster)
    gw:cache:<key>     shared cache values, SET PX (spread over the cluster)
    gw:invalidate      pub/sub channel of change notifications

Each mutation is one Lua script over keys of one hash tag, so it is atomic on a
single server and on a cluster alike, and it publishes its own notifications.
Options in the URL query: ``prefix``, ``audit_maxlen``, ``timeout`` (seconds, default 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from gateway.credentials.audit import AuditEvent
from gateway.credentials.models import ApiClient, ApiCredential, ApiKey, ServiceKey, ServiceToken
from gateway.store import redis_scripts as lua
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
    row_event,
    to_micros,
    to_row,
)
from gateway.store.decision_text import decode, encode, matching, time_of
from gateway.store.errors import Conflict, NotFound, StoreConfigError, StoreError, StoreUnavailable
from gateway.store.registry import mask_url, split_options
from gateway.store.rules import check_cache_ttl, check_ttl, duplicate_name

log = logging.getLogger("gateway.store.redis")

R = TypeVar("R")
N = TypeVar("N", int, float)  # a numeric URL option
Client = Redis | RedisCluster

DEFAULT_PREFIX = "gw"
DEFAULT_AUDIT_MAXLEN = 1_000_000
DEFAULT_TIMEOUT = 2.0
# Redis operations in flight at once per store (per gateway process); more wait, up to the timeout, for one
# to finish. redis-py's own pools refuse the 101st connection (MaxConnectionsError) instead of waiting.
DEFAULT_MAX_CONNECTIONS = 64
_SPARE_CONNECTIONS = 4  # beyond the operations: the change-notification subscription, health checks
# ``since`` bounds an audit scan by stream id (time written): an event is written after it
# happens, but the replica's and Redis's clocks may disagree by up to this much.
AUDIT_CLOCK_SLACK = timedelta(minutes=5)
AUDIT_PAGE = 100  # stream entries per read: a batch entry holds up to the audit trail's batch_size decisions
USAGE_CHUNK = 1000
AUDIT_COUNTS_PAGE = 1000  # entries of the batch counts stream per read (retention)
_OPTIONS = frozenset({"prefix", "audit_maxlen", "timeout", "max_connections", "sentinel_password", "password_file"})
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _redis_row(record: object) -> dict[str, str | None]:
    """Rows for Redis: every value a string (Lua numbers are doubles), ``None`` kept as JSON null."""
    return {name: None if value is None else str(value) for name, value in to_row(record).items()}


def _row_json(record: object) -> str:
    return json.dumps(_redis_row(record), separators=(",", ":"))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(values: Iterable[object] | None) -> list[str]:
    return [_text(value) for value in values or ()]


def _fields(mapping: object) -> dict[str, str]:
    """A hash as text (the client decodes responses; its type hints cannot know that)."""
    if not isinstance(mapping, dict):
        return {}
    return {_text(name): _text(value) for name, value in mapping.items()}


def _may_hold(batch: Mapping[str, str], since: int | None, until: int | None) -> bool:
    """Whether a batch entry may hold decisions timed in ``[since, until)`` (microseconds), by its first and last
    times; an entry without them (not written by this version) is read to find out."""
    first, last = batch.get("first", ""), batch.get("last", "")
    if not (first.isdigit() and last.isdigit()):
        return True
    return (since is None or int(last) >= since) and (until is None or int(first) < until)


def _glob_escape(text: str) -> str:
    """``text`` matched literally by SCAN MATCH (Redis glob: ``* ? [ ] \\`` are special)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _stream_id(moment: datetime) -> str:
    return str(max(0, to_micros(moment) // 1000))


class _Script:
    """A Lua script run by EVALSHA, loaded with EVAL on first use on each server."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client: Client, keys: Sequence[str], args: Sequence[object]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[arg-type]
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)  # type: ignore[arg-type]


_CREATE_TOKENS = _Script(lua.CREATE_TOKENS)
_ROTATE_TOKEN = _Script(lua.ROTATE_TOKEN)
_REVOKE_TOKEN = _Script(lua.REVOKE_TOKEN)
_REVOKE_TOKENS = _Script(lua.REVOKE_TOKENS)
_DELETE_TOKEN = _Script(lua.DELETE_TOKEN)
_DELETE_EXPIRED = _Script(lua.DELETE_EXPIRED_TOKENS)
_RECORD_USAGE = _Script(lua.RECORD_USAGE)
_PUT_SERVICE_KEY = _Script(lua.PUT_SERVICE_KEY)
_ROTATE_SERVICE_KEY = _Script(lua.ROTATE_SERVICE_KEY)
_REGISTER_CLIENT = _Script(lua.REGISTER_CLIENT)
_UPDATE_CLIENT = _Script(lua.UPDATE_CLIENT)
_ADD_API_KEY = _Script(lua.ADD_API_KEY)
_ROTATE_API_KEY = _Script(lua.ROTATE_API_KEY)
_REVOKE_API_KEY = _Script(lua.REVOKE_API_KEY)
_GET_API_KEY = _Script(lua.GET_API_KEY)
_APPEND_AUDIT_BATCH = _Script(lua.APPEND_AUDIT_BATCH)


def _hosts(netloc: str, default_port: int, url: str) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """``user:pass@h1:p1,h2:p2`` -> (user, password, [(host, port), ...])."""
    userinfo, at, hostlist = netloc.rpartition("@")
    user = password = None
    if at:
        name, colon, secret = userinfo.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if colon else None
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+))(?::(\d{1,5}))?$", item.strip())
        if match is None:
            raise StoreConfigError(f"not a host[:port] list in {mask_url(url)!r}: {item!r}")
        hosts.append((match.group(1) or match.group(2), int(match.group(3) or default_port)))
    return user, password, hosts


def _password_from(path: str, url: str, masked: str) -> str:
    """The Redis password in the file at ``path`` (``?password_file=``): its first line, so a trailing newline
    is not part of it. Refused, naming the option, when unreadable, empty, or when the URL holds a password too."""
    parts = urlsplit(url)
    if parts.password is not None or "password" in parse_qs(parts.query):
        raise StoreConfigError(f"{masked}: the password is in the URL and in password_file; give it once")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise StoreConfigError(f"{masked}: password_file {path!r} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise StoreConfigError(f"{masked}: password_file {path!r} is not UTF-8 text") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise StoreConfigError(f"{masked}: password_file {path!r} is empty")
    return password


class RedisStore:
    """The shared store. One instance per process; safe for concurrent use by many tasks."""

    def __init__(self, url: str) -> None:
        self._url = mask_url(url)
        plain, options = split_options(url, _OPTIONS)
        self._prefix = options.get("prefix", DEFAULT_PREFIX)
        if not _PREFIX.match(self._prefix):
            raise StoreConfigError(f"{self._url}: prefix is 1-64 characters of [A-Za-z0-9_.:-]")
        self._audit_maxlen = self._positive(options, "audit_maxlen", DEFAULT_AUDIT_MAXLEN, int)
        self._timeout = self._positive(options, "timeout", DEFAULT_TIMEOUT, float)
        self._max_connections = self._positive(options, "max_connections", DEFAULT_MAX_CONNECTIONS, int)
        self._slots = asyncio.Semaphore(self._max_connections)
        self._nonces = Batcher(
            self._claim_nonces, "gateway-redis-nonces", f"store {self._url}: a nonce claim was interrupted"
        )
        self._sentinel: Sentinel | None = None
        password = _password_from(options["password_file"], plain, self._url) if "password_file" in options else None
        self._client: Client = self._build_client(plain, options.get("sentinel_password"), password)
        p = self._prefix
        self._tokens = f"{p}:{{tokens}}"
        self._keys = f"{p}:{{keys}}"
        self._clients = f"{p}:{{clients}}"
        self._audit = f"{p}:{{audit}}:events"
        self._audit_counts = f"{p}:{{audit}}:batch_events"  # each batch entry's decision count, by its id
        self._channel = f"{p}:invalidate"
        self._cache = f"{p}:cache:"
        self._listeners = ListenerSet()
        self._listener_task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def _positive(self, options: Mapping[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
        """The URL option ``name`` as a positive number of ``kind``, or ``default``; refused naming it otherwise."""
        raw = options.get(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise StoreConfigError(f"{self._url}: {name} must be a number, got {raw!r}") from None
        if value <= 0:
            raise StoreConfigError(f"{self._url}: {name} must be positive, got {raw!r}")
        return value

    def _build_client(self, url: str, sentinel_password: str | None, password: str | None = None) -> Client:
        """``password`` (from ``password_file``) is the server's; the URL then holds none."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        common: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
            "health_check_interval": 15,
            "max_connections": self._max_connections + _SPARE_CONNECTIONS,  # per node on a cluster
        }
        try:
            if scheme in ("redis", "rediss"):
                if password is not None:
                    common["password"] = password
                return Redis.from_url(url, **common)
            if scheme in ("redis+cluster", "rediss+cluster"):
                if parts.query:
                    raise StoreConfigError(f"{self._url}: unknown option(s) {parts.query!r} for a cluster URL")
                user, in_url, hosts = _hosts(parts.netloc, 6379, url)
                return RedisCluster(
                    startup_nodes=[ClusterNode(host, port) for host, port in hosts],
                    username=user,
                    password=password if password is not None else in_url,
                    ssl=scheme == "rediss+cluster",
                    **common,
                )
            if scheme == "redis+sentinel":
                return self._sentinel_client(parts, url, sentinel_password, common, password)
        except (RedisError, ValueError, TypeError) as exc:
            raise StoreConfigError(f"invalid store URL {self._url}: {exc}") from None
        raise StoreConfigError(f"not a Redis URL: {self._url}")

    def _sentinel_client(
        self, parts: Any, url: str, sentinel_password: str | None, common: dict[str, Any], from_file: str | None
    ) -> Redis:
        user, password, hosts = _hosts(parts.netloc, 26379, url)
        if from_file is not None:
            password = from_file
        if parts.query:
            raise StoreConfigError(f"{self._url}: unknown option(s) {parts.query!r} for a sentinel URL")
        segments = [s for s in parts.path.split("/") if s]
        if not segments or len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
            raise StoreConfigError(f"{self._url}: expected redis+sentinel://host:port[,host:port]/service_name[/db]")
        sentinel_kwargs = {"password": sentinel_password} if sentinel_password else None
        self._sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8
            hosts,
            sentinel_kwargs=sentinel_kwargs,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
        )
        db = int(segments[1]) if len(segments) == 2 else 0
        master = self._sentinel.master_for(segments[0], username=user, password=password, db=db, **common)
        return cast(Redis, master)

    @property
    def url(self) -> str:
        return self._url

    @contextlib.asynccontextmanager
    async def _failures(self, doing: str) -> AsyncIterator[None]:
        """One operation: a slot among ``max_connections`` (waiting up to the timeout for one), and the client's
        errors translated at the boundary: the caller sees StoreUnavailable."""
        if self._slots.locked():
            try:
                async with asyncio.timeout(self._timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise StoreUnavailable(
                    f"store {self._url}: all {self._max_connections} connections stayed busy for {self._timeout:g}s "
                    f"while {doing}"
                ) from None
        else:
            await self._slots.acquire()  # free: taken at once
        try:
            yield
        except StoreError:
            raise
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"store {self._url} failed while {doing}: {type(exc).__name__}: {exc}") from exc
        finally:
            self._slots.release()

    def _emit(self, kind: InvalidationKind, ident: str = "") -> None:
        """Tell this process's subscribers at once; other processes hear it through pub/sub."""
        self._listeners.emit(Invalidation(kind, ident))

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        async with self._failures("connecting"):
            try:
                await asyncio.wait_for(self._client.ping(), self._timeout * 2)
            except TimeoutError as exc:
                raise StoreUnavailable(f"store {self._url} did not answer within {self._timeout * 2:g}s") from exc

    async def check(self) -> str | None:
        try:
            async with self._failures("checking"):
                await self._client.ping()
        except StoreError as exc:
            return exc.detail
        return None

    async def close(self) -> None:
        await self._nonces.drain()  # the claims already made are answered first
        task, self._listener_task = self._listener_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                with contextlib.suppress(RedisError, OSError):
                    await sentinel.aclose()

    # -- service keys ------------------------------------------------------------------------
    def _svc(self, service_id: str) -> str:
        return f"{self._keys}:svc:{service_id}"

    async def _put_service_key(self, key: ServiceKey, mode: str) -> None:
        args = (self._keys, self._channel, key.service_id, key.key_id, _row_json(key), mode)
        async with self._failures("writing a service key"):
            result = await _PUT_SERVICE_KEY(self._client, [self._svc(key.service_id)], args)
        if result == "conflict":
            raise Conflict(f"service {key.service_id!r} already has a key {key.key_id!r}")
        if result == "notfound":
            raise NotFound(f"service {key.service_id!r} has no key {key.key_id!r}")
        self._emit(InvalidationKind.SERVICE_KEY, service_key_ref(key.service_id, key.key_id))

    async def add_service_key(self, key: ServiceKey) -> None:
        await self._put_service_key(key, "add")

    async def update_service_key(self, key: ServiceKey) -> None:
        await self._put_service_key(key, "update")

    async def get_service_key(self, service_id: str, key_id: str) -> ServiceKey | None:
        async with self._failures("reading a service key"):
            text = await self._client.hget(self._svc(service_id), key_id)
        return None if text is None else from_row(ServiceKey, json.loads(text))

    async def list_service_keys(self, service_id: str | None = None) -> list[ServiceKey]:
        async with self._failures("listing service keys"):
            if service_id is not None:
                services = [service_id]
            else:
                services = sorted(_texts(await self._client.smembers(f"{self._keys}:services")))
            async with self._client.pipeline(transaction=False) as pipe:
                for service in services:
                    pipe.hgetall(self._svc(service))
                results = await pipe.execute()
        keys = [from_row(ServiceKey, json.loads(text)) for result in results for text in _fields(result).values()]
        return sorted(keys, key=lambda k: (k.service_id, k.created, k.key_id))

    async def rotate_service_key(self, new: ServiceKey, *, old_key_id: str, grace_until: datetime) -> ServiceKey:
        args = (self._channel, new.service_id, old_key_id, new.key_id, _row_json(new), to_micros(grace_until))
        async with self._failures("rotating a service key"):
            status, old_json = await _ROTATE_SERVICE_KEY(self._client, [self._svc(new.service_id)], args)
        if status == "notfound":
            raise NotFound(f"service {new.service_id!r} has no key {old_key_id!r}")
        if status == "conflict":
            raise Conflict(f"service {new.service_id!r} already has a key {new.key_id!r}")
        for key_id in (old_key_id, new.key_id):
            self._emit(InvalidationKind.SERVICE_KEY, service_key_ref(new.service_id, key_id))
        return from_row(ServiceKey, json.loads(old_json))

    # -- service tokens ----------------------------------------------------------------------
    def _token_key(self, token_hash: str) -> str:
        return f"{self._tokens}:t:{token_hash}"

    async def create_token(self, token: ServiceToken) -> None:
        await self.import_tokens([token])

    async def import_tokens(self, tokens: Sequence[ServiceToken]) -> None:
        if not tokens:
            return
        each = len(tokens) <= 100
        args = [self._tokens, self._channel, "1" if each else "0", *(_row_json(t) for t in tokens)]
        async with self._failures("storing tokens"):
            status, name = await _CREATE_TOKENS(self._client, [f"{self._tokens}:names"], args)
        if status == "duplicate":
            raise duplicate_name(name)
        if status == "conflict":
            raise Conflict("a token with this hash is already stored")
        if each:
            for token in tokens:
                self._emit(InvalidationKind.TOKEN, token.token_hash)
        else:
            self._emit(InvalidationKind.ALL)

    async def get_token(self, token_hash: str) -> ServiceToken | None:
        async with self._failures("reading a token"):
            row = _fields(await self._client.hgetall(self._token_key(token_hash)))
        return from_row(ServiceToken, row) if row else None

    async def get_token_by_name(self, name: str) -> ServiceToken | None:
        async with self._failures("reading a token"):
            token_hash = await self._client.hget(f"{self._tokens}:names", name)
        return None if token_hash is None else await self.get_token(_text(token_hash))

    async def _tokens_by_hash(self, hashes: Sequence[str]) -> list[ServiceToken]:
        async with self._failures("reading tokens"):
            async with self._client.pipeline(transaction=False) as pipe:
                for token_hash in hashes:
                    pipe.hgetall(self._token_key(token_hash))
                rows = await pipe.execute() if hashes else []
        return [from_row(ServiceToken, _fields(row)) for row in rows if row]

    async def list_tokens(self, *, owner: str | None = None, name: str | None = None) -> list[ServiceToken]:
        async with self._failures("listing tokens"):
            if owner is not None:
                hashes = set(_texts(await self._client.smembers(f"{self._tokens}:owner:{owner}")))
                if name is not None:
                    hashes &= set(_texts(await self._client.smembers(f"{self._tokens}:name:{name}")))
            elif name is not None:
                hashes = set(_texts(await self._client.smembers(f"{self._tokens}:name:{name}")))
            else:
                hashes = set(_texts(await self._client.zrange(f"{self._tokens}:all", 0, -1)))
        tokens = await self._tokens_by_hash(sorted(hashes))
        return sorted(tokens, key=lambda t: (t.created, t.token_hash))

    async def rotate_token(self, new: ServiceToken, *, grace_until: datetime) -> tuple[ServiceToken, ServiceToken]:
        args = (self._tokens, self._channel, _row_json(new), to_micros(grace_until))
        async with self._failures("rotating a token"):
            status, old_hash = await _ROTATE_TOKEN(self._client, [f"{self._tokens}:names"], args)
        if status == "notfound":
            raise NotFound(f"no live token named {new.name!r}")
        if status == "conflict":
            raise Conflict("a token with this hash is already stored")
        self._emit(InvalidationKind.TOKEN, old_hash)
        self._emit(InvalidationKind.TOKEN, new.token_hash)
        old, stored = await self._tokens_by_hash([old_hash, new.token_hash])
        return old, stored

    async def revoke_token(self, token_hash: str, *, reason: str, at: datetime) -> ServiceToken:
        args = (self._tokens, self._channel, token_hash, to_micros(at), reason)
        async with self._failures("revoking a token"):
            found = await _REVOKE_TOKEN(self._client, [self._token_key(token_hash)], args)
        if not found:
            raise NotFound("no such token")
        self._emit(InvalidationKind.TOKEN, token_hash)
        token = await self.get_token(token_hash)
        if token is None:  # deleted between the two calls
            raise NotFound("no such token")
        return token

    async def revoke_tokens(self, *, reason: str, at: datetime, owner: str | None = None) -> int:
        args = (self._tokens, self._channel, to_micros(at), reason, owner or "")
        async with self._failures("revoking tokens"):
            count = int(await _REVOKE_TOKENS(self._client, [f"{self._tokens}:all"], args))
        if count:
            self._emit(InvalidationKind.ALL)
        return count

    async def delete_token(self, token_hash: str) -> bool:
        async with self._failures("deleting a token"):
            args = (self._tokens, self._channel, token_hash)
            deleted = bool(await _DELETE_TOKEN(self._client, [self._token_key(token_hash)], args))
        if deleted:
            self._emit(InvalidationKind.TOKEN, token_hash)
        return deleted

    async def delete_expired_tokens(self, before: datetime) -> int:
        async with self._failures("deleting expired tokens"):
            args = (self._tokens, to_micros(before))
            return int(await _DELETE_EXPIRED(self._client, [f"{self._tokens}:expiry"], args))

    async def list_expiring_tokens(self, *, now: datetime, until: datetime) -> list[ServiceToken]:
        async with self._failures("listing expiring tokens"):
            hashes = _texts(
                await self._client.zrangebyscore(f"{self._tokens}:expiry", to_micros(now), f"({to_micros(until)}")
            )
        tokens = [t for t in await self._tokens_by_hash(hashes) if t.revoked_at is None]
        return sorted(tokens, key=lambda t: (t.expires, t.token_hash))

    async def _record_usage(self, base: str, infix: str, usage: Mapping[str, Usage]) -> None:
        items = list(usage.items())
        async with self._failures("recording usage"):
            for start in range(0, len(items), USAGE_CHUNK):  # bounded script calls; counts only add up
                args: list[object] = [base, infix]
                for ident, (count, last_used) in items[start : start + USAGE_CHUNK]:
                    args += [ident, count, to_micros(last_used)]
                await _RECORD_USAGE(self._client, [f"{base}:all"], args)

    async def record_usage(self, usage: Mapping[str, Usage]) -> None:
        await self._record_usage(self._tokens, ":t:", usage)

    # -- API clients and keys ----------------------------------------------------------------
    async def register_client(self, client: ApiClient, keys: Sequence[ApiKey] = ()) -> None:
        args = [self._clients, self._channel, _row_json(client), *(_row_json(k) for k in keys)]
        async with self._failures("registering a client"):
            status = await _REGISTER_CLIENT(self._client, [f"{self._clients}:all"], args)
        if status == "conflict":
            raise Conflict(f"client {client.client_id!r} or one of its key hashes already exists")
        for key in keys:
            self._emit(InvalidationKind.API_KEY, key.key_hash)
        self._emit(InvalidationKind.API_CLIENT, client.client_id)

    async def get_client(self, client_id: str) -> ApiClient | None:
        async with self._failures("reading a client"):
            row = _fields(await self._client.hgetall(f"{self._clients}:c:{client_id}"))
        return from_row(ApiClient, row) if row else None

    async def list_clients(self, *, tenant: str | None = None) -> list[ApiClient]:
        async with self._failures("listing clients"):
            if tenant is None:
                ids = _texts(await self._client.zrange(f"{self._clients}:all", 0, -1))
            else:
                ids = sorted(_texts(await self._client.smembers(f"{self._clients}:tenant:{tenant}")))
            async with self._client.pipeline(transaction=False) as pipe:
                for client_id in ids:
                    pipe.hgetall(f"{self._clients}:c:{client_id}")
                rows = await pipe.execute() if ids else []
        clients = [from_row(ApiClient, _fields(row)) for row in rows if row]
        return sorted(clients, key=lambda c: (c.created, c.client_id))

    async def update_client(self, client: ApiClient) -> None:
        async with self._failures("updating a client"):
            args = (self._clients, self._channel, _row_json(client))
            status = await _UPDATE_CLIENT(self._client, [f"{self._clients}:all"], args)
        if status == "notfound":
            raise NotFound(f"no client {client.client_id!r}")
        self._emit(InvalidationKind.API_CLIENT, client.client_id)

    async def add_api_key(self, key: ApiKey) -> None:
        async with self._failures("adding an API key"):
            args = (self._clients, self._channel, _row_json(key))
            status = await _ADD_API_KEY(self._client, [f"{self._clients}:all"], args)
        if status == "notfound":
            raise NotFound(f"no client {key.client_id!r}")
        if status == "conflict":
            raise Conflict("an API key with this hash is already stored")
        self._emit(InvalidationKind.API_KEY, key.key_hash)

    async def get_api_key(self, key_hash: str) -> ApiCredential | None:
        async with self._failures("reading an API key"):
            found = await _GET_API_KEY(self._client, [f"{self._clients}:k:{key_hash}"], [self._clients])
        if not found or not found[1]:
            return None
        key, client = (dict(zip(flat[::2], flat[1::2], strict=True)) for flat in found)
        return ApiCredential(from_row(ApiKey, key), from_row(ApiClient, client))

    async def list_api_keys(self, client_id: str) -> list[ApiKey]:
        async with self._failures("listing API keys"):
            hashes = _texts(await self._client.zrange(f"{self._clients}:keys:{client_id}", 0, -1))
            async with self._client.pipeline(transaction=False) as pipe:
                for key_hash in hashes:
                    pipe.hgetall(f"{self._clients}:k:{key_hash}")
                rows = await pipe.execute() if hashes else []
        keys = [from_row(ApiKey, _fields(row)) for row in rows if row]
        return sorted(keys, key=lambda k: (k.created, k.key_hash))

    async def _api_keys(self, hashes: Sequence[str]) -> list[ApiKey]:
        async with self._failures("reading API keys"):
            async with self._client.pipeline(transaction=False) as pipe:
                for key_hash in hashes:
                    pipe.hgetall(f"{self._clients}:k:{key_hash}")
                rows = await pipe.execute()
        return [from_row(ApiKey, _fields(row)) for row in rows if row]

    async def rotate_api_key(self, new: ApiKey, *, old_key_hash: str, grace_until: datetime) -> tuple[ApiKey, ApiKey]:
        args = (self._clients, self._channel, old_key_hash, _row_json(new), to_micros(grace_until))
        async with self._failures("rotating an API key"):
            status = await _ROTATE_API_KEY(self._client, [f"{self._clients}:all"], args)
        if status == "notfound":
            raise NotFound("no such API key")
        if status == "conflict":
            raise Conflict("the new key belongs to another client, or its hash is already stored")
        self._emit(InvalidationKind.API_KEY, old_key_hash)
        self._emit(InvalidationKind.API_KEY, new.key_hash)
        old, stored = await self._api_keys([old_key_hash, new.key_hash])
        return old, stored

    async def revoke_api_key(self, key_hash: str, *, reason: str, at: datetime) -> ApiKey:
        args = (self._channel, key_hash, to_micros(at), reason)
        async with self._failures("revoking an API key"):
            found = await _REVOKE_API_KEY(self._client, [f"{self._clients}:k:{key_hash}"], args)
        if not found:
            raise NotFound("no such API key")
        self._emit(InvalidationKind.API_KEY, key_hash)
        keys = await self._api_keys([key_hash])
        if not keys:
            raise NotFound("no such API key")
        return keys[0]

    async def record_api_key_usage(self, usage: Mapping[str, Usage]) -> None:
        await self._record_usage(self._clients, ":k:", usage)

    # -- audit -------------------------------------------------------------------------------
    async def append_audit(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        async with self._failures("appending audit events"):
            async with self._client.pipeline(transaction=False) as pipe:
                for event in events:
                    fields = {name: str(value) for name, value in zip(AUDIT_COLUMNS, audit_row(event), strict=True)}
                    pipe.xadd(self._audit, fields, maxlen=self._audit_maxlen, approximate=True)  # type: ignore[arg-type]
                await pipe.execute()

    async def append_audit_rows(self, rows: Sequence[AuditRow]) -> None:
        """The batch as one stream entry (:mod:`gateway.store.decision_text`): one command and one entry instead
        of one per decision, which cost the gateway ~40 µs of CPU a decision in redis-py's command building
        and reply parsing. ``audit_maxlen`` still counts decisions, roughly: the stream keeps about
        ``audit_maxlen / len(rows)`` entries of batches this size."""
        if not rows:
            return
        times = list(map(time_of, rows))
        args = (max(1, self._audit_maxlen // len(rows)), len(rows), min(times), max(times), encode(rows))
        async with self._failures("appending audit events"):
            await _APPEND_AUDIT_BATCH(self._client, [self._audit, self._audit_counts], args)

    async def query_audit(self, query: AuditQuery) -> list[AuditEvent]:
        low = "-" if query.since is None else _stream_id(query.since - AUDIT_CLOCK_SLACK)
        high = "+"  # events may be written long after they happen (a retried batch): no upper id bound
        since = None if query.since is None else to_micros(query.since)
        until = None if query.until is None else to_micros(query.until)
        result = None if query.result is None else query.result.value
        found: list[AuditEvent] = []
        async with self._failures("reading audit events"):
            while len(found) < query.limit:
                if query.newest_first:
                    page = await self._client.xrevrange(self._audit, high, low, count=AUDIT_PAGE)
                else:
                    page = await self._client.xrange(self._audit, low, high, count=AUDIT_PAGE)
                entries = page or []
                for _, raw in entries:
                    fields = _fields(raw)
                    batch = fields.get("batch")
                    if batch is None:  # an admin action, or a decision written by an earlier version
                        event = from_row(AuditEvent, fields)
                        if query.matches(event):
                            found.append(event)
                    elif _may_hold(fields, since, until):
                        found += map(row_event, matching(decode(batch), since, until, query.principal, result))
                if len(entries) < AUDIT_PAGE:
                    break
                last_id = _text(entries[-1][0])  # continue past it, exclusively
                if query.newest_first:
                    high = f"({last_id}"
                else:
                    low = f"({last_id}"
        found.sort(key=lambda e: (e.time, e.event_id), reverse=query.newest_first)
        return found[: query.limit]

    async def prune_audit(self, before: datetime) -> int:
        minid = _stream_id(before)
        async with self._failures("pruning audit events"):
            # Entries are trimmed whole, by the time they were written. A batch entry holds many decisions:
            # their counts come from the small counts stream (the same ids), not from the batches.
            batches = decisions = 0
            low = "-"
            while True:
                page = await self._client.xrange(self._audit_counts, low, f"({minid}", count=AUDIT_COUNTS_PAGE) or []
                batches += len(page)
                decisions += sum(int(_fields(raw).get("events", 0)) for _, raw in page)
                if len(page) < AUDIT_COUNTS_PAGE:
                    break
                low = f"({_text(page[-1][0])}"
            entries = int(await self._client.xtrim(self._audit, minid=minid, approximate=False))
            await self._client.xtrim(self._audit_counts, minid=minid, approximate=False)
        return max(0, entries - batches) + decisions

    # -- nonces ------------------------------------------------------------------------------
    async def claim_nonce(self, scope: str, nonce: str, ttl: float) -> bool:
        """Claimed in batches (:mod:`gateway.store.batching`): the claims made while one pipeline of ``SET NX``
        is answered go in the next. A command each cost ~90 µs of the gateway's CPU with 32 in flight."""
        check_ttl(ttl)
        return await self._nonces.submit((f"{self._prefix}:nonce:{scope}:{nonce}", max(1, int(ttl * 1000))))

    async def _claim_nonces(self, batch: list[tuple[str, int]]) -> list[bool]:
        async with self._failures("claiming nonces"):
            async with self._client.pipeline(transaction=False) as pipe:
                for key, ttl_ms in batch:
                    pipe.set(key, "1", nx=True, px=ttl_ms)
                return [bool(claimed) for claimed in await pipe.execute()]

    # -- shared cache ------------------------------------------------------------------------
    async def cache_get(self, key: str) -> str | None:
        async with self._failures("reading the cache"):
            value = await self._client.get(self._cache + key)
        return None if value is None else _text(value)

    async def cache_set(self, key: str, value: str, ttl: float) -> None:
        check_cache_ttl(ttl)
        async with self._failures("writing the cache"):
            await self._client.set(self._cache + key, value, px=max(1, int(ttl * 1000)))

    async def cache_delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        async with self._failures("deleting cache entries"):
            return await self._delete_keys([self._cache + key for key in keys])

    async def cache_purge(self, prefix: str) -> int:
        pattern = _glob_escape(self._cache + prefix) + "*"
        deleted = 0
        async with self._failures("purging the cache"):
            batch: list[str] = []
            async for key in self._client.scan_iter(match=pattern, count=1000):  # every primary of a cluster
                batch.append(_text(key))
                if len(batch) >= 500:
                    deleted += await self._delete_keys(batch)
                    batch = []
            if batch:
                deleted += await self._delete_keys(batch)
        return deleted

    async def _delete_keys(self, keys: Sequence[str]) -> int:
        # One DEL per key: on a cluster the keys live in different slots.
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.delete(key)
            results = await pipe.execute()
        return sum(int(n) for n in results)

    # -- notifications -----------------------------------------------------------------------
    async def publish_invalidation(self, kind: InvalidationKind, ident: str = "") -> None:
        self._emit(kind, ident)
        async with self._failures("publishing a change"):
            await self._client.publish(self._channel, Invalidation(kind, ident).encode())

    async def subscribe(self, listener: InvalidationListener) -> Subscription:
        subscription = self._listeners.add(listener)
        if self._listener_task is None:
            self._subscribed.clear()
            self._listener_task = asyncio.create_task(self._listen(), name="gateway-redis-invalidations")
        try:
            await asyncio.wait_for(self._subscribed.wait(), self._timeout * 2)
        except TimeoutError:
            await subscription.close()
            raise StoreUnavailable(f"store {self._url}: cannot subscribe to change notifications") from None
        return subscription

    async def _listen(self) -> None:
        """Hold a subscription to the channel; on any interruption drop every cached record, then resubscribe."""
        delay = 0.1
        while True:
            pubsub: PubSub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        if self._subscribed.is_set():  # a resubscription: we may have missed messages
                            self._emit(InvalidationKind.ALL)
                        self._subscribed.set()
                        delay = 0.1
                    elif message["type"] == "message":
                        self._listeners.emit(Invalidation.decode(str(message["data"])))
            except (RedisError, RedisClusterException, OSError) as exc:
                log.warning("change notifications interrupted", extra={"store": self._url, "error": str(exc)})
                self._emit(InvalidationKind.ALL)  # fail safe: nothing cached outlives a gap
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
