"""``/admin/v1/clients``: API clients (SDKs, browser apps) and their ``ak_`` keys."""

from __future__ import annotations

from datetime import timedelta

from gateway.admin.api.schema import (
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
from gateway.admin.views import api_key_view, client_view
from gateway.credentials.validation import (
    parse_cidrs,
    parse_name,
    parse_origins,
    parse_reason,
    parse_scopes,
    parse_tenant,
)

CLIENT = ref("ApiClient")
CLIENT_WITH_KEYS = ref("ApiClientWithKeys")
API_KEY = ref("ApiKey")
CLIENT_LIST = {
    "type": "object",
    "properties": {"clients": {"type": "array", "items": CLIENT}},
    "required": ["clients"],
}
_KEY_TEXT = {"type": "string", "description": "the API key (ak_...): shown once, never again"}
REGISTERED = {
    "type": "object",
    "properties": {"client": CLIENT, "api_key": _KEY_TEXT, "key": API_KEY},
    "required": ["client", "api_key", "key"],
}
KEY_ISSUED = {"type": "object", "properties": {"api_key": _KEY_TEXT, "key": API_KEY}, "required": ["api_key", "key"]}
KEY_ROTATED = {
    "type": "object",
    "properties": {"api_key": _KEY_TEXT, "key": API_KEY, "previous": API_KEY},
    "required": ["api_key", "key", "previous"],
}
DEFAULT_GRACE = timedelta(hours=24)

_ALLOWED_IPS = Field(
    "allowed_ips", STRINGS, "CIDRs the client's keys may be used from (empty: anywhere)", check=parse_cidrs
)
_ALLOWED_ORIGINS = Field(
    "allowed_origins", STRINGS, "browser origins, scheme://host[:port] (empty: no Origin check)", check=parse_origins
)
_SCOPES = Field("scopes", STRINGS, "scopes such as orders:read", check=parse_scopes)
_EXPIRES = Field("expires", TIME, "key expiry time (RFC 3339)")
_EXPIRES_IN = Field("expires_in", DURATION, "key lifetime from now, e.g. 365d (instead of expires)")
CLIENT_PATH = {"client_id": "client id (cl_...)"}
KEY_PATH = {**CLIENT_PATH, "key": "API key id (16 hex digits) or SHA-256"}


def _strings(values: object) -> list[str]:
    return [str(value) for value in values] if isinstance(values, tuple | list | frozenset) else []


async def list_clients(call: Call) -> Reply:
    clients = await call.admin.list_clients(tenant=call.query["tenant"])
    return Reply(200, {"clients": [client_view(client) for client in clients]})


async def register_client(call: Call) -> Reply:
    body = call.body
    client, text, key = await call.admin.register_client(
        name=body["name"],
        tenant=body["tenant"],
        allowed_ips=_strings(body["allowed_ips"]),
        allowed_origins=_strings(body["allowed_origins"]),
        scopes=_strings(body["scopes"]),
        key_expires=expiry(expires=body["key_expires"], expires_in=body["key_expires_in"], now=call.now()),
    )
    return Reply(201, {"client": client_view(client), "api_key": text, "key": api_key_view(key, call.now())})


async def show_client(call: Call) -> Reply:
    client, keys = await call.admin.get_client(call.path["client_id"])
    return Reply(200, client_view(client, keys, call.now()))


async def update_client(call: Call) -> Reply:
    body = call.body
    client = await call.admin.update_client(
        call.path["client_id"],
        name=body["name"],
        allowed_ips=None if body["allowed_ips"] is None else _strings(body["allowed_ips"]),
        allowed_origins=None if body["allowed_origins"] is None else _strings(body["allowed_origins"]),
        scopes=None if body["scopes"] is None else _strings(body["scopes"]),
    )
    return Reply(200, client_view(client))


async def add_key(call: Call) -> Reply:
    expires = expiry(expires=call.body["expires"], expires_in=call.body["expires_in"], now=call.now())
    text, key = await call.admin.add_api_key(call.path["client_id"], expires=expires)
    return Reply(201, {"api_key": text, "key": api_key_view(key, call.now())})


async def rotate_key(call: Call) -> Reply:
    body = call.body
    now = call.now()
    text, old, new = await call.admin.rotate_api_key(
        call.path["client_id"],
        call.path["key"],
        grace=body["grace"] if body["grace"] is not None else DEFAULT_GRACE,
        expires=expiry(expires=body["expires"], expires_in=body["expires_in"], now=now),
    )
    return Reply(201, {"api_key": text, "key": api_key_view(new, now), "previous": api_key_view(old, now)})


async def revoke_key(call: Call) -> Reply:
    key = await call.admin.revoke_api_key(call.path["client_id"], call.path["key"], reason=call.body["reason"])
    return Reply(200, api_key_view(key, call.now()))


OPERATIONS = (
    Operation(
        "GET",
        "/clients",
        "listClients",
        "List API clients",
        "clients",
        list_clients,
        CLIENT_LIST,
        query=(Param("tenant", STRING, "only this tenant's clients"),),
    ),
    Operation(
        "POST",
        "/clients",
        "registerClient",
        "Register an API client; the answer holds its first API key, shown once",
        "clients",
        register_client,
        REGISTERED,
        status=201,
        errors=(409,),
        body=Body(
            (
                Field("name", STRING, "unique client name", required=True, check=parse_name),
                Field("tenant", STRING, "tenant id", required=True, check=parse_tenant),
                _ALLOWED_IPS,
                _ALLOWED_ORIGINS,
                _SCOPES,
                Field("key_expires", TIME, "first key's expiry time"),
                Field("key_expires_in", DURATION, "first key's lifetime from now"),
            )
        ),
    ),
    Operation(
        "GET",
        "/clients/{client_id}",
        "getClient",
        "One client and its keys (never their secrets)",
        "clients",
        show_client,
        CLIENT_WITH_KEYS,
        errors=(404,),
        path_params=CLIENT_PATH,
    ),
    Operation(
        "PATCH",
        "/clients/{client_id}",
        "updateClient",
        "Change a client's name, allowlists or scopes (each list given is replaced whole)",
        "clients",
        update_client,
        CLIENT,
        errors=(404, 409),
        path_params=CLIENT_PATH,
        body=Body(
            (
                Field("name", STRING, "new unique name", check=parse_name),
                _ALLOWED_IPS,
                _ALLOWED_ORIGINS,
                _SCOPES,
            )
        ),
    ),
    Operation(
        "POST",
        "/clients/{client_id}/keys",
        "addApiKey",
        "Add an API key to a client; the answer holds the key, shown once",
        "clients",
        add_key,
        KEY_ISSUED,
        status=201,
        errors=(404,),
        path_params=CLIENT_PATH,
        body=Body((_EXPIRES, _EXPIRES_IN)),
    ),
    Operation(
        "POST",
        "/clients/{client_id}/keys/{key}/rotate",
        "rotateApiKey",
        "Issue a new key; the old one stays valid for the grace period",
        "clients",
        rotate_key,
        KEY_ROTATED,
        status=201,
        errors=(404, 409),
        path_params=KEY_PATH,
        body=Body(
            (
                Field("grace", GRACE, "how long the old key stays valid (default 24h, at most 90d)"),
                _EXPIRES,
                _EXPIRES_IN,
            )
        ),
    ),
    Operation(
        "POST",
        "/clients/{client_id}/keys/{key}/revoke",
        "revokeApiKey",
        "Revoke one API key at once",
        "clients",
        revoke_key,
        API_KEY,
        errors=(404,),
        path_params=KEY_PATH,
        body=Body((Field("reason", STRING, "why (goes to the audit trail)", required=True, check=parse_reason),)),
    ),
)
