"""Choose a store backend by URL scheme (the shape of alisaifee/limits' ``storage_from_string``).

::

    memory://                                      one process, nothing persisted (tests, demos)
    sqlite:///relative/path.db                     embedded file (the default), relative to the cwd
    sqlite:////absolute/path.db
    redis://[[user]:password@]host:port/db         shared by replicas
    rediss://...                                   the same over TLS
    redis+sentinel://[:password@]h1:26379,h2:26379/service_name[/db]
    redis+cluster://[:password@]h1:7000,h2:7001    Redis Cluster (rediss+cluster:// for TLS)

A backend module is imported only when its scheme is used, so the Redis client
library is loaded only by a gateway that talks to Redis.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

from gateway.store.base import Store
from gateway.store.errors import StoreConfigError

StoreFactory = Callable[[str], Store]

# scheme -> "module:factory", resolved on first use.
_BACKENDS: dict[str, str | StoreFactory] = {
    "memory": "gateway.store.memory:MemoryStore",
    "sqlite": "gateway.store.sqlite:SqliteStore",
    "redis": "gateway.store.redis:RedisStore",
    "rediss": "gateway.store.redis:RedisStore",
    "redis+sentinel": "gateway.store.redis:RedisStore",
    "redis+cluster": "gateway.store.redis:RedisStore",
    "rediss+cluster": "gateway.store.redis:RedisStore",
}

_SECRET_QUERY_KEYS = frozenset({"password", "sentinel_password"})


def register_backend(scheme: str, factory: StoreFactory) -> None:
    """Serve ``scheme://`` URLs with ``factory(url)`` (for extensions and tests)."""
    _BACKENDS[scheme.lower()] = factory


def schemes() -> tuple[str, ...]:
    return tuple(sorted(_BACKENDS))


def mask_url(url: str) -> str:
    """The URL with passwords hidden: ``redis://:secret@host`` -> ``redis://:***@host``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc_end = len(rest)
    for stop in "/?#":
        index = rest.find(stop)
        if index != -1:
            netloc_end = min(netloc_end, index)
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{hosts}"
    path, qmark, query = tail.partition("?")
    if qmark and query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*/")
    return f"{scheme}://{netloc}{path}{qmark}{query}"


def url_scheme(url: str) -> str:
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if match is None:
        raise StoreConfigError(
            f"not a store URL (expected scheme://..., e.g. sqlite:///var/gateway.db): {mask_url(url)!r}"
        )
    return match.group(1).lower()


def store_from_url(url: str) -> Store:
    """Build (without connecting) the backend serving ``url``.

    Raises :class:`StoreConfigError` naming the (masked) URL for an unknown scheme or a malformed URL.
    """
    scheme = url_scheme(url)
    entry = _BACKENDS.get(scheme)
    if entry is None:
        raise StoreConfigError(
            f"unknown store scheme {scheme!r} in {mask_url(url)!r} (expected one of: {', '.join(schemes())})"
        )
    if isinstance(entry, str):
        module_name, _, attribute = entry.partition(":")
        factory: StoreFactory = getattr(importlib.import_module(module_name), attribute)
    else:
        factory = entry
    return factory(url)


async def open_store(url: str) -> Store:
    """Build the backend for ``url`` and connect to it: the start-up path.

    Raises :class:`StoreConfigError` for a bad URL and ``StoreUnavailable`` naming the
    masked URL when the store cannot be reached; nothing is left open on failure.
    """
    store = store_from_url(url)
    try:
        await store.open()
    except BaseException:
        await store.close()
        raise
    return store


def split_options(url: str, known: frozenset[str]) -> tuple[str, dict[str, str]]:
    """Take the gateway's own query options (``prefix``, ...) out of a URL; return the rest untouched."""
    base, qmark, query = url.partition("?")
    if not qmark:
        return url, {}
    pairs = parse_qsl(query, keep_blank_values=True)
    ours = {k: v for k, v in pairs if k in known}
    rest = urlencode([(k, v) for k, v in pairs if k not in known])
    return (f"{base}?{rest}" if rest else base), ours
