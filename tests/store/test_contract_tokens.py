"""Store contract, service tokens: the same behaviour on every backend."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from datetime import timedelta

import pytest

from gateway.credentials import ServiceToken, TokenFormat, hash_token, parse_token
from gateway.store import Conflict, DuplicateName, NotFound, Store
from tests.store.records import NOW, token


async def test_created_token_reads_back_identical_by_hash_and_by_name(store: Store) -> None:
    created = token()
    await store.create_token(created)

    assert await store.get_token(created.token_hash) == created
    assert await store.get_token_by_name("ci-deploy") == created
    assert await store.get_token("0" * 64) is None
    assert await store.get_token_by_name("nobody") is None


async def test_issued_token_text_finds_its_record_through_its_hash(store: Store) -> None:
    text, record = ServiceToken.issue(name="monitoring", owner="ops", now=NOW)
    await store.create_token(record)

    found = await store.get_token(parse_token(text).hash)
    assert found is not None and found.name == "monitoring"
    assert text not in repr(found)


async def test_legacy_hex_token_imported_by_hash_keeps_working(store: Store) -> None:
    legacy_text = "sk_" + secrets.token_hex(32)
    record = ServiceToken.import_legacy(hash_token(legacy_text), name="old-ci", owner="ci", now=NOW)
    await store.create_token(record)

    parsed = parse_token(legacy_text)
    assert parsed.format is TokenFormat.LEGACY_HEX
    found = await store.get_token(parsed.hash)
    assert found == record and found.format is TokenFormat.LEGACY_HEX


async def test_duplicate_live_name_is_refused_and_writes_nothing(store: Store) -> None:
    await store.create_token(token("ci-deploy"))
    second = token("ci-deploy")

    with pytest.raises(DuplicateName) as caught:
        await store.create_token(second)

    assert caught.value.status == 409 and "ci-deploy" in caught.value.detail
    assert await store.get_token(second.token_hash) is None
    assert len(await store.list_tokens()) == 1


async def test_duplicate_hash_is_a_conflict(store: Store) -> None:
    first = token("a")
    await store.create_token(first)
    with pytest.raises(Conflict):
        await store.create_token(dataclasses.replace(first, name="b"))
    assert await store.get_token_by_name("b") is None


async def test_import_is_all_or_nothing(store: Store) -> None:
    batch = [token(f"import-{i}") for i in range(5)] + [token("import-2")]

    with pytest.raises(DuplicateName):
        await store.import_tokens(batch)
    assert await store.list_tokens() == []

    await store.import_tokens(batch[:5])
    assert sorted(t.name for t in await store.list_tokens()) == [f"import-{i}" for i in range(5)]


async def test_revoke_keeps_first_reason_and_frees_the_name(store: Store) -> None:
    first = token("ci-deploy")
    await store.create_token(first)

    revoked = await store.revoke_token(first.token_hash, reason="leaked in a log", at=NOW + timedelta(hours=1))
    again = await store.revoke_token(first.token_hash, reason="second thoughts", at=NOW + timedelta(hours=2))

    assert revoked.revoked_at == NOW + timedelta(hours=1) and revoked.revoked_reason == "leaked in a log"
    assert again == revoked
    assert await store.get_token(first.token_hash) == revoked
    assert not revoked.usable_at(NOW + timedelta(hours=1))
    assert await store.get_token_by_name("ci-deploy") is None

    successor = token("ci-deploy")
    await store.create_token(successor)
    assert await store.get_token_by_name("ci-deploy") == successor
    assert {t.token_hash for t in await store.list_tokens(name="ci-deploy")} == {first.token_hash, successor.token_hash}


async def test_revoke_unknown_token_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.revoke_token("f" * 64, reason="x", at=NOW)


async def test_emergency_revoke_of_one_owner_leaves_the_others(store: Store) -> None:
    tokens = [token("ci-1", "ci"), token("ci-2", "ci"), token("mon-1", "ops")]
    for record in tokens:
        await store.create_token(record)
    await store.revoke_token(tokens[1].token_hash, reason="earlier", at=NOW)

    count = await store.revoke_tokens(reason="incident 42", at=NOW + timedelta(minutes=5), owner="ci")

    assert count == 1  # ci-2 was already revoked
    by_name = {t.name: t for t in await store.list_tokens()}
    assert by_name["ci-1"].revoked_reason == "incident 42"
    assert by_name["ci-2"].revoked_reason == "earlier"
    assert by_name["mon-1"].revoked_at is None
    assert await store.get_token_by_name("ci-1") is None
    assert await store.get_token_by_name("mon-1") == tokens[2]


async def test_emergency_revoke_of_everything(store: Store) -> None:
    for index in range(4):
        await store.create_token(token(f"t{index}", owner=f"o{index}"))

    assert await store.revoke_tokens(reason="breach", at=NOW) == 4

    assert all(t.revoked_reason == "breach" for t in await store.list_tokens())
    assert await store.revoke_tokens(reason="again", at=NOW) == 0


async def test_rotation_moves_the_name_and_keeps_the_old_token_for_the_grace_period(store: Store) -> None:
    old = token("ci-deploy", expires=NOW + timedelta(days=30))
    await store.create_token(old)
    new = token("ci-deploy", expires=NOW + timedelta(days=90))
    grace_until = NOW + timedelta(hours=24)

    stored_old, stored_new = await store.rotate_token(new, grace_until=grace_until)

    assert stored_old.replaced_by == new.token_hash and stored_old.expires == grace_until
    assert stored_new.rotated_from == old.token_hash and stored_new.expires == new.expires
    assert await store.get_token_by_name("ci-deploy") == stored_new
    assert await store.get_token(old.token_hash) == stored_old
    assert stored_old.usable_at(NOW + timedelta(hours=23))
    assert not stored_old.usable_at(NOW + timedelta(hours=25))


async def test_rotation_never_extends_the_old_token(store: Store) -> None:
    old = token("short", expires=NOW + timedelta(hours=1))
    await store.create_token(old)
    stored_old, _ = await store.rotate_token(token("short"), grace_until=NOW + timedelta(days=7))
    assert stored_old.expires == NOW + timedelta(hours=1)


async def test_rotation_of_unknown_name_is_not_found_and_writes_nothing(store: Store) -> None:
    new = token("ghost")
    with pytest.raises(NotFound):
        await store.rotate_token(new, grace_until=NOW)
    assert await store.get_token(new.token_hash) is None


async def test_list_filters_by_owner_and_name(store: Store) -> None:
    for name, owner in (("a", "ci"), ("b", "ci"), ("c", "ops")):
        await store.create_token(token(name, owner))
    assert sorted(t.name for t in await store.list_tokens(owner="ci")) == ["a", "b"]
    assert [t.name for t in await store.list_tokens(name="c")] == ["c"]
    assert await store.list_tokens(owner="nobody") == []


async def test_delete_token(store: Store) -> None:
    record = token()
    await store.create_token(record)
    assert await store.delete_token(record.token_hash) is True
    assert await store.delete_token(record.token_hash) is False
    assert await store.get_token(record.token_hash) is None
    assert await store.get_token_by_name(record.name) is None


async def test_cleanup_deletes_expired_and_long_revoked_tokens_only(store: Store) -> None:
    expired = token("expired", expires=NOW + timedelta(days=1))
    revoked = token("revoked", expires=NOW + timedelta(days=300))
    live = token("live", expires=NOW + timedelta(days=300))
    forever = token("forever", expires=None)
    for record in (expired, revoked, live, forever):
        await store.create_token(record)
    await store.revoke_token(revoked.token_hash, reason="done", at=NOW + timedelta(days=2))

    assert await store.delete_expired_tokens(NOW + timedelta(days=3)) == 2

    assert sorted(t.name for t in await store.list_tokens()) == ["forever", "live"]


async def test_expiring_lists_unrevoked_tokens_in_the_window_soonest_first(store: Store) -> None:
    soon = token("soon", expires=NOW + timedelta(days=2))
    sooner = token("sooner", expires=NOW + timedelta(days=1))
    later = token("later", expires=NOW + timedelta(days=40))
    revoked = token("revoked", expires=NOW + timedelta(days=1))
    for record in (soon, sooner, later, revoked, token("forever", expires=None)):
        await store.create_token(record)
    await store.revoke_token(revoked.token_hash, reason="x", at=NOW)

    expiring = await store.list_expiring_tokens(now=NOW, until=NOW + timedelta(days=7))

    assert [t.name for t in expiring] == ["sooner", "soon"]
    assert await store.list_expiring_tokens(now=NOW + timedelta(days=3), until=NOW + timedelta(days=7)) == []


async def test_usage_batches_add_up_and_last_used_only_moves_forward(store: Store) -> None:
    record = token()
    await store.create_token(record)
    t1, t2 = NOW + timedelta(minutes=1), NOW + timedelta(minutes=2)

    await store.record_usage({record.token_hash: (3, t2), "0" * 64: (9, t2)})
    await store.record_usage({record.token_hash: (4, t1)})  # a late batch from another replica

    found = await store.get_token(record.token_hash)
    assert found is not None and found.usage_count == 7 and found.last_used == t2
    assert await store.get_token("0" * 64) is None  # unknown hashes are not created
    await store.record_usage({})


async def test_concurrent_creates_with_one_name_let_exactly_one_win(store: Store) -> None:
    contenders = [token("race") for _ in range(8)]
    results = await asyncio.gather(*(store.create_token(t) for t in contenders), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, DuplicateName) for r in results if r is not None)
    assert len(await store.list_tokens(name="race")) == 1
