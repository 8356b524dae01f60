"""For upstream services written with aiohttp: believe the context headers only when the gateway signed them.

::

    from gateway.sdk import GATEWAY_CONTEXT, gateway_context_middleware

    app = web.Application(middlewares=[gateway_context_middleware({"gw1": key})])

    async def handler(request):
        context = request[GATEWAY_CONTEXT]        # GatewayContext: user_id, tenant_id, scopes, ...

A request whose ``X-Gateway-Signature`` is missing, malformed, from an unknown key,
older than ``max_age`` or not matching its headers is answered 401
(``application/problem+json``, code ``gateway_context.<reason>``) before the handler
runs. ``keys`` maps key ids to the gateway's context-signing keys (hold the old and
the new one during a rotation).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.sdk.context import DEFAULT_MAX_AGE, ContextSignatureError, GatewayContext, verify_context

GATEWAY_CONTEXT: Final = web.RequestKey("gateway_context", GatewayContext)


def gateway_context_middleware(
    keys: Mapping[str, bytes], *, max_age: float = DEFAULT_MAX_AGE, clock: Callable[[], float] = time.time
) -> Middleware:
    """An aiohttp middleware that verifies ``X-Gateway-Signature`` and stores the context on the request."""
    if not keys:
        raise ValueError("at least one context signing key is needed")
    held = dict(keys)

    @web.middleware
    async def verify(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            context = verify_context(
                request.method, request.raw_path, request.headers, held, max_age=max_age, clock=clock
            )
        except ContextSignatureError as exc:
            body = {
                "type": "about:blank",
                "title": "Unauthorized",
                "status": 401,
                "code": f"gateway_context.{exc.reason}",
                "detail": "request did not come through the gateway",
            }
            return web.Response(status=401, body=json.dumps(body).encode(), content_type="application/problem+json")
        request[GATEWAY_CONTEXT] = context
        return await handler(request)

    return verify
