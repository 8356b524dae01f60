"""``gateway tokens ...``: create -> list/show -> usage -> rotate -> revoke, emergency revoke, import, bad input."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.credentials import TokenFormat, hash_token, parse_token
from gateway.credentials.audit import AuditResult
from gateway.store import AuditQuery, Store
from tests.commands.conftest import Gateway, one_line


def create(gateway: Gateway, name: str = "ci", owner: str = "builds", *extra: str) -> str:
    result = gateway("tokens", "create", "--name", name, "--owner", owner, *extra)
    assert result.code == 0, result.err
    token = result.out.strip()
    parse_token(token)  # stdout is exactly the token (TOKEN=$(gateway tokens create ...))
    assert "shown once" in result.err
    return token


def test_round_trip_create_list_show_usage_revoke(gateway: Gateway) -> None:
    token = create(
        gateway, "ci", "builds", "--scope", "deploy:write", "--allow-ip", "10.0.0.0/8", "--expires-in", "30d"
    )
    listed = gateway("tokens", "list", "--json")
    [record] = json.loads(listed.out)["tokens"]
    assert (record["name"], record["owner"], record["state"]) == ("ci", "builds", "active")
    assert record["scopes"] == ["deploy:write"] and record["allowed_ips"] == ["10.0.0.0/8"]
    assert token not in listed.out
    assert "ci" in gateway("tokens", "list").out

    # The data plane records usage in batches (UsageRecorder -> record_usage): visible here.
    used = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    async def use(store: Store) -> None:
        await store.record_usage({hash_token(token): (3, used)})

    gateway.inspect(use)
    shown = json.loads(gateway("tokens", "show", "ci", "--json").out)
    assert (shown["usage_count"], shown["last_used"]) == (3, "2030-01-02T03:04:05Z")
    assert re.search(r"^usage_count +3$", gateway("tokens", "show", record["id"]).out, re.MULTILINE)
    usage = json.loads(gateway("tokens", "usage", "--json").out)["usage"]
    assert usage == [
        {"name": "ci", "id": record["id"], "owner": "builds", "usage_count": 3, "last_used": "2030-01-02T03:04:05Z"}
    ]
    assert "2030-01-02T03:04:05Z" in gateway("tokens", "usage", "ci").out

    revoked = gateway("tokens", "revoke", "ci", "--reason", "rotated out of CI")
    assert revoked.code == 0 and "revoked ci" in revoked.out
    stored = gateway.inspect(lambda store: store.get_token(hash_token(token)))
    assert stored is not None and stored.revoked and stored.revoked_reason == "rotated out of CI"
    assert json.loads(gateway("tokens", "show", record["id"], "--json").out)["state"] == "revoked"
    assert json.loads(gateway("tokens", "list", "--json").out)["tokens"] == []
    assert [t["state"] for t in json.loads(gateway("tokens", "list", "--all", "--json").out)["tokens"]] == ["revoked"]


def test_rotate_prints_the_new_token_and_keeps_the_old_one_for_the_grace(gateway: Gateway) -> None:
    old = create(gateway)
    result = gateway("tokens", "rotate", "ci", "--grace", "2h", "--json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert body["token"] != old and parse_token(body["token"]).format is TokenFormat.CHECKSUMMED
    assert body["previous"]["state"] == "rotated"
    previous = gateway.inspect(lambda store: store.get_token(hash_token(old)))
    assert previous is not None and previous.expires is not None
    assert timedelta(hours=1, minutes=59) < previous.expires - datetime.now(UTC) <= timedelta(hours=2)


def test_emergency_revoke_needs_reason_and_yes_and_is_audited(gateway: Gateway) -> None:
    create(gateway, "a", "team-a")
    create(gateway, "b", "team-a")
    create(gateway, "c", "team-b")
    refused = gateway("tokens", "emergency-revoke", "--owner", "team-a", "--reason", "leak")
    assert refused.code == 2
    assert "add --yes to confirm" in one_line(refused)
    missing_reason = gateway("tokens", "emergency-revoke", "--all", "--yes")
    assert missing_reason.code == 2 and "--reason" in missing_reason.err
    assert len(json.loads(gateway("tokens", "list", "--json").out)["tokens"]) == 3  # nothing changed

    done = gateway("tokens", "emergency-revoke", "--owner", "team-a", "--reason", "leak", "--yes", "--json")
    assert json.loads(done.out) == {"count": 2}
    assert [t["name"] for t in json.loads(gateway("tokens", "list", "--json").out)["tokens"]] == ["c"]
    events = gateway.inspect(lambda store: store.query_audit(AuditQuery(result=AuditResult.ADMIN)))
    [event] = [e for e in events if e.action == "tokens.emergency_revoke"]
    assert event.target == "team-a" and event.detail == "2 tokens revoked: leak"
    assert event.admin.startswith("cli:")


def test_cleanup_and_expiring(gateway: Gateway) -> None:
    create(gateway, "soon", "x", "--expires-in", "1d")
    create(gateway, "later", "x", "--expires-in", "60d")
    create(gateway, "old", "x")
    gateway("tokens", "revoke", "old", "--reason", "unused")
    expiring = gateway("tokens", "expiring", "--within", "7d", "--json")
    assert [t["name"] for t in json.loads(expiring.out)["tokens"]] == ["soon"]
    dry = gateway("tokens", "cleanup", "--older-than", "1ms", "--dry-run", "--json")
    assert [t["name"] for t in json.loads(dry.out)["tokens"]] == ["old"]
    assert len(gateway.inspect(lambda store: store.list_tokens())) == 3
    done = gateway("tokens", "cleanup", "--older-than", "1ms", "--json")
    assert json.loads(done.out) == {"count": 1}
    assert len(gateway.inspect(lambda store: store.list_tokens())) == 2


def test_import_hashes_or_legacy_tokens_hashed_locally(gateway: Gateway, tmp_path: Path) -> None:
    legacy = ["sk_" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(3)]
    source = tmp_path / "legacy.txt"
    source.write_text(
        "# name value\n"
        f"legacy-0 {hash_token(legacy[0])}\n"
        f"legacy-1 {hash_token(legacy[1]).upper()}\n"
        f"legacy-2 {legacy[2]}\n"  # the token itself: hashed here, never stored
    )
    result = gateway("tokens", "import", str(source), "--owner", "old-ci", "--scope", "read")
    assert result.code == 0, result.err
    assert "imported 3" in result.out
    for index, token in enumerate(legacy):
        stored = gateway.inspect(lambda store, t=token: store.get_token(hash_token(t)))  # type: ignore[misc]
        assert stored is not None and stored.name == f"legacy-{index}"
        assert stored.format is TokenFormat.LEGACY_HEX and stored.scopes == frozenset({"read"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b c\n", "legacy.txt:1: expected NAME and a SHA-256 or a legacy sk_ token"),
        ("a sk_123\n", "legacy.txt:1: not a SHA-256 (64 hex) nor a legacy sk_ + 64 hex token"),
        (f"a {'0' * 64}\na {'1' * 64}\n", "legacy.txt: line 3: duplicate name 'a' (also line 2)"),
        (f"a {'0' * 64}\nb {'0' * 64}\n", "legacy.txt: line 3: the same token as line 2"),
        ("# nothing\n", "nothing to import"),
    ],
    ids=["fields", "value", "dup-name", "dup-token", "empty"],
)
def test_import_checks_everything_before_writing(gateway: Gateway, tmp_path: Path, text: str, message: str) -> None:
    create(gateway, "existing", "x")
    source = tmp_path / "legacy.txt"
    source.write_text(f"ok {'f' * 64}\n" + text if "duplicate" in message or "same" in message else text)
    result = gateway("tokens", "import", str(source), "--owner", "old")
    assert result.code == 2
    assert message in one_line(result)
    assert [t.name for t in gateway.inspect(lambda store: store.list_tokens())] == ["existing"]


def test_import_of_a_name_in_use_is_refused_whole(gateway: Gateway, tmp_path: Path) -> None:
    create(gateway, "taken", "x")
    source = tmp_path / "legacy.txt"
    source.write_text(f"fresh {'a' * 64}\ntaken {'b' * 64}\n")
    result = gateway("tokens", "import", str(source), "--owner", "old")
    assert result.code == 1
    assert "'taken' already exists" in one_line(result)
    assert [t.name for t in gateway.inspect(lambda store: store.list_tokens())] == ["taken"]


BAD = [
    (["tokens", "create", "--name", "x", "--owner", "o", "--allow-ip", "10.0.0.300/8"], 2, "--allow-ip: not a CIDR"),
    (["tokens", "create", "--name", "x", "--owner", "o", "--scope", "read orders"], 2, "--scope: not a scope"),
    (["tokens", "create", "--name", "x", "--owner", "o", "--expires", "2000-01-01"], 2, "expiry is in the past"),
    (["tokens", "create", "--name", "x", "--owner", "o", "--expires-in", "soon"], 2, "--expires-in: not a duration"),
    (["tokens", "create", "--name", "bad name", "--owner", "o"], 2, "a name is 1-128 characters"),
    (["tokens", "create", "--name", "dup", "--owner", "o"], 1, "a live token named 'dup' already exists"),
    (["tokens", "show", "nope"], 1, "no token 'nope'"),
    (["tokens", "revoke", "nope", "--reason", "x"], 1, "no token 'nope'"),
    (["tokens", "revoke", "dup", "--reason", " "], 2, "a reason is required"),
    (["tokens", "rotate", "dup", "--grace=-1h"], 2, "--grace: not a duration"),
    (["tokens", "cleanup", "--older-than", "0s"], 2, "--older-than: must be more than zero"),
]


@pytest.mark.parametrize(
    ("args", "code", "message"), BAD, ids=[" ".join(a[1:3]) + f"-{i}" for i, (a, _, _) in enumerate(BAD)]
)
def test_bad_input_is_one_line_and_changes_nothing(gateway: Gateway, args: list[str], code: int, message: str) -> None:
    create(gateway, "dup", "o")
    before = gateway.inspect(lambda store: store.list_tokens())
    result = gateway(*args)
    assert result.code == code, result.err
    assert message in one_line(result)
    assert result.out == ""
    assert gateway.inspect(lambda store: store.list_tokens()) == before


def test_real_process_exit_codes_without_traceback(gateway: Gateway) -> None:
    bad = gateway.process("tokens", "create", "--name", "x", "--owner", "o", "--allow-ip", "nope")
    assert bad.code == 2 and "--allow-ip: not a CIDR" in one_line(bad)
    usage = gateway.process("tokens", "create", "--name", "x")
    assert usage.code == 2 and "the following arguments are required: --owner" in one_line(usage)
    created = gateway.process("tokens", "create", "--name", "x", "--owner", "o")
    assert created.code == 0 and parse_token(created.out.strip()).format is TokenFormat.CHECKSUMMED
    missing = gateway.process("tokens", "show", "nope")
    assert missing.code == 1 and "no token 'nope'" in one_line(missing)
