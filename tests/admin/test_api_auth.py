"""Admin API authentication: Bearer admin tokens, read-only tokens, open health routes, no leaks."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from gateway.admin.tokens import RELOAD_CHECK_INTERVAL
from gateway.app import GATEWAY, create_admin_app, create_app
from gateway.credentials.audit import AuditResult
from gateway.runtime import Runtime
from gateway.settings import parse_settings
from gateway.store import AuditQuery
from tests.admin.conftest import OPS, OPS_TOKEN, READER, READER_TOKEN, AdminApi, Client, RuntimeFactory, admin_app_for

WRONG = "gwa_wrong-" + "w" * 40


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (None, "missing Authorization: Bearer <admin token>"),
        ({"Authorization": f"Bearer {WRONG}"}, "invalid admin token"),
        ({"Authorization": f"Basic {OPS_TOKEN}"}, "expected Authorization: Bearer <admin token>"),
        ({"Authorization": "Bearer "}, "expected Authorization: Bearer <admin token>"),
        ({"Authorization": f"Bearer {OPS_TOKEN}x"}, "invalid admin token"),
    ],
    ids=["missing", "wrong", "basic", "empty", "longer"],
)
async def test_missing_or_wrong_token_is_401(api: AdminApi, headers: dict[str, str] | None, detail: str) -> None:
    status, body = await api.call("listTokens", headers=headers)
    assert status == 401
    assert body["code"] == "admin.unauthorized"
    assert body["detail"] == detail
    response = await api.client.get("/admin/v1/tokens", headers=headers)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="gateway-admin"'
    assert OPS_TOKEN not in await response.text()


async def test_failed_attempts_are_audited_and_logged_without_the_token(
    api: AdminApi, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await api.call("createToken", headers={"Authorization": f"Bearer {WRONG}"}, json={"name": "x", "owner": "y"})
    await runtime.audit.flush()
    [event] = await runtime.store.query_audit(AuditQuery(result=AuditResult.DENY))
    assert event.reason == "admin.invalid_token"
    assert event.method == "POST" and event.detail == "/admin/v1/tokens" and event.client_ip == "127.0.0.1"
    assert WRONG not in repr(event)
    assert "admin authentication failed" in caplog.text
    assert WRONG not in caplog.text


async def test_read_only_token_reads_but_cannot_change(api: AdminApi, runtime: Runtime) -> None:
    status, body = await api.call("listTokens", headers=READER)
    assert (status, body) == (200, {"tokens": []})
    status, body = await api.call("createToken", headers=READER, json={"name": "ci", "owner": "ci"})
    assert status == 403
    assert body["code"] == "admin.forbidden"
    assert "'reader' is read-only" in body["detail"]
    status, _ = await api.call("getToken", ref="ci")
    assert status == 404  # nothing was created
    await runtime.audit.flush()
    [refusal] = await runtime.store.query_audit(AuditQuery(result=AuditResult.DENY))
    assert (refusal.reason, refusal.admin, refusal.principal) == ("admin.forbidden", "reader", "admin:reader")


async def test_no_tokens_file_disables_the_admin_api(
    make_runtime: RuntimeFactory, aiohttp_client: AiohttpClient
) -> None:
    runtime = await make_runtime(tokens=False)
    client = await aiohttp_client(admin_app_for(runtime))
    status, body = await AdminApi(client).call("listTokens")
    assert status == 401
    assert "no admin tokens are configured (admin.tokens_file)" in body["detail"]


async def test_health_metrics_and_openapi_stay_open(admin_client: Client) -> None:
    for path in ("/healthz", "/metrics", "/admin/v1/openapi.json"):
        response = await admin_client.get(path)
        assert response.status == 200, path
    ready = await admin_client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"]["store"] == "ok"
    metrics = await (await admin_client.get("/metrics")).text()
    # The audit writer's counters are on the gateway's registry, next to the data plane's.
    assert "gateway_audit_events_buffered" in metrics and "gateway_requests_in_flight" in metrics


async def test_readyz_reports_a_store_that_went_away(runtime: Runtime, admin_client: Client) -> None:
    await runtime.store.close()
    ready = await admin_client.get("/readyz")
    assert ready.status == 503
    assert "not open" in (await ready.json())["checks"]["store"]


async def test_unknown_paths_need_auth_first_then_404_or_405(api: AdminApi) -> None:
    anonymous = await api.client.get("/admin/v1/nothing-here")
    assert anonymous.status == 401
    missing = await api.client.get("/admin/v1/nothing-here", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert missing.status == 404
    assert (await missing.json())["code"] == "admin.not_found"
    wrong_method = await api.client.delete("/admin/v1/tokens/ci", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert wrong_method.status == 405
    assert wrong_method.headers["Allow"] == "GET"
    assert (await wrong_method.json())["code"] == "admin.method_not_allowed"


async def test_a_path_with_a_line_feed_is_an_unknown_path_not_a_500(api: AdminApi) -> None:
    # %0A decodes to a line feed, which a "." in a route pattern does not match (found by schemathesis).
    anonymous = await api.client.get("/admin/v1/clients/a%0Ab")
    assert anonymous.status == 401
    missing = await api.client.post("/admin/v1/x%0Ay/retire", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert missing.status == 404
    assert (await missing.json())["detail"] == "no admin endpoint /admin/v1/x\ny/retire"


async def test_admin_tokens_are_compared_whatever_their_position(api: AdminApi) -> None:
    # Both configured tokens work; the second line is a plain token hashed on load.
    assert (await api.call("listTokens"))[0] == 200
    assert (await api.call("listTokens", headers={"Authorization": f"Bearer {READER_TOKEN}"}))[0] == 200


async def test_a_secret_created_through_the_api_never_reaches_the_logs(
    api: AdminApi, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, body = await api.call("createToken", json={"name": "ci", "owner": "ci"})
    assert status == 201
    token = body["token"]
    status, listed = await api.call("listTokens")
    assert token not in str(listed)
    await asyncio.sleep(0)
    await runtime.audit.flush()
    events = await runtime.store.query_audit(AuditQuery())
    assert events and all(token not in repr(event) for event in events)
    assert token not in caplog.text


def test_admin_app_without_runtime_has_no_admin_api() -> None:
    app = create_admin_app(create_app(parse_settings({"store": "memory://"}, environ={}))[GATEWAY])
    paths = {resource.canonical for resource in app.router.resources()}
    assert paths == {"/metrics", "/healthz", "/readyz"}


async def test_the_tokens_file_is_read_again_when_it_changes(
    api: AdminApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens_file = tmp_path / "admin-tokens"  # the one admin_settings wrote: ops and reader
    rotated = "gwa_rotated-" + "n" * 40
    assert (await api.call("listTokens", headers=OPS))[0] == 200
    # ops removed (a leaked token revoked), a new one added: no restart.
    tokens_file.write_text(f"rotated:sha256:{hashlib.sha256(rotated.encode()).hexdigest()}\n")
    await asyncio.sleep(RELOAD_CHECK_INTERVAL + 0.2)
    assert (await api.call("listTokens", headers=OPS))[0] == 401
    assert (await api.call("listTokens", headers={"Authorization": f"Bearer {rotated}"}))[0] == 200
    # A broken edit is refused, loudly, and the tokens in force stay.
    caplog.set_level(logging.INFO)
    tokens_file.write_text("rotated:too-short\n")
    await asyncio.sleep(RELOAD_CHECK_INTERVAL + 0.2)
    assert (await api.call("listTokens", headers={"Authorization": f"Bearer {rotated}"}))[0] == 200
    [refused] = [r for r in caplog.records if r.getMessage().startswith("admin tokens file changed but was not")]
    assert "line 1: a plain admin token is at least 32 characters" in refused.error  # type: ignore[attr-defined]
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert rotated not in logged and "too-short" not in logged
