"""Prometheus metrics, one registry per application.

Label values are bounded: the route label is the configured route name, the
method label is a known HTTP method or ``OTHER``, the spoof label is the
identity-header rule that matched, never a raw client-supplied string.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.settings import HTTP_METHODS

UNMATCHED_ROUTE = "(none)"

AUTH_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Durations:
    """One series' latency histogram: per-bucket counts (the last is +Inf) and their sum."""

    __slots__ = ("bounds", "buckets", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def family_sample(self) -> tuple[list[tuple[str, float]], float]:
        counts = list(self.buckets)  # a copy: the scrape runs in another thread
        cumulative, out = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), counts, strict=True):
            cumulative += count
            out.append((bound, float(cumulative)))
        return out, self.total


class RequestSeries(Collector):
    """``gateway_requests_total``, ``gateway_request_duration_seconds`` and
    ``gateway_upstream_duration_seconds``, updated by the event loop without locks.

    Every update happens on the event loop's thread; a scrape (in an executor
    thread) reads copies, so a sample may be one request behind, never torn.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        self._request: dict[str, _Durations] = {}
        self._upstream: dict[str, _Durations] = {}
        registry.register(self)

    def observe(self, route: str, method: str, status: int, duration: float | None, upstream: float | None) -> None:
        key = (route, method, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        if duration is not None:
            durations = self._request.get(route)
            if durations is None:
                durations = self._request[route] = _Durations()
            durations.observe(duration)
        if upstream is not None:
            durations = self._upstream.get(route)
            if durations is None:
                durations = self._upstream[route] = _Durations()
            durations.observe(upstream)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "gateway_requests",
            "Requests answered, by route, method and status code.",
            labels=["route", "method", "code"],
        )
        for (route, method, status), count in self._counts.copy().items():
            requests.add_metric([route, method, str(status)], float(count))
        yield requests
        for name, help_text, series in (
            (
                "gateway_request_duration_seconds",
                "Time from request received to response finished, by route.",
                self._request,
            ),
            (
                "gateway_upstream_duration_seconds",
                "Time from forwarding to the upstream until its response headers arrived, by route.",
                self._upstream,
            ),
        ):
            family = HistogramMetricFamily(name, help_text, labels=["route"])
            for route, durations in series.copy().items():
                buckets, total = durations.family_sample()
                family.add_metric([route], buckets, total)
            yield family


class AuthDecisions:
    """One label set of ``gateway_auth_decisions_total`` and its method's duration histogram.

    Held by a caller that decides the same way many times (a route's allowed decisions for one
    principal): counting one is a single call, no key tuple and no lookups.
    """

    __slots__ = ("count", "durations")

    def __init__(self, durations: _Durations) -> None:
        self.count = 0
        self.durations = durations

    def observe(self, seconds: float) -> None:
        self.count += 1
        durations = self.durations
        durations.buckets[bisect_left(durations.bounds, seconds)] += 1
        durations.total += seconds


class AuthSeries(Collector):
    """``gateway_auth_decisions_total`` and ``gateway_auth_duration_seconds``, updated by the
    event loop without locks (one decision per authenticated request), like :class:`RequestSeries`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._decisions: dict[tuple[str, str, str, str, str], AuthDecisions] = {}
        self._durations: dict[str, _Durations] = {}
        registry.register(self)

    def decisions(self, route: str, method: str, result: str, reason: str, mode: str) -> AuthDecisions:
        """The series of one label set (created on first use; label values are bounded)."""
        key = (route, method, result, reason, mode)
        found = self._decisions.get(key)
        if found is None:
            durations = self._durations.get(method)
            if durations is None:
                durations = self._durations[method] = _Durations(AUTH_BUCKETS)
            found = self._decisions[key] = AuthDecisions(durations)
        return found

    def observe(self, route: str, method: str, result: str, reason: str, mode: str, duration: float) -> None:
        self.decisions(route, method, result, reason, mode).observe(duration)

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "gateway_auth_decisions",
            "Policy decisions, by route, auth method (or none), result (allow, deny, would_deny), reason and mode.",
            labels=["route", "method", "result", "reason", "mode"],
        )
        for labels, series in self._decisions.copy().items():
            decisions.add_metric(list(labels), float(series.count))
        yield decisions
        family = HistogramMetricFamily(
            "gateway_auth_duration_seconds",
            "Time spent deciding (authentication and authorization), by auth method (or none).",
            labels=["method"],
        )
        for method, durations in self._durations.copy().items():
            buckets, total = durations.family_sample()
            family.add_metric([method], buckets, total)
        yield family


class GatewayMetrics:
    """The data plane's metrics. Label children are cached: ``labels()`` is not free."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
            ProcessCollector(registry=registry)  # memory, CPU, open file descriptors
            PlatformCollector(registry=registry)
        self.registry = registry
        # The three per-request series are counted in plain Python and exported at scrape time:
        # prometheus-client's children take a lock per update, five updates per request.
        self.request_series = RequestSeries(registry=self.registry)
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
        # Decisions and their durations: one update each per authenticated request, lock-free as above.
        self.auth_series = AuthSeries(registry=self.registry)
        self.malformed_requests = Counter(
            "gateway_malformed_requests_total",
            "Requests refused with 400 before any handler because they are not valid HTTP (either listener).",
            registry=self.registry,
        )
        self.header_timeouts = Counter(
            "gateway_header_timeouts_total",
            "Connections closed because their first request's headers did not arrive within header_timeout.",
            registry=self.registry,
        )
        self.auth_replays = Counter(
            "gateway_auth_replays_total",
            "Signatures or nonces refused because they were already used, by auth method.",
            ["method"],
            registry=self.registry,
        )

    def observe_request(
        self, route: str, method: str, status: int, duration: float | None, upstream: float | None
    ) -> None:
        """Count one answered request; ``duration`` None leaves the latency histogram alone (WebSockets)."""
        self.request_series.observe(route, method if method in HTTP_METHODS else "OTHER", status, duration, upstream)

    def observe_auth(self, route: str, method: str, result: str, reason: str, mode: str, duration: float) -> None:
        """Count one policy decision (labels are bounded: configured names and stable reason codes)."""
        self.auth_series.observe(route, method, result, reason, mode, duration)
        if reason.endswith(".replay"):
            self.auth_replays.labels(method).inc()
