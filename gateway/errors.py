"""One error tree, rendered as RFC 9457 ``application/problem+json`` in one place.

::

    GatewayError                      status, code (stable, machine-readable)
    ├── BadRequest                    400 request.malformed, request.bad_path, ...
    ├── RouteNotFound                 404 route.not_found
    ├── MethodNotAllowed              405 route.method_not_allowed
    ├── PayloadTooLarge               413 request.body_too_large
    ├── UpstreamUnavailable           502 upstream.unavailable
    ├── UpstreamTimeout               504 upstream.timeout, upstream.connect_timeout
    └── ServiceUnavailable            503 (with Retry-After)

Later layers (authentication, the auth backend, the admin API) extend the tree.
The code is what metrics, logs and clients key on; the detail is for humans and
never says more than a client should know.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import ClassVar

from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"


class GatewayError(Exception):
    """Base of every error the gateway answers with a problem document."""

    status: ClassVar[int] = 500
    code: str = "internal"

    def __init__(self, detail: str = "", *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.code)
        self.detail = detail
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(GatewayError):
    status = 400
    code = "request.malformed"


class RouteNotFound(GatewayError):
    status = 404
    code = "route.not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "route.method_not_allowed"


class RequestBodyTimeout(GatewayError):
    status = 408
    code = "request.body_timeout"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "request.body_too_large"


class UpstreamUnavailable(GatewayError):
    status = 502
    code = "upstream.unavailable"


class ServiceUnavailable(GatewayError):
    status = 503
    code = "service.unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    code = "upstream.timeout"


def problem_response(
    status: int,
    code: str,
    detail: str,
    request_id: str | None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Render an RFC 9457 problem document."""
    body: dict[str, object] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if request_id:
        body["request_id"] = request_id
    response = web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )
    if request_id:
        response.headers["X-Request-Id"] = request_id
    return response


def render(error: GatewayError, request_id: str | None) -> web.Response:
    return problem_response(error.status, error.code, error.detail, request_id, error.headers)
