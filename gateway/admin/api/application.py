"""The admin API application: routes from the operation declarations, auth, body limits, problems.

Mounted under ``/admin/v1`` on the admin listener (:func:`gateway.app.create_admin_app`).
For every call: a request id, then authentication (except the OpenAPI document),
then the read-only check, the body (``application/json``, at most 64 KiB unless the
operation says otherwise) and query validated against the declarations, then the
handler. Every failure becomes an RFC 9457 problem document with a stable code;
every answer carries ``Cache-Control: no-store`` (some hold a secret, shown once).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from gateway.admin.actions import CredentialAdmin
from gateway.admin.api import audit, auth_cache, clients, keys, tokens
from gateway.admin.api.auth import authenticate, authorize
from gateway.admin.api.errors import (
    AdminBadRequest,
    AdminError,
    AdminMethodNotAllowed,
    AdminNotFound,
    AdminPayloadTooLarge,
    AdminUnsupportedMedia,
    translate,
)
from gateway.admin.api.openapi import openapi_document
from gateway.admin.api.schema import Call, FieldError, Operation, Reply
from gateway.context import new_request_id
from gateway.errors import render
from gateway.observability.logging import request_id_var
from gateway.runtime import Runtime

log = logging.getLogger("gateway.admin")

PREFIX = "/admin/v1"
RUNTIME = web.AppKey("admin_runtime", Runtime)
OPENAPI = web.AppKey("admin_openapi", bytes)
REQUEST_ID = web.RequestKey("admin_request_id", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _openapi(call: Call) -> Reply:
    raise AssertionError("served by serve_openapi")  # pragma: no cover - the document is pre-rendered


OPENAPI_OPERATION = Operation(
    "GET",
    "/openapi.json",
    "getOpenApiDocument",
    "This OpenAPI 3.1 document (no authentication needed)",
    "meta",
    _openapi,
    {"type": "object"},
    public=True,
)

OPERATIONS: tuple[Operation, ...] = (
    *tokens.OPERATIONS,
    *keys.OPERATIONS,
    *clients.OPERATIONS,
    *audit.OPERATIONS,
    *auth_cache.OPERATIONS,
    OPENAPI_OPERATION,
)


def create_admin_api(runtime: Runtime, operations: Sequence[Operation] = OPERATIONS) -> web.Application:
    """The admin API as an application to mount at :data:`PREFIX`."""
    app = web.Application(middlewares=[_problems])
    app[RUNTIME] = runtime
    app[OPENAPI] = json.dumps(openapi_document(operations, prefix=PREFIX), indent=1).encode()
    for operation in operations:
        handler = _serve_openapi if operation is OPENAPI_OPERATION else _endpoint(operation)
        app.router.add_route(operation.method, operation.path, handler)
    templates = [(_template(op.path), op.method) for op in operations]
    # [\s\S]: a decoded path may hold a line feed (%0A), which "." does not match.
    app.router.add_route("*", "/{tail:[\\s\\S]*}", _unknown_endpoint(templates))
    return app


def mount_admin_api(admin_app: web.Application, runtime: Runtime) -> None:
    admin_app.add_subapp(PREFIX, create_admin_api(runtime))


# -- middleware -------------------------------------------------------------------------------


@web.middleware
async def _problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = new_request_id()
    request[REQUEST_ID] = request_id
    reset = request_id_var.set(request_id)
    try:
        try:
            response = await handler(request)
        except Exception as exc:
            error = translate(exc)
            if error is None:
                log.exception("admin API failure", extra={"method": request.method, "path": request.path})
                error = AdminError("internal error (see the gateway log for this request id)")
            elif error.status >= 500:
                log.warning("admin API unavailable", extra={"code": error.code, "detail": error.detail})
            response = render(error, request_id)
    finally:
        request_id_var.reset(reset)
    response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("X-Request-Id", request_id)
    return response


# -- endpoints --------------------------------------------------------------------------------


def _endpoint(operation: Operation) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        runtime = request.app[RUNTIME]
        request_id = request[REQUEST_ID]
        identity = authenticate(request, runtime.admin_tokens.current(), runtime.audit, request_id)
        authorize(request, identity, runtime.audit, request_id, mutating=operation.mutating)
        admin = CredentialAdmin(runtime.store, actor=identity.name, audit=runtime.audit, secret_box=runtime.secret_box)
        now = admin.now()
        try:
            query = _query(operation, request, now)
            body = await _body(operation, request)
        except FieldError as exc:
            raise AdminBadRequest(str(exc)) from None
        reply = await operation.handler(Call(request, runtime, admin, body, query, request.match_info))
        if operation.mutating:
            log.info(
                "admin action",
                extra={"admin": identity.name, "operation": operation.operation_id, "status": reply.status},
            )
        return web.json_response(reply.body, status=reply.status)

    return handle


async def _serve_openapi(request: web.Request) -> web.StreamResponse:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


def _query(operation: Operation, request: web.Request, now: Any) -> dict[str, Any]:
    known = {param.name for param in operation.query}
    for name in request.query:
        if name not in known:
            expected = ", ".join(sorted(known)) or "none"
            raise FieldError(name, f"unknown query parameter (expected: {expected})")
    return {param.name: param.parse(request.query.get(param.name), now) for param in operation.query}


async def _body(operation: Operation, request: web.Request) -> dict[str, Any]:
    if operation.body is None:
        return {}
    limit = operation.max_body
    if request.content_length is not None and request.content_length > limit:
        raise AdminPayloadTooLarge(f"the request body is larger than {limit} bytes")
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise AdminPayloadTooLarge(f"the request body is larger than {limit} bytes")
    if not data.strip():
        return operation.body.parse({})
    content_type = request.headers.get("Content-Type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise AdminUnsupportedMedia(f"send the body as application/json, not {media or 'no Content-Type'}")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise AdminBadRequest(f"the body is not valid JSON{where}") from None
    return operation.body.parse(raw)


def _template(path: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{[A-Za-z_][A-Za-z0-9_]*\\\}", "[^/]+", re.escape(path))
    return re.compile(f"^{pattern}$")


def _unknown_endpoint(templates: list[tuple[re.Pattern[str], str]]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        runtime = request.app[RUNTIME]
        # Authenticate first: an anonymous caller learns nothing about which paths exist.
        authenticate(request, runtime.admin_tokens.current(), runtime.audit, request[REQUEST_ID])
        path = "/" + request.match_info["tail"]
        allowed = sorted({method for template, method in templates if template.match(path)})
        if allowed:
            raise AdminMethodNotAllowed(
                f"{request.method} is not allowed here (allowed: {', '.join(allowed)})",
                headers={"Allow": ", ".join(allowed)},
            )
        raise AdminNotFound(f"no admin endpoint {PREFIX}{path}")

    return handle
