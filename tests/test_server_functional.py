"""The real ``gateway serve`` process: demo mode, bounded memory, graceful drain."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.processes import free_port, gateway_process, peak_rss_bytes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and POSIX signals")


def write_config(tmp_path: Path, upstream: str, **route: object) -> Path:
    extra = "".join(f"    {key}: {value}\n" for key, value in route.items())
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "store: memory://\n"
        "drain_timeout: 10s\n"
        "log: {access_log: true}\n"
        f"routes:\n  - name: all\n    prefix: /\n    upstream: {upstream}\n{extra}"
    )
    return config


async def test_demo_mode_prints_a_curl_line_that_works(tmp_path: Path) -> None:
    demo_port = free_port()
    config = tmp_path / "gateway.yaml"
    text = Path("config/gateway.yaml").read_text().replace("127.0.0.1:9000", f"127.0.0.1:{demo_port}")
    config.write_text(text.replace("sqlite:///var/gateway.db", "memory://"))
    with gateway_process(config, "--demo-upstream", f"127.0.0.1:{demo_port}") as (process, port, _):
        assert process.stdout is not None
        line = ""
        deadline = time.monotonic() + 10
        while "curl" not in line and time.monotonic() < deadline:
            line = process.stdout.readline().decode()
        assert f"curl -i http://127.0.0.1:{port}/v1/client/hello" in line
        command = shlex.split(line.split("Try it:", 1)[1])
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
        assert result.returncode == 0
        assert result.stdout.startswith("HTTP/1.1 200")
        assert '"service": "demo-upstream"' in result.stdout
        assert "X-Request-Id:" in result.stdout


async def test_a_large_upload_streams_with_bounded_memory(tmp_path: Path, upstream: TestServer) -> None:
    config = write_config(tmp_path, str(upstream.make_url("")).rstrip("/"), max_body="1GiB")
    with gateway_process(config, stdout=subprocess.DEVNULL) as (process, port, _):
        baseline = peak_rss_bytes(process.pid)
        chunk = os.urandom(256 * 1024)
        total = 256 * 1024 * 1024  # 256 MiB, far above what the gateway may hold for one request

        async def body() -> AsyncIterator[bytes]:
            for _ in range(total // len(chunk)):
                yield chunk

        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/upload", data=body()) as response:
                echo = await response.json()
        assert echo["body_bytes"] == total
        growth = peak_rss_bytes(process.pid) - baseline
        assert growth < 48 * 1024 * 1024, f"gateway peak RSS grew by {growth / 2**20:.0f} MiB for one request"


async def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path: Path, upstream: TestServer) -> None:
    config = write_config(tmp_path, str(upstream.make_url("")).rstrip("/"))
    with gateway_process(config, stdout=subprocess.DEVNULL) as (process, port, admin_port):
        async with aiohttp.ClientSession() as session:
            slow = asyncio.ensure_future(session.get(f"http://127.0.0.1:{port}/slow?s=1.0"))
            await asyncio.sleep(0.3)  # the request is in flight at the upstream
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            # New connections are refused while the in-flight request finishes.
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(f"http://127.0.0.1:{port}/echo", timeout=aiohttp.ClientTimeout(total=2))
            response = await asyncio.wait_for(slow, 5)
            assert response.status == 200
            assert (await response.json())["raw_path"] == "/slow?s=1.0"
            response.release()
        returncode = await asyncio.get_running_loop().run_in_executor(None, process.wait, 10)
        assert returncode == 0
        _, stderr = process.communicate()
        assert b'"msg":"drained"' in stderr
        assert b"Traceback" not in stderr


async def test_a_request_still_in_flight_at_the_drain_deadline_is_cut_and_the_process_exits(
    tmp_path: Path, upstream: TestServer
) -> None:
    config = write_config(tmp_path, str(upstream.make_url("")).rstrip("/"), timeouts="{read: 60s}")
    config.write_text(config.read_text().replace("drain_timeout: 10s", "drain_timeout: 1s"))
    with gateway_process(config, stdout=subprocess.DEVNULL) as (process, port, _):
        async with aiohttp.ClientSession() as session:
            stuck = asyncio.ensure_future(session.get(f"http://127.0.0.1:{port}/slow?s=30"))
            await asyncio.sleep(0.3)  # at the upstream, which answers in 30 s
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            # It used to wait for the upstream (the rest of the deadline was 0, which aiohttp reads as no limit).
            returncode = await asyncio.get_running_loop().run_in_executor(None, process.wait, 15)
            assert returncode == 0
            assert time.monotonic() - sent < 5
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(stuck, 5)
        _, stderr = process.communicate()
        assert b'"msg":"drained"' in stderr


async def test_connections_that_never_send_a_whole_request_are_closed_after_header_timeout(
    tmp_path: Path, upstream: TestServer
) -> None:
    config = write_config(tmp_path, str(upstream.make_url("")).rstrip("/"))
    config.write_text("header_timeout: 1s\n" + config.read_text())
    with gateway_process(config, stdout=subprocess.DEVNULL) as (process, port, admin_port):
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
        partial_reader, partial = await asyncio.open_connection("127.0.0.1", port)
        partial.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")  # and the rest never comes (slowloris)
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            # A request the upstream takes 2.5 s to answer: its connection is busy, not waiting for headers.
            async with session.get(f"http://127.0.0.1:{port}/slow?s=2.5") as response:
                assert response.status == 200
            for reader in (silent_reader, partial_reader):
                assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the gateway, nothing sent
            assert time.monotonic() - started < 6
            metrics = await (await session.get(f"http://127.0.0.1:{admin_port}/metrics")).text()
        assert "gateway_header_timeouts_total 2.0" in metrics
        silent.close()
        partial.close()


async def test_sigterm_lets_an_upload_in_progress_finish(tmp_path: Path, upstream: TestServer) -> None:
    config = write_config(tmp_path, str(upstream.make_url("")).rstrip("/"))
    with gateway_process(config, stdout=subprocess.DEVNULL) as (process, port, _):
        sigterm_sent = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            for index in range(20):
                if index == 3:
                    process.send_signal(signal.SIGTERM)
                    sigterm_sent.set()
                yield b"x" * 1024
                await asyncio.sleep(0.05)

        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/upload", data=body()) as response:
                assert response.status == 200
                assert (await response.json())["body_bytes"] == 20 * 1024
                assert response.headers.get("Connection", "").lower() == "close"
        assert sigterm_sent.is_set()
        returncode = await asyncio.get_running_loop().run_in_executor(None, process.wait, 10)
        assert returncode == 0
