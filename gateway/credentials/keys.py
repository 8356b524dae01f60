"""Service signing key material: HMAC secrets, Ed25519 public keys and key ids.

An HMAC secret is 256 random bits written as 64 lowercase hex characters; the
service keeps it in an env file, the gateway keeps it encrypted at rest
(:mod:`gateway.credentials.encryption`). For Ed25519 only the public key is
registered: the gateway never holds the signing half.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.credentials.errors import MalformedCredential
from gateway.credentials.tokens import BASE62

SERVICE_SECRET_HEX_LENGTH = 64  # 256 bits
ED25519_PUBLIC_KEY_LENGTH = 32

_SECRET = re.compile(r"^[0-9a-fA-F]{64,256}$")
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SERVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class KeyAlgorithm(StrEnum):
    """How requests signed with a service key are verified."""

    HMAC_SHA256 = "hmac-sha256"  # shared secret, stored encrypted
    ED25519 = "ed25519"  # only the public key is registered


def generate_service_secret() -> str:
    """A new HMAC signing secret: 256 random bits as 64 lowercase hex characters."""
    return secrets.token_hex(SERVICE_SECRET_HEX_LENGTH // 2)


def parse_service_secret(text: str) -> str:
    """Accept an operator-supplied HMAC secret: at least 64 hex characters (256 bits), even length.

    Raises :class:`MalformedCredential` without echoing the secret.
    """
    value = text.strip()
    if not _SECRET.match(value) or len(value) % 2:
        raise MalformedCredential(
            f"a service secret is at least {SERVICE_SECRET_HEX_LENGTH} hex characters (256 bits), "
            "e.g. from `gateway keys generate`"
        )
    return value.lower()


def generate_key_id(now: datetime | None = None) -> str:
    """A new key id, sortable by creation day: ``20250314-k7Qz2pXa``."""
    day = (now or datetime.now(UTC)).strftime("%Y%m%d")
    return day + "-" + "".join(secrets.choice(BASE62) for _ in range(8))


def parse_key_id(text: object) -> str:
    """A key id is 1-64 characters of ``[A-Za-z0-9_.-]``, starting with a letter or digit."""
    if not isinstance(text, str) or not _KEY_ID.match(text):
        raise ValueError(f"a key id is 1-64 characters of [A-Za-z0-9_.-]: {text!r}")
    return text


def parse_service_id(text: object) -> str:
    """A service id is 1-128 characters of ``[A-Za-z0-9_.-]``, starting with a letter or digit."""
    if not isinstance(text, str) or not _SERVICE_ID.match(text):
        raise ValueError(f"a service id is 1-128 characters of [A-Za-z0-9_.-]: {text!r}")
    return text


def parse_ed25519_public_key(text: str | bytes) -> bytes:
    """An Ed25519 public key as PEM, base64 (standard or url-safe) or hex -> its 32 raw bytes.

    Raises ``ValueError`` naming the accepted forms; a private key is refused.
    """
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    stripped = raw.strip()
    if b"PRIVATE KEY" in stripped:
        raise ValueError("this is a private key: register only the public half of an Ed25519 key pair")
    if stripped.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(stripped)
        except ValueError as exc:
            raise ValueError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM public key is not an Ed25519 key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    decoded = _decode_32(stripped)
    if decoded is None:
        raise ValueError("an Ed25519 public key is 32 bytes: PEM, base64 or 64 hex characters")
    Ed25519PublicKey.from_public_bytes(decoded)  # validates the length
    return decoded


def _decode_32(data: bytes) -> bytes | None:
    candidates: list[bytes] = []
    if len(data) == 2 * ED25519_PUBLIC_KEY_LENGTH:
        try:
            candidates.append(bytes.fromhex(data.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            pass
    padded = data.rstrip(b"=") + b"=" * (-len(data.rstrip(b"=")) % 4)
    for altchars in (b"+/", b"-_"):
        try:
            candidates.append(base64.b64decode(padded, altchars=altchars, validate=True))
        except (binascii.Error, ValueError):
            pass
    return next((c for c in candidates if len(c) == ED25519_PUBLIC_KEY_LENGTH), None)
