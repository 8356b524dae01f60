"""A fake identity service: a real aiohttp app that tests switch between healthy and broken, and that counts calls.

It stands in for the organisation's identity provider (a system outside the
project), over real HTTP::

    POST /introspect                          RFC 7662: form token=..., client auth checked
    POST /validate                            in-house JSON: {"token": ...} -> {"user": {"id"}, "org", ...} or 401
    *    /moved                               307 to /introspect (a client must not follow it)
    GET  /.well-known/openid-configuration    issuer, jwks_uri, introspection_endpoint
    GET  /jwks                                the JWKS tests set (``jwks``)

``mode`` changes how every endpoint answers::

    ok              as configured
    slow            after ``delay`` seconds
    error           500
    garbage         200 with a body that is not JSON
    missing_active  200 {"sub": "x"} (no active)
    wrong_types     200 {"active": "yes", "exp": "soon", "scope": 7}
    huge            200 with a JSON body of ``huge_bytes``
    hang            never answers (until the test ends)
    down            drops the connection without answering
    reject          401 (as if the gateway's client credentials were wrong)

``calls`` counts requests per endpoint (whatever the mode); ``hold`` (an Event),
when set, makes answers wait until it is set: single-flight tests use it to keep
one call in flight while many requests arrive.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

MODES = ("ok", "slow", "error", "garbage", "missing_active", "wrong_types", "huge", "hang", "down", "reject")


@dataclass
class IdentityService:
    """The fake service's state (see the module docstring)."""

    issuer: str = ""
    mode: str = "ok"
    delay: float = 0.5
    huge_bytes: int = 2 * 1024 * 1024
    # token -> the identity fields of an active token (RFC 7662 names); absent tokens are inactive.
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    client_id: str | None = None  # basic client auth expected when set (with client_secret)
    client_secret: str | None = None
    bearer: str | None = None  # bearer client auth expected when set
    calls: Counter[str] = field(default_factory=Counter)
    seen: list[dict[str, Any]] = field(default_factory=list)  # what each introspection/validate call carried
    hold: asyncio.Event | None = None
    _hung: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, token: str, sub: str = "user-1", *, ttl: float | None = 3600, **claims: Any) -> None:
        """An active token; ``ttl`` sets its ``exp`` (None: no exp in the answer)."""
        fields: dict[str, Any] = {"sub": sub, **claims}
        if ttl is not None:
            fields["exp"] = int(time.time() + ttl) if ttl >= 1 else time.time() + ttl
        self.tokens[token] = fields

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

    @property
    def backend_calls(self) -> int:
        return self.calls["introspect"] + self.calls["validate"]

    def release_hung(self) -> None:
        self._hung.set()


IDENTITY = web.AppKey("identity_service", IdentityService)


async def _broken(request: web.Request, state: IdentityService) -> web.StreamResponse | None:
    """The answer of a broken mode, or None to answer normally."""
    if state.hold is not None:
        await state.hold.wait()
    mode = state.mode
    if mode == "slow":
        await asyncio.sleep(state.delay)
        return None
    if mode == "error":
        return web.json_response({"error": "server_error"}, status=500)
    if mode == "garbage":
        return web.Response(body=b"<html>502 Bad Gateway</html>", content_type="application/json")
    if mode == "missing_active":
        return web.json_response({"sub": "someone"})
    if mode == "wrong_types":
        return web.json_response({"active": "yes", "sub": ["a"], "exp": "soon", "scope": 7})
    if mode == "huge":
        return web.Response(body=b'{"active": true, "pad": "' + b"x" * state.huge_bytes + b'"}')
    if mode == "hang":
        await state._hung.wait()
        return web.json_response({"active": False})
    if mode == "down":
        if request.transport is not None:
            request.transport.abort()  # the client sees the connection drop, no answer
        return web.Response(status=503)  # never delivered
    if mode == "reject":
        return web.json_response({"error": "invalid_client"}, status=401)
    return None


def _client_ok(request: web.Request, state: IdentityService) -> bool:
    header = request.headers.get("Authorization", "")
    if state.bearer is not None:
        return header == f"Bearer {state.bearer}"
    if state.client_id is not None:
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return unquote(user) == state.client_id and unquote(password) == state.client_secret
    return True


async def introspect(request: web.Request) -> web.StreamResponse:
    state = request.app[IDENTITY]
    state.calls["introspect"] += 1
    form = await request.post()
    state.seen.append({"form": dict(form), "authorization": request.headers.get("Authorization")})
    fields = state.tokens.get(str(form.get("token", "")))  # decided on arrival, answered after any hold
    broken = await _broken(request, state)
    if broken is not None:
        return broken
    if not _client_ok(request, state):
        return web.json_response({"error": "invalid_client"}, status=401)
    if fields is None:
        return web.json_response({"active": False})
    return web.json_response({"active": True, "token_type": "access_token", **fields})


async def validate(request: web.Request) -> web.StreamResponse:
    state = request.app[IDENTITY]
    state.calls["validate"] += 1
    body = await request.json()
    state.seen.append({"json": body, "authorization": request.headers.get("Authorization")})
    fields = state.tokens.get(str(body.get("token", "")))
    broken = await _broken(request, state)
    if broken is not None:
        return broken
    if fields is None:
        return web.json_response({"error": "invalid token"}, status=401)
    identity: dict[str, Any] = {
        "user": {"id": fields["sub"]},
        "org": fields.get("tenant"),
        "permissions": fields.get("scope", "").split(),
    }
    if "exp" in fields:
        identity["expiresAt"] = fields["exp"]
    return web.json_response(identity)


async def configuration(request: web.Request) -> web.StreamResponse:
    state = request.app[IDENTITY]
    state.calls["discovery"] += 1
    broken = await _broken(request, state)
    if broken is not None:
        return broken
    return web.json_response(
        {
            "issuer": state.issuer,
            "jwks_uri": f"{state.issuer}/jwks",
            "introspection_endpoint": f"{state.issuer}/introspect",
        }
    )


async def jwks(request: web.Request) -> web.StreamResponse:
    state = request.app[IDENTITY]
    state.calls["jwks"] += 1
    broken = await _broken(request, state)
    if broken is not None:
        return broken
    return web.Response(body=json.dumps(state.jwks).encode(), content_type="application/json")


async def moved(request: web.Request) -> web.StreamResponse:
    raise web.HTTPTemporaryRedirect("/introspect")


def create_identity_service(state: IdentityService | None = None) -> web.Application:
    app = web.Application()
    app[IDENTITY] = state or IdentityService()
    app.router.add_post("/introspect", introspect)
    app.router.add_post("/validate", validate)
    app.router.add_get("/.well-known/openid-configuration", configuration)
    app.router.add_get("/jwks", jwks)
    app.router.add_route("*", "/moved", moved)

    async def release(app: web.Application) -> None:
        app[IDENTITY].release_hung()  # let hung handlers finish so the server can close

    app.on_shutdown.append(release)
    return app
