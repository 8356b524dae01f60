"""Reading the audit trail through the admin API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.runtime import Runtime
from tests.admin.conftest import AdminApi


async def test_filters_by_time_principal_and_result(api: AdminApi, runtime: Runtime) -> None:
    now = datetime.now(UTC)
    runtime.audit.record(
        AuditEvent(
            time=now - timedelta(hours=3), result=AuditResult.DENY, reason="token.revoked", principal="service:a"
        )
    )
    runtime.audit.record(AuditEvent(time=now - timedelta(minutes=5), result=AuditResult.ALLOW, principal="service:a"))
    runtime.audit.record(AuditEvent(time=now - timedelta(minutes=4), result=AuditResult.DENY, principal="service:b"))
    await runtime.audit.flush()
    status, body = await api.call("listAuditEvents", params={"principal": "service:a"})
    assert [e["result"] for e in body["events"]] == ["allow", "deny"]  # newest first
    status, body = await api.call("listAuditEvents", params={"since": "1h", "result": "deny"})
    assert [e["principal"] for e in body["events"]] == ["service:b"]
    status, body = await api.call(
        "listAuditEvents", params={"since": (now - timedelta(hours=4)).isoformat(), "order": "oldest", "limit": "1"}
    )
    assert [e["reason"] for e in body["events"]] == ["token.revoked"]


async def test_admin_actions_are_in_the_trail(api: AdminApi) -> None:
    await api.call("createToken", json={"name": "ci", "owner": "builds"})
    status, body = await api.call("listAuditEvents", params={"principal": "admin:ops", "result": "admin"})
    [event] = body["events"]
    assert (event["action"], event["target"], event["admin"]) == ("tokens.create", "ci", "ops")


async def test_bad_audit_queries(api: AdminApi) -> None:
    for params, detail in (
        ({"limit": "0"}, "limit: 1 to 1000, got 0"),
        ({"limit": "x"}, "limit: expected an integer, got 'x'"),
        ({"since": "yesterday"}, "since: not a duration (1h, 30m, 7d) or a time"),
        ({"result": "maybe"}, "result: expected one of allow, deny, would_deny, admin"),
        ({"until": "soon"}, "until: not a time"),
    ):
        status, problem = await api.call("listAuditEvents", params=params)
        assert status == 400, params
        assert problem["detail"].startswith(detail), problem
