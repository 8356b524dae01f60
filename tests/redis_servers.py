"""Real Redis servers for tests: a standalone server, a 3-node cluster and a sentinel, on free ports.

Session-scoped: each is started once per test run and stopped at the end. Set
``REDIS_URL`` / ``REDIS_CLUSTER_URL`` / ``REDIS_SENTINEL_URL`` to use servers you
run yourself instead. When ``redis-server`` is missing, the Redis tests are
skipped locally but FAIL under CI (``CI=true``): CI must never skip them.

Tests isolate themselves with a unique key prefix (:func:`unique_prefix`) and
delete their keys afterwards (:func:`delete_prefixed`) rather than FLUSHALL, so
pointing ``REDIS_URL`` at a shared server is safe.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

START_TIMEOUT = 10.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """The path of ``name``; fails under CI, skips locally, when it is not installed."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install redis-server, or set REDIS_URL)"
        if in_ci():
            pytest.fail(f"{message}: Redis tests must not be skipped in CI", pytrace=False)
        pytest.skip(message)
    return path


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, with_bus: bool = False) -> int:
    """A port free now (and, for cluster nodes, its bus port + 10000 too)."""
    for _ in range(200):
        port = random.randint(20000, 29999)
        if _bindable(port) and (not with_bus or _bindable(port + 10000)):
            return port
    raise RuntimeError("no free port found")


@dataclass
class RedisProcess:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes]
    args: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_tail(self) -> str:
        log = self.workdir / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # up (a server with requirepass says NOAUTH)
    except OSError:
        return False


def start_redis(
    workdir: Path, *extra: str, with_bus: bool = False, config: str | None = None, port: int | None = None
) -> RedisProcess:
    """Start ``redis-server`` on ``port`` (default: a free one), without persistence; wait until it answers PING."""
    binary = require_binary("redis-server")
    chosen = port
    for _attempt in range(3):
        port = chosen or free_port(with_bus=with_bus)
        node_dir = workdir / f"redis-{port}"
        node_dir.mkdir(parents=True, exist_ok=True)
        head = [binary]
        if config is not None:
            conf = node_dir / "redis.conf"
            conf.write_text(config)
            head.append(str(conf))
        args = [
            *head,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(node_dir),
            "--logfile",
            str(node_dir / "redis.log"),
            *extra,
        ]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = RedisProcess(port, node_dir, process, args)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if _ping(port):
                return server
            time.sleep(0.02)
        server.stop()
        if chosen is not None or "Address already in use" not in server.log_tail():
            raise RuntimeError(f"redis-server did not start on port {port}:\n{server.log_tail()}")
    raise RuntimeError("redis-server could not find a free port in 3 attempts")


def create_cluster(nodes: list[RedisProcess]) -> None:
    """Join ``nodes`` (started with --cluster-enabled yes) into one cluster and wait until it is ok."""
    cli = require_binary("redis-cli")
    addresses = [f"127.0.0.1:{node.port}" for node in nodes]
    subprocess.run(
        [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    deadline = time.monotonic() + START_TIMEOUT
    for node in nodes:
        client = redis.Redis(port=node.port, decode_responses=True)
        try:
            while "cluster_state:ok" not in str(client.execute_command("CLUSTER", "INFO")):  # type: ignore[no-untyped-call]
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster not ok on node {node.port}")
                time.sleep(0.05)
        finally:
            client.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://`` URL of a real standalone server (``REDIS_URL`` if set)."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis+cluster://`` URL of a real 3-primary Redis Cluster (``REDIS_CLUSTER_URL`` if set)."""
    if os.environ.get("REDIS_CLUSTER_URL"):
        yield os.environ["REDIS_CLUSTER_URL"]
        return
    workdir = tmp_path_factory.mktemp("redis-cluster")
    nodes: list[RedisProcess] = []
    try:
        for _ in range(3):
            nodes.append(
                start_redis(
                    workdir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    with_bus=True,
                )
            )
        create_cluster(nodes)
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in nodes)
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_sentinel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis+sentinel://`` URL: one primary watched by one sentinel (``REDIS_SENTINEL_URL`` if set)."""
    if os.environ.get("REDIS_SENTINEL_URL"):
        yield os.environ["REDIS_SENTINEL_URL"]
        return
    workdir = tmp_path_factory.mktemp("redis-sentinel")
    primary = start_redis(workdir)
    sentinel: RedisProcess | None = None
    try:
        config = f"sentinel monitor primary 127.0.0.1 {primary.port} 1\nsentinel down-after-milliseconds primary 5000\n"
        sentinel = start_redis(workdir, "--sentinel", config=config)
        yield f"redis+sentinel://127.0.0.1:{sentinel.port}/primary/0"
    finally:
        if sentinel is not None:
            sentinel.stop()
        primary.stop()


def unique_prefix() -> str:
    """A key prefix no other test uses (keys, streams and the invalidation channel all carry it)."""
    return "t" + uuid.uuid4().hex[:12]


def with_prefix(url: str, prefix: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"


def delete_prefixed(url: str, prefix: str) -> None:
    """Delete every key starting with ``prefix:`` (on every node of a cluster)."""
    if url.startswith(("redis+cluster://", "rediss+cluster://")):
        addresses = url.split("://", 1)[1].split("?")[0].split("/")[0].split("@")[-1].split(",")
        clients = [redis.Redis(host=a.rsplit(":", 1)[0], port=int(a.rsplit(":", 1)[1])) for a in addresses]
    elif url.startswith("redis+sentinel://"):
        return  # the sentinel smoke test leaves a handful of keys in its own throwaway server
    else:
        clients = [redis.Redis.from_url(url)]
    for client in clients:
        try:
            # One key at a time: on a cluster node, keys of one batch may hash to different slots.
            for key in list(client.scan_iter(match=f"{prefix}:*", count=1000)):
                client.delete(key)
        finally:
            client.close()
