"""Helpers for tests that drive authenticated routes through the real gateway.

Credentials are created the way operators create them (the record factories of
:mod:`gateway.credentials`) and written to the gateway's own store, which the test
reaches through the gateway's runtime.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import GATEWAY
from gateway.credentials import ApiClient, ApiKey, ServiceKey, ServiceToken, generate_kek, load_secret_box
from gateway.credentials.encryption import SecretBox
from gateway.runtime import Runtime
from tests.upstream import header_values

Client = TestClient[web.Request, web.Application]

SERVICE_SECRET = "5f2c" * 16  # 64 hex characters, as `gateway keys generate` makes them
CONTEXT_HEADERS = ("X-User-Id", "X-Tenant-Id", "X-Service-Id", "X-Auth-Method", "X-Auth-Scopes")


def write_kek(directory: Path) -> Path:
    path = directory / "kek"
    if not path.exists():
        path.write_text(generate_kek() + "\n")
    return path


def secret_box(kek_file: Path) -> SecretBox:
    return load_secret_box(kek_file=kek_file)


def runtime_of(client: Client) -> Runtime:
    runtime = client.app[GATEWAY].runtime
    assert isinstance(runtime, Runtime), "the route has no policy: no runtime was opened"
    return runtime


async def add_token(
    client: Client,
    *,
    name: str = "ci",
    owner: str = "ci",
    scopes: tuple[str, ...] = (),
    allowed_ips: tuple[str, ...] = (),
    **changes: Any,
) -> tuple[str, ServiceToken]:
    text, record = ServiceToken.issue(name=name, owner=owner, scopes=scopes, allowed_ips=allowed_ips)
    if changes:
        record = dataclasses.replace(record, **changes)
    await runtime_of(client).store.create_token(record)
    return text, record


async def add_hmac_key(
    client: Client,
    kek_file: Path,
    *,
    service: str = "billing",
    key_id: str = "k1",
    tenant: str | None = None,
    scopes: tuple[str, ...] = (),
) -> ServiceKey:
    key = ServiceKey.new_hmac(
        service, SERVICE_SECRET, secret_box(kek_file), key_id=key_id, tenant=tenant, scopes=scopes
    )
    await runtime_of(client).store.add_service_key(key)
    return key


async def add_api_client(
    client: Client,
    *,
    tenant: str = "acme",
    scopes: tuple[str, ...] = (),
    allowed_ips: tuple[str, ...] = (),
    allowed_origins: tuple[str, ...] = (),
) -> tuple[str, ApiClient]:
    api_client = ApiClient.register(
        name="web-app", tenant=tenant, scopes=scopes, allowed_ips=allowed_ips, allowed_origins=allowed_origins
    )
    text, key = ApiKey.issue(api_client.client_id)
    await runtime_of(client).store.register_client(api_client, [key])
    return text, api_client


def legacy_headers(
    service_id: str, method: str, path: str, *, secret: str = SERVICE_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """Signed from the formula in the issue, not with the project's signer."""
    import hashlib
    import hmac

    stamp = str(int(time.time()) if timestamp is None else timestamp)
    message = f"{service_id}:{method}:{path}:{stamp}"
    signature = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()
    return {"X-Service-ID": service_id, "X-Service-Signature": signature, "X-Service-Timestamp": stamp}


async def problem(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.content_type == "application/problem+json", await response.text()
    body: dict[str, Any] = await response.json()
    return body


def context_of(echo: dict[str, Any]) -> dict[str, list[str]]:
    """The identity headers the upstream received (every value, to catch duplicates)."""
    return {name: header_values(echo, name) for name in CONTEXT_HEADERS}


def past(seconds: float = 60) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)
