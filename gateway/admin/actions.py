"""What an operator can do to credentials, in one place for the CLI and the admin API.

Every action validates its input first (``ValueError`` naming what is wrong: nothing
is written), makes one atomic store call (the store writes all of it or nothing and
raises ``StoreUnavailable`` otherwise), and then records an audit event naming the
operator (``actor``): ``result=admin``, ``principal=admin:<actor>``, the ``action``
(``tokens.revoke``...) and its ``target``. A one-time secret is returned to the
caller only once the store has it: a failed write never hands out a credential that
does not exist.

Errors: ``ValueError`` (bad input), :class:`~gateway.store.errors.NotFound`,
:class:`~gateway.store.errors.Conflict` (duplicate name, id exists, not rotatable),
:class:`~gateway.store.errors.StoreUnavailable`,
:class:`~gateway.credentials.errors.EncryptionKeyMissing` (an HMAC key without a KEK).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

from gateway.admin.inputs import credential_id, is_credential_id, is_full_hash
from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.credentials.encryption import SecretBox
from gateway.credentials.keys import KeyAlgorithm, generate_service_secret, parse_key_id, parse_service_id
from gateway.credentials.models import (
    DEFAULT_KEY_LIFETIME,
    ApiClient,
    ApiKey,
    KeyState,
    ServiceKey,
    ServiceToken,
)
from gateway.credentials.validation import parse_cidrs, parse_name, parse_origins, parse_reason, parse_scopes
from gateway.store.base import AuditQuery, Store
from gateway.store.errors import Conflict, NotFound

IMPORT_BATCH = 1000
MAX_AUDIT_LIMIT = 10_000


class ActionRecorder(Protocol):
    """Where admin actions are recorded before the answer goes out (an :class:`AuditTrail`)."""

    async def record_now(self, event: AuditEvent) -> None: ...


class StoreRecorder:
    """Records straight into the store (for callers without an audit trail)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record_now(self, event: AuditEvent) -> None:
        await self.store.append_audit([event])


@dataclass(frozen=True, slots=True)
class LegacyToken:
    """One token of a legacy import, by its SHA-256 (of the whole token text, ``sk_`` included)."""

    name: str
    token_hash: str
    owner: str
    scopes: frozenset[str] = frozenset()
    allowed_ips: tuple[str, ...] = ()
    expires: datetime | None = None


class CredentialAdmin:
    """The operator ``actor``'s actions on the store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        actor: str,
        audit: ActionRecorder | None = None,
        secret_box: SecretBox | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.actor = actor
        self.audit: ActionRecorder = audit or StoreRecorder(store)
        self.secret_box = secret_box
        self.clock = clock

    def now(self) -> datetime:
        return self.clock()

    async def _audited(self, action: str, kind: str, target: str, detail: str = "") -> None:
        await self.audit.record_now(
            AuditEvent(
                time=self.now(),
                result=AuditResult.ADMIN,
                reason="ok",
                credential_kind=kind,
                credential_id=target,
                principal=f"admin:{self.actor}",
                admin=self.actor,
                action=action,
                target=target,
                detail=detail,
            )
        )

    # -- service tokens ----------------------------------------------------------------------
    async def create_token(
        self,
        *,
        name: str,
        owner: str,
        scopes: Iterable[object] = (),
        allowed_ips: Iterable[object] = (),
        expires: datetime | None = None,
    ) -> tuple[str, ServiceToken]:
        """A new token: ``(text shown once, record)``. :class:`DuplicateName` if a live token has the name."""
        text, token = ServiceToken.issue(
            name=name, owner=owner, scopes=scopes, allowed_ips=allowed_ips, expires=expires, now=self.now()
        )
        await self.store.create_token(token)
        await self._audited("tokens.create", "service_token", token.name, f"owner={token.owner}")
        return text, token

    async def find_token(self, ref: str) -> ServiceToken:
        """A token by name (the live one), id (16 hex digits) or full SHA-256."""
        if is_full_hash(ref):
            token = await self.store.get_token(ref)
            if token is not None:
                return token
        try:
            by_name = await self.store.get_token_by_name(parse_name(ref))
        except ValueError:
            by_name = None
        if by_name is not None:
            return by_name
        if is_credential_id(ref):
            # Admin-only path: a scan (ids are for revoked or replaced tokens, which have no live name).
            for token in await self.store.list_tokens():
                if token.token_hash.startswith(ref):
                    return token
        raise NotFound(f"no token {ref!r} (give a live token's name, or an id from `gateway tokens list --all`)")

    async def list_tokens(self, *, owner: str | None = None, include_inactive: bool = False) -> list[ServiceToken]:
        tokens = await self.store.list_tokens(owner=owner)
        if include_inactive:
            return tokens
        now = self.now()
        return [token for token in tokens if token.usable_at(now)]

    async def rotate_token(
        self, ref: str, *, grace: timedelta, expires: datetime | None = None
    ) -> tuple[str, ServiceToken, ServiceToken]:
        """Issue a new token under the same name; the old one stays valid for ``grace``.

        Returns ``(new text, old record, new record)``. Without ``expires`` the new token
        gets the old one's lifetime (or none).
        """
        old = await self.find_token(ref)
        now = self.now()
        if not old.live or not old.usable_at(now):
            raise Conflict(f"token {old.name!r} ({credential_id(old.token_hash)}) is not active: cannot rotate it")
        if expires is None and old.expires is not None:
            try:
                expires = now + (old.expires - old.created)
            except OverflowError:  # a lifetime of thousands of years (say, expires 9999-12-31): keep its expiry
                expires = old.expires
        text, new = ServiceToken.issue(
            name=old.name,
            owner=old.owner,
            scopes=old.scopes,
            allowed_ips=[str(network) for network in old.allowed_ips],
            expires=expires,
            now=now,
            rotated_from=old.token_hash,
        )
        before, after = await self.store.rotate_token(new, grace_until=now + grace)
        await self._audited(
            "tokens.rotate", "service_token", old.name, f"old={credential_id(old.token_hash)} grace={grace}"
        )
        return text, before, after

    async def revoke_token(self, ref: str, *, reason: str) -> ServiceToken:
        why = parse_reason(reason)
        token = await self.find_token(ref)
        revoked = await self.store.revoke_token(token.token_hash, reason=why, at=self.now())
        await self._audited("tokens.revoke", "service_token", token.name, why)
        return revoked

    async def emergency_revoke(self, *, reason: str, owner: str | None = None) -> int:
        """Revoke every token (or every token of ``owner``) in one step; returns how many."""
        why = parse_reason(reason)
        if owner is not None:
            parse_name(owner, "owner")
        count = await self.store.revoke_tokens(reason=why, at=self.now(), owner=owner)
        await self._audited("tokens.emergency_revoke", "service_token", owner or "*", f"{count} tokens revoked: {why}")
        return count

    async def cleanup_tokens(self, *, older_than: timedelta) -> int:
        """Delete tokens that expired, or were revoked, more than ``older_than`` ago."""
        count = await self.store.delete_expired_tokens(self.now() - older_than)
        await self._audited("tokens.cleanup", "service_token", "*", f"{count} deleted (older than {older_than})")
        return count

    async def expiring_tokens(self, *, within: timedelta) -> list[ServiceToken]:
        now = self.now()
        return await self.store.list_expiring_tokens(now=now, until=now + within)

    async def import_tokens(self, entries: Sequence[LegacyToken]) -> int:
        """Store legacy tokens by hash. Everything is checked before the first write.

        Batches of :data:`IMPORT_BATCH` are each atomic; if the store fails part-way,
        the error says how many were imported before it.
        """
        now = self.now()
        records: list[ServiceToken] = []
        names: dict[str, int] = {}
        hashes: dict[str, int] = {}
        for index, entry in enumerate(entries):
            try:
                record = ServiceToken.import_legacy(
                    entry.token_hash,
                    name=entry.name,
                    owner=entry.owner,
                    scopes=entry.scopes,
                    allowed_ips=entry.allowed_ips,
                    expires=entry.expires,
                    now=now,
                )
            except ValueError as exc:
                raise ValueError(f"tokens[{index}]: {exc}") from None
            if record.name in names:
                raise ValueError(f"tokens[{index}]: duplicate name {record.name!r} (also tokens[{names[record.name]}])")
            if record.token_hash in hashes:
                raise ValueError(f"tokens[{index}]: the same token as tokens[{hashes[record.token_hash]}]")
            names[record.name] = hashes[record.token_hash] = index
            records.append(record)
        if not records:
            raise ValueError("nothing to import")
        done = 0
        for start in range(0, len(records), IMPORT_BATCH):
            batch = records[start : start + IMPORT_BATCH]
            try:
                await self.store.import_tokens(batch)
            except Exception as exc:
                if done:
                    exc.add_note(f"{done} tokens were imported before this error")
                    await self._audited("tokens.import", "service_token", "*", f"{done} imported, then failed")
                raise
            done += len(batch)
        await self._audited("tokens.import", "service_token", "*", f"{done} legacy tokens imported")
        return done

    # -- service signing keys ----------------------------------------------------------------
    async def add_service_key(
        self,
        service: str,
        *,
        secret: str | None = None,
        public_key: str | bytes | None = None,
        key_id: str | None = None,
        lifetime: timedelta | None = DEFAULT_KEY_LIFETIME,
        not_before: datetime | None = None,
        tenant: str | None = None,
        scopes: Iterable[object] = (),
    ) -> ServiceKey:
        """Register an HMAC secret (encrypted under the KEK) or an Ed25519 public key; signatures made
        with it authenticate as the service with ``tenant`` and ``scopes``."""
        key = self._new_service_key(service, secret, public_key, key_id, lifetime, not_before, tenant, scopes)
        await self.store.add_service_key(key)
        await self._audited("keys.add", "service_key", f"{key.service_id}/{key.key_id}", key.algorithm.value)
        return key

    async def generate_service_key(
        self,
        service: str,
        *,
        key_id: str | None = None,
        lifetime: timedelta | None = DEFAULT_KEY_LIFETIME,
        tenant: str | None = None,
        scopes: Iterable[object] = (),
    ) -> tuple[str, ServiceKey]:
        """A new 256-bit HMAC secret, registered: ``(secret shown once, record)``."""
        secret = generate_service_secret()
        key = await self.add_service_key(
            service, secret=secret, key_id=key_id, lifetime=lifetime, tenant=tenant, scopes=scopes
        )
        return secret, key

    def _new_service_key(
        self,
        service: str,
        secret: str | None,
        public_key: str | bytes | None,
        key_id: str | None,
        lifetime: timedelta | None,
        not_before: datetime | None,
        tenant: str | None,
        scopes: Iterable[object],
    ) -> ServiceKey:
        if (secret is None) == (public_key is None):
            raise ValueError("give either an HMAC secret or an Ed25519 public key")
        if lifetime is not None and lifetime <= timedelta(0):
            raise ValueError("a key lifetime must be more than zero")
        if public_key is not None:
            new = partial(ServiceKey.new_ed25519, service, public_key)
        else:
            assert secret is not None  # noqa: S101 - one of the two, checked above
            new = partial(ServiceKey.new_hmac, service, secret, self.secret_box)
        return new(
            key_id=key_id, now=self.now(), not_before=not_before, lifetime=lifetime, tenant=tenant, scopes=scopes
        )

    async def list_service_keys(self, service: str | None = None) -> list[ServiceKey]:
        return await self.store.list_service_keys(None if service is None else parse_service_id(service))

    async def get_service_key(self, service: str, key_id: str) -> ServiceKey:
        key = await self.store.get_service_key(parse_service_id(service), parse_key_id(key_id))
        if key is None:
            raise NotFound(f"service {service!r} has no key {key_id!r}")
        return key

    async def rotate_service_key(
        self,
        service: str,
        *,
        grace: timedelta,
        old_key_id: str | None = None,
        secret: str | None = None,
        public_key: str | bytes | None = None,
        lifetime: timedelta | None = DEFAULT_KEY_LIFETIME,
        new_key_id: str | None = None,
        tenant: str | None = None,
        scopes: Iterable[object] | None = None,
    ) -> tuple[str | None, ServiceKey, ServiceKey]:
        """Add a new key and keep the old one (default: the newest usable one) valid for ``grace``.

        For an HMAC key without ``secret`` a new one is generated and returned:
        ``(secret or None, old record, new record)``. The new key has the old one's tenant and
        scopes unless ``tenant`` / ``scopes`` are given.
        """
        service = parse_service_id(service)
        now = self.now()
        if old_key_id is not None:
            old = await self.get_service_key(service, old_key_id)
        else:
            usable = [key for key in await self.store.list_service_keys(service) if key.usable_at(now)]
            if not usable:
                raise NotFound(f"service {service!r} has no usable key to rotate (use `keys add` or `keys generate`)")
            old = max(usable, key=lambda key: (key.created, key.key_id))
        generated: str | None = None
        if old.algorithm is KeyAlgorithm.HMAC_SHA256 and secret is None and public_key is None:
            generated = secret = generate_service_secret()
        new = self._new_service_key(
            service,
            secret,
            public_key,
            new_key_id,
            lifetime,
            None,
            old.tenant if tenant is None else tenant,
            old.scopes if scopes is None else scopes,
        )
        updated = await self.store.rotate_service_key(new, old_key_id=old.key_id, grace_until=now + grace)
        await self._audited("keys.rotate", "service_key", f"{service}/{new.key_id}", f"old={old.key_id} grace={grace}")
        return generated, updated, new

    async def retire_service_key(self, service: str, key_id: str) -> ServiceKey:
        key = await self.get_service_key(service, key_id)
        retired = dataclasses.replace(key, state=KeyState.RETIRED)
        await self.store.update_service_key(retired)
        await self._audited("keys.retire", "service_key", f"{key.service_id}/{key.key_id}")
        return retired

    # -- API clients and keys ----------------------------------------------------------------
    async def register_client(
        self,
        *,
        name: str,
        tenant: str,
        allowed_ips: Iterable[object] = (),
        allowed_origins: Iterable[object] = (),
        scopes: Iterable[object] = (),
        key_expires: datetime | None = None,
    ) -> tuple[ApiClient, str, ApiKey]:
        """A new client with its first key: ``(client, key text shown once, key record)``."""
        now = self.now()
        client = ApiClient.register(
            name=name, tenant=tenant, allowed_ips=allowed_ips, allowed_origins=allowed_origins, scopes=scopes, now=now
        )
        text, key = ApiKey.issue(client.client_id, expires=key_expires, now=now)
        await self._check_client_name(client.name)
        await self.store.register_client(client, [key])
        await self._audited("clients.register", "api_client", client.client_id, f"name={client.name}")
        return client, text, key

    async def _check_client_name(self, name: str, *, other_than: str | None = None) -> None:
        # Names are for humans: keep them unique so `clients list` is unambiguous.
        for client in await self.store.list_clients():
            if client.name == name and client.client_id != other_than:
                raise Conflict(f"a client named {name!r} already exists ({client.client_id})")

    async def get_client(self, client_id: str) -> tuple[ApiClient, list[ApiKey]]:
        client = await self.store.get_client(client_id)
        if client is None:
            raise NotFound(f"no client {client_id!r}")
        return client, await self.store.list_api_keys(client_id)

    async def list_clients(self, *, tenant: str | None = None) -> list[ApiClient]:
        return await self.store.list_clients(tenant=tenant)

    async def update_client(
        self,
        client_id: str,
        *,
        name: str | None = None,
        allowed_ips: Iterable[object] | None = None,
        allowed_origins: Iterable[object] | None = None,
        scopes: Iterable[object] | None = None,
    ) -> ApiClient:
        """Replace the given fields (allowlists and scopes are replaced whole)."""
        changes: dict[str, object] = {}
        if name is not None:
            changes["name"] = parse_name(name)
        if allowed_ips is not None:
            changes["allowed_ips"] = parse_cidrs(allowed_ips)
        if allowed_origins is not None:
            changes["allowed_origins"] = parse_origins(allowed_origins)
        if scopes is not None:
            changes["scopes"] = parse_scopes(scopes)
        if not changes:
            raise ValueError("nothing to change")
        client, _ = await self.get_client(client_id)
        if "name" in changes and changes["name"] != client.name:
            await self._check_client_name(str(changes["name"]), other_than=client_id)
        updated = dataclasses.replace(client, **changes)  # type: ignore[arg-type]
        await self.store.update_client(updated)
        await self._audited("clients.update", "api_client", client_id, "changed: " + ", ".join(sorted(changes)))
        return updated

    async def find_api_key(self, client_id: str, ref: str) -> ApiKey:
        """A client's key by id (16 hex digits) or full SHA-256."""
        client, keys = await self.get_client(client_id)
        for key in keys:
            if key.key_hash == ref or (is_credential_id(ref) and key.key_hash.startswith(ref)):
                return key
        raise NotFound(f"client {client.client_id!r} has no key {ref!r}")

    async def add_api_key(self, client_id: str, *, expires: datetime | None = None) -> tuple[str, ApiKey]:
        await self.get_client(client_id)
        text, key = ApiKey.issue(client_id, expires=expires, now=self.now())
        await self.store.add_api_key(key)
        await self._audited("clients.keys.add", "api_key", credential_id(key.key_hash), f"client={client_id}")
        return text, key

    async def rotate_api_key(
        self, client_id: str, ref: str, *, grace: timedelta, expires: datetime | None = None
    ) -> tuple[str, ApiKey, ApiKey]:
        old = await self.find_api_key(client_id, ref)
        now = self.now()
        if not old.usable_at(now):
            raise Conflict(f"API key {credential_id(old.key_hash)} is revoked or expired: cannot rotate it")
        text, new = ApiKey.issue(client_id, expires=expires, now=now, rotated_from=old.key_hash)
        before, after = await self.store.rotate_api_key(new, old_key_hash=old.key_hash, grace_until=now + grace)
        await self._audited(
            "clients.keys.rotate",
            "api_key",
            credential_id(new.key_hash),
            f"client={client_id} old={credential_id(old.key_hash)} grace={grace}",
        )
        return text, before, after

    async def revoke_api_key(self, client_id: str, ref: str, *, reason: str) -> ApiKey:
        why = parse_reason(reason)
        key = await self.find_api_key(client_id, ref)
        revoked = await self.store.revoke_api_key(key.key_hash, reason=why, at=self.now())
        await self._audited("clients.keys.revoke", "api_key", credential_id(key.key_hash), why)
        return revoked

    # -- audit trail -------------------------------------------------------------------------
    async def query_audit(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        principal: str | None = None,
        result: AuditResult | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[AuditEvent]:
        if not 1 <= limit <= MAX_AUDIT_LIMIT:
            raise ValueError(f"limit is 1 to {MAX_AUDIT_LIMIT}, got {limit}")
        query = AuditQuery(
            since=since, until=until, principal=principal, result=result, limit=limit, newest_first=newest_first
        )
        return await self.store.query_audit(query)
