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

``gateway_auth_cache_total`` is updated on every introspected request: it is counted in a
plain dict on the event loop and exported at scrape time (no lock per update, so no
``_created`` series), like the gateway's per-request series.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

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
        self.cache = CacheSeries(self.registry)
        self._call_children: dict[tuple[str, str], Counter] = {}

    def cache_event(self, layer: str, result: str) -> None:
        counts = self.cache.counts
        key = (layer, result)
        counts[key] = counts.get(key, 0) + 1

    def call(self, backend: str, outcome: str, duration: float | None = None) -> None:
        key = (backend, outcome)
        child = self._call_children.get(key)
        if child is None:
            child = self._call_children[key] = self.calls.labels(backend, outcome)
        child.inc()
        if duration is not None:
            self.duration.labels(backend).observe(duration)


class CacheSeries(Collector):
    """``gateway_auth_cache_total{layer,result}``: plain counts, exported at scrape time (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "gateway_auth_cache",
            "Auth backend decision cache lookups: layer memory (this process) or shared (the store); "
            "result hit, miss, or stale (served within a route's stale grace while the backend is unavailable).",
            labels=["layer", "result"],
        )
        for labels, count in self.counts.copy().items():
            family.add_metric(list(labels), float(count))
        yield family
