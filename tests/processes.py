"""Run the real ``gateway serve`` in a subprocess, as an operator would."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http_ok(url: str, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback test URL
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def gateway_process(
    config: Path, *args: str, env: dict[str, str] | None = None, stdout: int | None = subprocess.PIPE
) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """Start ``gateway serve`` on free ports; yield (process, port, admin_port); always stop it."""
    port, admin_port = free_port(), free_port()
    environ = {
        **os.environ,
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), *args],
        env=environ,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{admin_port}/healthz", process=process)
        yield process, port, admin_port
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size (Linux VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found")
