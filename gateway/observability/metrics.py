"""Prometheus metrics, one registry per application.

Label values are bounded: the route label is the configured route name, the
method label is a known HTTP method or ``OTHER``, the spoof label is the
identity-header rule that matched, never a raw client-supplied string.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector

from gateway.settings import HTTP_METHODS

UNMATCHED_ROUTE = "(none)"

AUTH_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)
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
        self.auth_decisions = Counter(
            "gateway_auth_decisions_total",
            "Policy decisions, by route, auth method (or none), result (allow, deny, would_deny), reason and mode.",
            ["route", "method", "result", "reason", "mode"],
            registry=self.registry,
        )
        self.auth_duration = Histogram(
            "gateway_auth_duration_seconds",
            "Time spent deciding (authentication and authorization), by auth method (or none).",
            ["method"],
            buckets=AUTH_BUCKETS,
            registry=self.registry,
        )
        self.auth_replays = Counter(
            "gateway_auth_replays_total",
            "Signatures or nonces refused because they were already used, by auth method.",
            ["method"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._auth_children: dict[tuple[str, str, str, str, str], Counter] = {}
        self._auth_duration_children: dict[str, Histogram] = {}
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

    def observe_auth(self, route: str, method: str, result: str, reason: str, mode: str, duration: float) -> None:
        """Count one policy decision (labels are bounded: configured names and stable reason codes)."""
        key = (route, method, result, reason, mode)
        counter = self._auth_children.get(key)
        if counter is None:
            counter = self._auth_children[key] = self.auth_decisions.labels(*key)
        counter.inc()
        histogram = self._auth_duration_children.get(method)
        if histogram is None:
            histogram = self._auth_duration_children[method] = self.auth_duration.labels(method)
        histogram.observe(duration)
        if reason.endswith(".replay"):
            self.auth_replays.labels(method).inc()
