"""``/admin/v1/tokens``: service tokens."""

from __future__ import annotations

from datetime import timedelta

from gateway.admin.actions import LegacyToken
from gateway.admin.api.schema import (
    BOOLEAN,
    DURATION,
    GRACE,
    STRING,
    STRINGS,
    TIME,
    Body,
    Call,
    Field,
    Operation,
    Param,
    Reply,
    ref,
)
from gateway.admin.inputs import expiry
from gateway.admin.views import token_view
from gateway.credentials.tokens import is_token_hash
from gateway.credentials.validation import parse_cidrs, parse_name, parse_reason, parse_scopes

TOKEN = ref("ServiceToken")
TOKEN_LIST = {"type": "object", "properties": {"tokens": {"type": "array", "items": TOKEN}}, "required": ["tokens"]}
_ISSUED_PROPERTIES = {
    "token": {"type": "string", "description": "the token: shown once, never again"},
    "record": TOKEN,
}
ISSUED = {"type": "object", "properties": _ISSUED_PROPERTIES, "required": ["token", "record"]}
ROTATED = {
    "type": "object",
    "properties": {**_ISSUED_PROPERTIES, "previous": TOKEN},
    "required": ["token", "record", "previous"],
}
COUNT = {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}
PATH = {"ref": "a live token's name, or a token id (16 hex digits) or SHA-256"}
DEFAULT_GRACE = timedelta(hours=24)
DEFAULT_CLEANUP_AGE = timedelta(days=30)

_EXPIRES = Field("expires", TIME, "expiry time (RFC 3339)")
_EXPIRES_IN = Field("expires_in", DURATION, "lifetime from now, e.g. 90d (instead of expires)")
_SCOPES = Field("scopes", STRINGS, "scopes such as orders:read", check=parse_scopes)
_ALLOWED_IPS = Field("allowed_ips", STRINGS, "CIDRs the token may be used from (empty: anywhere)", check=parse_cidrs)


async def list_tokens(call: Call) -> Reply:
    now = call.now()
    within = call.query["expiring_within"]
    if within is not None:
        tokens = await call.admin.expiring_tokens(within=within)
    else:
        tokens = await call.admin.list_tokens(owner=call.query["owner"], include_inactive=call.query["all"])
    if call.query["owner"] is not None:
        tokens = [token for token in tokens if token.owner == call.query["owner"]]
    return Reply(200, {"tokens": [token_view(token, now) for token in tokens]})


async def create_token(call: Call) -> Reply:
    body = call.body
    text, token = await call.admin.create_token(
        name=body["name"],
        owner=body["owner"],
        scopes=body["scopes"] or (),
        allowed_ips=[str(n) for n in body["allowed_ips"] or ()],
        expires=expiry(expires=body["expires"], expires_in=body["expires_in"], now=call.now()),
    )
    return Reply(201, {"token": text, "record": token_view(token, call.now())})


async def show_token(call: Call) -> Reply:
    return Reply(200, token_view(await call.admin.find_token(call.path["ref"]), call.now()))


async def rotate_token(call: Call) -> Reply:
    body = call.body
    now = call.now()
    text, old, new = await call.admin.rotate_token(
        call.path["ref"],
        grace=body["grace"] if body["grace"] is not None else DEFAULT_GRACE,
        expires=expiry(expires=body["expires"], expires_in=body["expires_in"], now=now),
    )
    return Reply(201, {"token": text, "record": token_view(new, now), "previous": token_view(old, now)})


async def revoke_token(call: Call) -> Reply:
    token = await call.admin.revoke_token(call.path["ref"], reason=call.body["reason"])
    return Reply(200, token_view(token, call.now()))


async def emergency_revoke(call: Call) -> Reply:
    body = call.body
    if body["confirm"] is not True:
        raise ValueError("confirm: must be true (this revokes many tokens at once)")
    if (body["owner"] is None) == (body["all"] is not True):
        raise ValueError('give either "owner" or "all": true')
    count = await call.admin.emergency_revoke(reason=body["reason"], owner=body["owner"])
    return Reply(200, {"count": count})


async def cleanup_tokens(call: Call) -> Reply:
    older_than = call.body["older_than"] if call.body["older_than"] is not None else DEFAULT_CLEANUP_AGE
    return Reply(200, {"count": await call.admin.cleanup_tokens(older_than=older_than)})


def _token_hash(value: object) -> str:
    if not isinstance(value, str) or not is_token_hash(value.strip().lower()):
        raise ValueError("expected the SHA-256 of the whole token text (sk_ included), 64 hex characters")
    return value.strip().lower()


IMPORTED_TOKEN = Body(
    (
        Field("name", STRING, "unique name for the token", required=True, check=parse_name),
        Field("owner", STRING, "owner / service id", required=True, check=lambda v: parse_name(v, "owner")),
        Field("token_hash", STRING, "SHA-256 (hex) of the whole legacy token text", required=True, check=_token_hash),
        _SCOPES,
        _ALLOWED_IPS,
        _EXPIRES,
    ),
    "A legacy sk_ + 64 hex token, known by its SHA-256 (the CLI hashes token text locally).",
)


async def import_tokens(call: Call) -> Reply:
    entries = [
        LegacyToken(
            name=item["name"],
            owner=item["owner"],
            token_hash=item["token_hash"],
            scopes=item["scopes"] or frozenset(),
            allowed_ips=tuple(str(n) for n in item["allowed_ips"] or ()),
            expires=item["expires"],
        )
        for item in call.body["tokens"]
    ]
    return Reply(201, {"count": await call.admin.import_tokens(entries)})


OPERATIONS = (
    Operation(
        "GET",
        "/tokens",
        "listTokens",
        "List service tokens (active ones unless all=true); never their secrets",
        "tokens",
        list_tokens,
        TOKEN_LIST,
        query=(
            Param("owner", STRING, "only this owner's tokens"),
            Param("all", BOOLEAN, "include revoked, expired and rotated-out tokens", default=False),
            Param("expiring_within", DURATION, "only unrevoked tokens expiring within this long, soonest first"),
        ),
    ),
    Operation(
        "POST",
        "/tokens",
        "createToken",
        "Create a service token; the answer holds the token, shown once",
        "tokens",
        create_token,
        ISSUED,
        status=201,
        errors=(409,),
        body=Body(
            (
                Field("name", STRING, "unique among live tokens", required=True, check=parse_name),
                Field("owner", STRING, "owner / service id", required=True, check=lambda v: parse_name(v, "owner")),
                _SCOPES,
                _ALLOWED_IPS,
                _EXPIRES,
                _EXPIRES_IN,
            )
        ),
    ),
    Operation(
        "POST",
        "/tokens/import",
        "importTokens",
        "Import legacy sk_ + 64 hex tokens by their SHA-256 (all checked before any is stored)",
        "tokens",
        import_tokens,
        COUNT,
        status=201,
        errors=(409,),
        max_body=8 * 1024 * 1024,
        body=Body((Field("tokens", STRING, "the tokens", required=True, items=IMPORTED_TOKEN),)),
    ),
    Operation(
        "POST",
        "/tokens/emergency-revoke",
        "emergencyRevokeTokens",
        "Revoke every token, or every token of one owner, in one step (audited)",
        "tokens",
        emergency_revoke,
        COUNT,
        body=Body(
            (
                Field("reason", STRING, "why (goes to the audit trail)", required=True, check=parse_reason),
                Field("owner", STRING, "only this owner's tokens", check=lambda v: parse_name(v, "owner")),
                Field("all", BOOLEAN, "true: every token (instead of owner)"),
                Field("confirm", BOOLEAN, "must be true", required=True),
            )
        ),
    ),
    Operation(
        "POST",
        "/tokens/cleanup",
        "cleanupTokens",
        "Delete tokens that expired or were revoked more than older_than ago",
        "tokens",
        cleanup_tokens,
        COUNT,
        body=Body((Field("older_than", DURATION, "default 30d"),)),
    ),
    Operation(
        "GET",
        "/tokens/{ref}",
        "getToken",
        "One token, with its usage count and last use",
        "tokens",
        show_token,
        TOKEN,
        errors=(404,),
        path_params=PATH,
    ),
    Operation(
        "POST",
        "/tokens/{ref}/rotate",
        "rotateToken",
        "Issue a new token under the same name; the old one stays valid for the grace period",
        "tokens",
        rotate_token,
        ROTATED,
        status=201,
        errors=(404, 409),
        path_params=PATH,
        body=Body(
            (
                Field("grace", GRACE, "how long the old token stays valid (default 24h, at most 90d)"),
                _EXPIRES,
                _EXPIRES_IN,
            )
        ),
    ),
    Operation(
        "POST",
        "/tokens/{ref}/revoke",
        "revokeToken",
        "Revoke one token at once (on every replica within a second)",
        "tokens",
        revoke_token,
        TOKEN,
        errors=(404,),
        path_params=PATH,
        body=Body((Field("reason", STRING, "why (goes to the audit trail)", required=True, check=parse_reason),)),
    ),
)
