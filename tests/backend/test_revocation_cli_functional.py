"""``gateway auth-cache purge`` run by an operator against the store of a running gateway (SQLite file).

The gateway runs in this test's event loop (a real app, a real upstream, the fake
identity service); the command runs as its own process, as an operator runs it,
and the gateway hears of the purge through the SQLite change feed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestServer

from gateway.store import AuditQuery, open_store
from tests.authgw import problem
from tests.conftest import GatewayFactory
from tests.fakes.identity_service import IdentityService


def purge(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "auth-cache", "purge", *args, "--config", str(config)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_purge_from_the_cli_reaches_the_running_gateway(
    make_gateway: GatewayFactory, identity: IdentityService, upstream: TestServer, tmp_path: Path
) -> None:
    top: dict[str, Any] = {
        "store": f"sqlite:///{tmp_path / 'gateway.db'}?poll=100ms",
        "authn": {"introspection": {"url": f"{identity.issuer}/introspect"}},
    }
    route = {"name": "api", "prefix": "/api", "auth": ["introspection"]}
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump({**top, "routes": [{**route, "upstream": str(upstream.make_url("")).rstrip("/")}]})
    )
    client = await make_gateway(routes=[dict(route)], **top)
    identity.add("revoke-me", "liam")
    assert (await client.get("/api/echo", headers={"Authorization": "Bearer revoke-me"})).status == 200
    identity.revoke("revoke-me")

    done = await asyncio.to_thread(purge, config, "--token-file", "-", stdin="revoke-me\n")
    assert done.returncode == 0, done.stderr
    assert "purged the decisions about sha256:" in done.stdout and "revoke-me" not in done.stdout

    deadline = time.monotonic() + 2
    response = await client.get("/api/echo", headers={"Authorization": "Bearer revoke-me"})
    while time.monotonic() < deadline and response.status == 200:  # the change feed is read every 100 ms
        await asyncio.sleep(0.05)
        response = await client.get("/api/echo", headers={"Authorization": "Bearer revoke-me"})
    assert response.status == 401 and (await problem(response))["code"] == "token.inactive"

    store = await open_store(str(top["store"]))
    try:
        events = await store.query_audit(AuditQuery())
    finally:
        await store.close()
    purges = [e for e in events if e.action == "auth_cache.purge"]
    assert purges and purges[0].principal.startswith("cli:") and purges[0].target.startswith("sha256:")


def test_purge_needs_exactly_one_of_token_file_and_all(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path / 'gw.db'}"}))
    both = purge(config, "--all", "--token-file", "-", stdin="x\n")
    assert both.returncode == 2 and "either --token-file" in both.stderr
    two = purge(config, "--token-file", "-", stdin="a\nb\n")
    assert two.returncode == 2 and "exactly one token" in two.stderr
    everything = purge(config, "--all", "--json")
    assert everything.returncode == 0 and '"purged": 0' in everything.stdout
