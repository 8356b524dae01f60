"""Smoke tests of the benchmark harness: it starts real servers, loads them briefly, reports, and stops them.

Nothing here asserts on speed: only that the machinery measures something, reports
it, and leaves no process behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import select
from bench.loader import LoadResult
from bench.pyload import PythonLoader, percentile
from bench.request import RequestDraft, RequestSpec, read_pool, write_pool
from bench.results import Report, now
from bench.runner import Bench, BenchError, BenchOptions, Measurement, round_order
from bench.scenarios import Scenario, catalog
from bench.wrk import WrkLoader


def _options(workdir: Path, duration: float) -> BenchOptions:
    return BenchOptions(duration=duration, rounds=1, warmup=0, connections=2, timeout=5.0, workdir=workdir)


def _scenario(name: str) -> Scenario:
    return next(s for s in catalog()[1] if s.name == name)


def test_gateway_scenario_is_measured_reported_and_its_servers_stopped(tmp_path: Path) -> None:
    specs, _ = catalog()
    scenario = _scenario("gateway-noauth")
    lines: list[str] = []
    bench = Bench([scenario], specs, PythonLoader(), _options(tmp_path, 0.5), say=lines.append)

    measurements = bench.run()

    assert [(m.scenario, m.round) for m in measurements] == [("gateway-noauth", 1)]
    result = measurements[0].result
    assert result.requests > 0
    assert result.failed == 0
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
    assert {s.name for s in bench.servers} == {"gateway-noauth", "upstream"}
    assert all(s.process.returncode is not None for s in bench.servers), "a server outlived the run"
    assert any("gateway-noauth" in line for line in lines)
    # The gateway served with the access log on, as shipped: one JSON line per request.
    access_lines = [line for line in (tmp_path / "gateway-noauth.log").read_text().splitlines() if '"route"' in line]
    assert len(access_lines) >= result.requests

    report = Report.build([scenario], measurements, bench.options, PythonLoader.name, now())
    report.write_json(tmp_path / "results.json")
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["scenarios"][0]["name"] == "gateway-noauth"
    assert data["scenarios"][0]["requests"] == result.requests
    assert "gateway-noauth" in report.table()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench installs it)")
@pytest.mark.parametrize("fresh", [True, False])
def test_each_round_measures_a_new_process_of_the_server_unless_asked_not_to(tmp_path: Path, fresh: bool) -> None:
    specs, _ = catalog()
    options = BenchOptions(duration=0.3, rounds=2, warmup=0, connections=2, workdir=tmp_path, fresh_processes=fresh)
    bench = Bench([_scenario("gateway-noauth")], specs, PythonLoader(), options, say=lambda _: None)

    measurements = bench.run()

    assert [m.round for m in measurements] == [1, 2]
    assert all(m.result.requests > 0 and m.result.failed == 0 for m in measurements)
    gateways = {s.process.pid for s in bench.servers if s.name == "gateway-noauth"}
    upstreams = {s.process.pid for s in bench.servers if s.name == "upstream"}
    assert len(gateways) == (2 if fresh else 1)
    assert len(upstreams) == 1  # a dependency of the gateway keeps its process (and its pooled connections)
    assert all(s.process.returncode is not None for s in bench.servers), "a server outlived the run"


def test_wrk_replays_static_and_per_request_pools_through_the_gateway(tmp_path: Path) -> None:
    specs, _ = catalog()
    static = _scenario("gateway-noauth")
    # A per-request pool (Lua request() per request) expecting an error status (Lua response() check).
    signed = Scenario(
        "per-request-404",
        target="gateway-noauth",
        request=RequestSpec(
            path="/not-routed",
            per_request=lambda draft: {"X-Bench-Index": str(draft.index)},
            variants=10,
            expect_status=404,
        ),
    )
    bench = Bench([static, signed], specs, WrkLoader(), _options(tmp_path, 1), say=lambda _: None)

    results = {m.scenario: m.result for m in bench.run()}

    for name in ("gateway-noauth", "per-request-404"):
        assert results[name].requests > 0, name
        assert results[name].failed == 0, name
        assert results[name].duration_s >= 1
    log = (tmp_path / "gateway-noauth.log").read_text()
    assert '"path":"/bench/hello"' in log and '"path":"/not-routed"' in log


def test_wrong_status_stops_the_run_with_the_servers_answer(tmp_path: Path) -> None:
    specs, _ = catalog()
    scenario = Scenario("not-found", target="upstream", request=RequestSpec(path="/x", expect_status=404))
    bench = Bench([scenario], specs, PythonLoader(), _options(tmp_path, 0.2), say=lambda _: None)

    with pytest.raises(BenchError, match="expected status 404 from upstream, got 200"):
        bench.run()
    assert all(s.process.returncode is not None for s in bench.servers)


def test_per_request_headers_are_rendered_into_the_pool(tmp_path: Path) -> None:
    def sign(draft: RequestDraft) -> dict[str, str]:
        return {"X-Signature": f"{draft.method}:{draft.path}:{draft.index}"}

    spec = RequestSpec(method="POST", path="/p?q=1", body=b"{}", per_request=sign, variants=3)
    requests = spec.render("h:1", range(spec.pool_size(10**6)), {})
    write_pool(tmp_path / "pool", requests)

    assert read_pool(tmp_path / "pool") == requests
    assert requests[2] == (
        b"POST /p?q=1 HTTP/1.1\r\nHost: h:1\r\nContent-Length: 2\r\nX-Signature: POST:/p?q=1:2\r\n\r\n{}"
    )
    assert RequestSpec(per_request=sign, unique=True).pool_size(5000) == 5000
    with pytest.raises(ValueError, match="X-Bad"):
        RequestSpec(headers={"X-Bad": "a\r\nInjected: 1"}).render("h", [0], {})


def _synthetic(name: str, compare_to: str | None = None, target: float | None = None) -> Scenario:
    return Scenario(name, name, compare_to=compare_to, target_ratio=target)


def test_paired_rounds_measure_each_baseline_next_to_its_scenarios() -> None:
    base = _synthetic("noauth")
    a, b = _synthetic("a", "noauth", 0.85), _synthetic("b", "noauth", 0.85)
    info = _synthetic("info", "noauth")  # compared, but no target: not paired
    scenarios = [base, a, b, info]

    def order(round_index: int) -> list[str]:
        return [s.name for s in round_order(scenarios, round_index, paired=True)]

    assert order(0) == ["noauth", "a", "noauth", "b", "info"]
    assert order(1) == ["noauth", "a", "noauth", "b", "info", "noauth"]
    assert order(2) == ["noauth", "b", "info", "noauth", "a", "noauth"]  # the last one gets a baseline after it
    assert [s.name for s in round_order([a, b], 0, paired=True)] == ["a", "b"]  # no baseline selected (--alone)


def test_paired_ratios_use_the_neighbouring_baselines(tmp_path: Path) -> None:
    base, a = _synthetic("noauth"), _synthetic("a", "noauth", 0.85)

    def measured(name: str, round_number: int, position: int, requests: int) -> Measurement:
        result = LoadResult(requests, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0)
        return Measurement(name, round_number, position, name, result)

    measurements = [
        # round 1: the machine slows down during the round; a sits between baselines of 1000 and 800
        measured("noauth", 1, 0, 1000),
        measured("a", 1, 1, 810),
        measured("noauth", 1, 2, 800),
        measured("noauth", 1, 4, 400),
        # round 2, unpaired: a against the round's mean baseline
        measured("a", 2, 0, 450),
        measured("noauth", 2, 3, 500),
    ]
    report = Report.build([base, a], measurements, BenchOptions(workdir=tmp_path), "test", now())
    (ratio,) = report.ratios
    assert ratio.per_round == pytest.approx([0.9, 0.9])
    assert ratio.throughput == pytest.approx(0.9)


def test_cpu_budget_says_how_much_cpu_a_scenario_may_add_to_meet_its_target(tmp_path: Path) -> None:
    base, a = _synthetic("noauth"), _synthetic("a", "noauth", 0.8)

    def measured(name: str, position: int, cpu_s: float) -> Measurement:
        result = LoadResult(1000, 1.0, 1000.0, 1.0, 1.0, 1.0, 1.0, 0)
        return Measurement(name, 1, position, name, result, server_cpu_s={name: cpu_s})

    # 1,000 requests each: 100 us of CPU per request without the feature, 130 us with it.
    measurements = [measured("noauth", 0, 0.1), measured("a", 1, 0.13), measured("noauth", 2, 0.1)]
    report = Report.build([base, a], measurements, BenchOptions(workdir=tmp_path), "test", now())
    (ratio,) = report.ratios
    assert ratio.added_cpu_us == pytest.approx(30.0)
    assert ratio.cpu_budget_us == pytest.approx(25.0)  # 100 / 0.8 - 100
    assert "adds 30.0 us CPU/req; 80% allows 25.0" in report.table()
    figures = report.to_json()["ratios"][0]
    assert (figures["added_cpu_us"], figures["cpu_budget_us"]) == (30.0, 25.0)


def test_rounds_rotate_and_baselines_are_always_selected() -> None:
    _, scenarios = catalog()
    names = [s.name for s in scenarios]
    assert [s.name for s in round_order(scenarios, 1)] == [*names[1:], names[0]]
    # gateway-noauth is compared to minimal-proxy, itself compared to upstream-direct.
    chain = ["upstream-direct", "minimal-proxy", "gateway-noauth"]
    assert [s.name for s in select(scenarios, ["gateway-noauth"])] == chain
    assert [s.name for s in select(scenarios, ["gateway-noauth"], alone=True)] == ["gateway-noauth"]
    assert percentile([1, 2, 3, 4], 0.5) == 2
    assert percentile([1, 2, 3, 4], 0.99) == 4
