"""``gateway serve`` as deployed: the admin API on the admin listener, the CLI on the same store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gateway.admin.tokens import admin_token_line
from tests.processes import gateway_process

ADMIN_TOKEN = "gwa_serve-" + "s" * 40


def request(url: str, body: dict[str, Any] | None = None, token: str | None = ADMIN_TOKEN) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=5) as response:  # noqa: S310 - loopback test URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_admin_api_and_cli_share_the_served_store(tmp_path: Path) -> None:
    tokens_file = tmp_path / "admin-tokens"
    tokens_file.write_text(admin_token_line("ops", ADMIN_TOKEN) + "\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"store: 'sqlite:///{tmp_path / 'gateway.db'}'\n"
        f"admin: {{tokens_file: {str(tokens_file)!r}}}\n"
        "audit: {flush_interval: 100ms}\n"
    )
    with gateway_process(config) as (process, _port, admin_port):
        base = f"http://127.0.0.1:{admin_port}"
        status, ready = request(f"{base}/readyz", token=None)
        assert status == 200 and ready["checks"]["store"] == "ok"
        assert request(f"{base}/admin/v1/tokens", token=None)[0] == 401
        status, created = request(f"{base}/admin/v1/tokens", {"name": "ci", "owner": "builds"})
        assert status == 201 and created["token"].startswith("sk_")

        # The CLI, in another process, sees the token the running gateway stored, and vice versa.
        listed = subprocess.run(
            [sys.executable, "-m", "gateway", "tokens", "list", "--json", "--config", str(config)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert [t["name"] for t in json.loads(listed.stdout)["tokens"]] == ["ci"]
        subprocess.run(
            [sys.executable, "-m", "gateway", "tokens", "revoke", "ci", "--reason", "done", "--config", str(config)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        status, shown = request(f"{base}/admin/v1/tokens/{created['record']['id']}")
        assert shown["state"] == "revoked"

        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    # After a clean stop the audit trail holds both operators' actions.
    audit = subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "--result", "admin", "--json", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    actions = [(e["admin"], e["action"]) for e in map(json.loads, audit.stdout.splitlines())]
    assert actions[0] == ("ops", "tokens.create")
    assert actions[1][1] == "tokens.revoke" and actions[1][0].startswith("cli:")
