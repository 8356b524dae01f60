"""Settings of the auth backend: ``authn.backend`` (how identity services are called) and
``authn.introspection`` (which one checks opaque bearer tokens, and how).

Parsed by :func:`gateway.auth_settings.parse_authn` with the settings reader (one
``key.path: message`` line per problem). The client secret is read from its file
here, once, and kept out of ``repr``.

::

    authn:
      backend:                       # every call: introspection, validate, OIDC discovery, JWKS
        timeout: 2s                  # per call, whole answer included
        fail_max: 5                  # consecutive failures that open an endpoint's circuit
        reset_timeout: 30s           # open this long, then one trial call
        max_concurrent: 64           # calls in flight per endpoint; more wait queue_timeout, then 503
        queue_timeout: 50ms
        max_response: 64KiB
      introspection:
        protocol: rfc7662            # or validate (POST {"token": ...} -> JSON identity)
        url: https://idp.example.com/oauth2/introspect     # or issuer: (OIDC discovery, rfc7662 only)
        client_auth: basic           # none | basic | bearer
        client_id: gateway
        client_secret_file: /run/secrets/introspection
        token_type_hint: access_token
        audiences: []                # if set, the answer's aud must name one of them
        fields: {subject: [sub, username], tenant: tenant, scopes: scope, expires_at: exp, ...}
        invalid_statuses: [401, 403, 404]                  # validate only
        cache: {size: 100000, max_ttl: 5m, negative_ttl: 10s, shared: true}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from gateway.backend.client import BackendLimits
from gateway.backend.decisions import FieldMap
from gateway.units import (
    parse_bool,
    parse_duration,
    parse_positive_duration,
    parse_positive_int,
    parse_secret_file,
    parse_size,
    parse_text,
)

if TYPE_CHECKING:
    from gateway.settings import _Reader

PROTOCOLS: Final = ("rfc7662", "validate")
CLIENT_AUTH: Final = ("none", "basic", "bearer")
FIELD_NAMES: Final = ("active", "subject", "tenant", "scopes", "expires_at", "client_id", "audience", "token_id")
_PATH = re.compile(r"^[A-Za-z0-9_:$@-]{1,64}(\.[A-Za-z0-9_:$@-]{1,64}){0,4}$")


@dataclass(frozen=True, slots=True)
class DecisionCacheSettings:
    size: int = 100_000
    max_ttl: float = 300.0
    negative_ttl: float = 10.0
    shared: bool = True  # also keep decisions in the store (shared by replicas on Redis)


@dataclass(frozen=True, slots=True)
class IntrospectionSettings:
    """The identity service that checks opaque bearer tokens; exactly one of ``url`` and ``issuer``."""

    protocol: str = "rfc7662"
    url: str | None = None
    issuer: str | None = None
    client_auth: str = "none"
    client_id: str | None = None
    client_secret_file: Path | None = None
    client_secret: str = field(default="", repr=False, compare=False)
    token_type_hint: str | None = "access_token"  # noqa: S105 - RFC 7662 hint, not a secret
    audiences: tuple[str, ...] = ()
    fields: FieldMap = field(default_factory=FieldMap)
    invalid_statuses: frozenset[int] = frozenset({401, 403, 404})
    cache: DecisionCacheSettings = field(default_factory=DecisionCacheSettings)

    @property
    def location(self) -> str:
        """What identifies the service in the cache key and logs: its URL, or its issuer."""
        return self.url or f"issuer:{self.issuer}"


# -- converters -------------------------------------------------------------------------------


def _choice(*choices: str) -> Any:
    def convert(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value.lower()

    return convert


def http_url(value: object) -> str:
    text = value if isinstance(value, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ValueError(f"not an http(s) URL: {value!r}")
    return text


def _field_path(value: object) -> str:
    if not isinstance(value, str) or not _PATH.match(value):
        raise ValueError(f"a field is a JSON key or a dotted path (user.id), got {value!r}")
    return value


def _status(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 499:
        raise ValueError(f"expected a 4xx status code, got {value!r}")
    return value


# -- the sections -----------------------------------------------------------------------------

BACKEND_KEYS: Final = ("timeout", "fail_max", "reset_timeout", "max_concurrent", "queue_timeout", "max_response")


def parse_backend(reader: _Reader, raw_section: object) -> BackendLimits:
    defaults = BackendLimits()
    with reader.at("backend"):
        raw = reader.mapping(raw_section, BACKEND_KEYS)
        return BackendLimits(
            timeout=reader.value(raw, "timeout", parse_positive_duration, defaults.timeout),
            fail_max=reader.value(raw, "fail_max", parse_positive_int, defaults.fail_max),
            reset_timeout=reader.value(raw, "reset_timeout", parse_positive_duration, defaults.reset_timeout),
            max_concurrent=reader.value(raw, "max_concurrent", parse_positive_int, defaults.max_concurrent),
            queue_timeout=reader.value(raw, "queue_timeout", parse_duration, defaults.queue_timeout),
            max_response=reader.value(raw, "max_response", parse_size, defaults.max_response),
        )


INTROSPECTION_KEYS: Final = (
    "protocol",
    "url",
    "issuer",
    "client_auth",
    "client_id",
    "client_secret_file",
    "token_type_hint",
    "audiences",
    "fields",
    "invalid_statuses",
    "cache",
)


def parse_introspection(reader: _Reader, raw_section: object) -> IntrospectionSettings | None:
    """``authn.introspection``; ``None`` when absent."""
    if raw_section is None:
        return None
    from gateway.backend.introspect import ClientAuth, read_secret_file

    with reader.at("introspection"):
        raw = reader.mapping(raw_section, INTROSPECTION_KEYS)
        protocol = reader.value(raw, "protocol", _choice(*PROTOCOLS), "rfc7662")
        url = reader.value(raw, "url", http_url, None)
        issuer = reader.value(raw, "issuer", http_url, None)
        if url is None and issuer is None:
            if "url" not in raw and "issuer" not in raw:  # else the bad value was reported
                reader.problem("one of url or issuer (OIDC discovery) is required")
        elif url is not None and issuer is not None:
            reader.problem("give url or issuer (OIDC discovery), not both")
        if issuer is not None and protocol == "validate":
            reader.problem("OIDC discovery finds an RFC 7662 endpoint: a validate endpoint needs url", "issuer")
        client_auth = reader.value(raw, "client_auth", _choice(*CLIENT_AUTH), "none")
        client_id = reader.value(raw, "client_id", parse_text, None)
        secret_file = reader.value(raw, "client_secret_file", parse_secret_file, None)
        secret = ""
        if client_auth == "basic" and client_id is None:
            reader.problem("required with client_auth basic", "client_id")
        if client_auth != "none" and secret_file is None and "client_secret_file" not in raw:
            reader.problem(f"required with client_auth {client_auth}", "client_secret_file")
        if client_auth == "none" and secret_file is not None:
            reader.problem("set client_auth (basic or bearer) to use it", "client_secret_file")
        if client_auth != "none" and secret_file is not None:
            try:  # read now: a missing or empty secret stops the start, naming the key
                secret = read_secret_file(secret_file)
                ClientAuth(client_auth, client_id=client_id or "-", secret=secret)
            except ValueError as exc:
                reader.problem(str(exc), "client_secret_file")
        fields = _parse_fields(reader, raw.get("fields"), protocol)
        statuses = reader.items(raw, "invalid_statuses", _status)
        if "invalid_statuses" in raw and protocol != "validate":
            reader.problem("only for protocol validate", "invalid_statuses")
        return IntrospectionSettings(
            protocol=protocol,
            url=url,
            issuer=issuer,
            client_auth=client_auth,
            client_id=client_id,
            client_secret_file=secret_file,
            client_secret=secret,
            token_type_hint=reader.value(raw, "token_type_hint", parse_text, "access_token"),
            audiences=tuple(reader.items(raw, "audiences", parse_text)),
            fields=fields,
            invalid_statuses=frozenset(statuses) if "invalid_statuses" in raw else frozenset({401, 403, 404}),
            cache=_parse_cache(reader, raw.get("cache")),
        )


def _parse_fields(reader: _Reader, raw_section: object, protocol: str) -> FieldMap:
    defaults = FieldMap() if protocol == "rfc7662" else FieldMap(active=None)
    with reader.at("fields"):
        raw = reader.mapping(raw_section, FIELD_NAMES)
        values: dict[str, Any] = {}
        for name in FIELD_NAMES:
            if name not in raw:
                continue
            value = raw[name]
            if name == "subject":
                candidates = value if isinstance(value, list) else [value]
                paths = []
                for index, item in enumerate(candidates):
                    try:
                        paths.append(_field_path(item))
                    except ValueError as exc:
                        reader.problem(str(exc), "subject" if not isinstance(value, list) else f"subject[{index}]")
                if paths:
                    values["subject"] = tuple(paths)
            elif value is None:
                if name == "active" and protocol == "rfc7662":
                    reader.problem("RFC 7662 answers always carry active", name)
                values[name] = None  # not mapped
            else:
                values[name] = reader.value(raw, name, _field_path, getattr(defaults, name))
        return FieldMap(**{**_as_dict(defaults), **values})


def _as_dict(fields: FieldMap) -> dict[str, Any]:
    return {name: getattr(fields, name) for name in FIELD_NAMES}


def _parse_cache(reader: _Reader, raw_section: object) -> DecisionCacheSettings:
    defaults = DecisionCacheSettings()
    with reader.at("cache"):
        raw = reader.mapping(raw_section, ("size", "max_ttl", "negative_ttl", "shared"))
        return DecisionCacheSettings(
            size=reader.value(raw, "size", parse_positive_int, defaults.size),
            max_ttl=reader.value(raw, "max_ttl", parse_positive_duration, defaults.max_ttl),
            negative_ttl=reader.value(raw, "negative_ttl", parse_duration, defaults.negative_ttl),
            shared=reader.value(raw, "shared", parse_bool, defaults.shared),
        )


def parse_stale_grace(value: object) -> float:
    """A route's ``stale_grace``: a duration, at most a day (a longer outage is not a grace)."""
    seconds = parse_duration(value)
    if seconds < 0 or seconds > 86400:
        raise ValueError(f"stale_grace is between 0 and 24h, got {value!r}")
    return seconds
