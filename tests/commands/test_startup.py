"""``gateway serve`` and the operator commands against a store that is not there: one line, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.processes import free_port


def run(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def unreachable_config(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()  # nothing listens there
    config = tmp_path / "gateway.yaml"
    config.write_text(f"store: 'redis://:hunter2@127.0.0.1:{port}/0'\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n")
    return config, port


def test_serve_exits_2_naming_the_masked_store_url(tmp_path: Path) -> None:
    config, port = unreachable_config(tmp_path)
    result = run("serve", config=config)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gateway: cannot start: ")
    assert f"redis://:***@127.0.0.1:{port}/0" in lines[0]
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_a_command_against_an_unreachable_store_exits_1(tmp_path: Path) -> None:
    config, port = unreachable_config(tmp_path)
    result = run("tokens", "list", config=config)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert f"redis://:***@127.0.0.1:{port}/0" in line and "hunter2" not in line


def test_serve_refuses_a_bad_kek(tmp_path: Path) -> None:
    kek = tmp_path / "kek"
    kek.write_text("not a key\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(f"store: memory://\ncredentials: {{kek_file: {str(kek)!r}}}\n")
    result = run("serve", config=config)
    assert result.returncode == 2
    assert "credentials.kek_file: " in result.stderr and "not a Fernet key" in result.stderr
    assert "Traceback" not in result.stderr
