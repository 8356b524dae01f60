"""The credentials the gateway accepts, as frozen records.

::

    ServiceKey     per service, several at once (rotation overlap); HMAC secret encrypted, or Ed25519 public key
    ServiceToken   sk_ bearer token for CI systems and tools; stored by SHA-256 only
    ApiClient      an SDK or browser app: tenant, allowlists, scopes
    ApiKey         ak_ key of an ApiClient (several per client); stored by SHA-256 only

The ``issue``/``new_*`` factories validate operator input (``ValueError`` naming the
field) and return the one-time secret next to the record; the store accepts
records as they are. Times are timezone-aware UTC; changes are made with
:func:`dataclasses.replace` and written back through the store.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from gateway.credentials.encryption import SecretBox
from gateway.credentials.errors import EncryptionKeyMissing
from gateway.credentials.keys import (
    KeyAlgorithm,
    generate_key_id,
    parse_ed25519_public_key,
    parse_key_id,
    parse_service_id,
    parse_service_secret,
)
from gateway.credentials.tokens import (
    BASE62,
    TokenFormat,
    generate_api_key,
    generate_service_token,
    is_token_hash,
    parse_token,
)
from gateway.credentials.validation import (
    IPNetwork,
    parse_cidrs,
    parse_expiry,
    parse_name,
    parse_origins,
    parse_scopes,
    parse_tenant,
)

DEFAULT_KEY_LIFETIME = timedelta(days=90)


def utcnow() -> datetime:
    return datetime.now(UTC)


class KeyState(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """A signing key of one service. ``(service_id, key_id)`` is unique.

    For ``hmac-sha256`` the secret is held only as ``encrypted_secret`` (a Fernet token
    under the KEK); for ``ed25519`` only the 32-byte ``public_key`` is registered.
    """

    service_id: str
    key_id: str
    algorithm: KeyAlgorithm
    created: datetime
    not_before: datetime
    expires: datetime | None
    state: KeyState = KeyState.ACTIVE
    encrypted_secret: bytes | None = field(default=None, repr=False)
    public_key: bytes | None = None
    # What a signature made with this key is granted: the principal's tenant and scopes (route
    # required_scopes, X-Tenant-Id, X-Auth-Scopes). A rotation carries them to the new key.
    tenant: str | None = None
    scopes: frozenset[str] = frozenset()

    def usable_at(self, now: datetime) -> bool:
        """Active, past ``not_before`` and not expired: a signature made with it may be accepted."""
        return self.state is KeyState.ACTIVE and self.not_before <= now and (self.expires is None or now < self.expires)

    def secret(self, box: SecretBox | None) -> str:
        """The HMAC secret, decrypted (never log it)."""
        if self.algorithm is not KeyAlgorithm.HMAC_SHA256 or self.encrypted_secret is None:
            raise ValueError(f"key {self.service_id}/{self.key_id} is {self.algorithm}: it has no shared secret")
        if box is None:
            raise EncryptionKeyMissing("no key-encryption key configured: cannot decrypt HMAC secrets")
        return box.decrypt(self.encrypted_secret)

    @classmethod
    def new_hmac(
        cls,
        service_id: str,
        secret: str,
        box: SecretBox | None,
        *,
        key_id: str | None = None,
        now: datetime | None = None,
        not_before: datetime | None = None,
        lifetime: timedelta | None = DEFAULT_KEY_LIFETIME,
        tenant: str | None = None,
        scopes: Iterable[object] = (),
    ) -> ServiceKey:
        """A new HMAC key with ``secret`` encrypted under the KEK; refuses without one."""
        if box is None:
            raise EncryptionKeyMissing(
                "no key-encryption key configured: HMAC secrets are stored only encrypted "
                "(set credentials.kek_file or GATEWAY_KEK)"
            )
        created = now or utcnow()
        start = not_before or created
        return cls(
            service_id=parse_service_id(service_id),
            key_id=parse_key_id(key_id) if key_id is not None else generate_key_id(created),
            algorithm=KeyAlgorithm.HMAC_SHA256,
            created=created,
            not_before=start,
            expires=None if lifetime is None else start + lifetime,
            encrypted_secret=box.encrypt(parse_service_secret(secret)),
            tenant=None if tenant is None else parse_tenant(tenant),
            scopes=parse_scopes(scopes),
        )

    @classmethod
    def new_ed25519(
        cls,
        service_id: str,
        public_key: str | bytes,
        *,
        key_id: str | None = None,
        now: datetime | None = None,
        not_before: datetime | None = None,
        lifetime: timedelta | None = DEFAULT_KEY_LIFETIME,
        tenant: str | None = None,
        scopes: Iterable[object] = (),
    ) -> ServiceKey:
        """A new Ed25519 key: only the public key is registered."""
        created = now or utcnow()
        start = not_before or created
        raw = public_key if isinstance(public_key, bytes) and len(public_key) == 32 else None
        return cls(
            service_id=parse_service_id(service_id),
            key_id=parse_key_id(key_id) if key_id is not None else generate_key_id(created),
            algorithm=KeyAlgorithm.ED25519,
            created=created,
            not_before=start,
            expires=None if lifetime is None else start + lifetime,
            public_key=raw if raw is not None else parse_ed25519_public_key(public_key),
            tenant=None if tenant is None else parse_tenant(tenant),
            scopes=parse_scopes(scopes),
        )


@dataclass(frozen=True, slots=True)
class ServiceToken:
    """A service token, known by the SHA-256 of its text. ``name`` is unique among live tokens.

    A token is *live* while neither revoked nor replaced. Rotation issues a new token
    under the same name (``rotated_from`` = the old hash) and leaves the old one valid
    until the grace period ends (its ``expires``, with ``replaced_by`` = the new hash).
    """

    token_hash: str
    name: str
    owner: str
    created: datetime
    format: TokenFormat = TokenFormat.CHECKSUMMED
    hint: str = ""
    scopes: frozenset[str] = frozenset()
    allowed_ips: tuple[IPNetwork, ...] = ()
    expires: datetime | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    last_used: datetime | None = None
    usage_count: int = 0
    rotated_from: str | None = None
    replaced_by: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def live(self) -> bool:
        """Neither revoked nor replaced: the token that holds its name."""
        return self.revoked_at is None and self.replaced_by is None

    def usable_at(self, now: datetime) -> bool:
        """Not revoked and not expired (a replaced token stays usable until its grace expiry)."""
        return self.revoked_at is None and (self.expires is None or now < self.expires)

    @classmethod
    def issue(
        cls,
        *,
        name: str,
        owner: str,
        scopes: Iterable[object] = (),
        allowed_ips: Iterable[object] = (),
        expires: datetime | None = None,
        now: datetime | None = None,
        rotated_from: str | None = None,
    ) -> tuple[str, ServiceToken]:
        """A new token: ``(token text to show once, record to store)``."""
        created = now or utcnow()
        text = generate_service_token()
        parsed = parse_token(text)
        return text, cls(
            token_hash=parsed.hash,
            name=parse_name(name),
            owner=parse_name(owner, "owner"),
            created=created,
            hint=parsed.hint,
            scopes=parse_scopes(scopes),
            allowed_ips=parse_cidrs(allowed_ips),
            expires=parse_expiry(expires, created),
            rotated_from=rotated_from,
        )

    @classmethod
    def import_legacy(
        cls,
        token_hash: str,
        *,
        name: str,
        owner: str,
        scopes: Iterable[object] = (),
        allowed_ips: Iterable[object] = (),
        expires: datetime | None = None,
        now: datetime | None = None,
    ) -> ServiceToken:
        """A record for an older ``sk_`` + 64-hex token known only by its SHA-256 (of the whole token text)."""
        digest = token_hash.strip().lower()
        if not is_token_hash(digest):
            raise ValueError("a token hash is the SHA-256 of the whole token text, 64 hex characters")
        created = now or utcnow()
        return cls(
            token_hash=digest,
            name=parse_name(name),
            owner=parse_name(owner, "owner"),
            created=created,
            format=TokenFormat.LEGACY_HEX,
            hint="sk_(legacy)",
            scopes=parse_scopes(scopes),
            allowed_ips=parse_cidrs(allowed_ips),
            expires=parse_expiry(expires, created),
        )


def generate_client_id() -> str:
    """``cl_`` + 16 base62 characters: an identifier, not a secret."""
    return "cl_" + "".join(secrets.choice(BASE62) for _ in range(16))


@dataclass(frozen=True, slots=True)
class ApiClient:
    """An SDK or browser application, identified by ``client_id``; its keys are :class:`ApiKey`."""

    client_id: str
    name: str
    tenant: str
    created: datetime
    allowed_ips: tuple[IPNetwork, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    scopes: frozenset[str] = frozenset()

    @classmethod
    def register(
        cls,
        *,
        name: str,
        tenant: str,
        allowed_ips: Iterable[object] = (),
        allowed_origins: Iterable[object] = (),
        scopes: Iterable[object] = (),
        now: datetime | None = None,
    ) -> ApiClient:
        return cls(
            client_id=generate_client_id(),
            name=parse_name(name),
            tenant=parse_tenant(tenant),
            created=now or utcnow(),
            allowed_ips=parse_cidrs(allowed_ips),
            allowed_origins=parse_origins(allowed_origins),
            scopes=parse_scopes(scopes),
        )


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key of an :class:`ApiClient`, known by the SHA-256 of its text."""

    key_hash: str
    client_id: str
    created: datetime
    hint: str = ""
    expires: datetime | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    last_used: datetime | None = None
    usage_count: int = 0
    rotated_from: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires is None or now < self.expires)

    @classmethod
    def issue(
        cls,
        client_id: str,
        *,
        expires: datetime | None = None,
        now: datetime | None = None,
        rotated_from: str | None = None,
    ) -> tuple[str, ApiKey]:
        """A new key: ``(key text to show once, record to store)``."""
        created = now or utcnow()
        text = generate_api_key()
        parsed = parse_token(text)
        return text, cls(
            key_hash=parsed.hash,
            client_id=client_id,
            created=created,
            hint=parsed.hint,
            expires=parse_expiry(expires, created),
            rotated_from=rotated_from,
        )


@dataclass(frozen=True, slots=True)
class ApiCredential:
    """What an API-key lookup finds: the key and the client it belongs to."""

    key: ApiKey
    client: ApiClient
