"""The credential store: one protocol, backends chosen by URL scheme, a cache in front.

::

    base.py        Store protocol, Invalidation, AuditQuery, ListenerSet
    registry.py    open_store(url) / store_from_url(url), mask_url, register_backend
    memory.py      memory://
    sqlite.py      sqlite:///relative.db, sqlite:////absolute.db (the default)
    redis.py       redis://, rediss://, redis+sentinel://, redis+cluster://
    cache.py       CredentialCache: the data plane's view, invalidated on change
    usage.py       UsageRecorder: batches usage counts off the request path
    codec.py       records <-> rows (SQLite columns, Redis hash fields)
    errors.py      StoreError tree

See docs/store.md.
"""

from __future__ import annotations

from gateway.store.base import (
    AuditQuery,
    Invalidation,
    InvalidationKind,
    InvalidationListener,
    Store,
    Subscription,
    Usage,
    service_key_ref,
)
from gateway.store.errors import (
    Conflict,
    DuplicateName,
    NotFound,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
)
from gateway.store.registry import mask_url, open_store, register_backend, store_from_url

__all__ = [
    "AuditQuery",
    "Conflict",
    "DuplicateName",
    "Invalidation",
    "InvalidationKind",
    "InvalidationListener",
    "NotFound",
    "Store",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailable",
    "Subscription",
    "Usage",
    "mask_url",
    "open_store",
    "register_backend",
    "service_key_ref",
    "store_from_url",
]
