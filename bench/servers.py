"""Server processes under test: start on free ports, wait until ready, always stop.

A ``ServerSpec`` says how to start one server (a command built from a
``LaunchContext``: its port, the URLs of the servers it depends on, a work
directory for generated config). A ``ServerPool`` starts specs on demand,
dependencies first, each exactly once, and stops every process it started when
it is closed, on an exception or on Ctrl-C alike. Each process gets its own
session (a terminal's Ctrl-C reaches only the harness, which then stops them in
order) and, on Linux, is asked to die with the harness if the harness is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bench.cpu import process_cpu_seconds

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


class ServerFailed(RuntimeError):
    """A server process exited or did not become ready; the message carries its last log lines."""


def free_port(host: str = HOST) -> int:
    """A port the OS just reported free (another process could still take it: start-up retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LaunchContext:
    """What a ServerSpec's command may use: its address, its running dependencies, a work directory."""

    name: str
    host: str
    port: int
    workdir: Path
    servers: Mapping[str, RunningServer]
    python: str = sys.executable
    # Free-form facts a command leaves for scenarios (paths of generated keys, minted tokens...).
    info: dict[str, Any] = field(default_factory=dict)

    def url_of(self, server: str) -> str:
        return self.servers[server].url

    def free_port(self) -> int:
        return free_port(self.host)


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server process: a name, a command, what it needs running first.

    ``command`` returns the argv; it may write files (a generated YAML config) into
    ``ctx.workdir`` first. The process must listen on ``ctx.host:ctx.port``; it is
    ready once ``GET ready_path`` gets any HTTP answer, or, for a server that does not
    speak HTTP, once ``ready(host, port)`` is true.
    """

    name: str
    command: Callable[[LaunchContext], list[str]]
    depends_on: tuple[str, ...] = ()
    ready_path: str = "/"
    ready_timeout: float = 30.0
    env: Mapping[str, str] = field(default_factory=dict)
    ready: Callable[[str, int], bool] | None = None


@dataclass
class RunningServer:
    """A started, ready server process."""

    spec: ServerSpec
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    info: dict[str, Any]
    argv: list[str]  # as launched: a restart runs the same command again

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used so far (Linux /proc), else None."""
        return process_cpu_seconds(self.process.pid)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    # The gateway reads GATEWAY_* overrides: the caller's shell must not change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def spawn(argv: list[str], log: TextIO, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child in its own session; on Linux it gets SIGTERM if the harness dies first."""
    # preexec_fn is unsafe once threads exist (a test run may have executor threads): skip it then.
    preexec = _die_with_parent if sys.platform.startswith("linux") and threading.active_count() == 1 else None
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env=_child_env(env or {}),
        start_new_session=True,
        preexec_fn=preexec,
    )


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Only ever this one pid."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


def _answers_http(host: str, port: int, path: str) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class ServerPool:
    """Starts servers by name (dependencies first, each once) and stops them all on close."""

    def __init__(self, specs: Mapping[str, ServerSpec], workdir: Path, *, attempts: int = 3) -> None:
        self.specs = dict(specs)
        self.workdir = workdir
        self.attempts = attempts
        self.running: dict[str, RunningServer] = {}
        # Every process spawned, ready or not: an interrupt during a readiness wait must not leak one.
        self._spawned: list[subprocess.Popen[bytes]] = []
        self._logs: list[TextIO] = []

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, name: str, _chain: tuple[str, ...] = ()) -> RunningServer:
        if name in self.running:
            return self.running[name]
        if name in _chain:
            raise ValueError(f"server dependency cycle: {' -> '.join((*_chain, name))}")
        try:
            spec = self.specs[name]
        except KeyError:
            raise ValueError(f"unknown server {name!r} (known: {', '.join(sorted(self.specs))})") from None
        for dependency in spec.depends_on:
            self.start(dependency, (*_chain, name))
        failure: ServerFailed | None = None
        for _ in range(self.attempts):
            try:
                server = self._start_once(spec)
            except ServerFailed as exc:  # most often a port taken between free_port() and bind
                failure = exc
                continue
            self.running[name] = server
            return server
        assert failure is not None
        raise failure

    def _start_once(self, spec: ServerSpec) -> RunningServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ctx = LaunchContext(spec.name, HOST, free_port(), self.workdir, dict(self.running))
        argv = spec.command(ctx)
        return self._launch(spec, argv, ctx.host, ctx.port, ctx.info)

    def restart(self, name: str) -> RunningServer:
        """Stop ``name`` and start a new process of it: the same command, port and launch facts (its
        generated files are not made again). A new process is a new memory layout and hash seed."""
        old = self.running[name]
        stop_process(old.process)
        server = self._launch(old.spec, old.argv, old.host, old.port, old.info, append_log=True)
        self.running[name] = server
        return server

    def dependencies(self) -> set[str]:
        """The running servers that other running servers depend on (an upstream, a JWKS endpoint)."""
        return {dependency for server in self.running.values() for dependency in server.spec.depends_on}

    def _launch(
        self,
        spec: ServerSpec,
        argv: list[str],
        host: str,
        port: int,
        info: dict[str, Any],
        *,
        append_log: bool = False,
    ) -> RunningServer:
        log_path = self.workdir / f"{spec.name}.log"
        log = log_path.open("a" if append_log else "w")
        self._logs.append(log)
        process = spawn(argv, log, spec.env)
        self._spawned.append(process)
        server = RunningServer(spec, process, host, port, log_path, info, argv)
        deadline = time.monotonic() + spec.ready_timeout
        while True:
            if process.poll() is not None:
                raise ServerFailed(
                    f"{spec.name} exited with code {process.returncode} before it was ready "
                    f"({' '.join(argv)}); last log lines:\n{log_tail(log_path)}"
                )
            if spec.ready(host, port) if spec.ready is not None else _answers_http(host, port, spec.ready_path):
                return server
            if time.monotonic() > deadline:
                stop_process(process)
                raise ServerFailed(
                    f"{spec.name} not ready after {spec.ready_timeout:g}s; last log lines:\n{log_tail(log_path)}"
                )
            time.sleep(0.05)

    def close(self) -> None:
        """Stop every server, dependents before their dependencies."""
        for process in reversed(self._spawned):
            stop_process(process)
        self._spawned.clear()
        self.running.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
