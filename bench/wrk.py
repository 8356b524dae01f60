"""The wrk load generator, driven by ``bench/pool.lua``.

wrk runs one thread (the servers under test need the other core more than the
loader needs a second one) and replays the pre-rendered request pool. Its
duration and timeout flags take whole seconds, so fractional values are rounded
up.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

from bench.loader import LoadResult, LoadSettings, run_loader_process

LUA_SCRIPT = Path(__file__).with_name("pool.lua")
_MARKER = "BENCH_RESULT "


def parse_wrk_output(out: str, lua_checked: bool) -> dict[str, Any]:
    """Turn pool.lua's BENCH_RESULT line into LoadResult fields."""
    line = next((line for line in out.splitlines() if line.startswith(_MARKER)), None)
    if line is None:
        raise ValueError("no BENCH_RESULT line")
    raw = json.loads(line[len(_MARKER) :])
    errors = dict(raw["errors"])
    status_errors = errors.pop("status")  # non-2xx/3xx, as counted by wrk
    return {
        "requests": raw["requests"],
        "duration_s": raw["duration_us"] / 1e6,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "mean_ms": raw["mean_us"] / 1000,
        "unexpected_status": raw["lua_mismatched"] if lua_checked else status_errors,
        "errors": errors,
    }


class WrkLoader:
    """wrk -t1, replaying the request pool through pool.lua."""

    def __init__(self, path: str = "wrk") -> None:
        self.path = path
        self.name = f"wrk ({self.version()})"

    def version(self) -> str:
        # `wrk -v` prints its banner and exits 1.
        result = subprocess.run([self.path, "-v"], capture_output=True, text=True, timeout=10, check=False)
        banner = (result.stdout or result.stderr).strip().splitlines()
        return banner[0].split(" [")[0].removeprefix("wrk ") if banner else "unknown version"

    def run(
        self, host: str, port: int, pool: Path, expect_status: int, settings: LoadSettings, workdir: Path
    ) -> LoadResult:
        duration = max(1, math.ceil(settings.duration))
        timeout = max(1, math.ceil(settings.timeout))
        lua_checked = expect_status >= 400  # wrk counts only >= 400 as "status" errors itself
        argv = [
            self.path,
            "-t1",
            f"-c{settings.connections}",
            f"-d{duration}s",
            f"--timeout={timeout}s",
            "-s",
            str(LUA_SCRIPT),
            f"http://{host}:{port}/",
            "--",
            str(pool),
            str(expect_status),
            "1" if lua_checked else "0",
        ]
        return run_loader_process(argv, duration + timeout + 30, lambda out: parse_wrk_output(out, lua_checked))
