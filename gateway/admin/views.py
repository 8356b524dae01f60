"""JSON views of credential records, shared by the admin API and ``gateway ... --json``.

A view never holds a secret: tokens and API keys appear by id (the first 16 hex digits
of their SHA-256) and hint (``sk_7Hq0…1mZ0``), HMAC keys without their encrypted
secret. Each view has a JSON Schema next to it; the OpenAPI document uses these
schemas, and the tests validate real answers against them, so neither can drift.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from gateway.admin.inputs import credential_id
from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.credentials.models import ApiClient, ApiKey, KeyState, ServiceKey, ServiceToken

JSON = dict[str, Any]


def when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def token_state(token: ServiceToken, now: datetime) -> str:
    if token.revoked:
        return "revoked"
    if token.expires is not None and token.expires <= now:
        return "expired"
    if token.replaced_by is not None:
        return "rotated"  # replaced, still valid until its grace expiry
    return "active"


def token_view(token: ServiceToken, now: datetime) -> JSON:
    return {
        "id": credential_id(token.token_hash),
        "name": token.name,
        "owner": token.owner,
        "state": token_state(token, now),
        "format": token.format.value,
        "hint": token.hint,
        "scopes": sorted(token.scopes),
        "allowed_ips": [str(network) for network in token.allowed_ips],
        "created": when(token.created),
        "expires": when(token.expires),
        "revoked_at": when(token.revoked_at),
        "revoked_reason": token.revoked_reason,
        "last_used": when(token.last_used),
        "usage_count": token.usage_count,
        "rotated_from": None if token.rotated_from is None else credential_id(token.rotated_from),
        "replaced_by": None if token.replaced_by is None else credential_id(token.replaced_by),
    }


def key_state(key: ServiceKey, now: datetime) -> str:
    if key.state is KeyState.RETIRED:
        return "retired"
    if key.expires is not None and key.expires <= now:
        return "expired"
    if key.not_before > now:
        return "pending"
    return "active"


def service_key_view(key: ServiceKey, now: datetime) -> JSON:
    return {
        "service": key.service_id,
        "key_id": key.key_id,
        "algorithm": key.algorithm.value,
        "state": key_state(key, now),
        "usable": key.usable_at(now),
        "created": when(key.created),
        "not_before": when(key.not_before),
        "expires": when(key.expires),
        # A public key is not a secret; an HMAC secret never leaves the store (and only encrypted there).
        "public_key": None if key.public_key is None else base64.b64encode(key.public_key).decode("ascii"),
        "tenant": key.tenant,
        "scopes": sorted(key.scopes),
    }


def api_key_state(key: ApiKey, now: datetime) -> str:
    if key.revoked:
        return "revoked"
    if key.expires is not None and key.expires <= now:
        return "expired"
    return "active"


def api_key_view(key: ApiKey, now: datetime) -> JSON:
    return {
        "id": credential_id(key.key_hash),
        "client_id": key.client_id,
        "state": api_key_state(key, now),
        "hint": key.hint,
        "created": when(key.created),
        "expires": when(key.expires),
        "revoked_at": when(key.revoked_at),
        "revoked_reason": key.revoked_reason,
        "last_used": when(key.last_used),
        "usage_count": key.usage_count,
        "rotated_from": None if key.rotated_from is None else credential_id(key.rotated_from),
    }


def client_view(client: ApiClient, keys: list[ApiKey] | None = None, now: datetime | None = None) -> JSON:
    view: JSON = {
        "client_id": client.client_id,
        "name": client.name,
        "tenant": client.tenant,
        "created": when(client.created),
        "allowed_ips": [str(network) for network in client.allowed_ips],
        "allowed_origins": list(client.allowed_origins),
        "scopes": sorted(client.scopes),
    }
    if keys is not None and now is not None:
        view["keys"] = [api_key_view(key, now) for key in keys]
    return view


def audit_view(event: AuditEvent) -> JSON:
    return {
        "event_id": event.event_id,
        "time": when(event.time),
        "result": event.result.value,
        "reason": event.reason,
        "request_id": event.request_id,
        "route": event.route,
        "method": event.method,
        "credential_kind": event.credential_kind,
        "credential_id": event.credential_id,
        "principal": event.principal,
        "tenant": event.tenant,
        "client_ip": event.client_ip,
        "user_agent": event.user_agent,
        "admin": event.admin,
        "action": event.action,
        "target": event.target,
        "detail": event.detail,
    }


# -- JSON Schemas (OpenAPI 3.1 speaks JSON Schema 2020-12) ---------------------------------------

_TIME = {"type": "string", "format": "date-time"}
_OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}
_OPTIONAL_TEXT = {"type": ["string", "null"]}
_ID = {"type": "string", "pattern": "^[0-9a-f]{16}$", "description": "first 16 hex digits of the SHA-256"}
_OPTIONAL_ID = {"type": ["string", "null"], "pattern": "^[0-9a-f]{16}$"}
_STRINGS = {"type": "array", "items": {"type": "string"}}


def _object(properties: dict[str, Any], description: str) -> JSON:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }


TOKEN_SCHEMA = _object(
    {
        "id": _ID,
        "name": {"type": "string"},
        "owner": {"type": "string"},
        "state": {"enum": ["active", "rotated", "expired", "revoked"]},
        "format": {"enum": ["v1", "legacy"]},
        "hint": {"type": "string"},
        "scopes": _STRINGS,
        "allowed_ips": _STRINGS,
        "created": _TIME,
        "expires": _OPTIONAL_TIME,
        "revoked_at": _OPTIONAL_TIME,
        "revoked_reason": _OPTIONAL_TEXT,
        "last_used": _OPTIONAL_TIME,
        "usage_count": {"type": "integer", "minimum": 0},
        "rotated_from": _OPTIONAL_ID,
        "replaced_by": _OPTIONAL_ID,
    },
    "A service token, without its secret.",
)

SERVICE_KEY_SCHEMA = _object(
    {
        "service": {"type": "string"},
        "key_id": {"type": "string"},
        "algorithm": {"enum": ["hmac-sha256", "ed25519"]},
        "state": {"enum": ["active", "pending", "expired", "retired"]},
        "usable": {"type": "boolean"},
        "created": _TIME,
        "not_before": _TIME,
        "expires": _OPTIONAL_TIME,
        "public_key": {"type": ["string", "null"], "description": "Ed25519 public key, base64"},
        "tenant": {"type": ["string", "null"], "description": "the tenant its signatures authenticate as"},
        "scopes": _STRINGS,
    },
    "A service signing key, without its secret.",
)

API_KEY_SCHEMA = _object(
    {
        "id": _ID,
        "client_id": {"type": "string"},
        "state": {"enum": ["active", "expired", "revoked"]},
        "hint": {"type": "string"},
        "created": _TIME,
        "expires": _OPTIONAL_TIME,
        "revoked_at": _OPTIONAL_TIME,
        "revoked_reason": _OPTIONAL_TEXT,
        "last_used": _OPTIONAL_TIME,
        "usage_count": {"type": "integer", "minimum": 0},
        "rotated_from": _OPTIONAL_ID,
    },
    "An API key of a client, without its secret.",
)

_CLIENT_PROPERTIES: dict[str, Any] = {
    "client_id": {"type": "string"},
    "name": {"type": "string"},
    "tenant": {"type": "string"},
    "created": _TIME,
    "allowed_ips": _STRINGS,
    "allowed_origins": _STRINGS,
    "scopes": _STRINGS,
}
CLIENT_SCHEMA = _object(_CLIENT_PROPERTIES, "An API client.")
CLIENT_WITH_KEYS_SCHEMA = _object(
    {**_CLIENT_PROPERTIES, "keys": {"type": "array", "items": {"$ref": "#/components/schemas/ApiKey"}}},
    "An API client and its keys.",
)

AUDIT_EVENT_SCHEMA = _object(
    {
        "event_id": {"type": "string"},
        "time": _TIME,
        "result": {"enum": [result.value for result in AuditResult]},
        **{
            name: {"type": "string"}
            for name in (
                "reason",
                "request_id",
                "route",
                "method",
                "credential_kind",
                "credential_id",
                "principal",
                "tenant",
                "client_ip",
                "user_agent",
                "admin",
                "action",
                "target",
                "detail",
            )
        },
    },
    "One audit event: an authentication decision, or an admin action (result=admin).",
)

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "stable machine-readable code, e.g. admin.not_found"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
    },
    "required": ["type", "title", "status", "code"],
}

SCHEMAS: dict[str, JSON] = {
    "ServiceToken": TOKEN_SCHEMA,
    "ServiceKey": SERVICE_KEY_SCHEMA,
    "ApiKey": API_KEY_SCHEMA,
    "ApiClient": CLIENT_SCHEMA,
    "ApiClientWithKeys": CLIENT_WITH_KEYS_SCHEMA,
    "AuditEvent": AUDIT_EVENT_SCHEMA,
    "Problem": PROBLEM_SCHEMA,
}
