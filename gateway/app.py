"""Application wiring: ``create_app`` for the data plane, ``create_admin_app`` for operations.

Only wiring lives here: the objects are built from Settings once, stored under
typed ``web.AppKey``s, and their lifecycles hooked to the application's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.admin.api import mount_admin_api
from gateway.admin.health import READINESS, REGISTRY, Readiness, add_health_routes
from gateway.observability.metrics import GatewayMetrics
from gateway.proxy import Gateway
from gateway.runtime import Runtime
from gateway.settings import Settings

GATEWAY = web.AppKey("gateway", Gateway)


def create_app(settings: Settings, metrics: GatewayMetrics | None = None) -> web.Application:
    """The data-plane application: every path goes to the proxy handler."""
    gateway = Gateway(settings, metrics or GatewayMetrics())
    app = web.Application(
        handler_args={
            "max_field_size": settings.max_header_size,
            "max_line_size": settings.max_header_size,
        }
    )
    app[GATEWAY] = gateway

    async def upstream_sessions(app: web.Application) -> AsyncIterator[None]:
        await gateway.open_sessions()
        yield
        await gateway.close_sessions()

    async def close_websockets(app: web.Application) -> None:
        await gateway.close_websockets()

    app.cleanup_ctx.append(upstream_sessions)
    app.on_shutdown.append(close_websockets)
    app.router.add_route("*", "/{tail:.*}", gateway.handle)
    return app


def create_admin_app(
    gateway: Gateway, readiness: Readiness | None = None, runtime: Runtime | None = None
) -> web.Application:
    """The admin application: metrics, health and readiness; with a runtime, the store check and the admin API."""
    app = web.Application()
    app[REGISTRY] = gateway.metrics.registry
    app[READINESS] = readiness or Readiness()
    app[GATEWAY] = gateway
    add_health_routes(app)
    if runtime is not None:
        runtime.add_readiness_checks(app[READINESS])
        mount_admin_api(app, runtime)  # /admin/v1/...: authenticated; the health routes above stay open
    return app
