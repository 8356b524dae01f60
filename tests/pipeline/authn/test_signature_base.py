"""The signature base builder's pieces, checked against RFC 9421 examples and against ``http_sf`` itself."""

from __future__ import annotations

from typing import Any

import http_sf
import pytest
from http_sf.innerlist import ser_innerlist
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.pipeline.authn.signature_base import (
    Coverage,
    DigestMismatch,
    MessageParts,
    SignatureBaseError,
    component_value,
    serialize_inner_list,
    serialize_parameters,
    signature_base,
    verify_content_digest,
)

RFC_DIGEST = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"


def parts(target: str = "/foo?param=Value&Pet=dog", host: str = "example.com", **headers: str) -> MessageParts:
    return MessageParts("POST", "https", host, target, CIMultiDictProxy(CIMultiDict(headers)))


def test_rfc9421_section_2_5_example_signature_base() -> None:
    """RFC 9421 §2.5: the test request and its expected signature base, byte for byte."""
    message = parts(
        **{
            "Host": "example.com",
            "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
            "Content-Type": "application/json",
            "Content-Digest": RFC_DIGEST,
            "Content-Length": "18",
        }
    )
    covered: Any = http_sf.parse(
        b'sig1=("@method" "@authority" "@path" "content-digest" "content-length" "content-type")'
        b';created=1618884473;keyid="test-key-rsa-pss"',
        tltype="dictionary",
    )
    assert isinstance(covered, dict)
    items, params = covered["sig1"]
    expected = (
        '"@method": POST\n'
        '"@authority": example.com\n'
        '"@path": /foo\n'
        f'"content-digest": {RFC_DIGEST}\n'
        '"content-length": 18\n'
        '"content-type": application/json\n'
        '"@signature-params": ("@method" "@authority" "@path" "content-digest" "content-length" "content-type")'
        ';created=1618884473;keyid="test-key-rsa-pss"'
    )
    assert signature_base(message, items, params) == expected.encode()


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        ("@method", "POST"),
        ("@authority", "example.com"),
        ("@scheme", "https"),
        ("@target-uri", "https://example.com/foo?param=Value&Pet=dog"),
        ("@request-target", "/foo?param=Value&Pet=dog"),
        ("@path", "/foo"),
        ("@query", "?param=Value&Pet=dog"),
    ],
)
def test_derived_components_rfc9421_section_2_2(component: str, expected: str) -> None:
    assert component_value(parts(), (component, {})) == expected


@pytest.mark.parametrize(
    ("host", "scheme", "expected"),
    [
        ("Example.COM", "https", "example.com"),
        ("example.com:443", "https", "example.com"),
        ("example.com:0443", "https", "example.com"),
        ("example.com:80", "https", "example.com:80"),
        ("example.com:80", "http", "example.com"),
        ("[::1]:443", "https", "[::1]"),
        ("[::1]", "https", "[::1]"),
        ("127.0.0.1:8443", "https", "127.0.0.1:8443"),
    ],
)
def test_authority_is_normalized(host: str, scheme: str, expected: str) -> None:
    message = MessageParts("GET", scheme, host, "/", CIMultiDictProxy(CIMultiDict()))
    assert component_value(message, ("@authority", {})) == expected


def test_query_param_rfc9421_section_2_2_8() -> None:
    message = parts("/path?param=value&foo=bar&baz=batman&qux=")
    assert component_value(message, ("@query-param", {"name": "baz"})) == "batman"
    assert component_value(message, ("@query-param", {"name": "qux"})) == ""
    encoded = parts(
        "/parameters?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something"
    )
    assert component_value(encoded, ("@query-param", {"name": "var"})) == "this%20is%20a%20big%0Amultiline%20value"
    assert component_value(encoded, ("@query-param", {"name": "bar"})) == "with%20plus%20whitespace"
    assert component_value(encoded, ("@query-param", {"name": "fa%C3%A7ade%22%3A%20"})) == "something"
    with pytest.raises(SignatureBaseError, match="not in the request"):
        component_value(message, ("@query-param", {"name": "nope"}))
    with pytest.raises(SignatureBaseError, match="more than once"):
        component_value(parts("/p?a=1&a=2"), ("@query-param", {"name": "a"}))


def test_empty_path_and_absent_query() -> None:
    message = parts("?x")
    assert component_value(message, ("@path", {})) == "/"
    assert component_value(parts("/p"), ("@query", {})) == "?"


def test_field_components_rfc9421_section_2_1() -> None:
    message = MessageParts(
        "GET",
        "https",
        "example.com",
        "/",
        CIMultiDictProxy(
            CIMultiDict(
                [
                    ("X-OWS-Header", "   Leading and trailing whitespace.   "),
                    ("X-Obs-Fold-Header", "Obsolete line folding."),
                    ("Cache-Control", "max-age=60"),
                    ("Cache-Control", "   must-revalidate"),
                    ("Example-Dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)"),
                ]
            )
        ),
    )
    assert component_value(message, ("x-ows-header", {})) == "Leading and trailing whitespace."
    assert component_value(message, ("cache-control", {})) == "max-age=60, must-revalidate"
    assert component_value(message, ("example-dict", {})) == "a=1,    b=2;x=1;y=2,   c=(a   b   c)"
    assert component_value(message, ("example-dict", {"key": "a"})) == "1"
    assert component_value(message, ("example-dict", {"key": "b"})) == "2;x=1;y=2"
    assert component_value(message, ("example-dict", {"key": "c"})) == "(a b c)"
    assert component_value(message, ("cache-control", {"bs": True})) == ":bWF4LWFnZT02MA==:, :bXVzdC1yZXZhbGlkYXRl:"
    with pytest.raises(SignatureBaseError, match="not in the request"):
        component_value(message, ("x-absent", {}))
    with pytest.raises(SignatureBaseError, match="request signature"):
        component_value(message, ("@status", {}))
    with pytest.raises(SignatureBaseError, match="request signature"):
        component_value(message, ("@method", {"req": True}))
    with pytest.raises(SignatureBaseError, match="unsupported parameters"):
        component_value(message, ("cache-control", {"bogus": True}))


def test_content_digest_rfc9530_examples() -> None:
    body = b'{"hello": "world"}\n'
    verify_content_digest("sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:", body)
    verify_content_digest(
        "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:", body
    )
    verify_content_digest("unixsum=:AAAA:, sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:", body)
    with pytest.raises(DigestMismatch):
        verify_content_digest("sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:", body + b" ")
    with pytest.raises(DigestMismatch, match="no sha-256"):
        verify_content_digest("md5=:AAAA:", body)
    with pytest.raises(SignatureBaseError, match="Byte Sequence"):
        verify_content_digest("sha-256=:AAAA:", body)
    with pytest.raises(SignatureBaseError, match="Dictionary"):
        verify_content_digest("sha-256=(", body)


_NAME = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
_KEY = st.from_regex(r"[a-z*][a-z0-9_.*-]{0,6}", fullmatch=True)
_BARE = st.one_of(
    st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1),
    _NAME,
    st.booleans(),
    st.binary(max_size=8),
    st.from_regex(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+.^_`|~-]{0,6}", fullmatch=True).map(http_sf.Token),
)


@given(
    items=st.lists(st.tuples(_NAME, st.dictionaries(_KEY, _BARE, max_size=2)), max_size=6),
    params=st.dictionaries(_KEY, _BARE, max_size=6),
)
def test_fast_inner_list_serialization_equals_http_sf(
    items: list[tuple[str, dict[str, Any]]], params: dict[str, Any]
) -> None:
    inner_list: Any = (items, params)
    assert serialize_inner_list(items, params) == ser_innerlist(inner_list)


DERIVED = ["@method", "@authority", "@path", "@query", "@scheme", "@request-target", "@target-uri"]
TEXT = st.text(alphabet=st.sampled_from("aZ09:/?&=%[]._-~ \n\r{}é"), max_size=16)


@given(
    names=st.lists(st.sampled_from([*DERIVED, "content-type", "x-a"]), min_size=1, max_size=5, unique=True),
    method=st.sampled_from(["GET", "POST", "m\nx"]),
    scheme=st.sampled_from(["http", "https", "HTTPS"]),
    host=st.one_of(TEXT, st.sampled_from(["Example.com:443", "example.com:080", "[::1]:80", "h:8080", "a:b:80"])),
    target=TEXT,
    header=st.one_of(st.none(), TEXT),
    params=st.dictionaries(st.sampled_from(["created", "keyid", "alg"]), st.one_of(st.integers(), TEXT)),
)
def test_request_base_agrees_with_the_general_base(
    names: list[str],
    method: str,
    scheme: str,
    host: str,
    target: str,
    header: str | None,
    params: dict[str, Any],
) -> None:
    """Coverage.request_base (a template for the common derived components) builds what base() builds."""
    params = {k: v for k, v in params.items() if "\n" not in str(v) and "\r" not in str(v) and str(v).isascii()}
    headers = CIMultiDictProxy(CIMultiDict({} if header is None else {"Content-Type": header}))
    coverage = Coverage([(name, {}) for name in names])

    def outcome(build: Any) -> Any:
        try:
            return build()
        except SignatureBaseError as exc:
            return str(exc)

    fast = outcome(lambda: coverage.request_base(method, scheme, host, target, headers, serialize_parameters(params)))
    general = outcome(lambda: coverage.base(MessageParts(method, scheme, host, target, headers), params))
    assert fast == general
