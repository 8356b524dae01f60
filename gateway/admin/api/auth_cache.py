"""``/admin/v1/auth-cache``: purge the auth backend's cached decisions (explicit revocation).

A token revoked at the identity service stays accepted by the gateway until its
cached decision expires (at most ``authn.introspection.cache.max_ttl``), or, on a
route with a stale grace, while the service is down. Purging removes it now, on
every replica: the shared entries are deleted from the store and the purge is
announced, so each replica drops its in-memory copy. The token is hashed at once;
it is never stored, logged or echoed.
"""

from __future__ import annotations

from gateway.admin.api.schema import BOOLEAN, STRING, Body, Call, Field, Operation, Reply
from gateway.backend.cache import purge_all, purge_token, token_digest
from gateway.backend.wiring import cache_backend_ids
from gateway.credentials.audit import AuditEvent, AuditResult

PURGED = {
    "type": "object",
    "properties": {
        "purged": {"type": "integer", "description": "shared cache entries deleted (replicas drop theirs too)"}
    },
    "required": ["purged"],
}


async def purge(call: Call) -> Reply:
    token, everything = call.body["token"], call.body["all"]
    if (token is None) == (not everything):
        raise ValueError("give either token, or all: true")
    store = call.runtime.store
    if token is not None:
        purged = await purge_token(store, cache_backend_ids(call.runtime.settings.authn), token)
        target = f"sha256:{token_digest(token).hex()[:16]}"
    else:
        purged = await purge_all(store)
        target = "*"
    await call.admin.audit.record_now(
        AuditEvent(
            time=call.now(),
            result=AuditResult.ADMIN,
            reason="ok",
            credential_kind="introspection",
            credential_id=target,
            principal=f"admin:{call.admin.actor}",
            admin=call.admin.actor,
            action="auth_cache.purge",
            target=target,
            detail=f"purged={purged}",
        )
    )
    return Reply(200, {"purged": purged})


OPERATIONS = (
    Operation(
        "POST",
        "/auth-cache/purge",
        "purgeAuthCache",
        "Forget the identity service's cached decisions about a token (or all of them), on every replica",
        "auth-cache",
        purge,
        PURGED,
        body=Body(
            (
                Field("token", STRING, "the revoked token (hashed at once; never stored or logged)"),
                Field("all", BOOLEAN, "purge every cached decision instead"),
            )
        ),
    ),
)
