"""Benchmark scenarios for authenticated routes: each one against the no-auth gateway, target >= 0.85.

=====================  ==========================================================================
scenario               what every request carries
=====================  ==========================================================================
gateway-hmac-legacy    ``X-Service-*`` legacy signature (a fresh timestamp per pool render)
gateway-rfc9421        RFC 9421 ``hmac-sha256`` over @method @authority @path @query (no nonce)
gateway-token          ``Authorization: Bearer sk_...`` (a service token issued by the CLI)
gateway-jwt            ``Authorization: Bearer <JWT RS256>`` (100 users' tokens, static PEM key)
gateway-rfc9421-nonce  as gateway-rfc9421 with a unique nonce per request, claimed once in the
                       store (replay protection): informational, no target (it is a store write
                       per request, priced by the store backend)
gateway-token-audit-denials
                       as gateway-token on a route with ``audit: denials``: informational, shows
                       what auditing every allowed request costs
gateway-token-redis    as gateway-token on the Redis store (a ``redis-server`` of the run's own, no
                       persistence), as several replicas share it: informational, shows what the
                       shared store costs the gateway (the audit trail's writes, usage, lookups
                       after a cache miss); only when ``redis-server`` is installed
=====================  ==========================================================================

Each server is the real ``gateway serve`` with the shipped logging, on an SQLite
store (the default backend) created for the run: the service key (encrypted under
the run's KEK) and the token are written to it before the gateway starts, so the
data plane finds them through its credential cache exactly as in production.
Every decision goes to the audit trail, as configured by default. Signatures,
nonces and tokens are computed before a measurement (the harness renders request
pools ahead of time), never while it runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import shutil
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.request import RequestDraft, RequestSpec
from bench.servers import LaunchContext, ServerSpec
from gateway.credentials import ServiceKey, ServiceToken, generate_kek, load_secret_box
from gateway.sdk.signing import sign_rfc9421
from gateway.store import open_store

SERVICE = "bench-svc"
KEY_ID = "k1"
SECRET = hashlib.sha256(b"bench secret").hexdigest()  # 64 hex, like `gateway keys generate`
JWT_ISSUER = "https://idp.bench.example"
JWT_AUDIENCE = "gateway"
AUTH_TARGET_RATIO = 0.85
REDIS = "redis"

_HAS_REDIS = shutil.which("redis-server") is not None

# One RSA key per harness run: tokens are signed in this process, verified by the gateway.
_JWT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def auth_config(
    ctx: LaunchContext,
    route_auth: list[str],
    authn: Mapping[str, Any] | None = None,
    route_extra: Mapping[str, Any] | None = None,
    store: str | None = None,
) -> dict[str, Any]:
    """Overrides for :func:`bench.scenarios.gateway_config`: a store (a fresh SQLite file unless ``store`` is
    given), a KEK, the auth route."""
    if store is None:
        db = ctx.workdir / f"{ctx.name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)  # a fresh store per launch (launches may be retried)
        store = f"sqlite:///{db}"
    kek = ctx.workdir / f"{ctx.name}.kek"
    kek.write_text(generate_kek() + "\n")
    config: dict[str, Any] = {
        "store": store,
        "credentials": {"kek_file": str(kek)},
        "routes": [
            {
                "name": "bench",
                "prefix": "/bench",
                "upstream": ctx.url_of("upstream"),
                "auth": route_auth,
                **(route_extra or {}),
            }
        ],
    }
    if authn:
        config["authn"] = dict(authn)
    return config


def prepare_credentials(ctx: LaunchContext, config: Mapping[str, Any]) -> None:
    """Register the service key and issue a token on the scenario's store, before the gateway starts."""
    ctx.info["token"] = asyncio.run(_register(config["store"], Path(config["credentials"]["kek_file"])))


async def _register(store_url: str, kek_file: Path) -> str:
    store = await open_store(store_url)
    try:
        await store.add_service_key(
            ServiceKey.new_hmac(SERVICE, SECRET, load_secret_box(kek_file=kek_file), key_id=KEY_ID)
        )
        text, token = ServiceToken.issue(name="bench", owner=SERVICE)
        await store.create_token(token)
    finally:
        await store.close()
    return text


def redis_server() -> ServerSpec:
    """A ``redis-server`` of the run's own: no persistence, ready once it answers PING."""

    def command(ctx: LaunchContext) -> list[str]:
        return ["redis-server", "--bind", ctx.host, "--port", str(ctx.port), "--save", "", "--appendonly", "no"]

    return ServerSpec(REDIS, command, ready=_answers_ping)


def _answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def jwt_public_key_file(ctx: LaunchContext) -> Path:
    path = ctx.workdir / f"{ctx.name}-jwt.pem"
    path.write_bytes(_JWT_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return path


# -- per-request headers ----------------------------------------------------------------------


def legacy_headers(draft: RequestDraft) -> dict[str, str]:
    stamp = str(int(time.time()))
    path = draft.path.partition("?")[0]
    message = f"{SERVICE}:{draft.method}:{path}:{stamp}".encode()
    signature = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    return {"X-Service-ID": SERVICE, "X-Service-Signature": signature, "X-Service-Timestamp": stamp}


def rfc9421_headers(draft: RequestDraft) -> dict[str, str]:
    url = f"http://{draft.host}{draft.path}"
    return sign_rfc9421(draft.method, url, key_id=KEY_ID, key=SECRET, nonce=False)


def rfc9421_nonce_headers(draft: RequestDraft) -> dict[str, str]:
    url = f"http://{draft.host}{draft.path}"
    return sign_rfc9421(draft.method, url, key_id=KEY_ID, key=SECRET, nonce=f"bench-{draft.index}")


def token_headers(server: str) -> Any:
    def headers(draft: RequestDraft) -> dict[str, str]:
        return {"Authorization": f"Bearer {draft.servers[server].info['token']}"}

    return headers


def jwt_headers(draft: RequestDraft) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "sub": f"user-{draft.index % 100}",
        "exp": now + 3600,
        "iat": now,
        "scope": "bench:read",
        "tenant": "bench",
    }
    return {"Authorization": "Bearer " + pyjwt.encode(claims, _JWT_KEY, algorithm="RS256", headers={"kid": "k1"})}


# -- servers ----------------------------------------------------------------------------------


def auth_servers(gateway_server: Any) -> list[ServerSpec]:
    """The gateway specs for the auth scenarios (``gateway_server`` is bench.scenarios.gateway_server)."""

    def with_credentials(
        name: str, auth: list[str], authn: Mapping[str, Any] | None = None, *, redis: bool = False, **route: Any
    ) -> ServerSpec:
        def config(ctx: LaunchContext) -> Mapping[str, Any]:
            store = None
            if redis:  # a fresh key prefix per launch (launches may be retried): each registers its credentials
                server = ctx.servers[REDIS]
                store = f"redis://{server.host}:{server.port}/0?prefix=bench-{secrets.token_hex(4)}"
            overrides = auth_config(ctx, auth, authn, route, store=store)
            prepare_credentials(ctx, overrides)
            return overrides

        base: ServerSpec = gateway_server(name, config=config, depends_on=(REDIS,) if redis else ())

        def command(ctx: LaunchContext) -> list[str]:
            return base.command(ctx)

        return ServerSpec(name, command, depends_on=base.depends_on, ready_timeout=base.ready_timeout)

    def jwt_server(name: str) -> ServerSpec:
        def config(ctx: LaunchContext) -> Mapping[str, Any]:
            provider = {
                "name": "idp",
                "issuer": JWT_ISSUER,
                "audiences": [JWT_AUDIENCE],
                "algorithms": ["RS256"],
                "key_files": {"k1": str(jwt_public_key_file(ctx))},
            }
            return auth_config(ctx, ["jwt"], {"jwt": {"providers": [provider]}})

        spec: ServerSpec = gateway_server(name, config=config)
        return spec

    return [
        with_credentials("gateway-hmac-legacy", ["hmac_legacy"]),
        with_credentials("gateway-rfc9421", ["rfc9421"]),
        with_credentials("gateway-rfc9421-nonce", ["rfc9421"]),
        with_credentials("gateway-token", ["service_token"]),
        jwt_server("gateway-jwt"),
        with_credentials("gateway-token-audit-denials", ["service_token"], audit="denials"),
        *(
            [redis_server(), with_credentials("gateway-token-redis", ["service_token"], redis=True)]
            if _HAS_REDIS
            else []
        ),
    ]


def auth_scenarios(scenario: Any, base: RequestSpec) -> list[Any]:
    """The auth scenarios (``scenario`` is bench.scenarios.Scenario), each compared to gateway-noauth."""

    def spec(**kwargs: Any) -> RequestSpec:
        return RequestSpec(path=base.path, headers=base.headers, **kwargs)

    def make(name: str, request: RequestSpec, description: str, target: float | None = AUTH_TARGET_RATIO) -> Any:
        return scenario(
            name,
            target=name,
            request=request,
            description=description,
            compare_to="gateway-noauth",
            target_ratio=target,
        )

    return [
        make(
            "gateway-hmac-legacy",
            spec(per_request=legacy_headers, variants=1000),
            "legacy HMAC signature (X-Service-*), key from the store (SQLite) via the credential cache",
        ),
        make(
            "gateway-rfc9421",
            spec(per_request=rfc9421_headers, variants=1000),
            "RFC 9421 hmac-sha256 over method, authority, path, query; key from the store via the cache",
        ),
        make(
            "gateway-token",
            spec(per_request=token_headers("gateway-token"), variants=1),
            "service token (Bearer sk_...), looked up by hash through the credential cache, usage counted",
        ),
        make(
            "gateway-jwt",
            spec(per_request=jwt_headers, variants=100),
            "JWT RS256, 100 users' tokens (each verified once, then remembered), static PEM key",
        ),
        make(
            "gateway-rfc9421-nonce",
            spec(per_request=rfc9421_nonce_headers, unique=True),
            "RFC 9421 with a unique nonce per request claimed in the SQLite store (replay protection)",
            target=None,
        ),
        make(
            "gateway-token-audit-denials",
            spec(per_request=token_headers("gateway-token-audit-denials"), variants=1),
            "service token on a route auditing refusals only (audit: denials)",
            target=None,
        ),
        *(
            [
                make(
                    "gateway-token-redis",
                    spec(per_request=token_headers("gateway-token-redis"), variants=1),
                    "service token on the Redis store (its own redis-server): audit batches, usage, lookups",
                    target=None,
                )
            ]
            if _HAS_REDIS
            else []
        ),
    ]
