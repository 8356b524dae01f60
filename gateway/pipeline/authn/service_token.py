"""Service tokens (``Authorization: Bearer sk_...``) and static internal tokens, one authenticator.

Issued tokens::

    shape + checksum (no lookup for a mistyped token)   token.malformed
    SHA-256 of the token found in the store             token.unknown    (client reads token.invalid)
    not revoked                                         token.revoked    (client reads token.invalid)
    not expired                                         token.expired
    client IP in the token's allowlist                  token.ip_denied  (403)

Static internal tokens are shared secrets, one or several per calling service
(several during a rotation), read from files at start-up. Only their SHA-256 is
kept; a presented token is hashed and compared with every one of them in
constant time. A bearer token that is neither an ``sk_`` token nor a static
one is ``token.unknown``.

A well-formed ``sk_`` token presented again, whose record the cache holds, takes a
synchronous fast path (:meth:`ServiceTokenAuthenticator.authenticate`): one
``Authorization`` header, ``Bearer <token>`` with a token parsed before, and the
token source's ``peek``. Anything else takes the general path below it, so the
answers (and reason codes) are the same.

The shape, checksum and hash are the credential package's
(:func:`gateway.credentials.tokens.parse_token`), so issuing and checking can
never disagree about the format.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp.hdrs import AUTHORIZATION

from gateway.credentials.errors import MalformedCredential
from gateway.credentials.tokens import TokenKind
from gateway.pipeline.allowlists import ip_allowlist
from gateway.pipeline.authn.bearer import (
    BEARER_CHALLENGE,
    MalformedBearer,
    bearer_error_challenge,
    bearer_token,
    looks_like_jwt,
)
from gateway.pipeline.authn.derived import PerRecord
from gateway.pipeline.authn.shapes import ParsedTokens
from gateway.pipeline.base import (
    AuthError,
    AuthMethod,
    CredentialDenied,
    CredentialKind,
    Principal,
    RequestView,
    service_subject,
)
from gateway.pipeline.sources import PeekableTokenSource, TokenRecord, TokenSource

SERVICE_TOKEN_PREFIX: Final = TokenKind.SERVICE_TOKEN.value
MIN_STATIC_TOKEN_LENGTH: Final = 32
MAX_OPAQUE_TOKEN_LENGTH: Final = 512


@dataclass(frozen=True, slots=True)
class StaticToken:
    """One accepted static secret, by its SHA-256 digest only."""

    service_id: str
    token_id: str
    digest: bytes
    scopes: frozenset[str] = frozenset()
    tenant: str | None = None


class StaticTokens:
    """Shared secrets per calling service; a presented token is compared with all of them in constant time."""

    def __init__(self, tokens: Iterable[StaticToken]) -> None:
        self.tokens = tuple(tokens)

    @classmethod
    def from_secrets(
        cls,
        secrets: Mapping[str, Sequence[str]],
        *,
        scopes: Mapping[str, frozenset[str]] | None = None,
        tenants: Mapping[str, str] | None = None,
    ) -> StaticTokens:
        """Build from ``{service_id: [secret, ...]}``; a secret shorter than 32 characters is refused."""
        tokens = []
        for service_id, values in secrets.items():
            for index, secret in enumerate(values):
                if len(secret) < MIN_STATIC_TOKEN_LENGTH:
                    raise ValueError(
                        f"static token {index} of service {service_id!r} is shorter than "
                        f"{MIN_STATIC_TOKEN_LENGTH} characters"
                    )
                tokens.append(
                    StaticToken(
                        service_id=service_id,
                        token_id=f"{service_id}#{index}",
                        digest=hashlib.sha256(secret.encode("utf-8")).digest(),
                        scopes=(scopes or {}).get(service_id, frozenset()),
                        tenant=(tenants or {}).get(service_id),
                    )
                )
        return cls(tokens)

    @classmethod
    def from_files(
        cls,
        files: Mapping[str, Sequence[str | Path]],
        *,
        scopes: Mapping[str, frozenset[str]] | None = None,
        tenants: Mapping[str, str] | None = None,
    ) -> StaticTokens:
        """Read ``{service_id: [path, ...]}``: each non-empty line not starting with ``#`` is one secret.

        Several files (or lines) per service are all valid at once: that is the
        rotation overlap. Errors name the file, never its content.
        """
        secrets: dict[str, list[str]] = {}
        for service_id, paths in files.items():
            for path in paths:
                try:
                    text = Path(path).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ValueError(f"cannot read static token file {str(path)!r}: {exc.__class__.__name__}") from None
                lines = [line.strip() for line in text.splitlines()]
                found = [line for line in lines if line and not line.startswith("#")]
                if not found:
                    raise ValueError(f"static token file {str(path)!r} holds no token")
                secrets.setdefault(service_id, []).extend(found)
        return cls.from_secrets(secrets, scopes=scopes, tenants=tenants)

    def match(self, token: str) -> StaticToken | None:
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: StaticToken | None = None
        for candidate in self.tokens:
            # No early exit: the time taken does not depend on which secret matched.
            if hmac.compare_digest(candidate.digest, digest):
                found = candidate
        return found


class ServiceTokenAuthenticator:
    """Bearer tokens that are not JWTs: issued ``sk_`` service tokens and static internal tokens."""

    name: Final = AuthMethod.SERVICE_TOKEN
    challenge: Final = BEARER_CHALLENGE

    def __init__(
        self,
        tokens: TokenSource | None = None,
        *,
        static: StaticTokens | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if tokens is None and static is None:
            raise ValueError("a service token authenticator needs a token source, static tokens, or both")
        self.tokens = tokens
        self.static = static if static is not None and static.tokens else None
        self.clock = clock
        self._shapes = ParsedTokens(TokenKind.SERVICE_TOKEN)
        self._principals = PerRecord(_issued_principal)
        self._known = self._shapes.known
        self._peek = tokens.peek if isinstance(tokens, PeekableTokenSource) else None

    @staticmethod
    def _fail(reason: str, log_detail: str, error: str = "invalid_token") -> AuthError:
        return AuthError(reason, log_detail=log_detail, www_authenticate=bearer_error_challenge(error))

    async def authenticate(self, request: RequestView) -> Principal | None:
        # Fast path, no coroutine below this one: the only Authorization header is "Bearer <token>" and
        # the token is one parsed before, so bearer_token() and the general path below would reach
        # _checked() with the same token and hash (a parsed sk_ token is token68, has no dot and is short).
        # The header's scheme in other spellings, a new token or a cache miss take the general path.
        if self._peek is not None:
            values = request.request.headers.getall(AUTHORIZATION, ())  # the request itself: no property call
            if len(values) == 1 and values[0].startswith("Bearer "):
                parsed = self._known(values[0][7:].strip(" \t"))
                if parsed is not None and (record := self._peek(parsed.hash)) is not None:
                    return self._checked(record, request.client_ip)
        return await self._authenticate(request)

    async def _authenticate(self, request: RequestView) -> Principal | None:
        try:
            token = bearer_token(request.headers)
        except MalformedBearer as exc:
            raise self._fail("token.malformed", str(exc), "invalid_request") from None
        if token is None or looks_like_jwt(token):
            return None
        if len(token) > MAX_OPAQUE_TOKEN_LENGTH:
            raise self._fail("token.malformed", "bearer token too long", "invalid_request")
        if token.startswith(SERVICE_TOKEN_PREFIX) and self.tokens is not None:
            return await self._issued(self.tokens, token, request.client_ip)
        if self.static is not None:
            static = self.static.match(token)
            if static is None:
                raise self._fail("token.unknown", "bearer token matches no static token")
            return Principal(
                subject=service_subject(static.service_id),
                method=AuthMethod.SERVICE_TOKEN,
                credential_kind=CredentialKind.STATIC_TOKEN,
                credential_id=static.token_id,
                tenant=static.tenant,
                scopes=static.scopes,
                service_id=static.service_id,
            )
        raise self._fail("token.malformed", f"bearer token is not an {SERVICE_TOKEN_PREFIX} token", "invalid_request")

    async def _issued(self, tokens: TokenSource, token: str, client_ip: str) -> Principal:
        try:
            parsed = self._shapes.parse(token)
        except MalformedCredential as exc:
            raise self._fail("token.malformed", str(exc), "invalid_request") from None
        record = await tokens.lookup(parsed.hash)
        if record is None:
            raise self._fail("token.unknown", "no service token with this hash")
        return self._checked(record, client_ip)

    def _checked(self, record: TokenRecord, client_ip: str) -> Principal:
        """The decision on a token found in the store."""
        if record.revoked:
            raise self._fail("token.revoked", f"service token {record.token_id} is revoked")
        if record.expires_at is not None and record.expires_at <= self.clock():
            raise self._fail("token.expired", f"service token {record.token_id} expired")
        if record.ip_allow and not ip_allowlist(record.ip_allow).allows(client_ip):
            raise CredentialDenied(
                "token.ip_denied", log_detail=f"service token {record.token_id} used from {client_ip}"
            )
        return self._principals.of(record)


def _issued_principal(record: TokenRecord) -> Principal:
    return Principal(
        subject=service_subject(record.service_id),
        method=AuthMethod.SERVICE_TOKEN,
        credential_kind=CredentialKind.SERVICE_TOKEN,
        credential_id=record.token_id,
        tenant=record.tenant,
        scopes=record.scopes,
        service_id=record.service_id,
        expires_at=record.expires_at,
    )
