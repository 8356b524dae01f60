"""The lock-free series: what a scrape of the registry shows after observations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from gateway.observability.metrics import AUTH_BUCKETS, GatewayMetrics


def scrape(metrics: GatewayMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_auth_decisions_are_counted_per_label_set() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    for _ in range(3):
        metrics.observe_auth("api", "service_token", "allow", "allowed", "enforce", 0.0002)
    metrics.observe_auth("api", "service_token", "deny", "token.revoked", "enforce", 0.0001)
    text = scrape(metrics)
    assert (
        'gateway_auth_decisions_total{method="service_token",mode="enforce",reason="allowed",'
        'result="allow",route="api"} 3.0' in text
    )
    assert (
        'gateway_auth_decisions_total{method="service_token",mode="enforce",reason="token.revoked",'
        'result="deny",route="api"} 1.0' in text
    )
    assert "# TYPE gateway_auth_decisions_total counter" in text


def test_auth_durations_form_a_cumulative_histogram_per_method() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    metrics.observe_auth("api", "jwt", "allow", "allowed", "enforce", 0.00004)  # first bucket
    metrics.observe_auth("api", "jwt", "allow", "allowed", "enforce", 0.0003)  # le=0.0005
    metrics.observe_auth("api", "jwt", "allow", "allowed", "enforce", 9.0)  # +Inf only
    metrics.observe_auth("web", "hmac_legacy", "allow", "allowed", "enforce", 0.0001)  # le=0.0001 (inclusive)
    text = scrape(metrics)
    assert f'gateway_auth_duration_seconds_bucket{{le="{AUTH_BUCKETS[0]}",method="jwt"}} 1.0' in text
    assert 'gateway_auth_duration_seconds_bucket{le="0.00025",method="jwt"} 1.0' in text
    assert 'gateway_auth_duration_seconds_bucket{le="0.0005",method="jwt"} 2.0' in text
    assert 'gateway_auth_duration_seconds_bucket{le="2.5",method="jwt"} 2.0' in text
    assert 'gateway_auth_duration_seconds_bucket{le="+Inf",method="jwt"} 3.0' in text
    assert 'gateway_auth_duration_seconds_count{method="jwt"} 3.0' in text
    assert 'gateway_auth_duration_seconds_sum{method="jwt"} 9.00034' in text
    assert 'gateway_auth_duration_seconds_bucket{le="0.0001",method="hmac_legacy"} 1.0' in text
    assert "# TYPE gateway_auth_duration_seconds histogram" in text


def test_replays_are_counted_by_method() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    metrics.observe_auth("api", "rfc9421", "deny", "signature.replay", "enforce", 0.0001)
    assert 'gateway_auth_replays_total{method="rfc9421"} 1.0' in scrape(metrics)
