"""Service signing key material and records."""

from __future__ import annotations

import base64
import dataclasses
import re
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.credentials import (
    KeyAlgorithm,
    KeyState,
    MalformedCredential,
    ServiceKey,
    generate_kek,
    generate_key_id,
    generate_service_secret,
    load_secret_box,
)
from gateway.credentials.keys import parse_ed25519_public_key, parse_key_id, parse_service_secret

NOW = datetime(2030, 1, 1, tzinfo=UTC)
BOX = load_secret_box(kek=generate_kek())
PRIVATE = Ed25519PrivateKey.generate()
RAW = PRIVATE.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_service_secret_is_256_bits_of_lowercase_hex() -> None:
    secrets = {generate_service_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in secrets)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("ab" * 32, True),
        ("AB" * 32, True),
        (" " + "ab" * 32 + "\n", True),
        ("ab" * 64, True),
        ("ab" * 31, False),
        ("a" * 65, False),
        ("zz" * 32, False),
        ("", False),
    ],
    ids=["64-hex", "uppercase", "whitespace", "512-bit", "too-short", "odd-length", "not-hex", "empty"],
)
def test_parse_service_secret(text: str, ok: bool) -> None:
    if ok:
        assert parse_service_secret(text) == text.strip().lower()
    else:
        with pytest.raises(MalformedCredential) as caught:
            parse_service_secret(text)
        assert "64 hex characters" in caught.value.detail
        assert not text or text not in caught.value.detail


def test_key_ids() -> None:
    key_id = generate_key_id(NOW)
    assert re.fullmatch(r"20300101-[0-9A-Za-z]{8}", key_id) and parse_key_id(key_id) == key_id
    for bad in ("", "-leading", "a b", "x" * 65, 7):
        with pytest.raises(ValueError, match="key id"):
            parse_key_id(bad)


@pytest.mark.parametrize(
    "text",
    [
        PRIVATE.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        base64.b64encode(RAW).decode(),
        base64.urlsafe_b64encode(RAW).decode().rstrip("="),
        RAW.hex(),
    ],
    ids=["pem", "base64", "base64url-unpadded", "hex"],
)
def test_ed25519_public_key_forms(text: str) -> None:
    assert parse_ed25519_public_key(text) == RAW


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            PRIVATE.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            "private key",
        ),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode(),
            "not an Ed25519 key",
        ),
        ("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----", "not a PEM public key"),
        ("c2hvcnQ=", "32 bytes"),
        ("%%%", "32 bytes"),
    ],
    ids=["private-key", "rsa", "broken-pem", "short", "garbage"],
)
def test_ed25519_public_key_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_ed25519_public_key(text)


def test_hmac_key_record_defaults_and_validity_window() -> None:
    secret = generate_service_secret()
    key = ServiceKey.new_hmac("billing", secret, BOX, now=NOW, not_before=NOW + timedelta(hours=1))
    assert key.algorithm is KeyAlgorithm.HMAC_SHA256 and key.state is KeyState.ACTIVE
    assert key.expires == NOW + timedelta(hours=1, days=90)
    assert key.secret(BOX) == secret
    assert secret not in repr(key) and "encrypted_secret" not in repr(key)
    assert not key.usable_at(NOW)  # not yet
    assert key.usable_at(NOW + timedelta(hours=2))
    assert not key.usable_at(NOW + timedelta(days=91, hours=1))  # expired
    assert not dataclasses.replace(key, state=KeyState.RETIRED).usable_at(NOW + timedelta(hours=2))
    assert ServiceKey.new_hmac("billing", secret, BOX, now=NOW, lifetime=None).usable_at(NOW + timedelta(days=9999))


def test_ed25519_key_has_no_shared_secret() -> None:
    key = ServiceKey.new_ed25519("reports", RAW, now=NOW)
    assert key.public_key == RAW and key.encrypted_secret is None
    with pytest.raises(ValueError, match="no shared secret"):
        key.secret(BOX)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"service_id": "bad service"}, "service id"),
        ({"secret": "short"}, "64 hex characters"),
        ({"key_id": "a/b"}, "key id"),
    ],
)
def test_hmac_key_input_is_validated(kwargs: dict[str, str], reason: str) -> None:
    values = {"service_id": "billing", "secret": generate_service_secret(), "key_id": "k1"} | kwargs
    with pytest.raises(ValueError, match=reason):
        ServiceKey.new_hmac(values["service_id"], values["secret"], BOX, key_id=values["key_id"])
