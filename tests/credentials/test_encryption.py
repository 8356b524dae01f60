"""Encryption at rest: Fernet under a KEK; no KEK or the wrong KEK is a clear error, never plaintext."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.credentials import (
    EncryptionKeyInvalid,
    EncryptionKeyMissing,
    SecretDecryptionFailed,
    ServiceKey,
    generate_kek,
    generate_service_secret,
    load_secret_box,
)
from gateway.credentials.encryption import SecretBox

SECRET = generate_service_secret()


def test_round_trip_and_no_plaintext_in_the_ciphertext() -> None:
    box = load_secret_box(kek=generate_kek())
    ciphertext = box.encrypt(SECRET)
    assert SECRET.encode() not in ciphertext
    assert box.decrypt(ciphertext) == SECRET
    assert box.encrypt(SECRET) != ciphertext  # random IV: equal secrets do not look equal


@pytest.mark.parametrize("kek", [None, "", "  \n# only a comment\n"], ids=["none", "empty", "comment-only"])
def test_no_kek_refuses_to_store_secrets(kek: str | None) -> None:
    with pytest.raises(EncryptionKeyMissing) as caught:
        load_secret_box(kek=kek)
    assert "kek_file" in caught.value.detail and caught.value.code == "credentials.kek_missing"
    with pytest.raises(EncryptionKeyMissing):
        ServiceKey.new_hmac("billing", SECRET, None)


def test_wrong_kek_cannot_decrypt() -> None:
    ciphertext = load_secret_box(kek=generate_kek()).encrypt(SECRET)
    other = load_secret_box(kek=generate_kek())
    with pytest.raises(SecretDecryptionFailed) as caught:
        other.decrypt(ciphertext)
    assert other.fingerprints[0] in caught.value.detail and SECRET not in caught.value.detail


def test_tampered_ciphertext_is_refused() -> None:
    box = load_secret_box(kek=generate_kek())
    ciphertext = bytearray(box.encrypt(SECRET))
    ciphertext[-5] ^= 1
    with pytest.raises(SecretDecryptionFailed):
        box.decrypt(bytes(ciphertext))


@pytest.mark.parametrize(
    "kek", ["not-a-key", "c2hvcnQ=", generate_kek()[:-2]], ids=["garbage", "too-short", "truncated"]
)
def test_invalid_kek_is_named_without_echoing_it(kek: str) -> None:
    with pytest.raises(EncryptionKeyInvalid) as caught:
        load_secret_box(kek=kek)
    assert "not a Fernet key" in caught.value.detail and kek not in caught.value.detail


def test_kek_file_with_rotation(tmp_path: Path) -> None:
    old, new = generate_kek(), generate_kek()
    path = tmp_path / "kek"
    path.write_text(f"# gateway key-encryption keys\n{old}\n")
    ciphertext = load_secret_box(kek_file=path).encrypt(SECRET)

    path.write_text(f"{new}  # current\n{old}  # retiring\n")
    rotating = load_secret_box(kek_file=str(path))
    assert rotating.decrypt(ciphertext) == SECRET
    reencrypted = rotating.reencrypt(ciphertext)

    assert SecretBox([new]).decrypt(reencrypted) == SECRET
    with pytest.raises(SecretDecryptionFailed):
        SecretBox([new]).decrypt(ciphertext)


def test_the_file_wins_over_the_value(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_text(generate_kek())
    ciphertext = load_secret_box(kek_file=path, kek=generate_kek()).encrypt(SECRET)
    assert load_secret_box(kek_file=path).decrypt(ciphertext) == SECRET


@pytest.mark.parametrize("content", [None, "", "# nothing\n"], ids=["missing", "empty", "comment-only"])
def test_unusable_kek_file_is_named(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "kek"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EncryptionKeyInvalid) as caught:
        load_secret_box(kek_file=path)
    assert str(path) in caught.value.detail


def test_repr_shows_fingerprints_only() -> None:
    kek = generate_kek()
    box = load_secret_box(kek=kek)
    assert kek not in repr(box) and box.fingerprints[0] in repr(box)
