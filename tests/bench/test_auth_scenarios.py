"""The auth benchmark scenarios set up real credentials and every request they send is accepted.

One short measurement per scenario through the harness: the credentials are made
with the operator CLI on the scenario's SQLite store, the request pools are signed
ahead of time, and the harness's first-request check plus ``failed == 0`` prove the
gateway accepted them (a rejected signature would answer 401). No speed is asserted.
"""

from __future__ import annotations

from pathlib import Path

from bench.pyload import PythonLoader
from bench.runner import Bench, BenchOptions
from bench.scenarios import catalog

# Three of the five keep this test to a few seconds: the two signature schemes (store key, nonce) and JWT.
# gateway-token and gateway-rfc9421 differ only in the request, made by the same code.
AUTH_SCENARIOS = ("gateway-hmac-legacy", "gateway-jwt", "gateway-rfc9421-nonce")


def test_auth_scenarios_are_accepted_by_the_gateway(tmp_path: Path) -> None:
    specs, scenarios = catalog()
    auth = [s for s in scenarios if s.compare_to == "gateway-noauth"]
    assert {s.name for s in auth} >= {"gateway-rfc9421", "gateway-token", *AUTH_SCENARIOS}
    chosen = [s for s in auth if s.name in AUTH_SCENARIOS]
    options = BenchOptions(duration=0.3, rounds=1, warmup=0, connections=2, timeout=5.0, workdir=tmp_path)
    bench = Bench(chosen, specs, PythonLoader(), options, say=lambda _: None)

    results = {m.scenario: m.result for m in bench.run()}

    for name in AUTH_SCENARIOS:
        assert results[name].requests > 0, name
        assert results[name].failed == 0, name
    assert all(s.process.returncode is not None for s in bench.servers), "a server outlived the run"
    # The requests were authenticated, not merely answered: the access log names the principal.
    assert '"principal":"service:bench-svc"' in (tmp_path / "gateway-hmac-legacy.log").read_text()
    assert '"principal":"user-' in (tmp_path / "gateway-jwt.log").read_text()


def test_the_redis_scenario_runs_on_a_redis_server_of_its_own_across_restarts(tmp_path: Path) -> None:
    specs, scenarios = catalog()
    chosen = [s for s in scenarios if s.name == "gateway-token-redis"]
    assert chosen, "redis-server is installed (the test suite needs it), so the scenario must be offered"
    # Two rounds: the second restarts the gateway, on the same Redis data (the server is a dependency, kept).
    options = BenchOptions(duration=0.3, rounds=2, warmup=0, connections=2, timeout=5.0, workdir=tmp_path)
    bench = Bench(chosen, specs, PythonLoader(), options, say=lambda _: None)

    measured = [m for m in bench.run() if m.scenario == "gateway-token-redis"]

    assert len(measured) == 2
    assert all(m.result.requests > 0 and m.result.failed == 0 for m in measured)
    assert all(s.process.returncode is not None for s in bench.servers), "a server outlived the run"
    config = (tmp_path / "gateway-token-redis.yaml").read_text()
    assert "store: redis://127.0.0.1:" in config
    assert '"principal":"service:bench-svc"' in (tmp_path / "gateway-token-redis.log").read_text()
