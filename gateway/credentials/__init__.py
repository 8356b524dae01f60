"""Credential formats, key material, encryption at rest and the credential records.

::

    tokens.py      sk_/ak_ formats: generate, parse (checksum), hash; legacy sk_ + 64 hex
    keys.py        service signing keys: HMAC secrets, Ed25519 public keys, key ids
    encryption.py  Fernet under a key-encryption key (KEK) for HMAC secrets at rest
    validation.py  parsers for operator input (names, scopes, CIDRs, origins, expiry)
    models.py      ServiceKey, ServiceToken, ApiClient, ApiKey (frozen records)
    audit.py       AuditEvent, AuditResult
    errors.py      CredentialError tree
"""

from __future__ import annotations

from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.credentials.encryption import SecretBox, generate_kek, load_secret_box
from gateway.credentials.errors import (
    CredentialError,
    EncryptionKeyInvalid,
    EncryptionKeyMissing,
    MalformedCredential,
    SecretDecryptionFailed,
)
from gateway.credentials.keys import KeyAlgorithm, generate_key_id, generate_service_secret
from gateway.credentials.models import (
    DEFAULT_KEY_LIFETIME,
    ApiClient,
    ApiCredential,
    ApiKey,
    KeyState,
    ServiceKey,
    ServiceToken,
)
from gateway.credentials.tokens import (
    ParsedToken,
    TokenFormat,
    TokenKind,
    generate_api_key,
    generate_service_token,
    hash_token,
    looks_valid,
    parse_token,
)

__all__ = [
    "DEFAULT_KEY_LIFETIME",
    "ApiClient",
    "ApiCredential",
    "ApiKey",
    "AuditEvent",
    "AuditResult",
    "CredentialError",
    "EncryptionKeyInvalid",
    "EncryptionKeyMissing",
    "KeyAlgorithm",
    "KeyState",
    "MalformedCredential",
    "ParsedToken",
    "SecretBox",
    "SecretDecryptionFailed",
    "ServiceKey",
    "ServiceToken",
    "TokenFormat",
    "TokenKind",
    "generate_api_key",
    "generate_kek",
    "generate_key_id",
    "generate_service_secret",
    "generate_service_token",
    "hash_token",
    "load_secret_box",
    "looks_valid",
    "parse_token",
]
