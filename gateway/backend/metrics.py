"""Prometheus metrics of the auth backend, on the gateway's own registry.

::

    gateway_auth_backend_calls_total{backend,outcome}   ok, rejected, timeout, transport, http_5xx,
                                                        bad_response (calls made), open, busy (not made)
    gateway_auth_backend_duration_seconds{backend}      latency of the calls made
    gateway_circuit_state{backend}                      0 closed, 1 open, 2 half-open
    gateway_circuit_transitions_total{backend,to}       state changes
    gateway_auth_cache_total{layer,result}              layer memory|shared, result hit|miss|stale

Label values are bounded: ``backend`` is a configured endpoint name (``introspection``,
``jwks:<provider>``, ``discovery:<issuer name>``), the others are fixed sets.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BACKEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BackendMetrics:
    """The metrics above; label children are cached (``labels()`` is not free on the request path)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.calls = Counter(
            "gateway_auth_backend_calls_total",
            "Calls to the auth backend, by endpoint and outcome (open and busy: short-circuited, not made).",
            ["backend", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "gateway_auth_backend_duration_seconds",
            "Latency of calls made to the auth backend, by endpoint.",
            ["backend"],
            buckets=BACKEND_BUCKETS,
            registry=self.registry,
        )
        self.circuit_state = Gauge(
            "gateway_circuit_state",
            "Circuit breaker state per auth backend endpoint: 0 closed, 1 open, 2 half-open.",
            ["backend"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "gateway_circuit_transitions_total",
            "Circuit breaker state changes per auth backend endpoint, by the state entered.",
            ["backend", "to"],
            registry=self.registry,
        )
        self.cache = Counter(
            "gateway_auth_cache_total",
            "Auth backend decision cache lookups: layer memory (this process) or shared (the store); "
            "result hit, miss, or stale (served within a route's stale grace while the backend is unavailable).",
            ["layer", "result"],
            registry=self.registry,
        )
        self._cache_children: dict[tuple[str, str], Counter] = {}
        self._call_children: dict[tuple[str, str], Counter] = {}

    def cache_event(self, layer: str, result: str) -> None:
        key = (layer, result)
        child = self._cache_children.get(key)
        if child is None:
            child = self._cache_children[key] = self.cache.labels(layer, result)
        child.inc()

    def call(self, backend: str, outcome: str, duration: float | None = None) -> None:
        key = (backend, outcome)
        child = self._call_children.get(key)
        if child is None:
            child = self._call_children[key] = self.calls.labels(backend, outcome)
        child.inc()
        if duration is not None:
            self.duration.labels(backend).observe(duration)
