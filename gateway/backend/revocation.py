"""Explicit revocation: forget the identity service's cached decisions about a token, on every replica.

Used by the admin API (``POST /admin/v1/auth-cache/purge``) and the CLI
(``gateway auth-cache purge``): both only need the store and the configuration,
not a running gateway. The shared entries are deleted, the purge is announced
through the store (every replica drops its in-memory copy), and the action is
audited with a fingerprint of the token, never the token.
"""

from __future__ import annotations

from datetime import datetime

from gateway.admin.actions import ActionRecorder
from gateway.auth_settings import AuthnSettings
from gateway.backend.cache import purge_all, purge_token, token_digest
from gateway.backend.wiring import cache_backend_ids
from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.store.base import Store


def fingerprint(token: str) -> str:
    """What logs and the audit trail may show of a token: the start of its SHA-256."""
    return f"sha256:{token_digest(token).hex()[:16]}"


async def purge_decisions(
    store: Store,
    authn: AuthnSettings,
    *,
    token: str | None,
    recorder: ActionRecorder,
    admin: str,
    principal: str,
    now: datetime,
) -> int:
    """Purge ``token``'s cached decisions (every decision when ``token`` is None); how many shared entries existed."""
    if token is not None:
        if not token.strip():
            raise ValueError("the token is empty")
        purged = await purge_token(store, cache_backend_ids(authn), token.strip())
        target = fingerprint(token.strip())
    else:
        purged = await purge_all(store)
        target = "*"
    await recorder.record_now(
        AuditEvent(
            time=now,
            result=AuditResult.ADMIN,
            reason="ok",
            credential_kind="introspection",
            credential_id=target,
            principal=principal,
            admin=admin,
            action="auth_cache.purge",
            target=target,
            detail=f"purged={purged}",
        )
    )
    return purged
