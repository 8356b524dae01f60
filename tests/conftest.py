"""Shared fixtures: a real upstream server and a real gateway in front of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.app import GATEWAY, create_admin_app, create_app
from gateway.settings import Settings, parse_settings
from tests.fakes.clock import Clock
from tests.upstream import UPSTREAM_STATE, UpstreamState, create_upstream

GatewayFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> TestServer:
    return await aiohttp_server(create_upstream())


@pytest.fixture
def upstream_state(upstream: TestServer) -> UpstreamState:
    return upstream.app[UPSTREAM_STATE]


def settings_for(upstream: TestServer | str, *, routes: list[dict[str, Any]] | None = None, **top: Any) -> Settings:
    """Settings with one catch-all route to ``upstream`` unless routes are given."""
    base = upstream if isinstance(upstream, str) else str(upstream.make_url("")).rstrip("/")
    raw_routes = routes if routes is not None else [{"name": "all", "prefix": "/", "upstream": base}]
    for route in raw_routes:
        route.setdefault("upstream", base)
    return parse_settings({"store": "memory://", **top, "routes": raw_routes}, environ={})


@pytest.fixture
def make_gateway(upstream: TestServer, aiohttp_client: AiohttpClient) -> GatewayFactory:
    """Build a real gateway app in front of the test upstream and return a client for it."""

    async def factory(**kwargs: Any) -> TestClient[web.Request, web.Application]:
        return await aiohttp_client(create_app(settings_for(upstream, **kwargs)))

    return factory


@pytest.fixture
def admin_client(aiohttp_client: AiohttpClient) -> Callable[[TestClient[web.Request, web.Application]], Any]:
    """A client for the admin app of a gateway built by make_gateway."""

    async def factory(
        gateway_client: TestClient[web.Request, web.Application],
    ) -> TestClient[web.Request, web.Application]:
        return await aiohttp_client(create_admin_app(gateway_client.app[GATEWAY]))

    return factory


# Real Redis servers (standalone, cluster, sentinel), session-scoped: see tests/redis_servers.py.
from tests.redis_servers import redis_cluster_url, redis_sentinel_url, redis_url  # noqa: E402, F401


@pytest.fixture
def clock() -> Clock:
    """A clock that stands still until the test sets ``clock.now``."""
    return Clock()
