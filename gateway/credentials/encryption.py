"""Encryption at rest of HMAC signing secrets: Fernet under a key-encryption key (KEK).

The KEK never lives in the store. The caller hands it in, read once from
configuration: a file path (``credentials.kek_file``) or a value (``GATEWAY_KEK``).
Library code does not read the environment.

A KEK source holds one Fernet key per line (``#`` comments allowed). The first key
encrypts; every key decrypts, so a KEK is rotated by putting the new key first,
re-encrypting (:meth:`SecretBox.reencrypt`), then dropping the old line.

There is no plaintext fallback: without a KEK, :func:`load_secret_box` raises
:class:`EncryptionKeyMissing` and nothing that needs a secret can be stored.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from gateway.credentials.errors import EncryptionKeyInvalid, EncryptionKeyMissing, SecretDecryptionFailed

KEK_HINT = (
    "generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def generate_kek() -> str:
    """A new key-encryption key (a Fernet key: 32 random bytes, url-safe base64)."""
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts and decrypts secrets under one or more KEKs (the first one encrypts)."""

    __slots__ = ("_fernet", "fingerprints")

    def __init__(self, keys: Sequence[str], *, source: str = "KEK") -> None:
        if not keys:
            raise EncryptionKeyMissing(f"{source}: no key-encryption key found; {KEK_HINT}")
        fernets: list[Fernet] = []
        for index, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, binascii.Error, UnicodeEncodeError):
                raise EncryptionKeyInvalid(
                    f"{source}: key {index} is not a Fernet key (32 url-safe base64-encoded bytes); {KEK_HINT}"
                ) from None
        self._fernet = MultiFernet(fernets)
        # Short, non-reversible names for the keys, to tell operators which KEK is in use.
        self.fingerprints = tuple(hashlib.sha256(key.encode("ascii")).hexdigest()[:12] for key in keys)

    def __repr__(self) -> str:
        return f"SecretBox(keys={list(self.fingerprints)})"

    def encrypt(self, secret: str) -> bytes:
        """The Fernet token (authenticated, timestamped ciphertext) of ``secret`` under the first KEK."""
        return self._fernet.encrypt(secret.encode("utf-8"))

    def decrypt(self, ciphertext: bytes) -> str:
        """The secret back; :class:`SecretDecryptionFailed` when no configured KEK opens it."""
        try:
            return self._fernet.decrypt(ciphertext).decode("utf-8")
        except (InvalidToken, UnicodeDecodeError):
            raise SecretDecryptionFailed(
                "cannot decrypt a stored secret: it was encrypted under another key-encryption key, "
                f"or altered (configured KEK fingerprints: {', '.join(self.fingerprints)})"
            ) from None

    def reencrypt(self, ciphertext: bytes) -> bytes:
        """The same secret encrypted under the first KEK (for KEK rotation)."""
        try:
            return self._fernet.rotate(ciphertext)
        except InvalidToken:
            raise SecretDecryptionFailed("cannot re-encrypt a stored secret: no configured KEK opens it") from None


def parse_kek_text(text: str) -> list[str]:
    """The keys of a KEK source: one per non-empty line, ``#`` starts a comment."""
    keys = []
    for line in text.splitlines():
        key = line.split("#", 1)[0].strip()
        if key:
            keys.append(key)
    return keys


def load_secret_box(*, kek_file: str | Path | None = None, kek: str | None = None) -> SecretBox:
    """Build the :class:`SecretBox` from a KEK file path or a KEK value (the file wins when both are given).

    Raises :class:`EncryptionKeyMissing` when neither is given (secrets are never stored in
    plain text), :class:`EncryptionKeyInvalid` when the file cannot be read or holds no valid key.
    """
    if kek_file is not None:
        path = Path(kek_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise EncryptionKeyInvalid(f"cannot read the key-encryption key file {str(path)!r}: {exc}") from None
        keys = parse_kek_text(text)
        if not keys:
            raise EncryptionKeyInvalid(f"the key-encryption key file {str(path)!r} holds no key; {KEK_HINT}")
        return SecretBox(keys, source=f"key-encryption key file {str(path)!r}")
    if kek is not None and parse_kek_text(kek):
        return SecretBox(parse_kek_text(kek), source="key-encryption key value")
    raise EncryptionKeyMissing(
        "no key-encryption key configured: HMAC secrets are stored only encrypted. "
        f"Set credentials.kek_file (or GATEWAY_KEK_FILE / GATEWAY_KEK); {KEK_HINT}"
    )
