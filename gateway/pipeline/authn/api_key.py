"""API keys of API clients (``X-API-Key: ak_...``): SDKs and browser apps.

::

    shape + checksum (no lookup for a mistyped key)     apikey.malformed
    SHA-256 of the key found in the store               apikey.unknown        (client reads apikey.invalid)
    not revoked                                         apikey.revoked        (client reads apikey.invalid)
    not expired                                         apikey.expired
    client IP in the client's allowlist                 apikey.ip_denied      (403)
    Origin (when sent) in the client's origins          apikey.origin_denied  (403)

The key is read from one header (``X-API-Key`` unless configured). Reading it
from the query string is off by default: URLs end up in access logs, browser
history and ``Referer`` headers. A browser request carries ``Origin``; a
server-side SDK usually does not, and is then bound by the IP allowlist alone.

A key presented again in the header, whose record the cache holds, takes a
synchronous fast path (the key source's ``peek``, no coroutine); anything else the
general path, with the same answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from gateway.credentials.errors import MalformedCredential
from gateway.credentials.tokens import TokenKind
from gateway.pipeline.allowlists import ip_allowlist, origin_allowlist
from gateway.pipeline.authn.derived import PerRecord
from gateway.pipeline.authn.shapes import ParsedTokens
from gateway.pipeline.base import AuthError, AuthMethod, CredentialDenied, CredentialKind, Principal, RequestView
from gateway.pipeline.sources import ApiClientRecord, ApiKeySource, PeekableApiKeySource

DEFAULT_HEADER: Final = "X-API-Key"
MAX_KEY_LENGTH: Final = 256


def client_subject(client_id: str) -> str:
    """The subject of an API client, as upstreams see it in ``X-User-Id``."""
    return f"client:{client_id}"


class ApiKeyAuthenticator:
    """Authenticates an API client by its key and enforces the client's IP and Origin allowlists."""

    name: Final = AuthMethod.API_KEY

    def __init__(
        self,
        keys: ApiKeySource,
        *,
        header: str = DEFAULT_HEADER,
        query_param: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.header = header
        self.query_param = query_param
        self.clock = clock
        self.challenge = f'ApiKey realm="gateway", header="{header}"'
        self._shapes = ParsedTokens(TokenKind.API_KEY)
        self._known = self._shapes.known
        self._peek = keys.peek if isinstance(keys, PeekableApiKeySource) else None
        self._principals = PerRecord(_client_principal)

    def _fail(self, reason: str, log_detail: str) -> AuthError:
        return AuthError(reason, log_detail=log_detail, www_authenticate=self.challenge)

    def _presented(self, request: RequestView) -> str | None:
        values = request.headers.getall(self.header, ())
        if len(values) > 1:
            raise self._fail("apikey.malformed", f"more than one {self.header} header")
        if values:
            return values[0].strip(" \t")
        if self.query_param is not None:
            from_query = request.request.query.getall(self.query_param, [])
            if len(from_query) > 1:
                raise self._fail("apikey.malformed", f"more than one {self.query_param!r} query parameter")
            if from_query:
                return from_query[0]
        return None

    async def authenticate(self, request: RequestView) -> Principal | None:
        # Fast path, no coroutine below this one: one header holding a key parsed before (so it passed
        # the length and shape checks of the general path) whose record the cache holds.
        if self._peek is not None:
            values = request.headers.getall(self.header, ())
            if len(values) == 1:
                parsed = self._known(values[0].strip(" \t"))
                if parsed is not None and (record := self._peek(parsed.hash)) is not None:
                    return self._checked(record, request)
        return await self._authenticate(request)

    async def _authenticate(self, request: RequestView) -> Principal | None:
        key = self._presented(request)
        if key is None:
            return None
        if len(key) > MAX_KEY_LENGTH:
            raise self._fail("apikey.malformed", "API key too long")
        try:
            parsed = self._shapes.parse(key)
        except MalformedCredential as exc:
            raise self._fail("apikey.malformed", str(exc)) from None
        record = await self.keys.lookup(parsed.hash)
        if record is None:
            raise self._fail("apikey.unknown", "no API key with this hash")
        return self._checked(record, request)

    def _checked(self, record: ApiClientRecord, request: RequestView) -> Principal:
        """The decision on a key found in the store."""
        if record.revoked:
            raise self._fail("apikey.revoked", f"API key {record.key_id} of client {record.client_id} is revoked")
        if record.expires_at is not None and record.expires_at <= self.clock():
            raise self._fail("apikey.expired", f"API key {record.key_id} of client {record.client_id} expired")
        if record.ip_allow and not ip_allowlist(record.ip_allow).allows(request.client_ip):
            raise CredentialDenied(
                "apikey.ip_denied", log_detail=f"client {record.client_id} used from {request.client_ip}"
            )
        if record.origins:
            origin = request.headers.get("Origin")
            if origin is not None and not origin_allowlist(record.origins).allows(origin):
                raise CredentialDenied(
                    "apikey.origin_denied", log_detail=f"client {record.client_id} used from origin {origin[:200]!r}"
                )
        return self._principals.of(record)


def _client_principal(record: ApiClientRecord) -> Principal:
    """The principal of a key record: one per record object (records are immutable)."""
    return Principal(
        subject=client_subject(record.client_id),
        method=AuthMethod.API_KEY,
        credential_kind=CredentialKind.API_KEY,
        credential_id=record.key_id,
        tenant=record.tenant,
        scopes=record.scopes,
        expires_at=record.expires_at,
    )
