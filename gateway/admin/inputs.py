"""Operator input shared by the CLI and the admin API: times, relative times, grace periods, ids.

Each parser raises ``ValueError`` with a message that can follow a field or flag name,
the convention of :mod:`gateway.units` and :mod:`gateway.credentials.validation`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from gateway.units import parse_duration

# Ids shown to operators: the first 16 hex digits of a credential's SHA-256 (not a secret:
# the hash of 256 random bits), enough to tell any two credentials apart.
ID_LENGTH = 16
_ID = re.compile(r"^[0-9a-f]{16}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

MAX_GRACE = timedelta(days=90)


def credential_id(digest: str) -> str:
    """The short id of a token or API key, from its SHA-256."""
    return digest[:ID_LENGTH]


def is_credential_id(text: str) -> bool:
    return bool(_ID.match(text))


def is_full_hash(text: str) -> bool:
    return bool(_HASH.match(text))


def parse_time(value: object) -> datetime:
    """RFC 3339 / ISO 8601 (``2030-01-01T00:00:00Z``, ``2030-01-01``); a time without an offset is UTC."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a time (RFC 3339, e.g. 2030-01-01T00:00:00Z): {value!r}")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ValueError(f"not a time (RFC 3339, e.g. 2030-01-01T00:00:00Z): {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_positive_duration(value: object) -> timedelta:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be more than zero: {value!r}")
    return timedelta(seconds=seconds)


def parse_since(value: object, now: datetime) -> datetime:
    """``1h``/``30m``/``7d`` (that long ago) or an absolute time."""
    if isinstance(value, str) and not _DATE.match(value.strip()):
        try:
            return now - timedelta(seconds=parse_duration(value))
        except ValueError:
            pass
    try:
        return parse_time(value)
    except ValueError:
        raise ValueError(f"not a duration (1h, 30m, 7d) or a time (2030-01-01T00:00:00Z): {value!r}") from None


def parse_grace(value: object) -> timedelta:
    """How long a rotated-out credential stays valid: ``0s`` (at once) to 90 days."""
    grace = timedelta(seconds=parse_duration(value))
    if grace > MAX_GRACE:
        raise ValueError(f"a grace period is at most 90d: {value!r}")
    return grace


def expiry(*, expires: datetime | None, expires_in: timedelta | None, now: datetime) -> datetime | None:
    """An absolute expiry from ``expires`` or ``expires_in`` (not both); it must lie in the future."""
    if expires is not None and expires_in is not None:
        raise ValueError("give an expiry time or a lifetime, not both")
    when = now + expires_in if expires_in is not None else expires
    if when is not None and when <= now:
        raise ValueError(f"expiry is in the past: {when.isoformat()}")
    return when
