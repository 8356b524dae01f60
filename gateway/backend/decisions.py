"""What the auth backend said about a token, read from its JSON with a configurable field mapping.

A :class:`Decision` is the backend's verdict, independent of its protocol
(RFC 7662 introspection or an in-house validate endpoint): active or not, and
for an active token who it belongs to. :func:`read_identity` maps an answer to
one, refusing anything it cannot trust::

    not a JSON object, or deeper/larger than sane           BadBackendResponse
    the active field missing or not a boolean (if mapped)   BadBackendResponse
    a mapped field of the wrong type (sub not a string,
      exp not a number, scope not a string or list...)      BadBackendResponse
    active, but no subject                                  inactive, reason token.no_subject
    active, but exp already passed                          inactive, reason token.inactive
    active, audience configured and not in aud              inactive, reason token.bad_audience

The bad answers are backend failures (the breaker counts them); the last three
are definite answers about this token and cached like ``active: false``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.backend.errors import BadBackendResponse

INACTIVE: Final = "token.inactive"
NO_SUBJECT: Final = "token.no_subject"
BAD_AUDIENCE: Final = "token.bad_audience"
MAX_FIELD_LENGTH: Final = 1024
MAX_SCOPES: Final = 256


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Where each identity field is in the backend's JSON answer (dotted paths reach nested objects).

    ``active`` ``None`` means a 2xx answer is itself the "valid" verdict (validate
    endpoints that answer 401/404 for a bad token). ``subject`` lists candidates in
    order (``sub``, then ``username`` in RFC 7662).
    """

    active: str | None = "active"
    subject: tuple[str, ...] = ("sub", "username")
    tenant: str | None = "tenant"
    scopes: str | None = "scope"
    expires_at: str | None = "exp"
    client_id: str | None = "client_id"
    audience: str | None = "aud"
    token_id: str | None = "jti"  # noqa: S105 - a field name, not a secret


@dataclass(frozen=True, slots=True)
class Decision:
    """The backend's verdict on one token. ``reason`` says why an inactive token is refused."""

    active: bool
    reason: str = ""
    subject: str = ""
    tenant: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    client_id: str | None = None
    token_id: str | None = None
    expires_at: float | None = None  # Unix seconds, from the answer

    @classmethod
    def inactive(cls, reason: str = INACTIVE) -> Decision:
        return cls(active=False, reason=reason)

    # -- the shared cache's form (compact JSON, short keys) ----------------------------------
    def to_json(self) -> dict[str, Any]:
        if not self.active:
            return {"a": 0, "r": self.reason}
        data: dict[str, Any] = {"a": 1, "s": self.subject}
        if self.tenant is not None:
            data["t"] = self.tenant
        if self.scopes:
            data["sc"] = sorted(self.scopes)
        if self.client_id is not None:
            data["c"] = self.client_id
        if self.token_id is not None:
            data["j"] = self.token_id
        if self.expires_at is not None:
            data["e"] = self.expires_at
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        """The inverse of :meth:`to_json`; ``ValueError`` for anything else (a corrupt cache entry)."""
        active = data.get("a")
        if active == 0:
            reason = data.get("r")
            if not isinstance(reason, str):
                raise ValueError("inactive entry without a reason")
            return cls.inactive(reason)
        if active != 1 or not isinstance(data.get("s"), str):
            raise ValueError("not a cached decision")
        scopes = data.get("sc", [])
        expires = data.get("e")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError("bad scopes")
        if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int | float)):
            raise ValueError("bad expiry")
        return cls(
            active=True,
            subject=data["s"],
            tenant=_optional_text(data.get("t")),
            scopes=frozenset(scopes),
            client_id=_optional_text(data.get("c")),
            token_id=_optional_text(data.get("j")),
            expires_at=None if expires is None else float(expires),
        )


def _optional_text(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected text")
    return value


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The answer as a JSON object, or :class:`BadBackendResponse` naming what is wrong."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise BadBackendResponse("answer is not JSON") from None
    if not isinstance(document, dict):
        raise BadBackendResponse(f"answer is a JSON {type(document).__name__}, not an object")
    return document


def _lookup(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _text(value: Any, name: str, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadBackendResponse(f"{path!r} ({name}) is a {type(value).__name__}, expected a string")
    text = str(value)
    if len(text) > MAX_FIELD_LENGTH:
        raise BadBackendResponse(f"{path!r} ({name}) is longer than {MAX_FIELD_LENGTH} characters")
    return text


def _scopes(value: Any, path: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        items: Sequence[Any] = value.split()
    elif isinstance(value, list):
        items = value
    else:
        raise BadBackendResponse(f"{path!r} (scopes) is a {type(value).__name__}, expected a string or a list")
    if len(items) > MAX_SCOPES:
        raise BadBackendResponse(f"{path!r} (scopes) has more than {MAX_SCOPES} entries")
    scopes: set[str] = set()
    for item in items:
        if not isinstance(item, str) or len(item) > MAX_FIELD_LENGTH:
            raise BadBackendResponse(f"{path!r} (scopes) holds a {type(item).__name__}, expected strings")
        scopes.add(item)
    return frozenset(scopes)


def _number(value: Any, path: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadBackendResponse(f"{path!r} (expiry) is a {type(value).__name__}, expected Unix seconds")
    return float(value)


def _audiences(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise BadBackendResponse(f"{path!r} (audience) is a {type(value).__name__}, expected a string or strings")


def read_identity(
    document: Mapping[str, Any],
    fields: FieldMap,
    *,
    audiences: Sequence[str] = (),
    now: float | None = None,
) -> Decision:
    """Map an answer to a :class:`Decision` (see the module docstring for what is refused)."""
    if fields.active is not None:
        active = _lookup(document, fields.active)
        if active is None:
            raise BadBackendResponse(f"answer has no {fields.active!r} field")
        if not isinstance(active, bool):
            raise BadBackendResponse(f"{fields.active!r} is a {type(active).__name__}, expected true or false")
        if not active:
            return Decision.inactive()
    subject = None
    for path in fields.subject:
        subject = _text(_lookup(document, path), "subject", path)
        if subject:
            break
    tenant = _text(_lookup(document, fields.tenant), "tenant", fields.tenant) if fields.tenant else None
    scopes = _scopes(_lookup(document, fields.scopes), fields.scopes) if fields.scopes else frozenset()
    expires_at = _number(_lookup(document, fields.expires_at), fields.expires_at) if fields.expires_at else None
    client_id = _text(_lookup(document, fields.client_id), "client_id", fields.client_id) if fields.client_id else None
    token_id = _text(_lookup(document, fields.token_id), "token id", fields.token_id) if fields.token_id else None
    audience = _audiences(_lookup(document, fields.audience), fields.audience) if fields.audience else ()
    if not subject:
        return Decision.inactive(NO_SUBJECT)
    if expires_at is not None and expires_at <= (time.time() if now is None else now):
        return Decision.inactive(INACTIVE)  # RFC 7662 §2.2: an expired token is not active, whatever it says
    if audiences and not set(audiences) & set(audience):
        return Decision.inactive(BAD_AUDIENCE)
    return Decision(
        active=True,
        subject=subject,
        tenant=tenant or None,
        scopes=scopes,
        client_id=client_id,
        token_id=token_id,
        expires_at=expires_at,
    )
