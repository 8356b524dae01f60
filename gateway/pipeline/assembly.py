"""Builds the route policies from Settings and the runtime, once, at start-up.

Authenticators are shared by every route that lists them (one legacy HMAC, one
RFC 9421, one service-token and one API-key authenticator, one JWT authenticator
per distinct set of providers, one JWKS client per provider), built only when a
route uses them. The store adapters sit between them and the runtime's credential
cache (:mod:`gateway.pipeline.store_sources`).

The runtime is anything with the few attributes used here (:class:`AuthRuntime`):
the gateway's :class:`~gateway.runtime.Runtime` in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from gateway.admin.health import Readiness
from gateway.auth_settings import AuthnSettings, JwtProviderSettings
from gateway.backend.wiring import AuthBackends
from gateway.credentials.encryption import SecretBox
from gateway.observability.metrics import GatewayMetrics
from gateway.pipeline.authn.api_key import ApiKeyAuthenticator
from gateway.pipeline.authn.hmac_legacy import LegacyHmacAuthenticator
from gateway.pipeline.authn.introspection import arrange_for_introspection
from gateway.pipeline.authn.jwks import JwksKeys, JwtKeySource, StaticJwtKeys
from gateway.pipeline.authn.jwt import JwtAuthenticator, JwtProvider
from gateway.pipeline.authn.rfc9421 import HttpSignatureAuthenticator
from gateway.pipeline.authn.service_token import ServiceTokenAuthenticator
from gateway.pipeline.base import Authenticator
from gateway.pipeline.policy import AuditSink, RoutePolicy
from gateway.pipeline.store_sources import StoreApiKeys, StoreNonces, StoreServiceKeys, StoreTokens
from gateway.settings import RouteSettings, Settings
from gateway.store.base import Store
from gateway.store.cache import CredentialCache
from gateway.store.usage import UsageRecorder

log = logging.getLogger("gateway.auth")


class AuthRuntime(Protocol):
    """What the pipeline needs from the runtime: the store, its cache, usage and audit writers, the KEK."""

    @property
    def store(self) -> Store: ...

    @property
    def credentials(self) -> CredentialCache: ...

    @property
    def usage(self) -> UsageRecorder: ...

    @property
    def audit(self) -> AuditSink: ...

    @property
    def secret_box(self) -> SecretBox | None: ...


class AuthAssembly:
    """Owns the authenticators and adapters the route policies share; :meth:`close` on shutdown."""

    def __init__(self, settings: Settings, runtime: AuthRuntime, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.authn: AuthnSettings = settings.authn
        self.runtime = runtime
        self.metrics = metrics
        self._service_keys: StoreServiceKeys | None = None
        self._nonces: StoreNonces | None = None
        self._authenticators: dict[str, Authenticator] = {}
        self._jwt: dict[tuple[str, ...], JwtAuthenticator] = {}
        self._jwks: dict[str, JwksKeys] = {}
        self._providers: dict[str, JwtProvider] = {}
        self._prefetch: list[asyncio.Task[bool]] = []
        self._backends: AuthBackends | None = None  # introspection, JWKS, discovery (gateway/backend/)
        self.policies: dict[str, RoutePolicy] = {}
        for route in settings.routes:
            policy = self._policy(route)
            if policy is not None:
                self.policies[route.name] = policy

    def _policy(self, route: RouteSettings) -> RoutePolicy | None:
        settings = route.policy
        if settings is None or settings.mode == "off":
            return None  # off: the route behaves as if it had no policy
        authenticators = [
            self.backends.introspection(settings.stale_grace)
            if name == "introspection"
            else self._authenticator(name, settings.jwt_providers)
            for name in settings.auth
        ]
        authenticators = arrange_for_introspection(authenticators)
        return RoutePolicy(
            route.name,
            settings,
            authenticators,
            metrics=self.metrics,
            audit=self.runtime.audit,
            api_key_header=self.authn.api_key.header,
        )

    @property
    def backends(self) -> AuthBackends:
        """The auth backend services (client, breakers, decision cache), built when a route needs them."""
        if self._backends is None:
            self._backends = AuthBackends(
                self.authn, self.settings.routes, store=self.runtime.store, registry=self.metrics.registry
            )
        return self._backends

    def add_readiness_checks(self, readiness: Readiness) -> None:
        """``/readyz`` reports open auth-backend circuits (and fails only if some route cannot authenticate)."""
        if self._backends is not None:
            readiness.add("auth_backend", self._backends.readiness)

    # -- authenticators ----------------------------------------------------------------------
    def _authenticator(self, name: str, jwt_providers: tuple[str, ...]) -> Authenticator:
        if name == "jwt":
            return self._jwt_authenticator(jwt_providers)
        found = self._authenticators.get(name)
        if found is None:
            found = self._authenticators[name] = self._build(name)
        return found

    def _build(self, name: str) -> Authenticator:
        runtime, authn = self.runtime, self.authn
        if name == "hmac_legacy":
            return LegacyHmacAuthenticator(
                self._keys(),
                window=authn.hmac_legacy.window,
                replay_protection=authn.hmac_legacy.replay_protection,
                nonces=self._nonce_store(),
            )
        if name == "rfc9421":
            rfc = authn.rfc9421
            return HttpSignatureAuthenticator(
                self._keys(),
                required_components=rfc.required_components,
                require_digest_with_body=rfc.require_digest_with_body,
                max_age=rfc.max_age,
                clock_skew=rfc.clock_skew,
                max_body=rfc.max_body,
                nonces=self._nonce_store(),
                require_nonce=rfc.require_nonce,
                tag=rfc.tag,
                body_timeout=self.settings.body_timeout,
            )
        if name == "service_token":
            token = authn.service_token
            return ServiceTokenAuthenticator(
                StoreTokens(runtime.credentials, runtime.usage) if token.store else None,
                static=token.static_tokens,
            )
        if name == "api_key":
            return ApiKeyAuthenticator(
                StoreApiKeys(runtime.credentials, runtime.usage),
                header=authn.api_key.header,
                query_param=authn.api_key.query_param,
            )
        raise ValueError(f"unknown authenticator {name!r}")  # settings validation makes this unreachable

    def _keys(self) -> StoreServiceKeys:
        if self._service_keys is None:
            self._service_keys = StoreServiceKeys(
                self.runtime.credentials,
                self.runtime.secret_box,
                index_ttl=max(self.settings.credentials.cache_ttl, 1.0),
                miss_interval=max(self.settings.credentials.negative_cache_ttl, 1.0),
            )
        return self._service_keys

    def _nonce_store(self) -> StoreNonces:
        if self._nonces is None:
            self._nonces = StoreNonces(self.runtime.store)
        return self._nonces

    def _jwt_authenticator(self, names: tuple[str, ...]) -> JwtAuthenticator:
        configured = self.authn.jwt.providers
        chosen = tuple(p.name for p in configured if not names or p.name in names)
        found = self._jwt.get(chosen)
        if found is None:
            providers = [self._provider(p) for p in configured if p.name in chosen]
            jwt = self.authn.jwt
            found = self._jwt[chosen] = JwtAuthenticator(
                providers, max_token_length=jwt.max_token_length, cache_size=jwt.cache_size, cache_ttl=jwt.cache_ttl
            )
        return found

    def _provider(self, settings: JwtProviderSettings) -> JwtProvider:
        found = self._providers.get(settings.name)
        if found is not None:
            return found
        keys: JwtKeySource
        if settings.jwks_url is not None or settings.discovery:
            keys = self._jwks[settings.name] = JwksKeys(
                settings.jwks_url,
                refresh_interval=settings.refresh_interval,
                min_refresh_interval=settings.min_refresh_interval,
                fetch=self.backends.jwks_fetch(settings),  # the auth backend's breaker and limits
            )
            self.backends.remember_jwks(settings.name, keys)
        elif settings.secret_file is not None:
            keys = StaticJwtKeys.from_files({None: settings.secret_file}, secret=True)
        else:
            keys = StaticJwtKeys.from_files(dict(settings.key_files))
        found = self._providers[settings.name] = JwtProvider(
            issuer=settings.issuer,
            audiences=settings.audiences,
            algorithms=settings.algorithms,
            keys=keys,
            leeway=settings.leeway,
            required_claims=settings.required_claims,
            tenant_claim=settings.tenant_claim,
            name=settings.name,
        )
        return found

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Follow key changes; fetch JWKS in the background so the first token does not wait for it."""
        if self._service_keys is not None:
            await self._service_keys.start()
        if self._backends is not None:
            await self._backends.start()
        for keys in self._jwks.values():
            self._prefetch.append(asyncio.ensure_future(keys.refresh()))

    async def close(self) -> None:
        for task in self._prefetch:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._prefetch, return_exceptions=True)
        self._prefetch.clear()
        for keys in self._jwks.values():
            await keys.close()
        if self._backends is not None:
            await self._backends.close()
        if self._service_keys is not None:
            await self._service_keys.close()
