"""IP and Origin allowlists as credentials carry them."""

from __future__ import annotations

import pytest

from gateway.pipeline.allowlists import IPAllowlist, OriginAllowlist, ip_allowlist, origin_allowlist


@pytest.mark.parametrize(
    ("entries", "client_ip", "allowed"),
    [
        ((), "203.0.113.9", True),
        (("10.0.0.0/8",), "10.255.0.1", True),
        (("10.0.0.0/8",), "11.0.0.1", False),
        (("192.0.2.7",), "192.0.2.7", True),
        (("192.0.2.7",), "192.0.2.8", False),
        (("10.0.0.0/8",), "::ffff:10.1.1.1", True),
        (("2001:db8::/32",), "2001:db8:ffff::1", True),
        (("2001:db8::/32",), "10.0.0.1", False),
        (("10.0.0.0/8",), "not-an-ip", False),
        (("10.0.0.0/8",), "", False),
        (("garbage",), "10.0.0.1", False),
        (("garbage", "10.0.0.0/8"), "10.0.0.1", True),
    ],
)
def test_ip_allowlist(entries: tuple[str, ...], client_ip: str, allowed: bool) -> None:
    assert ip_allowlist(entries).allows(client_ip) is allowed


def test_ip_allowlist_is_parsed_once_per_tuple() -> None:
    assert ip_allowlist(("10.0.0.0/8",)) is ip_allowlist(("10.0.0.0/8",))


def test_ip_allowlist_parse_names_the_bad_entry() -> None:
    assert IPAllowlist.parse(["10.0.0.1", "2001:db8::/48"]).allows("10.0.0.1")
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        IPAllowlist.parse(["10.0.0.300"])


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("https://APP.example.com", True),
        ("https://app.example.com/", False),
        ("https://a.example.com", True),
        ("https://a.b.example.com", True),
        ("https://example.com", False),
        ("https://evilexample.com", False),
        ("https://example.com.evil.net", False),
        ("http://a.example.com", False),
        ("https://a.example.com:8443", False),
        ("https://user@a.example.com", False),
        ("null", False),
        ("", False),
    ],
)
def test_origin_allowlist(origin: str, allowed: bool) -> None:
    assert origin_allowlist(("https://app.example.com/", "https://*.example.com")).allows(origin) is allowed


def test_empty_origin_allowlist_allows_all() -> None:
    assert OriginAllowlist(()).allows("https://anything.example")
    assert not OriginAllowlist(["https://*.example.com:8443"]).allows("https://a.example.com")
    assert OriginAllowlist(["https://*.example.com:8443"]).allows("https://a.example.com:8443")
