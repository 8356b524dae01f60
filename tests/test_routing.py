"""Route table: segment-aware longest prefix, then method."""

from __future__ import annotations

import pytest

from gateway.errors import MethodNotAllowed, RouteNotFound
from gateway.routing import RouteTable, without_query_parameter
from gateway.settings import parse_settings


def table(*routes: dict[str, object]) -> RouteTable:
    raw = [{"upstream": "http://u:1", **r} for r in routes]
    return RouteTable.from_settings(parse_settings({"routes": raw}, {}).routes)


ROUTES = table(
    {"name": "root", "prefix": "/"},
    {"name": "v1", "prefix": "/v1"},
    {"name": "user", "prefix": "/v1/user"},
    {"name": "user-admin", "prefix": "/v1/user/admin", "methods": ["GET"]},
)


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", "/v1/user", "user"),
        ("GET", "/v1/user/", "user"),
        ("GET", "/v1/user/42", "user"),
        ("GET", "/v1/username", "v1"),
        ("GET", "/v1", "v1"),
        ("GET", "/v10", "root"),
        ("GET", "/", "root"),
        ("GET", "/v1/user/admin/x", "user-admin"),
        ("POST", "/v1/user/admin/x", "user"),  # method excluded by the longer prefix: the next one serves
    ],
)
def test_longest_segment_prefix_wins(method: str, path: str, route: str) -> None:
    assert ROUTES.match(method, path).name == route


def test_no_match_is_404_and_method_mismatch_is_405() -> None:
    routes = table({"name": "user", "prefix": "/v1/user", "methods": ["GET", "HEAD"]})
    with pytest.raises(RouteNotFound):
        routes.match("GET", "/v1/username")
    with pytest.raises(MethodNotAllowed) as caught:
        routes.match("POST", "/v1/user/1")
    assert caught.value.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("route", "path", "query", "url"),
    [
        ({"prefix": "/v1/sdk", "strip_prefix": True}, "/v1/sdk/a", "", "http://u:1/a"),
        ({"prefix": "/v1/sdk", "strip_prefix": True}, "/v1/sdk", "x=1", "http://u:1/?x=1"),
        ({"prefix": "/v1/sdk"}, "/v1/sdk/a%2Fb", "q=%20", "http://u:1/v1/sdk/a%2Fb?q=%20"),
        (
            {"prefix": "/v1/sdk", "upstream": "https://api.internal/base/"},
            "/v1/sdk/a",
            "",
            "https://api.internal:443/base/v1/sdk/a",
        ),
        ({"prefix": "/", "strip_prefix": True}, "/x", "", "http://u:1/x"),
    ],
)
def test_upstream_url(route: dict[str, object], path: str, query: str, url: str) -> None:
    built = table({"name": "r", **route}).match("GET", path)
    assert built.upstream_url(path, query) == url


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=1&api_key=x&b=2", "a=1&b=2"),
        ("api_key=x", ""),
        ("api%5Fkey=x&a=%2F", "a=%2F"),  # the name is compared percent-decoded, the rest kept as sent
        ("api_key&a", "a"),  # a parameter without a value
        ("api_key=1&api_key=2", ""),
        ("api_keys=1&xapi_key=2", "api_keys=1&xapi_key=2"),
        ("a=1", "a=1"),
    ],
)
def test_without_query_parameter(query: str, expected: str) -> None:
    assert without_query_parameter(query, "api_key") == expected
