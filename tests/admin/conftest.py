"""A real admin listener (create_admin_app with a Runtime on a real store) and a client that checks schemas.

Every answer the :class:`AdminApi` helper receives is validated against the schema the
operation declares (2xx) or the Problem schema (errors): the OpenAPI document is
exercised by every admin API test, not only by the document test.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_schema_validator import OAS31Validator, validate
from pytest_aiohttp import AiohttpClient

from gateway.admin.api import OPERATIONS, PREFIX
from gateway.admin.api.schema import Operation
from gateway.admin.views import SCHEMAS
from gateway.app import GATEWAY, create_admin_app, create_app
from gateway.credentials import generate_kek
from gateway.observability.metrics import GatewayMetrics
from gateway.runtime import Runtime
from gateway.settings import Settings, parse_settings

Client = TestClient[web.Request, web.Application]

OPS_TOKEN = "gwa_ops-" + "o" * 40
READER_TOKEN = "gwa_reader-" + "r" * 40
OPS = {"Authorization": f"Bearer {OPS_TOKEN}"}
READER = {"Authorization": f"Bearer {READER_TOKEN}"}

BY_ID: dict[str, Operation] = {op.operation_id: op for op in OPERATIONS}


def admin_settings(tmp_path: Path, *, store: str | None = None, kek: bool = True, tokens: bool = True) -> Settings:
    raw: dict[str, Any] = {
        "store": store or f"sqlite:///{tmp_path / 'gateway.db'}",
        "audit": {"flush_interval": "20ms"},
        "credentials": {"usage_flush_interval": "50ms"},
    }
    if tokens:
        tokens_file = tmp_path / "admin-tokens"
        tokens_file.write_text(
            f"ops:sha256:{hashlib.sha256(OPS_TOKEN.encode()).hexdigest()}\nreader:{READER_TOKEN} read-only\n"
        )
        raw["admin"] = {"tokens_file": str(tokens_file)}
    if kek:
        kek_file = tmp_path / "kek"
        kek_file.write_text(generate_kek() + "\n")
        raw["credentials"]["kek_file"] = str(kek_file)
    return parse_settings(raw, environ={})


RuntimeFactory = Callable[..., Awaitable[Runtime]]


# The gateway metrics each runtime's counters were registered on (as `gateway serve` does).
METRICS: dict[int, GatewayMetrics] = {}


@pytest.fixture
async def make_runtime(tmp_path: Path) -> AsyncIterator[RuntimeFactory]:
    opened: list[Runtime] = []

    async def factory(**kwargs: Any) -> Runtime:
        metrics = GatewayMetrics()
        runtime = await Runtime.open(admin_settings(tmp_path, **kwargs), registry=metrics.registry)
        METRICS[id(runtime)] = metrics
        await runtime.start()
        opened.append(runtime)
        return runtime

    yield factory
    for runtime in opened:
        await runtime.stop()
        METRICS.pop(id(runtime), None)


@pytest.fixture
async def runtime(make_runtime: RuntimeFactory) -> Runtime:
    return await make_runtime()


class AdminApi:
    """Calls operations by id and checks every answer against the declared schema."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(
        self,
        operation_id: str,
        *,
        headers: dict[str, str] | None = OPS,
        json: object = None,
        params: dict[str, str] | None = None,
        **path: str,
    ) -> tuple[int, Any]:
        operation = BY_ID[operation_id]
        url = PREFIX + re.sub(r"\{(\w+)\}", lambda m: path[m.group(1)], operation.path)
        response = await self.client.request(operation.method, url, headers=headers, json=json, params=params)
        body = await response.json(content_type=None)
        assert response.headers["Cache-Control"] == "no-store"
        if response.status < 400:
            assert response.status == operation.status, body
            check_schema(body, operation.response)
        else:
            assert response.headers["Content-Type"].startswith("application/problem+json")
            check_schema(body, {"$ref": "#/components/schemas/Problem"})
            assert body["status"] == response.status
        return response.status, body


def check_schema(instance: object, schema: dict[str, Any]) -> None:
    validate(instance, {**schema, "components": {"schemas": SCHEMAS}}, cls=OAS31Validator)


@pytest.fixture
async def admin_client(runtime: Runtime, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(admin_app_for(runtime))


def admin_app_for(runtime: Runtime) -> web.Application:
    """The admin application as `gateway serve` builds it, on the runtime's metrics registry."""
    gateway_app = create_app(runtime.settings, METRICS[id(runtime)])
    return create_admin_app(gateway_app[GATEWAY], runtime=runtime)


@pytest.fixture
def api(admin_client: Client) -> AdminApi:
    return AdminApi(admin_client)
