"""The benchmark catalogue: server specs and scenarios.

A scenario is a name, the server that receives the load, and the request it
sends (``RequestSpec``, with per-request headers when the scenario needs them).
Servers are started once per run, dependencies first, and shared by every
scenario that uses them (one upstream serves them all).

Adding a scenario, for example a gateway route with HMAC auth::

    secret = secrets.token_bytes(32)             # shared by the config and the signer
    servers["gateway-hmac"] = gateway_server(
        "gateway-hmac",
        config=lambda ctx: {"routes": [{..., "auth": ...}], ...},  # merged over the base config
    )
    scenarios.append(Scenario(
        "gateway-hmac", target="gateway-hmac",
        request=RequestSpec(path=BENCH_PATH, per_request=lambda d: sign(secret, d), unique=True),
        compare_to="gateway-noauth",
    ))

A ``per_request`` factory runs before each measurement, never during it; what a
server's launch produced (a minted token, a key file) is in
``draft.servers[name].info``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from bench.request import RequestSpec
from bench.servers import LaunchContext, ServerSpec

BENCH_PREFIX = "/bench"
BENCH_PATH = "/bench/hello?q=1"


@dataclass(frozen=True)
class Scenario:
    """One line of the results table.

    ``compare_to`` names the scenario whose throughput this one is reported
    against (measured in the same rounds); ``target_ratio`` is the goal for that
    ratio, if there is one. ``connections`` overrides the run's connection count
    (1: latency without queueing); ``latency_target_ms`` is a goal for its p99.
    """

    name: str
    target: str
    request: RequestSpec = field(default_factory=RequestSpec)
    description: str = ""
    compare_to: str | None = None
    target_ratio: float | None = None
    connections: int | None = None
    latency_target_ms: float | None = None


def upstream_server(name: str = "upstream") -> ServerSpec:
    """The tiny upstream of bench/apps.py."""
    return ServerSpec(
        name,
        lambda ctx: [ctx.python, "-m", "bench.apps", "upstream", f"--host={ctx.host}", f"--port={ctx.port}"],
    )


def minimal_proxy_server(name: str = "minimal-proxy", upstream: str = "upstream") -> ServerSpec:
    """The minimal aiohttp pass-through proxy of bench/apps.py, in front of ``upstream``."""
    return ServerSpec(
        name,
        lambda ctx: [
            ctx.python,
            "-m",
            "bench.apps",
            "minimal-proxy",
            f"--host={ctx.host}",
            f"--port={ctx.port}",
            f"--upstream={ctx.url_of(upstream)}",
        ],
        depends_on=(upstream,),
    )


ConfigOverrides = Mapping[str, Any] | Callable[[LaunchContext], Mapping[str, Any]]


def gateway_config(ctx: LaunchContext, upstream: str, overrides: ConfigOverrides) -> dict[str, Any]:
    """The shipped defaults (JSON access log on, level info) with one route to ``upstream``.

    ``overrides`` replaces top-level keys (``routes`` included) of this base.
    """
    config: dict[str, Any] = {
        "listen": f"{ctx.host}:{ctx.port}",
        "admin_listen": f"{ctx.host}:{ctx.free_port()}",
        "store": "memory://",
        "drain_timeout": "1s",
        "routes": [{"name": "bench", "prefix": BENCH_PREFIX, "upstream": ctx.url_of(upstream)}],
    }
    config.update(overrides(ctx) if callable(overrides) else overrides)
    return config


def gateway_server(
    name: str,
    *,
    upstream: str = "upstream",
    config: ConfigOverrides | None = None,
    depends_on: tuple[str, ...] = (),
) -> ServerSpec:
    """The real ``gateway serve`` on a generated YAML config, its logs going to the server's log file."""

    def command(ctx: LaunchContext) -> list[str]:
        path = ctx.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(gateway_config(ctx, upstream, config or {}), sort_keys=False))
        ctx.info["config"] = path
        return [ctx.python, "-m", "gateway", "serve", "--config", str(path)]

    return ServerSpec(name, command, depends_on=(upstream, *depends_on))


def catalog() -> tuple[dict[str, ServerSpec], list[Scenario]]:
    """Every server spec and every scenario, in the order they are reported."""
    servers = {
        spec.name: spec
        for spec in (
            upstream_server(),
            minimal_proxy_server(),
            gateway_server("gateway-noauth"),
        )
    }
    request = RequestSpec(path=BENCH_PATH, headers={"User-Agent": "bench", "Accept": "*/*"})
    scenarios = [
        Scenario(
            "upstream-direct",
            target="upstream",
            request=request,
            description="the upstream alone: the ceiling of this machine",
        ),
        Scenario(
            "minimal-proxy",
            target="minimal-proxy",
            request=request,
            description="minimal aiohttp pass-through proxy: the ceiling for an aiohttp proxy",
            compare_to="upstream-direct",
        ),
        Scenario(
            "gateway-noauth",
            target="gateway-noauth",
            request=request,
            description="gateway serve, one route, no auth, JSON access log on",
            compare_to="minimal-proxy",
            target_ratio=0.85,
        ),
    ]
    # Authenticated routes (bench/auth_scenarios.py), each against gateway-noauth.
    from bench.auth_scenarios import auth_scenarios, auth_servers

    servers.update({spec.name: spec for spec in auth_servers(gateway_server)})
    scenarios.extend(auth_scenarios(Scenario, request))
    # The auth backend (bench/backend_scenarios.py): introspection on a warm cache, the open circuit.
    from bench.backend_scenarios import backend_scenarios, backend_servers

    servers.update({spec.name: spec for spec in backend_servers(gateway_server)})
    scenarios.extend(backend_scenarios(Scenario, request))
    return servers, scenarios
