"""The OpenAPI 3.1 document of the admin API, generated from the operation declarations.

Paths, methods, parameters, request bodies and response schemas all come from the
same :class:`~gateway.admin.api.schema.Operation` objects the router serves, so the
document lists exactly the registered routes (a test compares the two and validates
the document with ``openapi-spec-validator``).
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from gateway import __version__
from gateway.admin.api.schema import DEFAULT_ERRORS, JSON, Operation, ref
from gateway.admin.views import SCHEMAS

PROBLEM_CONTENT = {"application/problem+json": {"schema": ref("Problem")}}

TAGS = (
    ("tokens", "Service tokens (sk_...) for CI systems and tools"),
    ("keys", "Service signing keys for HMAC / HTTP Message Signatures"),
    ("clients", "API clients and their API keys (ak_...)"),
    ("audit", "The audit trail"),
    ("auth-cache", "The identity service's cached token decisions (purge on revocation)"),
    ("meta", "This document"),
)


def _parameters(operation: Operation) -> list[JSON]:
    parameters: list[JSON] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": operation.path_params.get(name, name),
            "schema": {"type": "string"},
        }
        for name in operation.path_names
    ]
    parameters.extend(
        {
            "name": param.name,
            "in": "query",
            "required": False,
            "description": param.description,
            "schema": param.schema(),
        }
        for param in operation.query
    )
    return parameters


def _responses(operation: Operation) -> JSON:
    responses: JSON = {
        str(operation.status): {
            "description": HTTPStatus(operation.status).phrase,
            "content": {"application/json": {"schema": operation.response}},
        }
    }
    errors = set(operation.errors) | {500}
    if not operation.public:
        errors |= {401, 503} | ({403} if operation.mutating else set())
    if operation.body is not None:
        errors |= set(DEFAULT_ERRORS)
    if operation.query or operation.path_names or operation.body is not None:
        errors.add(400)
    for status in sorted(errors):
        responses[str(status)] = {"description": HTTPStatus(status).phrase, "content": PROBLEM_CONTENT}
    return responses


def operation_object(operation: Operation) -> JSON:
    entry: JSON = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "responses": _responses(operation),
    }
    if operation.description:
        entry["description"] = operation.description
    parameters = _parameters(operation)
    if parameters:
        entry["parameters"] = parameters
    if operation.body is not None:
        entry["requestBody"] = {
            "required": operation.body.required,
            "content": {"application/json": {"schema": operation.body.schema()}},
        }
    if operation.public:
        entry["security"] = []
    return entry


def openapi_document(operations: Iterable[Operation], *, prefix: str) -> JSON:
    """The whole document; ``prefix`` is where the admin API is mounted (``/admin/v1``)."""
    paths: dict[str, JSON] = {}
    for operation in operations:
        paths.setdefault(prefix + operation.path, {})[operation.method.lower()] = operation_object(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gateway admin API",
            "version": __version__,
            "description": (
                "Manage the credentials the gateway accepts and read its audit trail. Authenticate with an "
                "admin token: `Authorization: Bearer <token>` (admin.tokens_file). Errors are RFC 9457 "
                "problem documents with a stable `code`. Secrets (tokens, API keys, generated HMAC secrets) "
                "appear only in the answer that creates them."
            ),
        },
        "tags": [{"name": name, "description": description} for name, description in TAGS],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"adminToken": []}],
    }
