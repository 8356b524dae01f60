"""``/admin/v1/keys``: service signing keys (HMAC secrets stored encrypted, Ed25519 public keys)."""

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
    choice,
    ref,
)
from gateway.admin.views import service_key_view
from gateway.credentials.keys import KeyAlgorithm, generate_service_secret, parse_key_id, parse_service_id
from gateway.credentials.models import DEFAULT_KEY_LIFETIME
from gateway.credentials.validation import parse_scopes, parse_tenant

KEY = ref("ServiceKey")
KEY_LIST = {"type": "object", "properties": {"keys": {"type": "array", "items": KEY}}, "required": ["keys"]}
_SECRET_OUT = {
    "type": ["string", "null"],
    "description": "the generated HMAC secret (64 hex characters), shown once; null when none was generated",
}
ADDED = {"type": "object", "properties": {"key": KEY, "secret": _SECRET_OUT}, "required": ["key", "secret"]}
ROTATED = {
    "type": "object",
    "properties": {"key": KEY, "previous": KEY, "secret": _SECRET_OUT},
    "required": ["key", "previous", "secret"],
}
DEFAULT_GRACE = timedelta(hours=24)

_SECRET_IN = Field("secret", STRING, "HMAC secret to register: at least 64 hex characters (omit to generate one)")
_PUBLIC_KEY = Field("public_key", STRING, "Ed25519 public key: PEM, base64 or 64 hex characters")
_LIFETIME = Field("lifetime", DURATION, "validity from not_before (default 90d)")
_TENANT = Field("tenant", STRING, "tenant its signatures authenticate as", check=parse_tenant)
_SCOPES = Field("scopes", STRINGS, "scopes its signatures are granted, such as orders:read", check=parse_scopes)


def _lifetime(value: timedelta | None) -> timedelta:
    return DEFAULT_KEY_LIFETIME if value is None else value


async def list_keys(call: Call) -> Reply:
    now = call.now()
    keys = await call.admin.list_service_keys(call.query["service"])
    return Reply(200, {"keys": [service_key_view(key, now) for key in keys]})


async def add_key(call: Call) -> Reply:
    body = call.body
    algorithm = KeyAlgorithm(body["algorithm"] or KeyAlgorithm.HMAC_SHA256.value)
    secret, public_key = body["secret"], body["public_key"]
    if algorithm is KeyAlgorithm.ED25519 and (public_key is None or secret is not None):
        raise ValueError("public_key: required for an ed25519 key (and no secret)")
    if algorithm is KeyAlgorithm.HMAC_SHA256 and public_key is not None:
        raise ValueError("public_key: only for algorithm ed25519")
    generated = None
    if algorithm is KeyAlgorithm.HMAC_SHA256 and secret is None:
        generated = secret = generate_service_secret()
    key = await call.admin.add_service_key(
        body["service"],
        secret=secret,
        public_key=public_key,
        key_id=body["key_id"],
        lifetime=_lifetime(body["lifetime"]),
        not_before=body["not_before"],
        tenant=body["tenant"],
        scopes=body["scopes"] or (),
    )
    return Reply(201, {"key": service_key_view(key, call.now()), "secret": generated})


async def show_key(call: Call) -> Reply:
    key = await call.admin.get_service_key(call.path["service"], call.path["key_id"])
    return Reply(200, service_key_view(key, call.now()))


async def rotate_key(call: Call) -> Reply:
    body = call.body
    secret, old, new = await call.admin.rotate_service_key(
        call.path["service"],
        grace=body["grace"] if body["grace"] is not None else DEFAULT_GRACE,
        old_key_id=body["old_key_id"],
        secret=body["secret"],
        public_key=body["public_key"],
        lifetime=_lifetime(body["lifetime"]),
        tenant=body["tenant"],
        scopes=body["scopes"],
    )
    now = call.now()
    return Reply(201, {"key": service_key_view(new, now), "previous": service_key_view(old, now), "secret": secret})


async def retire_key(call: Call) -> Reply:
    key = await call.admin.retire_service_key(call.path["service"], call.path["key_id"])
    return Reply(200, service_key_view(key, call.now()))


PATH = {"service": "service id", "key_id": "key id"}

OPERATIONS = (
    Operation(
        "GET",
        "/keys",
        "listServiceKeys",
        "List service signing keys (never their secrets)",
        "keys",
        list_keys,
        KEY_LIST,
        query=(Param("service", STRING, "only this service's keys"),),
    ),
    Operation(
        "POST",
        "/keys",
        "addServiceKey",
        "Register a service key: an HMAC secret (given, or generated and returned once) or an Ed25519 public key",
        "keys",
        add_key,
        ADDED,
        status=201,
        errors=(409,),
        body=Body(
            (
                Field("service", STRING, "service id", required=True, check=parse_service_id),
                Field("algorithm", choice("hmac-sha256", "ed25519"), "default hmac-sha256"),
                Field("key_id", STRING, "key id (default: generated, sortable by day)", check=parse_key_id),
                _SECRET_IN,
                _PUBLIC_KEY,
                _LIFETIME,
                Field("not_before", TIME, "not valid before this time (default: now)"),
                _TENANT,
                _SCOPES,
            )
        ),
    ),
    Operation(
        "POST",
        "/keys/{service}/rotate",
        "rotateServiceKey",
        "Add a new key for the service; the old one stays valid for the grace period",
        "keys",
        rotate_key,
        ROTATED,
        status=201,
        errors=(404, 409),
        path_params={"service": "service id"},
        body=Body(
            (
                Field("grace", GRACE, "how long the old key stays valid (default 24h, at most 90d)"),
                Field("old_key_id", STRING, "the key to rotate out (default: the newest usable one)"),
                _SECRET_IN,
                _PUBLIC_KEY,
                _LIFETIME,
                Field("tenant", STRING, "default: the old key's", check=parse_tenant),
                Field("scopes", STRINGS, "default: the old key's", check=parse_scopes),
            )
        ),
    ),
    Operation(
        "GET",
        "/keys/{service}/{key_id}",
        "getServiceKey",
        "One service key",
        "keys",
        show_key,
        KEY,
        errors=(404,),
        path_params=PATH,
    ),
    Operation(
        "POST",
        "/keys/{service}/{key_id}/retire",
        "retireServiceKey",
        "Retire a key: signatures made with it are refused from now on",
        "keys",
        retire_key,
        KEY,
        errors=(404,),
        path_params=PATH,
    ),
)
