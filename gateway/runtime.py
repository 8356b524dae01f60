"""The gateway's long-lived services, built once from Settings and started with the listeners.

::

    Runtime
    ├── store         Store              opened from settings.store (start-up error naming the masked URL)
    ├── credentials   CredentialCache    the data plane's lookups; invalidated by the store's notifications
    ├── usage         UsageRecorder      usage counts, flushed every credentials.usage_flush_interval
    ├── audit         AuditTrail         audit events, batched off the request path (audit.*)
    ├── secret_box    SecretBox | None   the KEK (credentials.kek_file / GATEWAY_KEK), for HMAC secrets
    └── admin_tokens  AdminTokenFile     who may call the admin API (admin.tokens_file, read again on change)

``gateway serve`` opens it before binding the listeners, :meth:`Runtime.start`
starts the background work, and :meth:`Runtime.stop` (after the drain) writes the
buffered audit events and usage counts, then closes the store. The CLI opens the
same object without starting it, so its commands use the configured store and KEK.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from gateway.admin.health import Readiness
from gateway.admin.tokens import AdminTokenFile
from gateway.credentials.encryption import SecretBox, load_secret_box
from gateway.credentials.errors import CredentialError
from gateway.observability.audit import AuditTrail
from gateway.settings import Settings
from gateway.store import Store, StoreError, mask_url, open_store
from gateway.store.cache import CredentialCache
from gateway.store.usage import UsageRecorder

log = logging.getLogger("gateway.runtime")


class StartupError(Exception):
    """The gateway cannot start: one line for the operator, naming what to fix (never a secret)."""


@dataclass(eq=False)
class Runtime:
    """The opened store and the services around it (see the module docstring)."""

    settings: Settings
    store: Store
    credentials: CredentialCache
    usage: UsageRecorder
    audit: AuditTrail
    secret_box: SecretBox | None
    admin_tokens: AdminTokenFile
    started: bool = False

    @classmethod
    async def open(cls, settings: Settings, *, registry: CollectorRegistry | None = None) -> Runtime:
        """Open the store and build the services; :class:`StartupError` when the store or KEK is unusable.

        ``registry`` is the gateway's metrics registry (the audit writer's counters go there).
        """
        secret_box = _secret_box(settings)
        masked = mask_url(settings.store)
        try:
            store = await open_store(settings.store)
        except StoreError as exc:
            detail = exc.detail or exc.code
            raise StartupError(detail if masked in detail else f"store {masked}: {detail}") from None
        credentials = settings.credentials
        return cls(
            settings=settings,
            store=store,
            credentials=CredentialCache(
                store,
                max_entries=credentials.cache_size,
                ttl=credentials.cache_ttl,
                negative_ttl=credentials.negative_cache_ttl,
            ),
            usage=UsageRecorder(store, interval=credentials.usage_flush_interval),
            audit=AuditTrail(
                store,
                registry=registry,
                buffer=settings.audit.buffer,
                batch_size=settings.audit.batch_size,
                flush_interval=settings.audit.flush_interval,
                retention=settings.audit.retention,
            ),
            secret_box=secret_box,
            admin_tokens=AdminTokenFile(settings.admin.tokens_file, settings.admin.tokens),
        )

    async def start(self) -> None:
        """Subscribe the cache to invalidations and start the usage and audit writers."""
        if self.started:
            return
        await self.credentials.start()
        await self.usage.start()
        await self.audit.start()
        self.started = True
        log.info("store open", extra={"store": self.store.url, "kek": self.secret_box is not None})

    async def stop(self) -> None:
        """Write what is buffered (audit events, usage counts), then close the store. Idempotent."""
        try:
            await self.audit.close()
            await self.usage.close()
            await self.credentials.close()
        finally:
            await self.store.close()
            self.started = False

    def add_readiness_checks(self, readiness: Readiness) -> None:
        """``/readyz`` reports the store (``None`` when it answers, else a short reason)."""
        readiness.add("store", self.store.check)


def load_kek(settings: Settings) -> SecretBox | None:
    """The configured key-encryption key, or ``None`` (tokens and API keys need none; HMAC keys do).

    Raises :class:`~gateway.credentials.errors.CredentialError` naming the source when it is unusable.
    """
    credentials = settings.credentials
    if credentials.kek_file is None and credentials.kek is None:
        return None
    return load_secret_box(kek_file=credentials.kek_file, kek=credentials.kek)


def _secret_box(settings: Settings) -> SecretBox | None:
    try:
        return load_kek(settings)
    except CredentialError as exc:
        where = "credentials.kek_file" if settings.credentials.kek_file is not None else "GATEWAY_KEK"
        raise StartupError(f"{where}: {exc.detail}") from None
