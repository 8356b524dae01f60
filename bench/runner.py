"""Interleaved rounds: every scenario measured side by side, several times, in one run.

On a shared 2-core machine absolute throughput drifts from minute to minute, so
one scenario is never measured in one long block: each round runs every
scenario once for a short while (A B C, then B C A, then C A B... so that no
scenario always follows the same neighbour), and the report uses medians over
rounds and ratios computed within a round. With ``paired`` (the default), a
scenario with a target ratio also has its baseline measured right next to it, and
its ratio is taken against those neighbours (see :func:`round_order`).

Before the rounds, each scenario is checked with one request (wrong status:
stop with the server's log) and warmed up for ``warmup`` seconds (discarded).
With ``fresh_processes`` (the default), every later round starts a new process of
each measured server first (checked and warmed up again), so that the median over
rounds is over several processes, not one process's memory layout and hash seed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cpu import machine_busy_seconds
from bench.loader import Loader, LoadResult, LoadSettings
from bench.request import probe, write_pool
from bench.scenarios import Scenario
from bench.servers import REPO_ROOT, RunningServer, ServerPool, ServerSpec, log_tail

DEFAULT_WORKDIR = REPO_ROOT / "var" / "bench" / "run"


class BenchError(RuntimeError):
    """The benchmark cannot produce meaningful figures (misconfigured scenario, server died)."""


@dataclass(frozen=True)
class BenchOptions:
    duration: float = 2.0  # seconds per measurement
    rounds: int = 8
    warmup: float = 1.0  # seconds per scenario before the rounds, not reported (0: none)
    connections: int = 32
    timeout: float = 5.0
    workdir: Path = DEFAULT_WORKDIR
    paired: bool = True  # measure each ratio's baseline next to it (see round_order)
    # A new process of every measured server each round (not of those others depend on): identical
    # processes differ by up to ~15 % in CPU per request (memory layout, hash seed), and one process
    # per run would hold its luck through every round; the median over rounds averages it out.
    fresh_processes: bool = True

    def load(self, duration: float | None = None, connections: int | None = None) -> LoadSettings:
        return LoadSettings(
            duration if duration is not None else self.duration, connections or self.connections, self.timeout
        )


@dataclass(frozen=True)
class Measurement:
    """One scenario in one round."""

    scenario: str
    round: int
    position: int  # 0-based place in its round
    target: str
    result: LoadResult
    server_cpu_s: dict[str, float] = field(default_factory=dict)  # per server process, during the load
    other_cpu_s: float | None = None  # CPU used meanwhile by everything else on the machine

    @property
    def target_cpu_us_per_request(self) -> float | None:
        cpu = self.server_cpu_s.get(self.target)
        if cpu is None or self.result.requests == 0:
            return None
        return cpu / self.result.requests * 1e6

    def to_json(self) -> dict[str, Any]:
        cpu_per_request = self.target_cpu_us_per_request
        return {
            "round": self.round,
            "position": self.position,
            **self.result.to_json(),
            "server_cpu_s": {k: round(v, 3) for k, v in self.server_cpu_s.items()},
            "target_cpu_us_per_request": None if cpu_per_request is None else round(cpu_per_request, 1),
            "other_cpu_s": None if self.other_cpu_s is None else round(self.other_cpu_s, 3),
        }


def round_order(scenarios: Sequence[Scenario], round_index: int, paired: bool = False) -> list[Scenario]:
    """Rotate the order each round: A B C, B C A, C A B, A B C...

    ``paired``: a scenario with a target ratio also gets its baseline measured right
    before it (unless the baseline was just measured), and the round ends with the
    last one's baseline, so each ratio is taken between neighbours seconds apart
    (B S1 B S2 B ...): on a shared machine the speed drifts within a round.
    """
    shift = round_index % len(scenarios) if scenarios else 0
    rotated = [*scenarios[shift:], *scenarios[:shift]]
    if not paired:
        return rotated
    by_name = {s.name: s for s in scenarios}
    order: list[Scenario] = []
    for scenario in rotated:
        baseline = by_name.get(scenario.compare_to or "") if scenario.target_ratio is not None else None
        if baseline is not None and (not order or order[-1] is not baseline):
            order.append(baseline)
        order.append(scenario)
    last = order[-1] if order else None
    if last is not None and last.target_ratio is not None and last.compare_to in by_name:
        order.append(by_name[last.compare_to])
    return order


class Bench:
    """Runs scenarios against servers from ``specs`` with one loader."""

    def __init__(
        self,
        scenarios: Sequence[Scenario],
        specs: dict[str, ServerSpec],
        loader: Loader,
        options: BenchOptions,
        say: Callable[[str], None] = print,
    ) -> None:
        names = [s.name for s in scenarios]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate scenario names: {names}")
        self.scenarios = list(scenarios)
        self.specs = specs
        self.loader = loader
        self.options = options
        self.say = say
        self._index: Iterator[int] = itertools.count()  # unique request index across the run
        self._warm_rps: dict[str, float] = {}
        self.servers: list[RunningServer] = []  # every server started by the last run (stopped after it)

    def run(self) -> list[Measurement]:
        """Start the servers, check, warm up, measure every round; always stop the servers."""
        self.options.workdir.mkdir(parents=True, exist_ok=True)
        with ServerPool(self.specs, self.options.workdir) as pool:
            for scenario in self.scenarios:
                pool.start(scenario.target)
            self.servers = list(pool.running.values())
            for scenario in self.scenarios:
                self._preflight(scenario, pool)
            if self.options.warmup > 0:
                for scenario in self.scenarios:
                    self.say(f"  warm-up     {scenario.name:<22} {self._warm_up(scenario, pool):>9,.0f} req/s")
            measurements = []
            for round_index in range(self.options.rounds):
                if round_index > 0 and self.options.fresh_processes:
                    self._fresh_processes(pool)
                order = round_order(self.scenarios, round_index, self.options.paired)
                for position, scenario in enumerate(order):
                    m = self._measure(scenario, pool, round_index + 1, position, self.options.duration)
                    measurements.append(m)
                    r = m.result
                    self.say(
                        f"  round {round_index + 1}/{self.options.rounds}   {scenario.name:<22} "
                        f"{r.rps:>9,.0f} req/s   p50 {r.p50_ms:6.2f} ms   p99 {r.p99_ms:6.2f} ms"
                        + (f"   {r.failed} failed" if r.failed else "")
                    )
            return measurements

    def _fresh_processes(self, pool: ServerPool) -> None:
        """Restart each measured server that no other depends on, check it and warm it up again."""
        shared = pool.dependencies()
        restarted: set[str] = set()
        for scenario in self.scenarios:
            if scenario.target in shared:
                continue
            if scenario.target not in restarted:
                self.servers.append(pool.restart(scenario.target))
                restarted.add(scenario.target)
            self._preflight(scenario, pool)
            if self.options.warmup > 0:
                self._warm_up(scenario, pool)

    def _warm_up(self, scenario: Scenario, pool: ServerPool) -> float:
        """Load ``scenario`` for ``warmup`` seconds, not reported; its pace sizes unique request pools."""
        rps = self._measure(scenario, pool, 0, 0, self.options.warmup).result.rps
        self._warm_rps[scenario.name] = rps
        return rps

    def _server(self, scenario: Scenario, pool: ServerPool) -> RunningServer:
        return pool.running[scenario.target]

    def _preflight(self, scenario: Scenario, pool: ServerPool) -> None:
        server = self._server(scenario, pool)
        request = scenario.request.render(f"{server.host}:{server.port}", [next(self._index)], pool.running)[0]
        try:
            status, head = probe(server.host, server.port, request)
        except (OSError, ValueError) as exc:
            raise BenchError(f"scenario {scenario.name}: {server.name} did not answer: {exc}") from exc
        if status != scenario.request.expect_status:
            raise BenchError(
                f"scenario {scenario.name}: expected status {scenario.request.expect_status} from "
                f"{server.name}, got {status}:\n{head.decode(errors='replace')}\n"
                f"last lines of {server.log_path}:\n{log_tail(server.log_path)}"
            )

    def _pool_file(self, scenario: Scenario, server: RunningServer, pool: ServerPool, duration: float) -> Path:
        spec = scenario.request
        # Unique requests: enough for twice the warm-up pace (or a generous guess before it).
        expected = math.ceil(self._warm_rps.get(scenario.name, 20_000.0) * duration * 2) + 1000
        size = spec.pool_size(expected)
        indexes = [next(self._index) for _ in range(size)]
        path = self.options.workdir / f"{scenario.name}.requests"
        write_pool(path, spec.render(f"{server.host}:{server.port}", indexes, pool.running))
        return path

    def _measure(
        self, scenario: Scenario, pool: ServerPool, round_number: int, position: int, duration: float
    ) -> Measurement:
        server = self._server(scenario, pool)
        requests = self._pool_file(scenario, server, pool, duration)
        servers = list(pool.running.values())
        cpu_before = {s.name: s.cpu_seconds() for s in servers}
        busy_before = machine_busy_seconds()
        result = self.loader.run(
            server.host,
            server.port,
            requests,
            scenario.request.expect_status,
            self.options.load(duration, scenario.connections),
            self.options.workdir,
        )
        busy_after = machine_busy_seconds()
        cpu: dict[str, float] = {}
        for s in servers:
            before, after = cpu_before[s.name], s.cpu_seconds()
            if before is not None and after is not None:
                cpu[s.name] = after - before
        for s in servers:
            if s.process.poll() is not None:
                raise BenchError(
                    f"{s.name} exited with code {s.process.returncode} during {scenario.name}; "
                    f"last lines of {s.log_path}:\n{log_tail(s.log_path)}"
                )
        other = None
        if busy_before is not None and busy_after is not None and result.loader_cpu_s is not None:
            other = max(0.0, (busy_after - busy_before) - sum(cpu.values()) - result.loader_cpu_s)
        return Measurement(scenario.name, round_number, position, scenario.target, result, cpu, other)
