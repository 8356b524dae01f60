"""From measurements to figures: medians per scenario, ratios per round, a table and a JSON file.

Throughput ratios are computed round by round (both scenarios measured minutes
apart at most, under the same neighbours) and the median of those is reported.
A second, CPU-based ratio (baseline CPU per request / scenario CPU per request)
cross-checks it: it barely moves when the machine is busy, while throughput does.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.runner import BenchOptions, Measurement
from bench.scenarios import Scenario


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class ScenarioSummary:
    scenario: Scenario
    measurements: list[Measurement]

    def _values(self, attribute: str) -> list[float]:
        return [float(getattr(m.result, attribute)) for m in self.measurements]

    @property
    def rps(self) -> list[float]:
        return self._values("rps")

    @property
    def rps_median(self) -> float:
        return _median(self.rps) or 0.0

    def latency_median(self, key: str) -> float:
        return _median(self._values(key)) or 0.0

    @property
    def cpu_us_per_request(self) -> float | None:
        values = [v for m in self.measurements if (v := m.target_cpu_us_per_request) is not None]
        return _median(values)

    @property
    def failed(self) -> int:
        return sum(m.result.failed for m in self.measurements)

    @property
    def requests(self) -> int:
        return sum(m.result.requests for m in self.measurements)

    def to_json(self) -> dict[str, Any]:
        cpu = self.cpu_us_per_request
        s = self.scenario
        return {
            "name": s.name,
            "description": s.description,
            "target": s.target,
            "request": {"method": s.request.method, "path": s.request.path, "expect_status": s.request.expect_status},
            "rps_median": round(self.rps_median, 1),
            "rps_min": round(min(self.rps, default=0.0), 1),
            "rps_max": round(max(self.rps, default=0.0), 1),
            "p50_ms": round(self.latency_median("p50_ms"), 3),
            "p90_ms": round(self.latency_median("p90_ms"), 3),
            "p99_ms": round(self.latency_median("p99_ms"), 3),
            "connections": s.connections,
            "latency_target_ms": s.latency_target_ms,
            "cpu_us_per_request": None if cpu is None else round(cpu, 1),
            "requests": self.requests,
            "failed": self.failed,
            "measurements": [m.to_json() for m in self.measurements],
        }


@dataclass(frozen=True)
class RatioSummary:
    scenario: ScenarioSummary
    baseline: ScenarioSummary
    target: float | None

    @property
    def per_round(self) -> list[float]:
        """One ratio per round: against the baseline measured next to it when it was (paired rounds),
        else against the round's mean baseline."""
        baseline: dict[int, dict[int, float]] = {}
        for m in self.baseline.measurements:
            baseline.setdefault(m.round, {})[m.position] = m.result.rps
        ratios = []
        for round_number in sorted({m.round for m in self.scenario.measurements}):
            base = baseline.get(round_number)
            mine = [m for m in self.scenario.measurements if m.round == round_number]
            if not base or not mine:
                continue
            paired = []
            for m in mine:
                neighbours = [base[p] for p in (m.position - 1, m.position + 1) if base.get(p)]
                if neighbours:
                    paired.append(m.result.rps / statistics.fmean(neighbours))
            if paired:
                ratios.append(statistics.fmean(paired))
            elif any(base.values()):
                ratios.append(statistics.fmean(m.result.rps for m in mine) / statistics.fmean(base.values()))
        return ratios

    @property
    def throughput(self) -> float | None:
        return _median(self.per_round)

    @property
    def cpu_based(self) -> float | None:
        mine, theirs = self.scenario.cpu_us_per_request, self.baseline.cpu_us_per_request
        return theirs / mine if mine and theirs else None

    @property
    def added_cpu_us(self) -> float | None:
        """CPU per request this scenario adds to its baseline (microseconds): what its feature costs."""
        mine, theirs = self.scenario.cpu_us_per_request, self.baseline.cpu_us_per_request
        return mine - theirs if mine is not None and theirs is not None else None

    @property
    def cpu_budget_us(self) -> float | None:
        """The most CPU per request the scenario may add to its baseline and still meet its target
        (baseline / target - baseline): how far a missed target is, in the unit code changes move."""
        theirs = self.baseline.cpu_us_per_request
        return theirs / self.target - theirs if self.target and theirs is not None else None

    @property
    def met(self) -> bool | None:
        ratio = self.throughput
        return None if self.target is None or ratio is None else ratio >= self.target

    def to_json(self) -> dict[str, Any]:
        throughput, cpu, added, budget = self.throughput, self.cpu_based, self.added_cpu_us, self.cpu_budget_us
        return {
            "scenario": self.scenario.scenario.name,
            "baseline": self.baseline.scenario.name,
            "throughput_ratio": None if throughput is None else round(throughput, 4),
            "per_round": [round(r, 4) for r in self.per_round],
            "cpu_based_ratio": None if cpu is None else round(cpu, 4),
            "added_cpu_us": None if added is None else round(added, 1),
            "cpu_budget_us": None if budget is None else round(budget, 1),
            "target": self.target,
            "met": self.met,
        }


@dataclass(frozen=True)
class Report:
    summaries: list[ScenarioSummary]
    ratios: list[RatioSummary]
    options: BenchOptions
    loader: str
    started: datetime

    @classmethod
    def build(
        cls,
        scenarios: Sequence[Scenario],
        measurements: Sequence[Measurement],
        options: BenchOptions,
        loader: str,
        started: datetime,
    ) -> Report:
        summaries = {
            s.name: ScenarioSummary(s, [m for m in measurements if m.scenario == s.name and m.round > 0])
            for s in scenarios
        }
        ratios = [
            RatioSummary(summaries[s.name], summaries[s.compare_to], s.target_ratio)
            for s in scenarios
            if s.compare_to is not None and s.compare_to in summaries
        ]
        return cls(list(summaries.values()), ratios, options, loader, started)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.summaries)

    @property
    def other_load(self) -> float | None:
        """Average share of the whole machine used by other processes while measuring."""
        shares = [
            m.other_cpu_s / (m.result.duration_s * (os.cpu_count() or 1))
            for s in self.summaries
            for m in s.measurements
            if m.other_cpu_s is not None and m.result.duration_s > 0
        ]
        return _median(shares)

    def to_json(self) -> dict[str, Any]:
        o = self.options
        return {
            "meta": {
                "started": self.started.isoformat(timespec="seconds"),
                "loader": self.loader,
                "duration_s": o.duration,
                "rounds": o.rounds,
                "warmup_s": o.warmup,
                "connections": o.connections,
                "timeout_s": o.timeout,
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                "other_load_median": self.other_load,
            },
            "scenarios": [s.to_json() for s in self.summaries],
            "ratios": [r.to_json() for r in self.ratios],
        }

    def write_json(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        """Write the report, plus ``extra`` top-level sections (other benchmarks' figures)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**self.to_json(), **(extra or {})}, indent=2) + "\n")

    def table(self) -> str:
        o = self.options
        lines = [
            f"loader: {self.loader}, {o.connections} connections, {o.rounds} rounds x {o.duration:g}s "
            f"per scenario (interleaved), {os.cpu_count()} CPUs",
            "",
            f"{'scenario':<22} {'req/s':>9} {'(min - max)':>19} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'CPU us/req':>11} {'failed':>7}",
        ]
        for s in self.summaries:
            cpu = s.cpu_us_per_request
            spread = f"({min(s.rps, default=0):,.0f} - {max(s.rps, default=0):,.0f})"
            lines.append(
                f"{s.scenario.name:<22} {s.rps_median:>9,.0f} {spread:>19} {s.latency_median('p50_ms'):>8.2f} "
                f"{s.latency_median('p99_ms'):>8.2f} {'-' if cpu is None else f'{cpu:,.0f}':>11} {s.failed:>7}"
            )
        if self.ratios:
            lines += ["", "throughput ratios (median of per-round ratios; CPU-based = baseline CPU/req / own CPU/req):"]
        for r in self.ratios:
            throughput, cpu = r.throughput, r.cpu_based
            rounds = r.per_round
            line = (
                f"  {r.scenario.scenario.name:<16} / {r.baseline.scenario.name:<16} "
                f"{_percent(throughput):>7}  (rounds {_percent(min(rounds, default=None))} - "
                f"{_percent(max(rounds, default=None))})   CPU-based {_percent(cpu)}"
            )
            if r.target is not None:
                line += f"   target {r.target:.0%}: {'met' if r.met else 'NOT MET'}"
            lines.append(line)
            added, budget = r.added_cpu_us, r.cpu_budget_us
            if added is not None and budget is not None:
                lines.append(f"  {'':<16}   adds {added:,.1f} us CPU/req; {r.target:.0%} allows {budget:,.1f}")
        latency = [s for s in self.summaries if s.scenario.latency_target_ms is not None and s.measurements]
        if latency:
            lines += ["", "latency targets (median over rounds of each round's p99):"]
        for s in latency:
            p99, target = s.latency_median("p99_ms"), s.scenario.latency_target_ms or 0.0
            lines.append(
                f"  {s.scenario.name:<22} p99 {p99:.2f} ms over {s.scenario.connections or o.connections} "
                f"connection(s)   target < {target:g} ms: {'met' if p99 < target else 'NOT MET'}"
            )
        other = self.other_load
        if other is not None and other > 0.05:
            lines += ["", f"note: other processes used ~{other:.0%} of the machine while measuring (noisy neighbour)"]
        if self.failed:
            lines += ["", f"WARNING: {self.failed} requests failed or got an unexpected status: see the JSON file"]
        return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def now() -> datetime:
    return datetime.now(UTC)
