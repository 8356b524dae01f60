"""``/admin/v1/audit``: read the audit trail."""

from __future__ import annotations

from gateway.admin.api.schema import INTEGER, SINCE, STRING, TIME, Call, Operation, Param, Reply, choice, ref
from gateway.admin.views import audit_view
from gateway.credentials.audit import AuditResult

MAX_LIMIT = 1000
EVENT_LIST = {
    "type": "object",
    "properties": {"events": {"type": "array", "items": ref("AuditEvent")}},
    "required": ["events"],
}


async def list_events(call: Call) -> Reply:
    query = call.query
    limit = query["limit"]
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: 1 to {MAX_LIMIT}, got {limit}")
    events = await call.admin.query_audit(
        since=query["since"],
        until=query["until"],
        principal=query["principal"],
        result=None if query["result"] is None else AuditResult(query["result"]),
        limit=limit,
        newest_first=query["order"] == "newest",
    )
    return Reply(200, {"events": [audit_view(event) for event in events]})


OPERATIONS = (
    Operation(
        "GET",
        "/audit",
        "listAuditEvents",
        "Audit events: authentication decisions and admin actions",
        "audit",
        list_events,
        EVENT_LIST,
        query=(
            Param("since", SINCE, "events at or after: a duration ago (1h) or an RFC 3339 time"),
            Param("until", TIME, "events before this RFC 3339 time"),
            Param("principal", STRING, "only this principal (service:<id>, client:<id>, admin:<name>, ...)"),
            Param("result", choice(*(result.value for result in AuditResult)), "only this result"),
            Param("limit", INTEGER, f"at most this many events (1-{MAX_LIMIT})", default=100),
            Param("order", choice("newest", "oldest"), "newest first (default) or oldest first", default="newest"),
        ),
    ),
)
