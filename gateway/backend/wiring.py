"""The auth backend services of one gateway, built once from Settings by the pipeline assembly.

::

    AuthBackends
    ├── client          BackendClient: one session, one breaker per endpoint
    │                     introspection            the RFC 7662 / validate endpoint
    │                     jwks:<provider>          each JWT provider's JWKS URL
    │                     discovery:<issuer host>  OIDC discovery documents
    ├── decisions       DecisionCache of the introspection endpoint (memory + the store)
    ├── authenticators  one IntrospectionAuthenticator per distinct route stale_grace
    └── readiness()     for /readyz: which circuit is open, and whether every route can still serve

Nothing here calls a backend at start-up: a backend that is down when the
gateway starts must not stop it (requests get 503 until it answers).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from gateway.admin.health import Degraded
from gateway.backend.breaker import CircuitState
from gateway.backend.cache import DecisionCache, backend_id
from gateway.backend.client import BackendClient, BackendResponse
from gateway.backend.discovery import OidcDiscovery
from gateway.backend.errors import BackendRejected
from gateway.backend.introspect import ClientAuth, JsonValidation, Rfc7662Introspection, TokenChecker
from gateway.backend.metrics import BackendMetrics
from gateway.backend.settings import IntrospectionSettings
from gateway.pipeline.authn.introspection import INTROSPECTION, IntrospectionAuthenticator, introspected_principal
from gateway.store.base import Store

if TYPE_CHECKING:
    from gateway.auth_settings import AuthnSettings, JwtProviderSettings
    from gateway.pipeline.authn.jwks import JwksKeys
    from gateway.settings import RouteSettings

log = logging.getLogger("gateway.backend")

MAX_JWKS_BYTES: Final = 512 * 1024
JwksFetch = Callable[[], Awaitable[tuple[str, bytes]]]


def introspection_cache_id(settings: IntrospectionSettings) -> str:
    """The cache namespace of the introspection endpoint (what the admin purge deletes under)."""
    return backend_id(settings.protocol, INTROSPECTION, settings.location)


def cache_backend_ids(authn: AuthnSettings) -> list[str]:
    """Every backend whose decisions are cached, from configuration alone (the admin API and CLI use it)."""
    settings = authn.introspection
    return [] if settings is None else [introspection_cache_id(settings)]


def _discovery_label(issuer: str) -> str:
    return f"discovery:{urlsplit(issuer).netloc or issuer}"


class AuthBackends:
    """See the module docstring; :meth:`start` before serving, :meth:`close` on shutdown."""

    def __init__(
        self,
        authn: AuthnSettings,
        routes: tuple[RouteSettings, ...],
        *,
        store: Store | None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.authn = authn
        self.routes = routes
        self.store = store
        self.metrics = BackendMetrics(registry)
        self.client = BackendClient(authn.backend, self.metrics)
        self._discoveries: dict[str, OidcDiscovery] = {}
        self._decisions: DecisionCache | None = None
        self._authenticators: dict[float, IntrospectionAuthenticator] = {}
        self._jwks: dict[str, JwksKeys] = {}  # by provider name
        self._jwks_endpoints: dict[str, list[str]] = {}  # provider name -> endpoints it depends on

    # -- introspection -----------------------------------------------------------------------
    def introspection(self, stale_grace: float = 0.0) -> IntrospectionAuthenticator:
        """The authenticator for routes with this ``stale_grace`` (they all share one decision cache)."""
        found = self._authenticators.get(stale_grace)
        if found is None:
            found = self._authenticators[stale_grace] = IntrospectionAuthenticator(
                self.decisions, stale_grace=stale_grace
            )
        return found

    @property
    def decisions(self) -> DecisionCache:
        if self._decisions is None:
            settings = self.authn.introspection
            if settings is None:
                raise ValueError("authn.introspection is not configured")  # settings validation prevents it
            checker = self._checker(settings)
            breaker = self.client.breaker(INTROSPECTION)
            cache = settings.cache
            self._decisions = DecisionCache(
                checker,
                introspected_principal,
                backend=introspection_cache_id(settings),
                store=self.store if cache.shared else None,
                max_entries=cache.size,
                max_ttl=cache.max_ttl,
                negative_ttl=cache.negative_ttl,
                max_grace=self._max_grace(),
                metrics=self.metrics,
                circuit=breaker,
            )
        return self._decisions

    def _max_grace(self) -> float:
        graces = [
            route.policy.stale_grace
            for route in self.routes
            if route.policy is not None and INTROSPECTION in route.policy.auth
        ]
        return max(graces, default=0.0)

    def _checker(self, settings: IntrospectionSettings) -> TokenChecker:
        auth = ClientAuth(settings.client_auth, client_id=settings.client_id, secret=settings.client_secret)
        url: str | Callable[[], Awaitable[str]]
        if settings.url is not None:
            url = settings.url
        else:
            assert settings.issuer is not None  # noqa: S101 - settings require url or issuer
            url = self.discovery(settings.issuer).introspection_endpoint
        if settings.protocol == "validate":
            return JsonValidation(
                self.client,
                url,
                endpoint=INTROSPECTION,
                auth=auth,
                fields=settings.fields,
                audiences=settings.audiences,
                invalid_statuses=settings.invalid_statuses,
            )
        return Rfc7662Introspection(
            self.client,
            url,
            endpoint=INTROSPECTION,
            auth=auth,
            token_type_hint=settings.token_type_hint,
            fields=settings.fields,
            audiences=settings.audiences,
        )

    def discovery(self, issuer: str) -> OidcDiscovery:
        found = self._discoveries.get(issuer)
        if found is None:
            found = self._discoveries[issuer] = OidcDiscovery(self.client, issuer, endpoint=_discovery_label(issuer))
        return found

    # -- JWKS --------------------------------------------------------------------------------
    def jwks_fetch(self, provider: JwtProviderSettings) -> JwksFetch:
        """How a JWT provider's JWKS is fetched: through this client (breaker, timeout, limits)."""
        endpoint = f"jwks:{provider.name}"
        resolve: Callable[[], Awaitable[str]]
        if provider.jwks_url is not None:
            static_url = provider.jwks_url

            async def static() -> str:
                return static_url

            resolve = static
            self._jwks_endpoints[provider.name] = [endpoint]
        else:
            discovery = self.discovery(provider.issuer)
            resolve = discovery.jwks_uri
            self._jwks_endpoints[provider.name] = [endpoint, discovery.endpoint]

        def parse(response: BackendResponse) -> bytes:
            if response.status != 200:
                raise BackendRejected(f"HTTP {response.status} for the JWKS of {provider.name}")
            return response.body

        async def fetch() -> tuple[str, bytes]:
            url = await resolve()
            body = await self.client.call(endpoint, "GET", url, parse, max_response=MAX_JWKS_BYTES)
            return url, body

        return fetch

    def remember_jwks(self, provider: str, keys: JwksKeys) -> None:
        """Readiness asks these whether they hold keys (a JWT route keeps serving on held keys)."""
        self._jwks[provider] = keys

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._decisions is not None:
            await self._decisions.start()

    async def close(self) -> None:
        if self._decisions is not None:
            await self._decisions.close()
        for discovery in self._discoveries.values():
            await discovery.close()
        await self.client.close()

    # -- readiness ---------------------------------------------------------------------------
    def _down(self, endpoint: str) -> bool:
        breaker = self.client.breakers.get(endpoint)
        return breaker is not None and breaker.state is not CircuitState.CLOSED

    def _introspection_down(self) -> bool:
        settings = self.authn.introspection
        down = self._down(INTROSPECTION)
        if settings is not None and settings.issuer is not None:
            down = down or self._down(_discovery_label(settings.issuer))
        return down

    def _jwt_can_serve(self, names: tuple[str, ...]) -> bool:
        for provider in self.authn.jwt.providers:
            if names and provider.name not in names:
                continue
            keys = self._jwks.get(provider.name)
            endpoints = self._jwks_endpoints.get(provider.name, [])
            if keys is None or keys.loaded or not any(self._down(e) for e in endpoints):
                return True  # static keys, keys already held, or its endpoints are up
        return False

    def _route_can_serve(self, route: RouteSettings) -> bool:
        policy = route.policy
        if policy is None or policy.mode == "off" or policy.anonymous or not policy.auth:
            return True
        for name in policy.auth:
            if name == INTROSPECTION:
                if policy.stale_grace > 0 or not self._introspection_down():
                    return True
            elif name == "jwt":
                if self._jwt_can_serve(policy.jwt_providers):
                    return True
            else:
                return True  # credentials from the store: the auth backend is not involved
        return False

    async def readiness(self) -> str | None:
        """``None`` when every endpoint's circuit is closed; otherwise which is open, and whether it matters.

        Not ready only when some route is left with no way to authenticate (every
        authenticator it lists needs an open endpoint, and it has no stale grace).
        """
        states = [
            f"{name} circuit {breaker.describe()}"
            for name, breaker in sorted(self.client.breakers.items())
            if breaker.state is not CircuitState.CLOSED
        ]
        if not states:
            return None
        stranded = [route.name for route in self.routes if not self._route_can_serve(route)]
        if stranded:
            return f"{'; '.join(states)}; routes that cannot authenticate: {', '.join(stranded)}"
        return Degraded(f"{'; '.join(states)}; every route can still serve (stale grace or other authenticators)")
