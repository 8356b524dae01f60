"""Benchmark scenarios for the auth backend (issue 5): introspection on a warm cache, and the open circuit.

=========================  =====================================================================
scenario                   what is measured
=========================  =====================================================================
gateway-introspection      ``Authorization: Bearer bench-opaque-<0..9>``: 10 opaque tokens checked
                           by RFC 7662 introspection (``bench/identity.py``), answered from the
                           gateway's decision cache after the first request of each. Throughput
                           against the no-auth gateway, target >= 0.85.
gateway-breaker-open       the identity service is unreachable and its circuit open: every request
                           (1,000 distinct opaque tokens, none cached) is refused 503
                           ``backend.unavailable`` without a backend call. Measured over ONE
                           connection, so its latency is the gateway's answer time, not queueing
                           at saturation: the p99 target is 2 ms.
=========================  =====================================================================

Both gateways run the shipped configuration (JSON access log, audit trail) on an SQLite
store, like the other auth scenarios (``bench/auth_scenarios.py``); the shared decision
layer is that store. The open-circuit gateway points at a port nothing listens on, with
``fail_max: 1`` and a one-hour ``reset_timeout``: the harness's first-request check trips
it, and no trial call happens during the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bench.auth_scenarios import auth_config
from bench.request import RequestDraft, RequestSpec
from bench.servers import LaunchContext, ServerSpec

IDENTITY = "identity"
INTROSPECTION_TOKENS = 10
OPEN_CIRCUIT_P99_MS = 2.0
WARM_CACHE_TARGET = 0.85

GatewayServer = Callable[..., ServerSpec]


def identity_server() -> ServerSpec:
    """The benchmark identity service (bench/identity.py)."""
    return ServerSpec(
        IDENTITY,
        lambda ctx: [ctx.python, "-m", "bench.identity", f"--host={ctx.host}", f"--port={ctx.port}"],
    )


def backend_servers(gateway_server: GatewayServer) -> list[ServerSpec]:
    """``gateway_server`` is bench.scenarios.gateway_server (passed in: no import cycle)."""

    def introspection(ctx: LaunchContext) -> Mapping[str, Any]:
        authn = {"introspection": {"url": f"{ctx.url_of(IDENTITY)}/introspect"}}
        return auth_config(ctx, ["introspection"], authn)

    def open_circuit(ctx: LaunchContext) -> Mapping[str, Any]:
        nowhere = ctx.free_port()  # free now, and nothing will listen there: connection refused
        authn = {
            "backend": {"fail_max": 1, "reset_timeout": "1h", "timeout": "1s"},
            "introspection": {"url": f"http://{ctx.host}:{nowhere}/introspect"},
        }
        return auth_config(ctx, ["introspection"], authn)

    return [
        identity_server(),
        gateway_server("gateway-introspection", config=introspection, depends_on=(IDENTITY,)),
        gateway_server("gateway-breaker-open", config=open_circuit),
    ]


def opaque_token_headers(tokens: int) -> Callable[[RequestDraft], Mapping[str, str]]:
    def headers(draft: RequestDraft) -> Mapping[str, str]:
        return {"Authorization": f"Bearer bench-opaque-user-{draft.index % tokens}"}

    return headers


def backend_scenarios(scenario: Any, base: RequestSpec) -> list[Any]:
    """The scenarios (``scenario`` is bench.scenarios.Scenario)."""

    def spec(**kwargs: Any) -> RequestSpec:
        return RequestSpec(path=base.path, headers=base.headers, **kwargs)

    return [
        scenario(
            "gateway-introspection",
            target="gateway-introspection",
            request=spec(per_request=opaque_token_headers(INTROSPECTION_TOKENS), variants=INTROSPECTION_TOKENS),
            description="RFC 7662 introspection, 10 opaque tokens, decisions from the warm cache",
            compare_to="gateway-noauth",
            target_ratio=WARM_CACHE_TARGET,
        ),
        scenario(
            "gateway-breaker-open",
            target="gateway-breaker-open",
            request=spec(per_request=opaque_token_headers(1000), variants=1000, expect_status=503),
            description=f"identity service down, circuit open: 503 at once (1 connection; p99 target "
            f"{OPEN_CIRCUIT_P99_MS:g} ms)",
            connections=1,
            latency_target_ms=OPEN_CIRCUIT_P99_MS,
        ),
    ]
