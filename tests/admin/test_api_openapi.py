"""The OpenAPI document matches the routes the admin listener serves, and validates as OpenAPI 3.1."""

from __future__ import annotations

from openapi_spec_validator import validate

from gateway.admin.api import OPERATIONS, PREFIX, create_admin_api
from gateway.runtime import Runtime
from tests.admin.conftest import Client


async def test_document_validates_and_lists_every_route(admin_client: Client, runtime: Runtime) -> None:
    response = await admin_client.get("/admin/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    validate(document)  # openapi-spec-validator: raises on an invalid OpenAPI 3.1 document
    assert document["openapi"] == "3.1.0"
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}

    # The routes the real application serves, read back from aiohttp's router.
    api = create_admin_api(runtime)
    served = {
        (PREFIX + route.resource.canonical, route.method)
        for route in api.router.routes()
        if route.resource is not None and route.method != "*" and route.method != "HEAD"
    }
    assert documented == served
    assert len(served) == len(OPERATIONS) == 23


async def test_every_operation_documents_its_parameters_and_errors(admin_client: Client) -> None:
    document = await (await admin_client.get("/admin/v1/openapi.json")).json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}, (path, method)
            if operation.get("security") != []:  # everything but this document needs an admin token
                assert "401" in operation["responses"], (path, method)
            if method != "get":
                assert "403" in operation["responses"], (path, method)  # read-only admin tokens
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= set(operation["responses"]), (path, method)
    assert document["paths"]["/admin/v1/openapi.json"]["get"]["security"] == []


def test_operation_ids_are_unique() -> None:
    ids = [operation.operation_id for operation in OPERATIONS]
    assert len(ids) == len(set(ids))
