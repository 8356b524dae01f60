"""The auth-backend benchmark scenarios answer as intended: introspection from a warm cache, 503 while open.

One short measurement of each through the harness (no speed asserted): every request
gets its expected status (200 for introspection, 503 with the circuit open), the
identity service is asked about each token once, and the open circuit is measured
over a single connection.
"""

from __future__ import annotations

from pathlib import Path

from bench.backend_scenarios import INTROSPECTION_TOKENS
from bench.pyload import PythonLoader
from bench.runner import Bench, BenchOptions
from bench.scenarios import catalog

SCENARIOS = ("gateway-introspection", "gateway-breaker-open")


def test_backend_scenarios_answer_as_intended(tmp_path: Path) -> None:
    specs, scenarios = catalog()
    chosen = [s for s in scenarios if s.name in SCENARIOS]
    assert [s.connections for s in chosen] == [None, 1]
    options = BenchOptions(duration=0.3, rounds=1, warmup=0, connections=2, timeout=5.0, workdir=tmp_path)
    bench = Bench(chosen, specs, PythonLoader(), options, say=lambda _: None)

    results = {m.scenario: m.result for m in bench.run()}

    for name in SCENARIOS:
        assert results[name].requests > 0, name
        assert results[name].failed == 0, name
    assert all(s.process.returncode is not None for s in bench.servers), "a server outlived the run"
    assert '"principal":"user-' in (tmp_path / "gateway-introspection.log").read_text()
    calls = (tmp_path / "identity.log").read_text().split("introspection calls answered:")[-1]
    assert 1 <= int(calls) <= INTROSPECTION_TOKENS  # each token asked about once, then cached
    assert '"code":"backend.unavailable"' not in (tmp_path / "gateway-introspection.log").read_text()
