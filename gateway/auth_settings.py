"""Settings of the authentication pipeline: the top-level ``authn`` and ``context_signing`` sections, and
the policy keys of a route (``auth``, ``mode``, ``required_scopes``, ``ip_allow``, ``origins``, ``cors``...).

Parsed by :mod:`gateway.settings` with its ``_Reader`` (one ``key.path: message`` line per
problem); this module holds the typed results and the parsers, so settings.py stays the one
entry point without growing a second concern. Secret files are read here, once: static
internal tokens are kept as SHA-256 digests only, the context-signing key as bytes never
printed (``repr=False``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from gateway.backend.client import BackendLimits
from gateway.backend.settings import IntrospectionSettings, parse_backend, parse_introspection, parse_stale_grace
from gateway.credentials.validation import parse_origin, parse_scope
from gateway.units import (
    parse_bool,
    parse_count,
    parse_duration,
    parse_file,
    parse_network,
    parse_positive_duration,
    parse_size,
    parse_text,
)

if TYPE_CHECKING:
    from gateway.pipeline.authn.service_token import StaticTokens
    from gateway.settings import _Reader

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

AUTHENTICATORS: Final = ("hmac_legacy", "rfc9421", "service_token", "api_key", "jwt", "introspection")
AUDIT_CHOICES: Final = ("all", "denials")
MODES: Final = ("enforce", "log_only", "off")
DEFAULT_CORS_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_CORS_MAX_AGE: Final = 600
MIN_CONTEXT_KEY_BYTES: Final = 32
ANY_METHOD: Final = "*"

_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'+.^_`|~-]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_METHOD = re.compile(r"^[A-Z][A-Z0-9_-]{0,31}$")
_CLAIM = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")


# -- typed settings ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegacyHmacSettings:
    window: float = 300.0
    replay_protection: bool = False


@dataclass(frozen=True, slots=True)
class HttpSignatureSettings:
    required_components: tuple[str, ...] = ("@method", "@authority", "@path", "@query")
    require_digest_with_body: bool = True
    max_age: float = 300.0
    clock_skew: float = 30.0
    max_body: int = 1024 * 1024
    require_nonce: bool = False
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class ApiKeySettings:
    header: str = "X-API-Key"
    query_param: str | None = None  # off by default: URLs end up in logs, history and Referer


@dataclass(frozen=True, slots=True)
class StaticTokenSettings:
    """Shared secrets of one calling service, read from files (several during a rotation)."""

    service_id: str
    files: tuple[Path, ...]
    scopes: frozenset[str] = frozenset()
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceTokenSettings:
    store: bool = True  # look sk_ tokens up in the credential store
    static: tuple[StaticTokenSettings, ...] = ()
    static_tokens: StaticTokens | None = field(default=None, repr=False, compare=False)  # digests only


@dataclass(frozen=True, slots=True)
class JwtProviderSettings:
    """One trusted issuer; exactly one key source: ``jwks_url``, ``key_files`` (PEM, by kid) or ``secret_file``."""

    name: str
    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    jwks_url: str | None = None
    key_files: tuple[tuple[str | None, Path], ...] = ()
    secret_file: Path | None = None
    leeway: float = 30.0
    required_claims: tuple[str, ...] = ("exp", "iss", "aud", "sub")
    tenant_claim: str | None = "tenant"
    refresh_interval: float = 300.0
    min_refresh_interval: float = 30.0
    discovery: bool = False  # jwks_url from the issuer's /.well-known/openid-configuration


@dataclass(frozen=True, slots=True)
class JwtSettings:
    providers: tuple[JwtProviderSettings, ...] = ()
    max_token_length: int = 8192
    cache_size: int = 10_000  # verified tokens remembered (0: verify every time)
    cache_ttl: float = 60.0


@dataclass(frozen=True, slots=True)
class AuthnSettings:
    """How each authenticator works, shared by every route that lists it."""

    hmac_legacy: LegacyHmacSettings = field(default_factory=LegacyHmacSettings)
    rfc9421: HttpSignatureSettings = field(default_factory=HttpSignatureSettings)
    service_token: ServiceTokenSettings = field(default_factory=ServiceTokenSettings)
    api_key: ApiKeySettings = field(default_factory=ApiKeySettings)
    jwt: JwtSettings = field(default_factory=JwtSettings)
    backend: BackendLimits = field(default_factory=BackendLimits)  # calls to identity services (issue 5)
    introspection: IntrospectionSettings | None = None


@dataclass(frozen=True, slots=True)
class ContextSigningSettings:
    """``X-Gateway-Signature`` over the context headers; off without a key file."""

    key_file: Path | None = None
    key_id: str = "gw1"
    key: bytes = field(default=b"", repr=False, compare=False)

    @property
    def enabled(self) -> bool:
        return bool(self.key)


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """CORS answered by the gateway for the route's allowed ``origins``."""

    methods: tuple[str, ...] = DEFAULT_CORS_METHODS
    headers: tuple[str, ...] = ()  # empty: Authorization, Content-Type and the API key header
    expose_headers: tuple[str, ...] = ("X-Request-Id",)
    max_age: int = DEFAULT_CORS_MAX_AGE
    credentials: bool = False


@dataclass(frozen=True, slots=True)
class ScopeRequirement:
    """Scopes a caller must hold: for every method, or per method (``*`` for the methods not listed)."""

    by_method: tuple[tuple[str, frozenset[str]], ...] = ()

    def for_method(self, method: str) -> frozenset[str]:
        fallback: frozenset[str] = frozenset()
        for name, scopes in self.by_method:
            if name == method:
                return scopes
            if name == ANY_METHOD:
                fallback = scopes
        return fallback

    def __bool__(self) -> bool:
        return any(scopes for _, scopes in self.by_method)

    def describe(self) -> str:
        if len(self.by_method) == 1 and self.by_method[0][0] == ANY_METHOD:
            return ",".join(sorted(self.by_method[0][1]))
        return " ".join(f"{method}={','.join(sorted(scopes)) or '-'}" for method, scopes in self.by_method)


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """A route's policy. ``None`` on a route means no policy at all (and no cost per request)."""

    auth: tuple[str, ...] = ()
    mode: str = "enforce"
    anonymous: bool = False
    required_scopes: ScopeRequirement = field(default_factory=ScopeRequirement)
    ip_allow: tuple[Network, ...] = ()
    origins: tuple[str, ...] = ()
    cors: CorsSettings | None = None
    forward_credential: bool = False
    jwt_providers: tuple[str, ...] = ()  # empty: every configured provider
    audit: str = "all"  # all: every decision goes to the audit trail; denials: refusals and would-be refusals only
    stale_grace: float = 0.0  # introspection: serve cached decisions this long while the backend is down

    def describe(self) -> str:
        """One line for ``gateway check-config``."""
        parts = [f"auth={','.join(self.auth) or '-'}", f"mode={self.mode}"]
        if self.anonymous:
            parts.append("anonymous")
        if self.required_scopes:
            parts.append(f"scopes={self.required_scopes.describe()}")
        if self.ip_allow:
            parts.append(f"ip_allow={','.join(map(str, self.ip_allow))}")
        if self.origins:
            parts.append(f"origins={','.join(self.origins)}")
        if self.cors is not None:
            parts.append(f"cors(methods={','.join(self.cors.methods)} max_age={self.cors.max_age})")
        if self.jwt_providers:
            parts.append(f"jwt_providers={','.join(self.jwt_providers)}")
        if self.forward_credential:
            parts.append("forward_credential")
        if self.stale_grace:
            parts.append(f"stale_grace={self.stale_grace:g}s")
        if self.audit != "all":
            parts.append(f"audit={self.audit}")
        return "  ".join(parts)


ROUTE_POLICY_KEYS: Final = (
    "auth",
    "mode",
    "anonymous",
    "required_scopes",
    "ip_allow",
    "origins",
    "cors",
    "forward_credential",
    "jwt_providers",
    "audit",
    "stale_grace",
)


# -- converters -------------------------------------------------------------------------------


def _header_name(value: object) -> str:
    if not isinstance(value, str) or not _HEADER.match(value):
        raise ValueError(f"not a header name: {value!r}")
    return value


def _name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"a name is 1-64 characters of [A-Za-z0-9_.-]: {value!r}")
    return value


def _method(value: object) -> str:
    if not isinstance(value, str) or not _METHOD.match(value.upper()):
        raise ValueError(f"not an HTTP method: {value!r}")
    return value.upper()


def _claim(value: object) -> str:
    if not isinstance(value, str) or not _CLAIM.match(value):
        raise ValueError(f"not a claim name: {value!r}")
    return value


def _http_url(value: object) -> str:
    text = value if isinstance(value, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {value!r}")
    return text


def route_origin(value: object) -> str:
    """An allowed origin: ``https://app.example.com`` or a wildcard ``https://*.example.com``."""
    if isinstance(value, str) and "*" in value:
        scheme, sep, host = value.lower().partition("://")
        suffix = host[2:] if host.startswith("*.") else ""
        if (
            not sep
            or scheme not in ("http", "https")
            or "*" in suffix
            or "." not in suffix
            or not re.fullmatch(r"[a-z0-9.-]+(:[0-9]{1,5})?", suffix)
        ):
            raise ValueError(
                "a wildcard origin is scheme://*.domain.tld (one leading '*.', at least two labels after it): "
                f"{value!r}"
            )
        return f"{scheme}://*.{suffix}"
    return parse_origin(value)


# -- the authn section ------------------------------------------------------------------------


def parse_authn(reader: _Reader, raw_section: object) -> AuthnSettings:
    defaults = AuthnSettings()
    with reader.at("authn"):
        raw = reader.mapping(raw_section, (*AUTHENTICATORS, "backend"))
        with reader.at("hmac_legacy"):
            section = reader.mapping(raw.get("hmac_legacy"), ("window", "replay_protection"))
            legacy = LegacyHmacSettings(
                window=reader.value(section, "window", parse_positive_duration, defaults.hmac_legacy.window),
                replay_protection=reader.value(section, "replay_protection", parse_bool, False),
            )
        rfc9421 = _parse_rfc9421(reader, raw.get("rfc9421"), defaults.rfc9421)
        with reader.at("api_key"):
            section = reader.mapping(raw.get("api_key"), ("header", "query_param"))
            api_key = ApiKeySettings(
                header=reader.value(section, "header", _header_name, defaults.api_key.header),
                query_param=reader.value(section, "query_param", parse_text, None),
            )
        service_token = _parse_service_token(reader, raw.get("service_token"))
        with reader.at("jwt"):
            section = reader.mapping(raw.get("jwt"), ("providers", "max_token_length", "cache_size", "cache_ttl"))
            providers = _parse_providers(reader, section.get("providers"))
            jwt = JwtSettings(
                providers=tuple(providers),
                max_token_length=reader.value(section, "max_token_length", parse_size, defaults.jwt.max_token_length),
                cache_size=reader.value(section, "cache_size", parse_count, defaults.jwt.cache_size),
                cache_ttl=reader.value(section, "cache_ttl", parse_positive_duration, defaults.jwt.cache_ttl),
            )
        backend = parse_backend(reader, raw.get("backend"))
        introspection = parse_introspection(reader, raw.get("introspection"))
    return AuthnSettings(
        hmac_legacy=legacy,
        rfc9421=rfc9421,
        service_token=service_token,
        api_key=api_key,
        jwt=jwt,
        backend=backend,
        introspection=introspection,
    )


def _parse_rfc9421(reader: _Reader, raw_section: object, defaults: HttpSignatureSettings) -> HttpSignatureSettings:
    keys = ("required_components", "require_digest_with_body", "max_age", "clock_skew", "max_body", "require_nonce")
    with reader.at("rfc9421"):
        section = reader.mapping(raw_section, (*keys, "tag"))
        components = tuple(reader.items(section, "required_components", _component))
        return HttpSignatureSettings(
            required_components=components if "required_components" in section else defaults.required_components,
            require_digest_with_body=reader.value(section, "require_digest_with_body", parse_bool, True),
            max_age=reader.value(section, "max_age", parse_positive_duration, defaults.max_age),
            clock_skew=reader.value(section, "clock_skew", parse_duration, defaults.clock_skew),
            max_body=reader.value(section, "max_body", parse_size, defaults.max_body),
            require_nonce=reader.value(section, "require_nonce", parse_bool, False),
            tag=reader.value(section, "tag", parse_text, None),
        )


def _component(value: object) -> str:
    from gateway.pipeline.authn.signature_base import parse_component_ids

    if not isinstance(value, str):
        raise ValueError(f"not a component identifier: {value!r}")
    try:
        parse_component_ids([value])
    except (ValueError, TypeError):
        raise ValueError(f"not a component identifier (e.g. @method, content-digest): {value!r}") from None
    return value


def _parse_service_token(reader: _Reader, raw_section: object) -> ServiceTokenSettings:
    from gateway.pipeline.authn.service_token import StaticTokens

    with reader.at("service_token"):
        section = reader.mapping(raw_section, ("store", "static"))
        static: list[StaticTokenSettings] = []
        raw_static = section.get("static")
        with reader.at("static"):
            if raw_static is not None and not isinstance(raw_static, dict):
                reader.problem(f"expected a mapping of service id to token files, got {type(raw_static).__name__}")
            for service_id, raw_entry in (raw_static or {}).items() if isinstance(raw_static, dict) else ():
                with reader.at(str(service_id)):
                    entry = _parse_static_entry(reader, service_id, raw_entry)
                if entry is not None:
                    static.append(entry)
        tokens: StaticTokens | None = None
        if static:
            problems_before = len(reader.problems)
            for entry in static:
                try:  # read each service's files now: a missing or short secret stops the start
                    StaticTokens.from_files({entry.service_id: entry.files})
                except ValueError as exc:
                    with reader.at("static"):
                        reader.problem(str(exc), entry.service_id)
            if len(reader.problems) == problems_before:
                tokens = StaticTokens.from_files(
                    {entry.service_id: entry.files for entry in static},
                    scopes={entry.service_id: entry.scopes for entry in static},
                    tenants={entry.service_id: entry.tenant for entry in static if entry.tenant is not None},
                )
        return ServiceTokenSettings(
            store=reader.value(section, "store", parse_bool, True), static=tuple(static), static_tokens=tokens
        )


def _parse_static_entry(reader: _Reader, service_id: object, raw_entry: object) -> StaticTokenSettings | None:
    try:
        from gateway.credentials.keys import parse_service_id

        service = parse_service_id(service_id)
    except ValueError as exc:
        reader.problem(str(exc))
        return None
    if isinstance(raw_entry, list):  # the short form: a list of files
        raw_entry = {"files": raw_entry}
    entry = reader.mapping(raw_entry, ("files", "scopes", "tenant"))
    files = reader.items(entry, "files", parse_file)
    if not files and "files" not in entry:
        reader.problem("required", "files")
        return None
    scopes = reader.items(entry, "scopes", parse_scope)
    return StaticTokenSettings(
        service_id=service,
        files=tuple(files),
        scopes=frozenset(scopes),
        tenant=reader.value(entry, "tenant", parse_text, None),
    )


_PROVIDER_KEYS: Final = (
    "name",
    "issuer",
    "audiences",
    "algorithms",
    "jwks_url",
    "key_file",
    "key_files",
    "secret_file",
    "leeway",
    "required_claims",
    "tenant_claim",
    "refresh_interval",
    "min_refresh_interval",
    "discovery",
)


def _parse_providers(reader: _Reader, raw: object) -> list[JwtProviderSettings]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        reader.problem(f"expected a list, got {type(raw).__name__}", "providers")
        return []
    providers: list[JwtProviderSettings] = []
    seen: dict[str, int] = {}
    for index, raw_provider in enumerate(raw):
        with reader.at("providers"), reader.at(index):
            provider = _parse_provider(reader, raw_provider, index)
            if provider is None:
                continue
            for label, value in (("name", provider.name), ("issuer", provider.issuer)):
                key = f"{label}:{value}"
                if key in seen:
                    reader.problem(f"duplicate {label} {value!r} (also providers[{seen[key]}])", label)
                seen.setdefault(key, index)
        providers.append(provider)
    return providers


def _parse_provider(reader: _Reader, raw_provider: object, index: int) -> JwtProviderSettings | None:
    raw = reader.mapping(raw_provider, _PROVIDER_KEYS)
    if not isinstance(raw_provider, dict):
        return None
    for required in ("issuer", "algorithms"):
        if raw.get(required) is None:
            reader.problem("required", required)
    sources = [key for key in ("jwks_url", "key_file", "key_files", "secret_file") if raw.get(key) is not None]
    if raw.get("discovery") is True:
        sources.append("discovery")
    if len(sources) != 1:
        reader.problem("exactly one of jwks_url, key_file, key_files, secret_file is required (or discovery: true)")
    key_files: list[tuple[str | None, Path]] = []
    if raw.get("key_file") is not None:
        path = reader.value(raw, "key_file", parse_file, None)
        if path is not None:
            key_files.append((None, path))
    raw_key_files = raw.get("key_files")
    if raw_key_files is not None:
        with reader.at("key_files"):
            if not isinstance(raw_key_files, dict) or not raw_key_files:
                reader.problem("expected a mapping of kid to PEM file")
            else:
                for kid in raw_key_files:
                    path = reader.value(raw_key_files, kid, parse_file, None)
                    if path is not None:
                        key_files.append((str(kid), path))
    algorithms = reader.items(raw, "algorithms", parse_text)
    claims = reader.items(raw, "required_claims", _claim)
    settings = JwtProviderSettings(
        name=reader.value(raw, "name", _name, f"provider{index}"),
        issuer=reader.value(raw, "issuer", parse_text, ""),
        audiences=tuple(reader.items(raw, "audiences", parse_text)),
        algorithms=tuple(algorithms),
        jwks_url=reader.value(raw, "jwks_url", _http_url, None),
        key_files=tuple(key_files),
        secret_file=reader.value(raw, "secret_file", parse_file, None),
        leeway=reader.value(raw, "leeway", parse_duration, 30.0),
        required_claims=tuple(claims) if "required_claims" in raw else ("exp", "iss", "aud", "sub"),
        tenant_claim=reader.value(raw, "tenant_claim", _claim, "tenant"),
        refresh_interval=reader.value(raw, "refresh_interval", parse_positive_duration, 300.0),
        min_refresh_interval=reader.value(raw, "min_refresh_interval", parse_positive_duration, 30.0),
        discovery=reader.value(raw, "discovery", parse_bool, False),
    )
    if settings.issuer and settings.algorithms and len(sources) == 1:
        _check_provider(reader, settings, sources[0])
    return settings


def _check_provider(reader: _Reader, settings: JwtProviderSettings, source: str) -> None:
    """Build the provider the way the gateway will, so an unsafe or unreadable one stops the start."""
    from gateway.pipeline.authn.jwks import StaticJwtKeys
    from gateway.pipeline.authn.jwt import JwtProvider

    keys: Any
    try:
        if settings.secret_file is not None:
            keys = StaticJwtKeys.from_files({None: settings.secret_file}, secret=True)
        elif settings.key_files:
            keys = StaticJwtKeys.from_files(dict(settings.key_files))
        elif settings.jwks_url is not None or settings.discovery:
            keys = _JwksShape(settings.jwks_url or "")
        else:
            return  # the key source itself was reported
    except ValueError as exc:
        reader.problem(str(exc), source)
        return
    try:
        JwtProvider(
            issuer=settings.issuer,
            audiences=settings.audiences,
            algorithms=settings.algorithms,
            keys=keys,
            leeway=settings.leeway,
            required_claims=settings.required_claims,
            tenant_claim=settings.tenant_claim,
            name=settings.name,
        )
    except ValueError as exc:
        reader.problem(str(exc), "algorithms")


@dataclass(frozen=True)
class _JwksShape:
    """What the provider checks know of a JWKS key source before anything is fetched."""

    jwks_url: str
    symmetric: bool = False

    async def key_for(self, kid: str | None) -> None:  # pragma: no cover - never called
        return None


# -- context signing --------------------------------------------------------------------------


def parse_context_signing(reader: _Reader, raw_section: object) -> ContextSigningSettings:
    with reader.at("context_signing"):
        raw = reader.mapping(raw_section, ("key_file", "key_id"))
        key_file = reader.value(raw, "key_file", parse_file, None)
        key_id = reader.value(raw, "key_id", _name, "gw1")
        key = b""
        if key_file is not None:
            try:
                key = key_file.read_bytes().strip()
            except OSError as exc:
                reader.problem(f"cannot read {str(key_file)!r}: {exc.__class__.__name__}", "key_file")
            if key and len(key) < MIN_CONTEXT_KEY_BYTES:
                reader.problem(f"the key must be at least {MIN_CONTEXT_KEY_BYTES} bytes", "key_file")
                key = b""
            elif not key and key_file is not None:
                reader.problem("the key file is empty", "key_file")
        elif "key_id" in raw:
            reader.problem("required when key_id is set", "key_file")
        return ContextSigningSettings(key_file=key_file, key_id=key_id, key=key)


# -- a route's policy -------------------------------------------------------------------------


def parse_route_policy(
    reader: _Reader, raw: Mapping[str, Any], route_methods: frozenset[str] | None
) -> PolicySettings | None:
    """The policy keys of one route (the reader is at the route); ``None`` when it has none."""
    if not any(raw.get(key) is not None for key in ROUTE_POLICY_KEYS):
        return None
    auth = reader.items(raw, "auth", _authenticator)
    if len(set(auth)) != len(auth):
        reader.problem("an authenticator is listed twice", "auth")
    ip_allow = reader.items(raw, "ip_allow", parse_network)
    origins = reader.items(raw, "origins", route_origin)
    cors = _parse_cors(reader, raw.get("cors"), route_methods) if raw.get("cors") is not None else None
    if cors is not None and not origins:
        reader.problem("needs origins (the origins CORS is answered for)", "cors")
    scopes = _parse_scopes(reader, raw.get("required_scopes"))
    policy = PolicySettings(
        auth=tuple(auth),
        mode=reader.value(raw, "mode", _mode, "enforce"),
        anonymous=reader.value(raw, "anonymous", parse_bool, False),
        required_scopes=scopes,
        ip_allow=tuple(ip_allow),
        origins=tuple(dict.fromkeys(origins)),
        cors=cors,
        forward_credential=reader.value(raw, "forward_credential", parse_bool, False),
        jwt_providers=tuple(reader.items(raw, "jwt_providers", _name)),
        audit=reader.value(raw, "audit", _audit, "all"),
        stale_grace=reader.value(raw, "stale_grace", parse_stale_grace, 0.0),
    )
    if not policy.auth:
        for key in ("anonymous", "required_scopes", "forward_credential", "jwt_providers", "stale_grace", "audit"):
            if raw.get(key) is not None:
                reader.problem("needs auth (the authenticators this route accepts)", key)
    if policy.jwt_providers and "jwt" not in policy.auth:
        reader.problem("needs jwt in auth", "jwt_providers")
    if policy.stale_grace and policy.auth and "introspection" not in policy.auth:
        reader.problem("needs introspection in auth (it keeps the identity service's answers)", "stale_grace")
    return policy


def check_route_policy(reader: _Reader, policy: PolicySettings, authn: AuthnSettings, has_kek: bool) -> None:
    """Cross-section checks, once ``authn`` is known (the reader is at the route)."""
    names = {provider.name for provider in authn.jwt.providers}
    with reader.at("auth"):
        for index, name in enumerate(policy.auth):
            if name == "jwt" and not authn.jwt.providers:
                reader.problem("'jwt' is not configured: add authn.jwt.providers", index)
            if name == "introspection" and authn.introspection is None:
                reader.problem("'introspection' is not configured: add authn.introspection", index)
            if name == "hmac_legacy" and not has_kek:
                reader.problem(
                    "'hmac_legacy' needs the key-encryption key to read service secrets: "
                    "set credentials.kek_file (or GATEWAY_KEK_FILE / GATEWAY_KEK)",
                    index,
                )
            if name == "service_token" and not authn.service_token.store and not authn.service_token.static:
                reader.problem(
                    "'service_token' is not configured: authn.service_token.store is off and no static tokens", index
                )
    with reader.at("jwt_providers"):
        for index, provider in enumerate(policy.jwt_providers):
            if provider not in names:
                reader.problem(f"no JWT provider named {provider!r} in authn.jwt.providers", index)


def _authenticator(value: object) -> str:
    if not isinstance(value, str) or value not in AUTHENTICATORS:
        raise ValueError(f"unknown authenticator {value!r} (expected one of: {', '.join(AUTHENTICATORS)})")
    return value


def _audit(value: object) -> str:
    if not isinstance(value, str) or value.lower() not in AUDIT_CHOICES:
        raise ValueError(f"expected one of {', '.join(AUDIT_CHOICES)}, got {value!r}")
    return value.lower()


def _mode(value: object) -> str:
    if not isinstance(value, str) or value.lower() not in MODES:
        raise ValueError(f"expected one of {', '.join(MODES)}, got {value!r}")
    return value.lower()


def _scope_list(reader: _Reader, value: object, key: str | int) -> frozenset[str]:
    if not isinstance(value, list):
        reader.problem(f"expected a list of scopes, got {type(value).__name__}", key)
        return frozenset()
    scopes: list[str] = []
    with reader.at(key):
        for index, item in enumerate(value):
            try:
                scopes.append(parse_scope(item))
            except ValueError as exc:
                reader.problem(str(exc), index)
    return frozenset(scopes)


def _parse_scopes(reader: _Reader, raw: object) -> ScopeRequirement:
    if raw is None:
        return ScopeRequirement()
    if isinstance(raw, list):
        return ScopeRequirement(((ANY_METHOD, _scope_list(reader, raw, "required_scopes")),))
    if not isinstance(raw, dict):
        reader.problem(
            f"expected a list of scopes or a mapping of method to scopes, got {type(raw).__name__}", "required_scopes"
        )
        return ScopeRequirement()
    by_method: list[tuple[str, frozenset[str]]] = []
    with reader.at("required_scopes"):
        for method, scopes in raw.items():
            try:
                name = ANY_METHOD if method == ANY_METHOD else _method(method)
            except ValueError as exc:
                reader.problem(str(exc), str(method))
                continue
            by_method.append((name, _scope_list(reader, scopes, str(method))))
    return ScopeRequirement(tuple(by_method))


def _parse_cors(reader: _Reader, raw_section: object, route_methods: frozenset[str] | None) -> CorsSettings:
    with reader.at("cors"):
        if raw_section is True:
            raw_section = {}
        raw = reader.mapping(raw_section, ("methods", "headers", "expose_headers", "max_age", "credentials"))
        default_methods = tuple(sorted(route_methods)) if route_methods else DEFAULT_CORS_METHODS
        methods = reader.items(raw, "methods", _method)
        headers = reader.items(raw, "headers", _header_name)
        expose = reader.items(raw, "expose_headers", _header_name)
        max_age = reader.value(raw, "max_age", parse_duration, float(DEFAULT_CORS_MAX_AGE))
        return CorsSettings(
            methods=tuple(methods) if methods else default_methods,
            headers=tuple(headers),
            expose_headers=tuple(expose) if "expose_headers" in raw else ("X-Request-Id",),
            max_age=int(max_age),
            credentials=reader.value(raw, "credentials", parse_bool, False),
        )
