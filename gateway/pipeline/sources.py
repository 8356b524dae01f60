"""What the authenticators look up, as small protocols the credential store is adapted to.

Authenticators never talk to the store directly: each needs one narrow lookup,
answered with a frozen record of exactly the fields it uses. An adapter over
the store implements these (and is the place to cache: every method here runs
on the request path, so an adapter should answer hot keys from memory, and
decrypt a service secret once, not per request).

Times are Unix seconds (``float``). Allowlists are tuples of strings (CIDRs,
origins) as the store keeps them; the authenticators parse and cache them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable


class KeyAlgorithm:
    """Algorithms a service key verifies with (RFC 9421 names; the legacy scheme uses ``hmac-sha256``)."""

    HMAC_SHA256: Final = "hmac-sha256"
    ED25519: Final = "ed25519"


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One active key of a service, ready to verify a signature.

    ``material`` is, for ``hmac-sha256``, the shared secret's UTF-8 bytes (the
    decrypted secret); for ``ed25519``, the 32-byte raw public key or a PEM
    ``SubjectPublicKeyInfo``. A source returns only keys that are active
    (not revoked, not past ``expires_at``); ``expires_at`` is checked again.
    """

    key_id: str
    service_id: str
    algorithm: str
    material: bytes
    tenant: str | None = None
    scopes: frozenset[str] = frozenset()
    expires_at: float | None = None


class ServiceKeySource(Protocol):
    """Service keys for the signature schemes (legacy HMAC and RFC 9421)."""

    async def verification_keys(self, service_id: str) -> Sequence[VerificationKey]:
        """Every active key of ``service_id`` (several during a rotation); empty if none or unknown."""
        ...

    async def key_by_id(self, key_id: str) -> VerificationKey | None:
        """The active key named ``key_id`` (RFC 9421 ``keyid``), or ``None``."""
        ...


@runtime_checkable
class PeekableServiceKeySource(ServiceKeySource, Protocol):
    """A service key source that can answer synchronously from memory (the store adapter over the cache)."""

    def peek_verification_keys(self, service_id: str) -> Sequence[VerificationKey] | None:
        """What ``verification_keys`` would answer, if known without waiting; ``None``: await it."""

    def peek_key_by_id(self, key_id: str) -> tuple[VerificationKey | None] | None:
        """``(what key_by_id would answer,)`` if known without waiting; ``None``: await it."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A service token as stored (found by the SHA-256 of the whole token)."""

    token_id: str
    service_id: str
    tenant: str | None = None
    scopes: frozenset[str] = frozenset()
    expires_at: float | None = None
    revoked: bool = False
    ip_allow: tuple[str, ...] = ()


class TokenSource(Protocol):
    """Service tokens (``sk_...``) by hash."""

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        """The token whose SHA-256 (lowercase hex) is ``token_hash``, revoked or expired included; else ``None``."""
        ...


@runtime_checkable
class PeekableTokenSource(TokenSource, Protocol):
    """A token source that can answer synchronously from memory (the store adapter over the cache)."""

    def peek(self, token_hash: str) -> TokenRecord | None:
        """What ``lookup`` would answer, if known without waiting; ``None``: await ``lookup``."""


@dataclass(frozen=True, slots=True)
class ApiClientRecord:
    """An API client and the key it presented (found by the SHA-256 of the whole key)."""

    client_id: str
    key_id: str
    tenant: str | None = None
    scopes: frozenset[str] = frozenset()
    expires_at: float | None = None
    revoked: bool = False
    ip_allow: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()


class ApiKeySource(Protocol):
    """API keys (``ak_...``) by hash."""

    async def lookup(self, key_hash: str) -> ApiClientRecord | None:
        """The client owning the key whose SHA-256 (lowercase hex) is ``key_hash``, revoked included; else ``None``."""
        ...


@runtime_checkable
class PeekableApiKeySource(ApiKeySource, Protocol):
    """An API key source that can answer synchronously from memory (the store adapter over the cache)."""

    def peek(self, key_hash: str) -> ApiClientRecord | None:
        """What ``lookup`` would answer, if known without waiting; ``None``: await ``lookup``."""


class NonceStore(Protocol):
    """Replay protection shared across replicas (Redis ``SET NX EX`` behind the store's ``claim_nonce``)."""

    async def claim(self, scope: str, nonce: str, ttl: int) -> bool:
        """Record ``nonce`` in ``scope`` for ``ttl`` seconds; ``True`` if it was not seen before."""
        ...
