"""Records <-> flat rows of ``str``/``int``/``None``: the SQLite columns and the Redis hash fields.

Times are integer microseconds since the epoch (exact round trips, sortable);
sets and lists are JSON arrays; HMAC ciphertexts are their ASCII Fernet tokens;
public keys are hex. One table per record type, so both persistent backends
write the same field names and the contract suite compares records for equality.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.credentials.keys import KeyAlgorithm
from gateway.credentials.models import ApiClient, ApiKey, KeyState, ServiceKey, ServiceToken
from gateway.credentials.tokens import TokenFormat

Scalar = str | int | None
Row = dict[str, Scalar]
R = TypeVar("R")

_NULLABLE = frozenset({"opt_str", "opt_time", "ascii", "hex"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Exact integer microseconds since the epoch (no float rounding)."""
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: object) -> datetime:
    return _EPOCH + timedelta(microseconds=int(str(value)))


def _opt(encode: Callable[[Any], Scalar]) -> Callable[[Any], Scalar]:
    return lambda value: None if value is None else encode(value)


def _opt_decode(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None or value == "" else decode(value)


def _json_list(value: Any) -> str:
    return json.dumps(sorted(str(item) for item in value) if isinstance(value, frozenset) else [str(v) for v in value])


def _networks(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item) for item in json.loads(value))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# field kind -> (encode, decode)
_KINDS: dict[str, tuple[Callable[[Any], Scalar], Callable[[Any], Any]]] = {
    "str": (str, _text),
    "opt_str": (_opt(str), _opt_decode(_text)),
    "int": (int, lambda value: int(value)),
    "time": (to_micros, from_micros),
    "opt_time": (_opt(to_micros), _opt_decode(from_micros)),
    "set": (_json_list, lambda value: frozenset(json.loads(value))),
    "tuple": (_json_list, lambda value: tuple(json.loads(value))),
    "nets": (_json_list, _networks),
    "ascii": (_opt(lambda value: value.decode("ascii")), _opt_decode(lambda value: _text(value).encode("ascii"))),
    "hex": (_opt(lambda value: value.hex()), _opt_decode(lambda value: bytes.fromhex(_text(value)))),
    "format": (str, lambda value: TokenFormat(_text(value))),
    "algorithm": (str, lambda value: KeyAlgorithm(_text(value))),
    "state": (str, lambda value: KeyState(_text(value))),
    "result": (str, lambda value: AuditResult(_text(value))),
}

SERVICE_KEY_FIELDS = {
    "service_id": "str",
    "key_id": "str",
    "algorithm": "algorithm",
    "created": "time",
    "not_before": "time",
    "expires": "opt_time",
    "state": "state",
    "encrypted_secret": "ascii",
    "public_key": "hex",
    "tenant": "opt_str",
    "scopes": "set",
}
TOKEN_FIELDS = {
    "token_hash": "str",
    "name": "str",
    "owner": "str",
    "created": "time",
    "format": "format",
    "hint": "str",
    "scopes": "set",
    "allowed_ips": "nets",
    "expires": "opt_time",
    "revoked_at": "opt_time",
    "revoked_reason": "opt_str",
    "last_used": "opt_time",
    "usage_count": "int",
    "rotated_from": "opt_str",
    "replaced_by": "opt_str",
}
CLIENT_FIELDS = {
    "client_id": "str",
    "name": "str",
    "tenant": "str",
    "created": "time",
    "allowed_ips": "nets",
    "allowed_origins": "tuple",
    "scopes": "set",
}
API_KEY_FIELDS = {
    "key_hash": "str",
    "client_id": "str",
    "created": "time",
    "hint": "str",
    "expires": "opt_time",
    "revoked_at": "opt_time",
    "revoked_reason": "opt_str",
    "last_used": "opt_time",
    "usage_count": "int",
    "rotated_from": "opt_str",
}
AUDIT_FIELDS = {f.name: "str" for f in fields(AuditEvent)} | {"time": "time", "result": "result"}
AUDIT_COLUMNS = tuple(AUDIT_FIELDS)  # to_row's keys, in this order (audit_row's values)
# Only an admin action fills these: a decision of the pipeline leaves them empty.
ADMIN_COLUMNS = ("admin", "action", "target")
NO_ADMIN: Final[Mapping[str, str]] = dict.fromkeys(ADMIN_COLUMNS, "")
# The audit trail hands the pipeline's decisions to a store as rows of these columns (AUDIT_COLUMNS but
# the admin ones), built once when the decision is recorded and never an AuditEvent object. A store writes
# the admin columns empty, as constants: a bound parameter per column per row is what appending costs
# most (SQLite copies each one). The facts first, the same for every decision of one kind (a route
# allowing one principal), then the request's own: a row is the facts tuple plus one short tuple.
DECISION_FACT_COLUMNS = (
    "result",
    "reason",
    "route",
    "credential_kind",
    "credential_id",
    "principal",
    "tenant",
    "detail",
)
DECISION_REQUEST_COLUMNS = ("time", "method", "request_id", "client_ip", "user_agent", "event_id")
DECISION_COLUMNS = DECISION_FACT_COLUMNS + DECISION_REQUEST_COLUMNS
if sorted(DECISION_COLUMNS) != sorted(name for name in AUDIT_COLUMNS if name not in ADMIN_COLUMNS):
    raise AssertionError("DECISION_COLUMNS must be the audit columns but the admin ones")  # pragma: no cover
AuditRow = tuple[int | str, ...]  # result (its value), strings, time (int microseconds), strings

# Fields records gained after they were first stored, with what an older record reads as. Only these:
# any other field missing from a stored record is an error (a record is never completed by guessing).
_ADDED_LATER: dict[tuple[type, str], object] = {(ServiceKey, "scopes"): frozenset()}

_SPECS: dict[type, dict[str, str]] = {
    ServiceKey: SERVICE_KEY_FIELDS,
    ServiceToken: TOKEN_FIELDS,
    ApiClient: CLIENT_FIELDS,
    ApiKey: API_KEY_FIELDS,
    AuditEvent: AUDIT_FIELDS,
}


def to_row(record: object) -> Row:
    """A record as a flat row (``None`` for absent optional values)."""
    spec = _SPECS[type(record)]
    return {name: _KINDS[kind][0](getattr(record, name)) for name, kind in spec.items()}


def audit_row(event: AuditEvent) -> AuditRow:
    """``event``'s values in :data:`AUDIT_COLUMNS` order (``to_row(event)``'s values)."""
    return tuple(to_row(event).values())  # type: ignore[arg-type]  # audit fields are never None


def decision_row(event: AuditEvent) -> AuditRow:
    """``event`` as a decision's :data:`AuditRow` (:data:`DECISION_COLUMNS`); its admin fields must be empty."""
    values = to_row(event)
    if any(values[name] for name in ADMIN_COLUMNS):
        raise ValueError("an admin action is not a decision: write it with append_audit")
    return tuple(values[name] for name in DECISION_COLUMNS)  # type: ignore[misc]  # never None


def row_event(row: AuditRow) -> AuditEvent:
    """The event of a decision's :data:`AuditRow` (empty admin fields)."""
    return from_row(AuditEvent, {**NO_ADMIN, **dict(zip(DECISION_COLUMNS, row, strict=True))})


def from_row(cls: type[R], row: Mapping[str, Any]) -> R:
    """Rebuild a record from a row; missing optional fields (Redis drops ``None``) read as absent."""
    spec = _SPECS[cls]
    values: dict[str, Any] = {}
    for name, kind in spec.items():
        value = row.get(name)
        if value is None:
            if kind in _NULLABLE:
                values[name] = None
            elif (cls, name) in _ADDED_LATER and name not in row:
                values[name] = _ADDED_LATER[cls, name]
            else:
                raise ValueError(f"stored {cls.__name__} lacks {name!r}")
        else:
            values[name] = _KINDS[kind][1](value)
    return cls(**values)


def to_json(record: object) -> str:
    return json.dumps(to_row(record), separators=(",", ":"))


def from_json(cls: type[R], text: str | bytes) -> R:
    return from_row(cls, json.loads(text))
