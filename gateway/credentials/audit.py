"""Audit events: who authenticated (or tried to), when, and what the gateway decided.

An event names the credential by kind and id (a token name, a key id, a client
id), never by its secret. Admin actions are events too, with ``result=admin``,
the ``admin`` identity, the ``action`` and its ``target``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class AuditResult(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    WOULD_DENY = "would_deny"  # log_only mode: the policy would have denied, the request passed
    ADMIN = "admin"  # an operator changed something


def new_event_id() -> str:
    """Time-ordered and unique: 16 hex digits of nanoseconds, then 8 random hex digits."""
    return f"{time.time_ns():016x}{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record. String fields are empty when they do not apply."""

    time: datetime
    result: AuditResult
    reason: str = ""  # stable reason code: "ok", "token.revoked", "hmac.bad_signature", ...
    request_id: str = ""
    route: str = ""
    method: str = ""
    credential_kind: str = ""  # "service_token", "api_key", "service_key", "jwt", ...
    credential_id: str = ""  # a name or id, never the secret
    principal: str = ""  # subject: a user id, "service:<id>", a client id
    tenant: str = ""
    client_ip: str = ""
    user_agent: str = ""
    admin: str = ""  # admin identity, for result=admin
    action: str = ""  # admin action, e.g. "tokens.revoke"
    target: str = ""  # what the admin action touched, e.g. a token name
    detail: str = ""  # free text for humans, e.g. a revocation reason
    event_id: str = field(default_factory=new_event_id)
