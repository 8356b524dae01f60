"""The admin listener: /metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.admin.health import Readiness
from gateway.app import GATEWAY, create_admin_app
from tests.conftest import GatewayFactory

Client = TestClient[web.Request, web.Application]


async def admin_for(gateway: Client, aiohttp_client: AiohttpClient, readiness: Readiness | None = None) -> Client:
    return await aiohttp_client(create_admin_app(gateway.app[GATEWAY], readiness))


async def test_healthz_and_metrics(make_gateway: GatewayFactory, aiohttp_client: AiohttpClient) -> None:
    gateway = await make_gateway(routes=[{"name": "client-api", "prefix": "/v1/client"}])
    assert (await gateway.get("/v1/client/echo")).status == 200
    admin = await admin_for(gateway, aiohttp_client)
    health = await admin.get("/healthz")
    assert health.status == 200
    assert await health.json() == {"status": "ok"}
    metrics = await admin.get("/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain; version=")
    text = await metrics.text()
    assert 'gateway_requests_total{code="200",method="GET",route="client-api"} 1.0' in text
    assert 'gateway_request_duration_seconds_count{route="client-api"} 1.0' in text
    assert 'gateway_upstream_duration_seconds_count{route="client-api"} 1.0' in text
    assert "gateway_requests_in_flight 0.0" in text


async def test_unknown_methods_use_a_bounded_label(make_gateway: GatewayFactory, aiohttp_client: AiohttpClient) -> None:
    gateway = await make_gateway()
    assert (await gateway.request("PROPFIND", "/echo")).status == 200
    text = await (await (await admin_for(gateway, aiohttp_client)).get("/metrics")).text()
    assert 'method="OTHER"' in text
    assert "PROPFIND" not in text


async def test_readyz_names_what_is_not_ready(make_gateway: GatewayFactory, aiohttp_client: AiohttpClient) -> None:
    readiness = Readiness()

    async def store_ok() -> str | None:
        return None

    async def backend_down() -> str | None:
        return "connection refused"

    async def hangs() -> str | None:
        await asyncio.sleep(60)
        return None

    readiness.add("store", store_ok)
    admin = await admin_for(await make_gateway(), aiohttp_client, readiness)
    ready = await admin.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"status": "ready", "checks": {"config": "ok", "store": "ok"}}

    readiness.add("auth-backend", backend_down)
    readiness.add("slow", hangs)

    async def broken() -> str | None:
        raise RuntimeError("boom")

    readiness.add("broken", broken)
    not_ready = await admin.get("/readyz")
    assert not_ready.status == 503
    body = await not_ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["store"] == "ok"
    assert body["checks"]["auth-backend"] == "connection refused"
    assert body["checks"]["slow"].startswith("no answer within")
    assert body["checks"]["broken"] == "RuntimeError: boom"


async def test_readyz_is_503_while_draining(make_gateway: GatewayFactory, aiohttp_client: AiohttpClient) -> None:
    readiness = Readiness()
    admin = await admin_for(await make_gateway(), aiohttp_client, readiness)
    readiness.draining = True
    response = await admin.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"]["draining"] == "shutting down"


async def test_unknown_paths_and_methods_are_problem_documents(
    make_gateway: GatewayFactory, aiohttp_client: AiohttpClient
) -> None:
    admin = await admin_for(await make_gateway(), aiohttp_client)
    missing = await admin.get("/nothing")
    assert missing.status == 404
    assert missing.headers["Content-Type"].startswith("application/problem+json")
    assert (await missing.json())["code"] == "admin.not_found"
    wrong = await admin.post("/metrics")
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "GET, HEAD"
    assert (await wrong.json())["code"] == "admin.method_not_allowed"
