"""The operator commands as an operator runs them: ``gateway.cli.main([...])`` on a real SQLite store.

Tests here are synchronous (each command runs its own event loop, as ``gateway``
does); store contents are checked through a separate connection to the same file.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from gateway.cli import main
from gateway.credentials import generate_kek
from gateway.store import Store, open_store

T = TypeVar("T")


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Gateway:
    """Runs ``gateway ...`` against one configuration."""

    config: Path
    store_url: str
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *args: str) -> Result:
        self.capsys.readouterr()
        try:
            code = main([*args, "--config", str(self.config)])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def process(self, *args: str, stdin: str | None = None) -> Result:
        """The same in a real process (exit status, stderr, no traceback as an operator sees it)."""
        done = subprocess.run(
            [sys.executable, "-m", "gateway", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def inspect(self, read: Callable[[Store], Awaitable[T]]) -> T:
        """Look at the store through a separate connection."""

        async def run() -> T:
            store = await open_store(self.store_url)
            try:
                return await read(store)
            finally:
                await store.close()

        return asyncio.run(run())


def write_config(directory: Path, *, store: str | None = None, kek: bool = True) -> tuple[Path, str]:
    url = store or f"sqlite:///{directory / 'gateway.db'}"
    lines = [f"store: {url!r}"]
    if kek:
        kek_file = directory / "kek"
        kek_file.write_text(generate_kek() + "\n")
        kek_file.chmod(0o600)
        lines.append(f"credentials: {{kek_file: {str(kek_file)!r}}}")
    config = directory / "gateway.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config, url


@pytest.fixture
def gateway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Gateway:
    config, url = write_config(tmp_path)
    return Gateway(config, url, capsys)


def one_line(result: Result) -> str:
    """The single stderr line of a failed command (never a traceback)."""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    assert lines[0].startswith("gateway: ")
    return lines[0]
