"""Store contract, API clients and their keys."""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import timedelta

import pytest

from gateway.credentials import ApiKey, parse_token
from gateway.store import Conflict, NotFound, Store
from tests.store.records import NOW, api_key, client


async def test_registered_client_and_key_are_found_by_key_hash(store: Store) -> None:
    app = client()
    text, key = ApiKey.issue(app.client_id, now=NOW)
    await store.register_client(app, [key])

    found = await store.get_api_key(parse_token(text).hash)

    assert found is not None and found.key == key and found.client == app
    assert await store.get_client(app.client_id) == app
    assert await store.get_api_key("0" * 64) is None
    assert await store.get_client("cl_nobody") is None


async def test_clients_listed_by_tenant(store: Store) -> None:
    a, b, c = client("a", "acme"), client("b", "acme"), client("c", "globex")
    for app in (a, b, c):
        await store.register_client(app)
    assert sorted(x.name for x in await store.list_clients(tenant="acme")) == ["a", "b"]
    assert len(await store.list_clients()) == 3


async def test_failed_registration_writes_nothing(store: Store) -> None:
    app = client()
    await store.register_client(app, [api_key(app.client_id)])
    other = client("other")
    clash = api_key(other.client_id)
    await store.register_client(other, [clash])

    third = client("third")
    fresh = api_key(third.client_id)
    with pytest.raises(Conflict):  # the second key's hash is taken
        await store.register_client(third, [fresh, dataclasses.replace(clash, client_id=third.client_id)])
    with pytest.raises(Conflict):  # a key of another client
        await store.register_client(third, [api_key(app.client_id)])
    with pytest.raises(Conflict):  # the client id is taken
        await store.register_client(dataclasses.replace(third, client_id=app.client_id))

    assert await store.get_client(third.client_id) is None
    assert await store.get_api_key(fresh.key_hash) is None
    assert await store.get_client(app.client_id) == app


async def test_several_keys_per_client(store: Store) -> None:
    app = client()
    first, second = api_key(app.client_id), api_key(app.client_id, now=NOW + timedelta(seconds=1))
    await store.register_client(app, [first])
    await store.add_api_key(second)

    assert [k.key_hash for k in await store.list_api_keys(app.client_id)] == [first.key_hash, second.key_hash]
    with pytest.raises(NotFound):
        await store.add_api_key(api_key("cl_nobody"))
    with pytest.raises(Conflict):
        await store.add_api_key(second)


async def test_edited_allowlists_show_in_key_lookups(store: Store) -> None:
    app = client()
    key = api_key(app.client_id)
    await store.register_client(app, [key])
    edited = dataclasses.replace(
        app,
        allowed_ips=(ipaddress.ip_network("198.51.100.0/24"),),
        allowed_origins=("https://new.example.com",),
        scopes=frozenset({"orders:write"}),
    )

    await store.update_client(edited)

    found = await store.get_api_key(key.key_hash)
    assert found is not None and found.client == edited
    with pytest.raises(NotFound):
        await store.update_client(client("ghost"))


async def test_key_rotation_and_revocation(store: Store) -> None:
    app = client()
    old = api_key(app.client_id)
    await store.register_client(app, [old])
    new = api_key(app.client_id)

    stored_old, stored_new = await store.rotate_api_key(new, old_key_hash=old.key_hash, grace_until=NOW)

    assert stored_old.expires == NOW and stored_new.rotated_from == old.key_hash
    assert (await store.get_api_key(new.key_hash)) is not None
    revoked = await store.revoke_api_key(new.key_hash, reason="lost laptop", at=NOW)
    assert revoked.revoked_reason == "lost laptop"
    found = await store.get_api_key(new.key_hash)
    assert found is not None and found.key == revoked and not found.key.usable_at(NOW)
    with pytest.raises(NotFound):
        await store.revoke_api_key("0" * 64, reason="x", at=NOW)
    with pytest.raises(NotFound):
        await store.rotate_api_key(api_key(app.client_id), old_key_hash="0" * 64, grace_until=NOW)


async def test_key_rotation_stays_within_the_client(store: Store) -> None:
    a, b = client("a"), client("b")
    key_a = api_key(a.client_id)
    await store.register_client(a, [key_a])
    await store.register_client(b)
    with pytest.raises(Conflict):
        await store.rotate_api_key(api_key(b.client_id), old_key_hash=key_a.key_hash, grace_until=NOW)
    assert (await store.get_api_key(key_a.key_hash)) is not None
    assert await store.list_api_keys(b.client_id) == []


async def test_api_key_usage(store: Store) -> None:
    app = client()
    key = api_key(app.client_id)
    await store.register_client(app, [key])
    await store.record_api_key_usage({key.key_hash: (2, NOW), "0" * 64: (1, NOW)})
    await store.record_api_key_usage({key.key_hash: (5, NOW + timedelta(seconds=3))})
    found = await store.get_api_key(key.key_hash)
    assert found is not None and found.key.usage_count == 7 and found.key.last_used == NOW + timedelta(seconds=3)
