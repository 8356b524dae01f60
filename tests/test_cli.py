"""The command line as an operator runs it: real processes, real exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import mask_url


def run_gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_check_config_prints_the_effective_routes() -> None:
    result = run_gateway("check-config", "--config", "config/gateway.yaml")
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    lines = [line for line in result.stdout.splitlines() if "->" in line]
    assert [line.split()[0] for line in lines] == ["client-api", "user-api", "sdk-api"]  # longest prefix first


BAD_CONFIGS = {
    "unknown-key": ("listen: 127.0.0.1:8080\nlisten_port: 1\n", "listen_port: unknown key"),
    "wrong-type": (
        "routes:\n  - {name: a, prefix: /a, upstream: 'http://u:1', max_body: [1]}\n",
        "routes[0].max_body: not a size",
    ),
    "bad-url": (
        "routes:\n  - {name: a, prefix: /a, upstream: 'http://u:1'}\n"
        "  - {name: b, prefix: /b, upstream: 'localhost:9000'}\n",
        "routes[1].upstream: not an http(s) URL: 'localhost:9000'",
    ),
    "bad-cidr": ("trusted_proxies: [300.0.0.0/8]\n", "trusted_proxies[0]: not a CIDR: '300.0.0.0/8'"),
    "duplicate-prefix": (
        "routes:\n  - {name: a, prefix: /a, upstream: 'http://u:1'}\n  - {name: b, prefix: /a, upstream: 'http://u:2'}\n",
        "routes[1]: duplicate prefix '/a' overlaps routes[0]",
    ),
    "missing-secret-file": ("admin: {tokens_file: /nonexistent/tokens}\n", "admin.tokens_file: secret file not found"),
    "not-yaml": ("routes: [\n", "config: not valid YAML"),
    # The backend's own options, checked without connecting (check-config used to pass these).
    "store-password-file": (
        "store: redis://127.0.0.1:6379/0?password_file=/nonexistent/redis-password\n",
        "password_file '/nonexistent/redis-password' cannot be read",
    ),
    "store-sqlite-poll": ("store: sqlite:///var/x.db?poll=soon\n", "store: sqlite:///var/x.db?poll=soon: poll:"),
    "store-redis-timeout": ("store: redis://127.0.0.1:6379/0?timeout=-1\n", "timeout must be positive"),
}


@pytest.mark.parametrize("command", ["check-config", "serve"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, case: str, command: str) -> None:
    text, expected = BAD_CONFIGS[case]
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    result = run_gateway(command, "--config", str(config))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_store_passwords_are_masked() -> None:
    assert mask_url("redis://:hunter2@redis:6379/0") == "redis://:***@redis:6379/0"
    assert mask_url("redis://user:hunter2@redis:6379/0") == "redis://user:***@redis:6379/0"
    assert mask_url("sqlite:///var/gateway.db") == "sqlite:///var/gateway.db"


def test_demo_upstream_on_an_address_it_cannot_take_is_one_line() -> None:
    result = run_gateway("demo-upstream", "--listen", "999.0.0.1:1")  # resolves nowhere
    assert result.returncode == 1
    assert result.stderr.startswith("gateway: cannot listen: ")
    assert "Traceback" not in result.stderr
