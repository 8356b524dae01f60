"""Typed settings: the YAML file plus ``GATEWAY_*`` environment overrides.

Configuration enters the process once, here. :func:`load_settings` reads the
file, applies the environment, validates everything and returns a frozen
:class:`Settings`, or raises :class:`ConfigError` carrying one line per problem,
each naming the key path (``routes[1].upstream: not an http(s) URL: 'x'``).
Nothing else in the gateway reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from gateway.admin.tokens import AdminTokens, load_admin_tokens
from gateway.auth_settings import (
    ROUTE_POLICY_KEYS,
    AuthnSettings,
    ContextSigningSettings,
    PolicySettings,
    check_route_policy,
    parse_authn,
    parse_context_signing,
    parse_route_policy,
)
from gateway.bodies import DEFAULT_BODY_TIMEOUT
from gateway.header_timeout import DEFAULT_HEADER_TIMEOUT
from gateway.observability import audit as audit_trail
from gateway.units import (
    Address,
    parse_address,
    parse_bool,
    parse_duration,
    parse_network,
    parse_positive_duration,
    parse_positive_int,
    parse_secret_file,
    parse_size,
)

T = TypeVar("T")
MAX_PROBLEM = 300  # characters of a problem's message (after its key)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_CONFIG_PATH = "config/gateway.yaml"
DEFAULT_IDENTITY_HEADERS = ("X-User-Id", "X-Tenant-Id", "X-Service-Id", "X-Auth-*", "X-Gateway-*")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
STORE_SCHEMES = ("memory", "sqlite", "redis", "rediss", "redis+sentinel", "redis+cluster", "rediss+cluster")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")

_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEADER_RULE = re.compile(r"^[A-Za-z0-9!#$%&'+.^_`|~-]+\*?$")
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


class ConfigError(Exception):
    """Configuration is invalid; ``problems`` holds one ``key.path: message`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 2.0
    read: float = 30.0


_DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_MAX_BODY = 10 * 1024**2


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """One configured route: a path prefix served by one upstream."""

    name: str
    prefix: str
    upstream: str
    strip_prefix: bool = False
    preserve_host: bool = False
    methods: frozenset[str] | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_body: int = DEFAULT_MAX_BODY
    websocket: bool = True
    policy: PolicySettings | None = None  # auth, mode, allowlists, CORS (gateway/auth_settings.py)


@dataclass(frozen=True, slots=True)
class UpstreamPoolSettings:
    max_connections: int = 256
    keepalive_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: str = "json"
    access_log: bool = True


@dataclass(frozen=True, slots=True)
class AdminSettings:
    tokens_file: Path | None = None
    tokens: AdminTokens = field(default_factory=AdminTokens)  # SHA-256 digests read from tokens_file


@dataclass(frozen=True, slots=True)
class CredentialSettings:
    """Encryption at rest of HMAC secrets, and the data plane's credential cache and usage batching."""

    kek_file: Path | None = None
    kek: str | None = field(default=None, repr=False)  # from GATEWAY_KEK only: never in the YAML file
    cache_size: int = 10_000
    cache_ttl: float = 10.0
    negative_cache_ttl: float = 5.0
    usage_flush_interval: float = 10.0


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """The audit trail: a bounded in-memory buffer written in batches, and how long events are kept."""

    retention: float = audit_trail.DEFAULT_RETENTION  # seconds; 0 keeps events forever
    buffer: int = audit_trail.DEFAULT_BUFFER
    flush_interval: float = audit_trail.DEFAULT_FLUSH_INTERVAL
    batch_size: int = audit_trail.DEFAULT_BATCH_SIZE


@dataclass(frozen=True, slots=True)
class Settings:
    listen: Address = field(default_factory=lambda: Address("0.0.0.0", 8080))  # noqa: S104 - a gateway listens
    admin_listen: Address = field(default_factory=lambda: Address("127.0.0.1", 9901))
    store: str = "sqlite:///var/gateway.db"
    trusted_proxies: tuple[Network, ...] = ()
    identity_headers: tuple[str, ...] = DEFAULT_IDENTITY_HEADERS
    drain_timeout: float = 30.0
    max_header_size: int = 8190
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    upstream_pool: UpstreamPoolSettings = field(default_factory=UpstreamPoolSettings)
    log: LogSettings = field(default_factory=LogSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    credentials: CredentialSettings = field(default_factory=CredentialSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    authn: AuthnSettings = field(default_factory=AuthnSettings)
    context_signing: ContextSigningSettings = field(default_factory=ContextSigningSettings)
    routes: tuple[RouteSettings, ...] = ()
    source: str = "<defaults>"


class _Reader:
    """Walks raw YAML data, converting values and collecting every problem with its key path."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._path: list[str] = []

    @contextmanager
    def at(self, key: str | int) -> Iterator[None]:
        self._path.append(f"[{key}]" if isinstance(key, int) else key)
        try:
            yield
        finally:
            self._path.pop()

    def where(self, key: str | int | None = None) -> str:
        parts = [*self._path, *([] if key is None else [f"[{key}]" if isinstance(key, int) else key])]
        text = ""
        for part in parts:
            text += part if part.startswith("[") or not text else "." + part
        return text or "<root>"

    def problem(self, message: str, key: str | int | None = None) -> None:
        if len(message) > MAX_PROBLEM:  # a message quotes the value: one pasted by mistake may be huge
            message = message[: MAX_PROBLEM - 3] + "..."
        self.problems.append(f"{self.where(key)}: {message}")

    def mapping(self, raw: object, allowed: tuple[str, ...]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(f"expected a mapping, got {type(raw).__name__}")
            return {}
        for key in raw:
            if key not in allowed:
                self.problem(f"unknown key (expected one of: {', '.join(allowed)})", str(key))
        return {k: v for k, v in raw.items() if k in allowed}

    def value(self, raw: Mapping[str, Any], key: str, convert: Callable[[object], T], default: T) -> T:
        if key not in raw or raw[key] is None:
            return default
        try:
            return convert(raw[key])
        except ValueError as exc:
            self.problem(str(exc), key)
            return default

    def items(self, raw: Mapping[str, Any], key: str, convert: Callable[[object], T]) -> list[T]:
        value = raw.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(f"expected a list, got {type(value).__name__}", key)
            return []
        out: list[T] = []
        with self.at(key):
            for index, item in enumerate(value):
                try:
                    out.append(convert(item))
                except ValueError as exc:
                    self.problem(str(exc), index)
        return out


def _choice(*choices: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value.lower()

    return convert


def _store_url(value: object) -> str:
    if not isinstance(value, str) or "://" not in value:
        raise ValueError(f"not a store URL (e.g. sqlite:///var/gateway.db, redis://host:6379/0): {value!r}")
    scheme = value.split("://", 1)[0].lower()
    if scheme not in STORE_SCHEMES:
        raise ValueError(f"unknown store scheme {scheme!r} (expected one of: {', '.join(STORE_SCHEMES)})")
    # The backend checks its own options (poll, prefix, timeout, password_file...) when built, without
    # connecting: a bad one is a configuration error here, in check-config too, not a surprise at serve.
    from gateway.store.errors import StoreConfigError
    from gateway.store.registry import store_from_url

    try:
        store_from_url(value)
    except StoreConfigError as exc:
        raise ValueError(exc.detail) from None
    return value


def _credentials(reader: _Reader, raw_section: object, environ: Mapping[str, str]) -> CredentialSettings:
    defaults = CredentialSettings()
    allowed = ("kek_file", "cache_size", "cache_ttl", "negative_cache_ttl", "usage_flush_interval")
    with reader.at("credentials"):
        raw = reader.mapping(raw_section, allowed)
        kek_file = reader.value(raw, "kek_file", parse_secret_file, None)
        kek = environ.get("GATEWAY_KEK") or None
        if kek_file is not None or kek is not None:
            from gateway.credentials.encryption import load_secret_box
            from gateway.credentials.errors import CredentialError

            try:  # a wrong KEK is a configuration error, reported before anything is served
                load_secret_box(kek_file=kek_file, kek=kek)
            except CredentialError as exc:
                if kek_file is not None:
                    reader.problem(exc.detail, "kek_file")
                else:
                    reader.problem(f"GATEWAY_KEK: {exc.detail}")
        return CredentialSettings(
            kek_file=kek_file,
            kek=kek,
            cache_size=reader.value(raw, "cache_size", parse_positive_int, defaults.cache_size),
            cache_ttl=reader.value(raw, "cache_ttl", parse_positive_duration, defaults.cache_ttl),
            negative_cache_ttl=reader.value(raw, "negative_cache_ttl", parse_duration, defaults.negative_cache_ttl),
            usage_flush_interval=reader.value(
                raw, "usage_flush_interval", parse_positive_duration, defaults.usage_flush_interval
            ),
        )


def _identity_header(value: object) -> str:
    if not isinstance(value, str) or not _HEADER_RULE.match(value):
        raise ValueError(f"not a header name (a trailing * matches a prefix): {value!r}")
    return value


def _method(value: object) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise ValueError(f"not an HTTP method: {value!r}")
    return value.upper()


def _upstream_url(value: object) -> str:
    text = value if isinstance(value, str) else ""
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError(f"not an http(s) URL: {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"upstream URL must not have a query or fragment: {value!r}")
    return text.rstrip("/")


def _prefix(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"a prefix starts with '/': {value!r}")
    if any(c in value for c in "?#* \t") or "//" in value:
        raise ValueError(f"a prefix is a plain path (no ?, #, *, spaces or //): {value!r}")
    if any(segment in (".", "..") for segment in value.split("/")):
        raise ValueError(f"a prefix has no '.' or '..' segments: {value!r}")
    return value.rstrip("/") or "/"


def _route(reader: _Reader, raw_route: object) -> RouteSettings | None:
    allowed = (
        "name",
        "prefix",
        "upstream",
        "strip_prefix",
        "preserve_host",
        "methods",
        "timeouts",
        "max_body",
        "websocket",
        *ROUTE_POLICY_KEYS,
    )
    raw = reader.mapping(raw_route, allowed)
    if not isinstance(raw_route, dict):
        return None
    for required in ("name", "prefix", "upstream"):
        if raw.get(required) is None:
            reader.problem("required", required)
    name = reader.value(raw, "name", _route_name, "")
    prefix = reader.value(raw, "prefix", _prefix, "")
    upstream = reader.value(raw, "upstream", _upstream_url, "")
    methods = reader.items(raw, "methods", _method)
    with reader.at("timeouts"):
        raw_timeouts = reader.mapping(raw.get("timeouts"), ("connect", "read"))
        timeouts = Timeouts(
            connect=reader.value(raw_timeouts, "connect", parse_duration, _DEFAULT_TIMEOUTS.connect),
            read=reader.value(raw_timeouts, "read", parse_duration, _DEFAULT_TIMEOUTS.read),
        )
    return RouteSettings(
        name=name,
        prefix=prefix,
        upstream=upstream,
        strip_prefix=reader.value(raw, "strip_prefix", parse_bool, False),
        preserve_host=reader.value(raw, "preserve_host", parse_bool, False),
        methods=frozenset(methods) if methods else None,
        timeouts=timeouts,
        max_body=reader.value(raw, "max_body", parse_size, DEFAULT_MAX_BODY),
        websocket=reader.value(raw, "websocket", parse_bool, True),
        policy=parse_route_policy(reader, raw, frozenset(methods) if methods else None),
    )


def _route_name(value: object) -> str:
    if not isinstance(value, str) or not _ROUTE_NAME.match(value):
        raise ValueError(f"a route name is 1-64 characters of [A-Za-z0-9_.-]: {value!r}")
    return value


def _check_route_set(reader: _Reader, routes: list[RouteSettings]) -> None:
    seen_names: dict[str, int] = {}
    seen_prefixes: dict[str, list[tuple[int, frozenset[str] | None]]] = {}
    for index, route in enumerate(routes):
        with reader.at("routes"):
            if route.name and route.name in seen_names:
                reader.problem(f"duplicate route name {route.name!r} (also routes[{seen_names[route.name]}])", index)
            seen_names.setdefault(route.name, index)
            for other_index, other_methods in seen_prefixes.get(route.prefix, []):
                overlap = route.methods is None or other_methods is None or route.methods & other_methods
                if route.prefix and overlap:
                    reader.problem(
                        f"duplicate prefix {route.prefix!r} overlaps routes[{other_index}] (use disjoint methods)",
                        index,
                    )
            seen_prefixes.setdefault(route.prefix, []).append((index, route.methods))


def parse_settings(raw: object, environ: Mapping[str, str], source: str = "<defaults>") -> Settings:
    """Validate raw configuration data (as loaded from YAML) plus environment overrides."""
    reader = _Reader()
    top = (
        "listen",
        "admin_listen",
        "store",
        "trusted_proxies",
        "identity_headers",
        "drain_timeout",
        "max_header_size",
        "header_timeout",
        "body_timeout",
        "upstream_pool",
        "log",
        "admin",
        "credentials",
        "audit",
        "authn",
        "context_signing",
        "routes",
    )
    data = dict(reader.mapping(raw, top))
    _apply_environment(data, environ)
    defaults = Settings()

    with reader.at("upstream_pool"):
        raw_pool = reader.mapping(data.get("upstream_pool"), ("max_connections", "keepalive_timeout"))
        pool = UpstreamPoolSettings(
            max_connections=reader.value(raw_pool, "max_connections", parse_positive_int, 256),
            keepalive_timeout=reader.value(raw_pool, "keepalive_timeout", parse_duration, 30.0),
        )
    with reader.at("log"):
        raw_log = reader.mapping(data.get("log"), ("level", "format", "access_log"))
        log = LogSettings(
            level=reader.value(raw_log, "level", _choice(*LOG_LEVELS), "info"),
            format=reader.value(raw_log, "format", _choice(*LOG_FORMATS), "json"),
            access_log=reader.value(raw_log, "access_log", parse_bool, True),
        )
    with reader.at("admin"):
        raw_admin = reader.mapping(data.get("admin"), ("tokens_file",))
        tokens_file = reader.value(raw_admin, "tokens_file", parse_secret_file, None)
        admin_tokens = AdminTokens()
        if tokens_file is not None:
            try:
                admin_tokens = load_admin_tokens(tokens_file)
            except ValueError as exc:
                reader.problem(str(exc), "tokens_file")
        admin = AdminSettings(tokens_file=tokens_file, tokens=admin_tokens)
    credentials = _credentials(reader, data.get("credentials"), environ)
    with reader.at("audit"):
        raw_audit = reader.mapping(data.get("audit"), ("retention", "buffer", "flush_interval", "batch_size"))
        audit_defaults = AuditSettings()
        audit = AuditSettings(
            retention=reader.value(raw_audit, "retention", parse_duration, audit_defaults.retention),
            buffer=reader.value(raw_audit, "buffer", parse_positive_int, audit_defaults.buffer),
            flush_interval=reader.value(
                raw_audit, "flush_interval", parse_positive_duration, audit_defaults.flush_interval
            ),
            batch_size=reader.value(raw_audit, "batch_size", parse_positive_int, audit_defaults.batch_size),
        )

    authn = parse_authn(reader, data.get("authn"))
    context_signing = parse_context_signing(reader, data.get("context_signing"))
    has_kek = credentials.kek_file is not None or credentials.kek is not None
    routes: list[RouteSettings] = []
    raw_routes = data.get("routes")
    if raw_routes is not None and not isinstance(raw_routes, list):
        reader.problem(f"expected a list, got {type(raw_routes).__name__}", "routes")
    elif raw_routes:
        for index, raw_route in enumerate(raw_routes):
            with reader.at("routes"), reader.at(index):
                route = _route(reader, raw_route)
                if route is not None and route.policy is not None:
                    check_route_policy(reader, route.policy, authn, has_kek)
            if route is not None:
                routes.append(route)
    _check_route_set(reader, routes)

    identity_headers = reader.items(data, "identity_headers", _identity_header)
    settings = Settings(
        listen=reader.value(data, "listen", parse_address, defaults.listen),
        admin_listen=reader.value(data, "admin_listen", parse_address, defaults.admin_listen),
        store=reader.value(data, "store", _store_url, defaults.store),
        trusted_proxies=tuple(reader.items(data, "trusted_proxies", parse_network)),
        identity_headers=tuple(identity_headers) if "identity_headers" in data else DEFAULT_IDENTITY_HEADERS,
        drain_timeout=reader.value(data, "drain_timeout", parse_duration, defaults.drain_timeout),
        max_header_size=reader.value(data, "max_header_size", parse_size, defaults.max_header_size),
        header_timeout=reader.value(data, "header_timeout", parse_positive_duration, defaults.header_timeout),
        body_timeout=reader.value(data, "body_timeout", parse_positive_duration, defaults.body_timeout),
        upstream_pool=pool,
        log=log,
        admin=admin,
        credentials=credentials,
        audit=audit,
        authn=authn,
        context_signing=context_signing,
        routes=tuple(routes),
        source=source,
    )
    if not settings.admin_listen.is_loopback and settings.admin.tokens_file is None:
        # The admin API can mint credentials: never serve it off-host unauthenticated.
        reader.problem(
            f"{settings.admin_listen} is not a loopback address: set admin.tokens_file (GATEWAY_ADMIN_TOKENS_FILE) "
            "so the admin API is authenticated, or bind admin_listen to 127.0.0.1",
            "admin_listen",
        )
    if reader.problems:
        raise ConfigError(reader.problems)
    return settings


# Environment variable -> (key path, converter from the env string to the YAML-level value).
_ENVIRONMENT: dict[str, tuple[tuple[str, ...], Callable[[str], object]]] = {
    "GATEWAY_LISTEN": (("listen",), str),
    "GATEWAY_ADMIN_LISTEN": (("admin_listen",), str),
    "GATEWAY_STORE": (("store",), str),
    "GATEWAY_TRUSTED_PROXIES": (("trusted_proxies",), lambda v: [p.strip() for p in v.split(",") if p.strip()]),
    "GATEWAY_DRAIN_TIMEOUT": (("drain_timeout",), str),
    "GATEWAY_LOG_LEVEL": (("log", "level"), str),
    "GATEWAY_LOG_FORMAT": (("log", "format"), str),
    "GATEWAY_ADMIN_TOKENS_FILE": (("admin", "tokens_file"), str),
    "GATEWAY_KEK_FILE": (("credentials", "kek_file"), str),
}


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, (path, convert) in _ENVIRONMENT.items():
        if name not in environ:
            continue
        target = data
        for key in path[:-1]:
            section = target.get(key)
            target[key] = section = dict(section) if isinstance(section, dict) else {}
            target = section
        target[path[-1]] = convert(environ[name])


def load_settings(path: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load the YAML file (``path``, else ``$GATEWAY_CONFIG``, else config/gateway.yaml if present)."""
    env = os.environ if environ is None else environ
    explicit = path or env.get("GATEWAY_CONFIG")
    config_path = Path(explicit or DEFAULT_CONFIG_PATH)
    try:
        exists = config_path.exists()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise ConfigError([f"config: cannot read {str(config_path)[:200]!r}: {exc}"]) from None
    if not exists:
        if explicit:
            raise ConfigError([f"config: file not found: {str(config_path)!r}"])
        return parse_settings({}, env)
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"config: cannot read {str(config_path)!r}: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"config: not valid YAML{where}: {problem}"]) from None
    return parse_settings(raw, env, source=str(config_path))
