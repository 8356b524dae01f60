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
from gateway.backend.revocation import purge_decisions

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
    purged = await purge_decisions(
        call.runtime.store,
        call.runtime.settings.authn,
        token=token,
        recorder=call.admin.audit,
        admin=call.admin.actor,
        principal=f"admin:{call.admin.actor}",
        now=call.now(),
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
