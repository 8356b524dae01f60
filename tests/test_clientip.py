"""Client IP over trusted proxies: right-to-left walk, never believing an untrusted peer."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.clientip import TrustedProxies, parse_ip

TRUSTED = TrustedProxies([ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")])


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        pytest.param("203.0.113.9", ["10.0.0.1"], "203.0.113.9", id="untrusted-peer-spoofing-xff"),
        pytest.param("10.0.0.2", [], "10.0.0.2", id="trusted-peer-without-xff"),
        pytest.param("10.0.0.2", ["198.51.100.1"], "198.51.100.1", id="one-hop"),
        pytest.param("10.0.0.2", ["6.6.6.6, 198.51.100.1, 10.0.0.3"], "198.51.100.1", id="spoof-left-of-real-client"),
        pytest.param("10.0.0.2", ["6.6.6.6", "198.51.100.1"], "198.51.100.1", id="several-headers"),
        pytest.param("10.0.0.2", ["10.0.0.5, 10.0.0.3"], "10.0.0.5", id="all-trusted-leftmost"),
        pytest.param("10.0.0.2", ["garbage, 10.0.0.3"], "10.0.0.3", id="malformed-ends-walk"),
        pytest.param("10.0.0.2", ["198.51.100.1:5555"], "198.51.100.1", id="v4-with-port"),
        pytest.param("fd00::1", ["[2001:db8::7]:443"], "2001:db8::7", id="v6-bracketed-with-port"),
        pytest.param("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1", id="v4-mapped-peer"),
    ],
)
def test_resolve(peer: str, xff: list[str], client: str) -> None:
    assert TRUSTED.resolve(peer, xff) == client


def test_no_trusted_proxies_means_the_peer() -> None:
    assert TrustedProxies([]).resolve("10.0.0.2", ["1.2.3.4"]) == "10.0.0.2"


def test_parse_ip_rejects_garbage() -> None:
    assert parse_ip("not-an-ip") is None
    assert parse_ip("") is None
