"""Record transitions shared by every backend, so they agree on what a change means."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TypeVar

from gateway.credentials.models import ApiKey, ServiceToken
from gateway.store.errors import DuplicateName

Revocable = TypeVar("Revocable", ServiceToken, ApiKey)


def cut_expiry(expires: datetime | None, grace_until: datetime) -> datetime:
    """A rotated-out credential stays valid until ``grace_until``, never longer than it already was."""
    return grace_until if expires is None else min(expires, grace_until)


def revoke(record: Revocable, reason: str, at: datetime) -> Revocable:
    """The record revoked at ``at``; an already revoked record keeps its first reason and time."""
    if record.revoked_at is not None:
        return record
    return dataclasses.replace(record, revoked_at=at, revoked_reason=reason)


def duplicate_name(name: str) -> DuplicateName:
    return DuplicateName(f"a live token named {name!r} already exists: revoke or rotate it, or choose another name")


def expired_or_revoked_before(token: ServiceToken, before: datetime) -> bool:
    """Whether cleanup removes the token: it expired, or was revoked, before ``before``."""
    return (token.expires is not None and token.expires < before) or (
        token.revoked_at is not None and token.revoked_at < before
    )


def with_usage(record: Revocable, count: int, last_used: datetime) -> Revocable:
    latest = last_used if record.last_used is None else max(record.last_used, last_used)
    return dataclasses.replace(record, usage_count=record.usage_count + count, last_used=latest)


def check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError(f"a nonce ttl is a positive number of seconds, got {ttl!r}")


def check_cache_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError(f"a cache ttl is a positive number of seconds, got {ttl!r}")
