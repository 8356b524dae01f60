"""Prometheus metrics, one registry per application.

Label values are bounded: the route label is the configured route name, the
method label is a known HTTP method or ``OTHER``, the spoof label is the
identity-header rule that matched, never a raw client-supplied string.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector

from gateway.settings import HTTP_METHODS

UNMATCHED_ROUTE = "(none)"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else "OTHER"


class GatewayMetrics:
    """The data plane's metrics. Label children are cached: ``labels()`` is not free."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
            ProcessCollector(registry=registry)  # memory, CPU, open file descriptors
            PlatformCollector(registry=registry)
        self.registry = registry
        self.requests = Counter(
            "gateway_requests_total",
            "Requests answered, by route, method and status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request received to response finished, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Time from forwarding to the upstream until its response headers arrived, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "gateway_requests_in_flight",
            "Requests being handled right now.",
            registry=self.registry,
        )
        self.spoofed_headers = Counter(
            "gateway_spoofed_headers_total",
            "Client-sent identity headers removed before forwarding, by the rule that matched.",
            ["header"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total",
            "Upstream failures answered by the gateway, by route and error code.",
            ["route", "code"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._duration_children: dict[str, tuple[Histogram, Histogram]] = {}

    def observe_request(
        self, route: str, method: str, status: int, duration: float | None, upstream: float | None
    ) -> None:
        """Count one answered request; ``duration`` None leaves the latency histogram alone (WebSockets)."""
        key = (route, method if method in HTTP_METHODS else "OTHER", status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(key[0], key[1], str(status))
        counter.inc()
        histograms = self._duration_children.get(route)
        if histograms is None:
            histograms = self._duration_children[route] = (
                self.request_duration.labels(route),
                self.upstream_duration.labels(route),
            )
        if duration is not None:
            histograms[0].observe(duration)
        if upstream is not None:
            histograms[1].observe(upstream)
