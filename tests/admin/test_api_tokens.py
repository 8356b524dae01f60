"""Service tokens through the admin API: lifecycle, usage, bad input, audit."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway.credentials import TokenFormat, hash_token, parse_token
from gateway.runtime import Runtime
from gateway.store import AuditQuery
from tests.admin.conftest import OPS, AdminApi


async def create(
    api: AdminApi, name: str = "ci", owner: str = "builds", **extra: object
) -> tuple[str, dict[str, object]]:
    status, body = await api.call("createToken", json={"name": name, "owner": owner, **extra})
    assert status == 201, body
    return body["token"], body["record"]


async def test_create_list_show_revoke(api: AdminApi, runtime: Runtime) -> None:
    token, record = await create(api, scopes=["deploy:write"], allowed_ips=["10.0.0.0/8"], expires_in="30d")
    parsed = parse_token(token)  # a well-formed sk_ token with a valid checksum
    assert parsed.format is TokenFormat.CHECKSUMMED
    assert record["id"] == parsed.hash[:16]
    assert record["state"] == "active" and record["scopes"] == ["deploy:write"]
    assert record["allowed_ips"] == ["10.0.0.0/8"]

    status, listed = await api.call("listTokens")
    assert [t["name"] for t in listed["tokens"]] == ["ci"]
    assert token not in str(listed)
    for ref in ("ci", record["id"], parsed.hash):
        status, shown = await api.call("getToken", ref=str(ref))
        assert status == 200 and shown["name"] == "ci"

    status, revoked = await api.call("revokeToken", ref="ci", json={"reason": "leaked in a log"})
    assert status == 200
    assert revoked["state"] == "revoked" and revoked["revoked_reason"] == "leaked in a log"
    stored = await runtime.store.get_token(parsed.hash)
    assert stored is not None and stored.revoked
    assert (await api.call("listTokens"))[1] == {"tokens": []}  # active only by default
    status, everything = await api.call("listTokens", params={"all": "true"})
    assert [t["state"] for t in everything["tokens"]] == ["revoked"]


async def test_usage_recorded_by_the_data_plane_is_visible(api: AdminApi, runtime: Runtime) -> None:
    token, record = await create(api)
    used_at = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    runtime.usage.token_used(hash_token(token), used_at)
    runtime.usage.token_used(hash_token(token), used_at - timedelta(minutes=1))
    await runtime.usage.flush()
    status, shown = await api.call("getToken", ref="ci")
    assert shown["usage_count"] == 2
    assert shown["last_used"] == "2030-05-01T12:00:00Z"


async def test_rotate_keeps_the_old_token_for_the_grace_period(api: AdminApi, runtime: Runtime) -> None:
    old_token, old = await create(api, expires_in="90d")
    status, body = await api.call("rotateToken", ref="ci", json={"grace": "1h"})
    assert status == 201
    assert body["token"] != old_token and parse_token(body["token"]).hash != hash_token(old_token)
    assert body["previous"]["state"] == "rotated"
    assert body["previous"]["replaced_by"] == body["record"]["id"]
    assert body["record"]["rotated_from"] == old["id"]
    previous_expiry = datetime.fromisoformat(body["previous"]["expires"])
    assert timedelta(minutes=59) < previous_expiry - datetime.now(UTC) <= timedelta(hours=1)
    new_expiry = datetime.fromisoformat(body["record"]["expires"])
    assert timedelta(days=89) < new_expiry - datetime.now(UTC) <= timedelta(days=90)  # same lifetime
    status, shown = await api.call("getToken", ref="ci")
    assert shown["id"] == body["record"]["id"]  # the name now means the new token
    status, again = await api.call("rotateToken", ref=str(old["id"]), json={})
    assert status == 409 and again["code"] == "admin.conflict"


async def test_emergency_revoke_needs_confirmation_and_is_audited(api: AdminApi, runtime: Runtime) -> None:
    await create(api, "a", owner="team-a")
    await create(api, "b", owner="team-a")
    await create(api, "c", owner="team-b")
    status, body = await api.call("emergencyRevokeTokens", json={"reason": "breach", "owner": "team-a"})
    assert status == 400 and body["detail"] == "confirm: required"
    status, body = await api.call(
        "emergencyRevokeTokens", json={"reason": "breach", "owner": "team-a", "confirm": False}
    )
    assert status == 400 and "must be true" in body["detail"]
    status, body = await api.call("emergencyRevokeTokens", json={"reason": "breach", "confirm": True})
    assert status == 400 and body["detail"] == 'give either "owner" or "all": true'
    assert len((await api.call("listTokens"))[1]["tokens"]) == 3  # nothing changed

    status, body = await api.call(
        "emergencyRevokeTokens", json={"reason": "breach", "owner": "team-a", "confirm": True}
    )
    assert (status, body) == (200, {"count": 2})
    assert [t["name"] for t in (await api.call("listTokens"))[1]["tokens"]] == ["c"]
    status, body = await api.call("emergencyRevokeTokens", json={"reason": "breach", "all": True, "confirm": True})
    assert body == {"count": 1}
    events = await runtime.store.query_audit(AuditQuery(principal="admin:ops"))
    emergency = [e for e in events if e.action == "tokens.emergency_revoke"]
    assert [e.target for e in emergency] == ["*", "team-a"]  # newest first
    assert emergency[1].detail == "2 tokens revoked: breach" and emergency[1].admin == "ops"


async def test_cleanup_and_expiring(api: AdminApi, runtime: Runtime) -> None:
    await create(api, "soon", expires_in="2d")
    await create(api, "later", expires_in="60d")
    await create(api, "gone")
    await api.call("revokeToken", ref="gone", json={"reason": "unused"})
    status, body = await api.call("listTokens", params={"expiring_within": "7d"})
    assert [t["name"] for t in body["tokens"]] == ["soon"]
    status, body = await api.call("cleanupTokens", json={"older_than": "1d"})
    assert body == {"count": 0}  # revoked just now: kept for a day
    status, body = await api.call("cleanupTokens", json={"older_than": "1ms"})
    assert body == {"count": 1}
    assert len(await runtime.store.list_tokens()) == 2


async def test_durations_too_long_for_a_date_are_400(api: AdminApi) -> None:
    # Found by schemathesis: each overflowed datetime arithmetic into a 500.
    await create(api)
    for operation, extra in (
        ("cleanupTokens", {"json": {"older_than": "6414494533954d"}}),
        ("rotateToken", {"ref": "ci", "json": {"grace": "36501d"}}),
        ("rotateToken", {"ref": "ci", "json": {"grace": "99999999999999999999d"}}),
        ("listTokens", {"params": {"expiring_within": "99999999999999999999d"}}),
    ):
        status, problem = await api.call(operation, **extra)
        assert status == 400, (operation, problem)


async def test_a_token_expiring_in_the_year_9999_rotates_keeping_its_expiry(api: AdminApi) -> None:
    await create(api, expires="9999-12-31T00:00:00Z")
    status, body = await api.call("rotateToken", ref="ci", json={"grace": "0s"})
    assert status == 201, body
    assert body["record"]["expires"].startswith("9999-12-31T00:00:00")


async def test_import_legacy_hashes_all_or_nothing(api: AdminApi, runtime: Runtime) -> None:
    legacy = ["sk_" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(3)]
    items = [{"name": f"legacy-{i}", "owner": "old", "token_hash": hash_token(t)} for i, t in enumerate(legacy)]
    bad = [*items[:2], {"name": "legacy-x", "owner": "old", "token_hash": "sk_" + "0" * 64}]
    status, body = await api.call("importTokens", json={"tokens": bad})
    assert status == 400
    assert body["detail"].startswith("tokens[2].token_hash: expected the SHA-256")
    assert "0" * 64 not in body["detail"]
    assert await runtime.store.list_tokens() == []  # nothing imported
    duplicate = [*items, {**items[0], "name": "other"}]
    status, body = await api.call("importTokens", json={"tokens": duplicate})
    assert status == 400 and body["detail"] == "tokens[3]: the same token as tokens[0]"
    status, body = await api.call("importTokens", json={"tokens": items})
    assert (status, body) == (201, {"count": 3})
    stored = await runtime.store.get_token(hash_token(legacy[1]))
    assert stored is not None and stored.name == "legacy-1" and stored.format is TokenFormat.LEGACY_HEX


BAD_CREATE = [
    ({"name": 5, "owner": "x"}, "name: expected a string, got number"),
    ({"owner": "x"}, "name: required"),
    ({"name": "ci", "owner": "x", "scopes": "read"}, "scopes: expected an array of strings, got string"),
    ({"name": "ci", "owner": "x", "scopes": ["ok", 7]}, "scopes[1]: expected a string, got number"),
    ({"name": "ci", "owner": "x", "scopes": ["read orders"]}, "scopes: not a scope"),
    ({"name": "ci", "owner": "x", "allowed_ips": ["10.0.0.1/8"]}, "allowed_ips: not a CIDR: '10.0.0.1/8'"),
    ({"name": "ci", "owner": "x", "expires": "2001-01-01T00:00:00Z"}, "expiry is in the past"),
    ({"name": "ci", "owner": "x", "expires": "tomorrow"}, "expires: not a time"),
    ({"name": "ci", "owner": "x", "expires_in": 30}, "expires_in: expected a duration string"),
    ({"name": "ci", "owner": "x", "expires_in": "9" * 30 + "d"}, "expires_in: too long (at most 36500d"),
    ({"name": "ci", "owner": "x", "expires_in": "30d", "expires": "2099-01-01"}, "not both"),
    ({"name": "ci", "owner": "x", "colour": "red"}, "colour: unknown field"),
    ({"name": "bad name", "owner": "x"}, "name: a name is 1-128 characters"),
    ([1, 2], "body: expected a JSON object, got array"),
]


@pytest.mark.parametrize(("body", "detail"), BAD_CREATE, ids=[str(i) for i in range(len(BAD_CREATE))])
async def test_bad_input_is_400_naming_the_field_and_changes_nothing(
    api: AdminApi, runtime: Runtime, body: object, detail: str
) -> None:
    status, problem = await api.call("createToken", json=body)
    assert status == 400, problem
    assert problem["code"] == "admin.bad_request"
    assert detail in problem["detail"]
    assert await runtime.store.list_tokens() == []


async def test_duplicate_name_is_409(api: AdminApi) -> None:
    await create(api)
    status, problem = await api.call("createToken", json={"name": "ci", "owner": "other"})
    assert status == 409 and problem["code"] == "admin.conflict"
    assert "'ci' already exists" in problem["detail"]


async def test_unknown_token_is_404(api: AdminApi) -> None:
    for operation, extra in (("getToken", {}), ("revokeToken", {"json": {"reason": "x"}}), ("rotateToken", {})):
        status, problem = await api.call(operation, ref="nope", **extra)  # type: ignore[arg-type]
        assert status == 404 and problem["code"] == "admin.not_found", operation


async def test_body_limits_and_media_type(api: AdminApi, runtime: Runtime) -> None:
    client = api.client
    huge = b'{"name": "ci", "owner": "x", "scopes": ["' + b"a" * 70_000 + b'"]}'
    response = await client.post("/admin/v1/tokens", data=huge, headers={**OPS, "Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["code"] == "admin.payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 8192

    response = await client.post("/admin/v1/tokens", data=chunks(), headers={**OPS, "Content-Type": "application/json"})
    assert response.status == 413  # no Content-Length: counted while reading

    response = await client.post("/admin/v1/tokens", data=b"name=ci", headers={**OPS, "Content-Type": "text/plain"})
    assert response.status == 415
    assert (await response.json())["code"] == "admin.unsupported_media_type"

    response = await client.post(
        "/admin/v1/tokens", data=b'{"name": ', headers={**OPS, "Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["detail"] == "the body is not valid JSON (line 1, column 10)"
    assert await runtime.store.list_tokens() == []


async def test_bad_query_parameters(api: AdminApi) -> None:
    status, problem = await api.call("listTokens", params={"all": "maybe"})
    assert status == 400 and problem["detail"] == "all: expected true or false, got 'maybe'"
    status, problem = await api.call("listTokens", params={"colour": "red"})
    assert status == 400 and problem["detail"].startswith("colour: unknown query parameter")


async def test_every_change_is_audited_with_the_admin_identity(api: AdminApi, runtime: Runtime) -> None:
    await create(api)
    await api.call("rotateToken", ref="ci", json={"grace": "0s"})
    await api.call("revokeToken", ref="ci", json={"reason": "done"})
    events = await runtime.store.query_audit(AuditQuery(principal="admin:ops", newest_first=False))
    assert [e.action for e in events] == ["tokens.create", "tokens.rotate", "tokens.revoke"]
    assert all(e.admin == "ops" and e.target == "ci" and e.result.value == "admin" for e in events)
