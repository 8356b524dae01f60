"""Store contract, service signing keys."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.credentials import KeyAlgorithm, KeyState, ServiceKey, generate_service_secret
from gateway.store import Conflict, NotFound, Store
from tests.store.records import BOX, NOW, hmac_key


async def test_hmac_key_reads_back_identical_and_only_encrypted(store: Store) -> None:
    secret = generate_service_secret()
    key = ServiceKey.new_hmac("billing", secret, BOX, key_id="k1", now=NOW)
    await store.add_service_key(key)

    found = await store.get_service_key("billing", "k1")

    assert found == key
    assert found.expires == NOW + timedelta(days=90)
    assert found.encrypted_secret is not None and secret.encode() not in found.encrypted_secret
    assert found.secret(BOX) == secret


async def test_ed25519_key_keeps_only_the_public_key(store: Store) -> None:
    public = Ed25519PrivateKey.generate().public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = ServiceKey.new_ed25519("reports", pem.decode(), key_id="ed1", now=NOW)
    await store.add_service_key(key)

    found = await store.get_service_key("reports", "ed1")

    assert found == key and found.algorithm is KeyAlgorithm.ED25519
    assert found.public_key == public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert found.encrypted_secret is None


async def test_a_keys_tenant_and_scopes_read_back(store: Store) -> None:
    key = ServiceKey.new_hmac(
        "billing", generate_service_secret(), BOX, key_id="k1", now=NOW, tenant="acme", scopes=["b:write", "a:read"]
    )
    await store.add_service_key(key)
    await store.add_service_key(hmac_key("billing", "k2"))

    assert await store.get_service_key("billing", "k1") == key
    assert [(k.tenant, k.scopes) for k in await store.list_service_keys("billing")] == [
        ("acme", frozenset({"a:read", "b:write"})),
        (None, frozenset()),
    ]


async def test_duplicate_key_id_within_a_service_is_a_conflict(store: Store) -> None:
    await store.add_service_key(hmac_key("billing", "k1"))
    with pytest.raises(Conflict):
        await store.add_service_key(hmac_key("billing", "k1"))
    await store.add_service_key(hmac_key("orders", "k1"))  # same id, another service


async def test_several_keys_per_service_listed_oldest_first(store: Store) -> None:
    await store.add_service_key(hmac_key("billing", "k2", now=NOW + timedelta(days=1)))
    await store.add_service_key(hmac_key("billing", "k1"))
    await store.add_service_key(hmac_key("orders", "o1"))

    assert [k.key_id for k in await store.list_service_keys("billing")] == ["k1", "k2"]
    assert [(k.service_id, k.key_id) for k in await store.list_service_keys()] == [
        ("billing", "k1"),
        ("billing", "k2"),
        ("orders", "o1"),
    ]
    assert await store.list_service_keys("nobody") == []
    assert await store.get_service_key("billing", "nope") is None


async def test_retire_by_update(store: Store) -> None:
    key = hmac_key("billing", "k1")
    await store.add_service_key(key)

    await store.update_service_key(dataclasses.replace(key, state=KeyState.RETIRED))

    found = await store.get_service_key("billing", "k1")
    assert found is not None and found.state is KeyState.RETIRED and not found.usable_at(NOW)
    with pytest.raises(NotFound):
        await store.update_service_key(hmac_key("billing", "ghost"))


async def test_rotation_adds_the_new_key_and_cuts_the_old_one_to_the_grace_period(store: Store) -> None:
    old = hmac_key("billing", "k1")
    await store.add_service_key(old)
    new = hmac_key("billing", "k2", now=NOW + timedelta(days=10))
    grace_until = NOW + timedelta(days=11)

    updated_old = await store.rotate_service_key(new, old_key_id="k1", grace_until=grace_until)

    assert updated_old == dataclasses.replace(old, expires=grace_until)
    assert await store.get_service_key("billing", "k1") == updated_old
    assert await store.get_service_key("billing", "k2") == new
    assert updated_old.usable_at(NOW + timedelta(days=10)) and new.usable_at(NOW + timedelta(days=10))
    assert not updated_old.usable_at(grace_until)


async def test_failed_rotation_changes_nothing(store: Store) -> None:
    old = hmac_key("billing", "k1")
    taken = hmac_key("billing", "k2")
    await store.add_service_key(old)
    await store.add_service_key(taken)

    with pytest.raises(Conflict):
        await store.rotate_service_key(hmac_key("billing", "k2"), old_key_id="k1", grace_until=NOW)
    with pytest.raises(NotFound):
        await store.rotate_service_key(hmac_key("billing", "k3"), old_key_id="ghost", grace_until=NOW)

    assert await store.get_service_key("billing", "k1") == old
    assert await store.get_service_key("billing", "k2") == taken
    assert await store.get_service_key("billing", "k3") is None
