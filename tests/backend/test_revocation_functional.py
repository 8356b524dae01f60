"""Two real ``gateway serve`` processes on one real Redis: decisions shared, and a revocation purged on both.

The identity service is the fake one, served from this test's event loop; the
gateways reach it over HTTP, as they would reach the organisation's provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp.test_utils import TestServer

from tests.fakes.identity_service import IdentityService
from tests.processes import gateway_process
from tests.redis_servers import delete_prefixed, unique_prefix, with_prefix

ADMIN_TOKEN = "ops-" + "b" * 40


async def get(url: str, token: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_a_revocation_purges_cached_decisions_on_every_replica(
    redis_url: str, identity: IdentityService, upstream: TestServer, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    (tmp_path / "admin-tokens").write_text(f"ops:{ADMIN_TOKEN}\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": with_prefix(redis_url, prefix),
                "admin": {"tokens_file": str(tmp_path / "admin-tokens")},
                "log": {"level": "warning", "access_log": False},
                "authn": {"introspection": {"url": f"{identity.issuer}/introspect", "cache": {"max_ttl": "1h"}}},
                "routes": [
                    {
                        "name": "api",
                        "prefix": "/api",
                        "upstream": str(upstream.make_url("")).rstrip("/"),
                        "auth": ["introspection"],
                    }
                ],
            }
        )
    )
    identity.add("revocable-token", "kate", ttl=3600)
    try:
        with contextlib.ExitStack() as stack:
            replicas = [stack.enter_context(gateway_process(config, stdout=subprocess.DEVNULL)) for _ in range(2)]
            urls = [f"http://127.0.0.1:{port}/api/echo" for _, port, _ in replicas]

            # One replica asks the identity service; the other finds its answer in Redis.
            assert (await get(urls[0], "revocable-token"))[0] == 200
            assert (await get(urls[1], "revocable-token"))[0] == 200
            assert identity.backend_calls == 1

            identity.revoke("revocable-token")  # revoked at the identity service...
            assert [(await get(url, "revocable-token"))[0] for url in urls] == [200, 200]  # ...still cached

            admin = f"http://127.0.0.1:{replicas[0][2]}/admin/v1/auth-cache/purge"
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    admin, json={"token": "revocable-token"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                ) as response,
            ):
                assert response.status == 200, await response.text()
                assert await response.json() == {"purged": 1}

            deadline = time.monotonic() + 1.0  # both replicas refuse within a second
            answers: list[tuple[int, dict[str, Any]]] = []
            while time.monotonic() < deadline:
                answers = [await get(url, "revocable-token") for url in urls]
                if all(status == 401 for status, _ in answers):
                    break
                await asyncio.sleep(0.05)
            assert [status for status, _ in answers] == [401, 401]
            assert {body["code"] for _, body in answers} == {"token.inactive"}
            assert identity.backend_calls <= 3
    finally:
        delete_prefixed(redis_url, prefix)
