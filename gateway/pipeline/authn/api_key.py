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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from gateway.credentials.errors import MalformedCredential
from gateway.credentials.tokens import TokenKind
from gateway.pipeline.allowlists import ip_allowlist, origin_allowlist
from gateway.pipeline.authn.shapes import ParsedTokens
from gateway.pipeline.base import AuthError, AuthMethod, CredentialDenied, CredentialKind, Principal, RequestView
from gateway.pipeline.sources import ApiKeySource

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
        return Principal(
            subject=client_subject(record.client_id),
            method=AuthMethod.API_KEY,
            credential_kind=CredentialKind.API_KEY,
            credential_id=record.key_id,
            tenant=record.tenant,
            scopes=record.scopes,
            expires_at=record.expires_at,
        )
