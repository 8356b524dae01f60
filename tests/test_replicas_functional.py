"""Two real ``gateway serve`` processes sharing one real Redis, as replicas behind a load balancer.

Credentials are made the way operators make them (``gateway keys generate
--register``, ``gateway tokens create``, the admin API), requests are signed by
independent code (the reference RFC 9421 library, the legacy formula), and the
upstream is the demo echo server in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import MappingKeyResolver

from gateway.credentials import generate_kek
from tests.authgw import legacy_headers
from tests.processes import free_port, gateway_process, wait_http_ok
from tests.redis_servers import delete_prefixed, unique_prefix, with_prefix

ADMIN_TOKEN = "ops-" + "a" * 40


@dataclass
class Replicas:
    config: Path
    env_file: Path
    ports: tuple[int, int]
    admin_port: int

    def url(self, index: int, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[index]}{path}"

    def service(self) -> dict[str, str]:
        values = {}
        for line in self.env_file.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
        return values


def gateway_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "USER": "replica-test"},
        check=False,
    )


@pytest.fixture(scope="module")
def replicas(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    workdir = tmp_path_factory.mktemp("replicas")
    prefix = unique_prefix()
    (workdir / "kek").write_text(generate_kek() + "\n")
    (workdir / "admin-tokens").write_text(f"ops:{ADMIN_TOKEN}\n")
    upstream_port = free_port()
    config = workdir / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": with_prefix(redis_url, prefix),
                "credentials": {"kek_file": str(workdir / "kek"), "usage_flush_interval": "200ms"},
                "admin": {"tokens_file": str(workdir / "admin-tokens")},
                "authn": {"hmac_legacy": {"replay_protection": True}},
                "log": {"level": "warning", "access_log": False},
                "routes": [
                    {
                        "name": "api",
                        "prefix": "/api",
                        "upstream": f"http://127.0.0.1:{upstream_port}",
                        "auth": ["rfc9421", "hmac_legacy", "service_token"],
                    }
                ],
            }
        )
    )
    upstream = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo-upstream", "--listen", f"127.0.0.1:{upstream_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{upstream_port}/ready", process=upstream)
        env_file = workdir / "billing.env"
        made = gateway_cli(
            config, "keys", "generate", "--service", "billing", "--env-file", str(env_file), "--register"
        )
        assert made.returncode == 0, made.stderr
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(gateway_process(config, stdout=subprocess.DEVNULL))
            second = stack.enter_context(gateway_process(config, stdout=subprocess.DEVNULL))
            yield Replicas(config, env_file, (first[1], second[1]), first[2])
    finally:
        upstream.kill()
        upstream.wait(10)
        delete_prefixed(redis_url, prefix)


async def fetch(url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(kwargs.pop("method", "GET"), url, headers=headers, **kwargs) as response,
    ):
        body: dict[str, Any] = await response.json(content_type=None)
        return response.status, body


class Outgoing:
    def __init__(self, method: str, url: str) -> None:
        self.method, self.url, self.headers = method, url, dict[str, str]()


async def test_rfc9421_nonce_replayed_on_the_other_replica_is_refused(replicas: Replicas) -> None:
    service = replicas.service()
    secret = Path(service["SERVICE_KEY_FILE"]).read_text().strip()
    url = replicas.url(0, "/api/orders?page=1")
    message = Outgoing("GET", url)
    HTTPMessageSigner(
        signature_algorithm=algorithms.HMAC_SHA256,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={service["SERVICE_KEY_ID"]: secret.encode()}),
    ).sign(
        message,
        key_id=service["SERVICE_KEY_ID"],
        nonce="replica-nonce-1",
        covered_component_ids=("@method", "@authority", "@path", "@query"),
    )
    status, body = await fetch(url, message.headers)
    assert status == 200, body
    assert body["headers"]["X-User-Id"] == "service:billing"
    # The same bytes sent to the other replica, as a load balancer would (same Host).
    host = f"127.0.0.1:{replicas.ports[0]}"
    status, body = await fetch(replicas.url(1, "/api/orders?page=1"), {**message.headers, "Host": host})
    assert (status, body["code"]) == (401, "httpsig.replay")


async def test_legacy_signature_replayed_on_the_other_replica_is_refused(replicas: Replicas) -> None:
    service = replicas.service()
    secret = Path(service["SERVICE_KEY_FILE"]).read_text().strip()
    headers = legacy_headers("billing", "POST", "/api/payments", secret=secret)
    status, body = await fetch(replicas.url(1, "/api/payments"), headers, method="POST", data=b"{}")
    assert status == 200, body
    status, body = await fetch(replicas.url(0, "/api/payments"), headers, method="POST", data=b"{}")
    assert (status, body["code"]) == (401, "hmac.replay")


async def test_token_revoked_through_one_replica_is_refused_by_the_other_within_a_second(
    replicas: Replicas,
) -> None:
    created = await asyncio.to_thread(
        gateway_cli, replicas.config, "tokens", "create", "--name", "revoke-me", "--owner", "ci"
    )
    assert created.returncode == 0, created.stderr
    bearer = {"Authorization": f"Bearer {created.stdout.strip()}"}
    for index in (0, 1):  # both replicas have it cached now
        assert (await fetch(replicas.url(index, "/api/x"), bearer))[0] == 200
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    revoked_at = time.monotonic()
    status, body = await fetch(
        f"http://127.0.0.1:{replicas.admin_port}/admin/v1/tokens/revoke-me/revoke",
        admin,
        method="POST",
        json={"reason": "leaked in a CI log"},
    )
    assert status == 200, body
    while True:
        status, body = await fetch(replicas.url(1, "/api/x"), bearer)
        if status == 401:
            break
        assert time.monotonic() - revoked_at < 1.0, "the other replica still accepts the revoked token"
        await asyncio.sleep(0.02)
    assert body["code"] == "token.invalid"
    assert time.monotonic() - revoked_at < 1.0


async def test_websocket_open_on_one_replica_closes_when_the_other_revokes_its_token(replicas: Replicas) -> None:
    created = await asyncio.to_thread(
        gateway_cli, replicas.config, "tokens", "create", "--name", "ws-revoke-me", "--owner", "ci"
    )
    assert created.returncode == 0, created.stderr
    bearer = {"Authorization": f"Bearer {created.stdout.strip()}"}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(replicas.url(1, "/api/ws"), headers=bearer) as ws,
    ):
        await ws.send_str("ping")
        assert (await ws.receive(timeout=10)).data == "ping"
        revoked_at = time.monotonic()
        status, body = await fetch(
            f"http://127.0.0.1:{replicas.admin_port}/admin/v1/tokens/ws-revoke-me/revoke",
            {"Authorization": f"Bearer {ADMIN_TOKEN}"},
            method="POST",
            json={"reason": "leaked"},
        )
        assert status == 200, body
        closed = await ws.receive(timeout=10)
        assert time.monotonic() - revoked_at < 1.0
        # The close frame's code and reason (the connection may drop before the client's own close frame).
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert (closed.data, closed.extra) == (aiohttp.WSCloseCode.POLICY_VIOLATION, "credential revoked")


async def test_token_create_use_then_usage_is_visible_from_the_cli(replicas: Replicas) -> None:
    created = await asyncio.to_thread(
        gateway_cli, replicas.config, "tokens", "create", "--name", "deploy-bot", "--owner", "ci", "--scope", "d:w"
    )
    assert created.returncode == 0, created.stderr
    bearer = {"Authorization": f"Bearer {created.stdout.strip()}"}
    for index in (0, 1, 1):
        status, body = await fetch(replicas.url(index, "/api/deploy"), bearer)
        assert status == 200 and body["headers"]["X-Auth-Scopes"] == "d:w"
    deadline = time.monotonic() + 5
    while True:
        shown = await asyncio.to_thread(gateway_cli, replicas.config, "tokens", "show", "deploy-bot", "--json")
        assert shown.returncode == 0, shown.stderr
        view = json.loads(shown.stdout)
        token = view.get("token", view)
        if token["usage_count"] == 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert token["usage_count"] == 3
    assert token["last_used"] is not None
