"""The admin API on Redis when the store refuses writes: 503 problem, no secret handed out, nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pytest_aiohttp import AiohttpClient

from tests.admin.conftest import AdminApi, RuntimeFactory, admin_app_for
from tests.redis_servers import RedisProcess, start_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


async def test_writes_refused_mid_operation_answer_503_and_change_nothing(
    redis_server: RedisProcess, make_runtime: RuntimeFactory, aiohttp_client: AiohttpClient
) -> None:
    runtime = await make_runtime(store=f"redis://127.0.0.1:{redis_server.port}/0")
    api = AdminApi(await aiohttp_client(admin_app_for(runtime)))
    control = redis.Redis(port=redis_server.port)
    try:
        control.config_set("maxmemory-policy", "noeviction")
        control.config_set("maxmemory", 1)
        status, problem = await api.call("createToken", json={"name": "ci", "owner": "builds"})
        assert status == 503
        assert problem["code"] == "admin.unavailable"
        assert "token" not in problem  # no secret for a credential that was not stored
        response = await api.client.post(
            "/admin/v1/clients", json={"name": "app", "tenant": "acme"}, headers={"Authorization": api_auth()}
        )
        assert response.status == 503 and response.headers["Retry-After"] == "1"
        assert "ak_" not in await response.text()
        ready = await api.client.get("/readyz")
        assert ready.status == 200  # reads still work: the store is reachable, only writes fail
    finally:
        control.config_set("maxmemory", 0)
        control.close()
    assert (await api.call("listTokens", params={"all": "true"}))[1] == {"tokens": []}
    assert (await api.call("listClients"))[1] == {"clients": []}


def api_auth() -> str:
    from tests.admin.conftest import OPS

    return OPS["Authorization"]
