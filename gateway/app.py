"""Application wiring: ``create_app`` for the data plane, ``create_admin_app`` for operations.

Only wiring lives here: the objects are built from Settings once, stored under
typed ``web.AppKey``s, and their lifecycles hooked to the application's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.admin.api import mount_admin_api
from gateway.admin.health import READINESS, REGISTRY, Readiness, add_health_routes, ops_problems
from gateway.observability.logging import ServerLog
from gateway.observability.metrics import GatewayMetrics
from gateway.proxy import Gateway
from gateway.runtime import Runtime
from gateway.settings import Settings

GATEWAY = web.AppKey("gateway", Gateway)


def create_app(
    settings: Settings, metrics: GatewayMetrics | None = None, *, runtime: Runtime | None = None
) -> web.Application:
    """The data-plane application: every path goes to the proxy handler.

    ``runtime`` (store, credential cache, usage, audit) is what route policies run on.
    Without one, and if some route has a policy, the application opens its own from
    ``settings`` at start-up and stops it at cleanup (tests, embedding).
    """
    gateway = Gateway(settings, metrics or GatewayMetrics(), runtime)
    app = web.Application(
        handler_args={
            "max_field_size": settings.max_header_size,
            "max_line_size": settings.max_header_size,
            "logger": ServerLog(gateway.metrics.malformed_requests.inc),  # unparsable requests: one line each
        }
    )
    app[GATEWAY] = gateway

    async def upstream_sessions(app: web.Application) -> AsyncIterator[None]:
        owned: Runtime | None = None
        if gateway.runtime is None and gateway.needs_runtime:
            owned = await Runtime.open(settings, registry=gateway.metrics.registry)
            await owned.start()
            gateway.attach(owned)
        try:
            await gateway.start_auth()
            await gateway.open_sessions()
            yield
        finally:
            await gateway.close_sessions()
            await gateway.close_auth()
            if owned is not None:
                await owned.stop()

    async def close_websockets(app: web.Application) -> None:
        await gateway.close_websockets()

    app.cleanup_ctx.append(upstream_sessions)
    app.on_shutdown.append(close_websockets)
    # [\s\S]: every path, also one holding a decoded line feed (%0A), which "." does not match.
    app.router.add_route("*", "/{tail:[\\s\\S]*}", gateway.handle)
    return app


def create_admin_app(
    gateway: Gateway, readiness: Readiness | None = None, runtime: Runtime | None = None
) -> web.Application:
    """The admin application: metrics, health and readiness; with a runtime, the store check and the admin API."""
    app = web.Application(
        middlewares=[ops_problems], handler_args={"logger": ServerLog(gateway.metrics.malformed_requests.inc)}
    )
    app[REGISTRY] = gateway.metrics.registry
    app[READINESS] = readiness or Readiness()
    app[GATEWAY] = gateway
    add_health_routes(app)
    if gateway.auth is not None:
        gateway.auth.add_readiness_checks(app[READINESS])  # auth backend circuits
    if runtime is not None:
        runtime.add_readiness_checks(app[READINESS])
        mount_admin_api(app, runtime)  # /admin/v1/...: authenticated; the health routes above stay open
    return app
