"""Load generators: what they are asked, what they report, and which one is used.

Two implementations of ``Loader``, both run as a separate process and both
replaying the same pre-rendered request pool:

- ``WrkLoader`` (``bench/wrk.py``): wrk, in C, one thread. Preferred: on a
  2-core machine it costs a small fraction of the CPU the servers under test
  use, so the servers, not the loader, set the pace.
- ``PythonLoader`` (``bench/pyload.py``): asyncio on uvloop with raw sockets.
  The fallback when wrk cannot be installed; it needs several times more CPU per
  request than wrk, which lowers absolute figures (ratios stay comparable, as all
  scenarios pay the same loader cost).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

LATENCY_KEYS = ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")


class LoaderFailed(RuntimeError):
    """The load generator could not run or its output could not be read."""


@dataclass(frozen=True)
class LoadSettings:
    duration: float  # seconds of load per measurement
    connections: int  # concurrent keep-alive connections
    timeout: float = 5.0  # a request slower than this counts as a timeout error


@dataclass(frozen=True)
class LoadResult:
    """One measurement as the load generator saw it (closed loop: each connection waits for its answer)."""

    requests: int  # responses received within the measurement
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    unexpected_status: int  # responses whose status was not the scenario's expected one
    errors: dict[str, int] = field(default_factory=dict)  # connect/read/write/timeout
    loader_cpu_s: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def failed(self) -> int:
        return self.unexpected_status + sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in (*LATENCY_KEYS, "duration_s", "loader_cpu_s"):
            if data[key] is not None:
                data[key] = round(data[key], 4)
        return {**data, "rps": round(self.rps, 1)}

    @classmethod
    def from_json(cls, data: dict[str, Any], loader_cpu_s: float | None = None) -> LoadResult:
        return cls(
            requests=int(data["requests"]),
            duration_s=float(data["duration_s"]),
            unexpected_status=int(data["unexpected_status"]),
            errors={str(k): int(v) for k, v in data.get("errors", {}).items()},
            loader_cpu_s=loader_cpu_s,
            **{key: float(data[key]) for key in LATENCY_KEYS},
        )


class Loader(Protocol):
    """Sends the pool's requests to host:port for ``settings.duration`` seconds and reports."""

    name: str

    def run(
        self, host: str, port: int, pool: Path, expect_status: int, settings: LoadSettings, workdir: Path
    ) -> LoadResult: ...


def run_loader_process(
    argv: list[str], timeout: float, parse: Callable[[str], dict[str, Any]], cwd: Path | None = None
) -> LoadResult:
    """Run a loader command, parse its stdout, and measure the CPU it used (as a reaped child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:  # timeout, Ctrl-C: never leave the loader running
        process.kill()
        process.communicate()
        raise
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out, err = stdout.decode(errors="replace"), stderr.decode(errors="replace")
    if process.returncode != 0:
        raise LoaderFailed(f"{argv[0]} exited with {process.returncode}: {err.strip() or out.strip()}")
    try:
        data = parse(out)
    except (ValueError, KeyError) as exc:
        raise LoaderFailed(f"cannot read {argv[0]} output ({exc}): {out.strip()} {err.strip()}") from exc
    return LoadResult.from_json(data, loader_cpu_s=cpu)


def install_wrk(note: Callable[[str], None]) -> str | None:
    """Install wrk with apt-get when running as root on Debian/Ubuntu; returns its path or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"]
    note("wrk not found: installing it with apt-get (once per machine)...")
    for step in ([install], [["apt-get", "update", "-q"], install]):
        try:
            for command in step:
                subprocess.run(command, env=env, check=True, timeout=300, capture_output=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            continue
        if path := shutil.which("wrk"):
            return path
    return None


def choose_loader(kind: str, *, allow_install: bool, note: Callable[[str], None]) -> Loader:
    """``auto``: wrk (installing it if possible), else the Python loader with a note saying why."""
    from bench.pyload import PythonLoader
    from bench.wrk import WrkLoader

    if kind == "python":
        return PythonLoader()
    path = shutil.which("wrk") or (install_wrk(note) if allow_install else None)
    if path is not None:
        return WrkLoader(path)
    if kind == "wrk":
        raise LoaderFailed("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    note(
        "NOTE: wrk is not available (install it with `apt-get install wrk` for accurate figures); "
        "falling back to the Python loader, which competes with the servers for CPU: absolute "
        "figures will be lower, ratios remain comparable."
    )
    return PythonLoader()
