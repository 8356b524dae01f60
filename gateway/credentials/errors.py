"""Errors raised by credential formats and encryption at rest.

::

    GatewayError
    └── CredentialError                 500 credentials.error
        ├── MalformedCredential         401 credential.malformed   (also a ValueError: bad input)
        ├── EncryptionKeyMissing        500 credentials.kek_missing
        ├── EncryptionKeyInvalid        500 credentials.kek_invalid
        └── SecretDecryptionFailed      500 credentials.kek_mismatch

None of them ever carries a secret in its message.
"""

from __future__ import annotations

from gateway.errors import GatewayError


class CredentialError(GatewayError):
    """Base of the credential errors."""

    status = 500
    code = "credentials.error"


class MalformedCredential(CredentialError, ValueError):
    """A token, API key or secret does not have the expected shape or its checksum is wrong.

    Raised before any store lookup: a mistyped or truncated credential never costs a round trip.
    """

    status = 401
    code = "credential.malformed"


class EncryptionKeyMissing(CredentialError):
    """A secret must be encrypted or decrypted but no key-encryption key (KEK) is configured."""

    code = "credentials.kek_missing"


class EncryptionKeyInvalid(CredentialError):
    """The configured key-encryption key is not a valid Fernet key (or its file cannot be read)."""

    code = "credentials.kek_invalid"


class SecretDecryptionFailed(CredentialError):
    """A stored secret cannot be decrypted: it was encrypted under another KEK, or it was altered."""

    code = "credentials.kek_mismatch"
