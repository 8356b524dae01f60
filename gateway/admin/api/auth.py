"""Who is calling the admin API: ``Authorization: Bearer <admin token>``, checked against admin.tokens_file.

Without configured admin tokens every call is refused (fail closed). A failed
attempt is logged and written to the audit trail as a denial (client IP, user
agent, path), never with the presented token.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiohttp import web

from gateway.admin.api.errors import AdminForbidden, AdminUnauthorized
from gateway.admin.tokens import AdminToken, AdminTokens
from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.observability.audit import AuditSink

log = logging.getLogger("gateway.admin")

MAX_AUTHORIZATION_LENGTH = 1024


def authenticate(request: web.Request, tokens: AdminTokens, audit: AuditSink, request_id: str) -> AdminToken:
    """The admin token presented, or :class:`AdminUnauthorized` (the same answer for any wrong token)."""
    if not tokens:
        _denied(request, audit, request_id, "admin.disabled")
        raise AdminUnauthorized("the admin API is disabled: no admin tokens are configured (admin.tokens_file)")
    header = request.headers.get("Authorization")
    if header is None:
        _denied(request, audit, request_id, "admin.missing_token")
        raise AdminUnauthorized("missing Authorization: Bearer <admin token>")
    scheme, _, credentials = header.partition(" ")
    token_text = credentials.strip()
    if scheme.lower() != "bearer" or not token_text or len(header) > MAX_AUTHORIZATION_LENGTH:
        _denied(request, audit, request_id, "admin.malformed_authorization")
        raise AdminUnauthorized("expected Authorization: Bearer <admin token>")
    token = tokens.authenticate(token_text)
    if token is None:
        _denied(request, audit, request_id, "admin.invalid_token")
        raise AdminUnauthorized("invalid admin token")
    return token


def authorize(request: web.Request, token: AdminToken, audit: AuditSink, request_id: str, *, mutating: bool) -> None:
    """A read-only admin token may not change anything (the refusal is audited under its name)."""
    if mutating and token.read_only:
        _denied(request, audit, request_id, "admin.forbidden", admin=token.name)
        raise AdminForbidden(f"admin token {token.name!r} is read-only: it cannot change anything")


def _denied(request: web.Request, audit: AuditSink, request_id: str, reason: str, *, admin: str = "") -> None:
    client_ip = request.remote or ""
    log.warning(
        "admin authentication failed",
        extra={"reason": reason, "client_ip": client_ip, "method": request.method, "path": request.path},
    )
    audit.record(
        AuditEvent(
            time=datetime.now(UTC),
            result=AuditResult.DENY,
            reason=reason,
            request_id=request_id,
            route="admin",
            method=request.method,
            credential_kind="admin_token",
            credential_id=admin,
            principal=f"admin:{admin}" if admin else "",
            admin=admin,
            client_ip=client_ip,
            user_agent=request.headers.get("User-Agent", "")[:256],
            detail=request.path[:256],
        )
    )
