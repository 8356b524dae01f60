"""Asking the identity service about a token: RFC 7662 introspection, or a JSON validate endpoint.

RFC 7662 (``protocol: rfc7662``)::

    POST <introspection_endpoint>
    Content-Type: application/x-www-form-urlencoded
    Authorization: Basic base64(urlencode(client_id):urlencode(secret))   (client_auth: basic, RFC 6749 §2.3.1)
                or Bearer <token from a file>                           (client_auth: bearer)

    token=<the token>&token_type_hint=access_token

    200 {"active": true, "sub": ..., "scope": "a b", "client_id": ..., "exp": ..., "aud": ...}
    200 {"active": false}                          -> inactive: 401 token.inactive
    4xx                                            -> BackendRejected (our credentials or URL are wrong)

JSON validate endpoint (``protocol: validate``, in-house auth services)::

    POST <url>  {"token": "<the token>"}
    2xx  a JSON identity, fields where ``fields`` says   -> active (or per its ``active`` field)
    401, 403, 404 (``invalid_statuses``)                 -> inactive
    other 4xx                                            -> BackendRejected

Both map the answer with :func:`gateway.backend.decisions.read_identity`; a
malformed answer is a backend failure, never a decision. Client secrets are read
from files once, at start-up, and never logged.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import quote

from gateway.backend.client import BackendClient, BackendResponse
from gateway.backend.decisions import Decision, FieldMap, parse_json_object, read_identity
from gateway.backend.errors import BackendRejected, BadBackendResponse

UrlSource = Callable[[], Awaitable[str]]
DEFAULT_INVALID_STATUSES: Final = frozenset({401, 403, 404})


class TokenChecker(Protocol):
    """Asks a backend about one token; a :class:`~gateway.backend.errors.BackendError` when it cannot say."""

    @property
    def endpoint(self) -> str:
        """The endpoint name (metrics label, breaker)."""
        ...

    async def check(self, token: str) -> Decision: ...


class ClientAuth:
    """How the gateway authenticates itself to the backend: ``none``, ``basic`` or ``bearer``."""

    __slots__ = ("method", "_header")

    def __init__(self, method: str = "none", *, client_id: str | None = None, secret: str = "") -> None:
        if method not in ("none", "basic", "bearer"):
            raise ValueError(f"client_auth must be none, basic or bearer, not {method!r}")
        if method == "basic" and (not client_id or not secret):
            raise ValueError("client_auth basic needs a client_id and a secret")
        if method == "bearer" and not secret:
            raise ValueError("client_auth bearer needs a token")
        self.method = method
        self._header: str | None = None
        if method == "basic" and client_id is not None:
            # RFC 6749 §2.3.1: both parts form-urlencoded before the Basic encoding.
            pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
            self._header = "Basic " + base64.b64encode(pair.encode()).decode()
        elif method == "bearer":
            self._header = f"Bearer {secret}"

    @classmethod
    def from_file(cls, method: str, *, client_id: str | None, secret_file: Path | None) -> ClientAuth:
        """Read the secret (the first non-empty line) from ``secret_file``; ``ValueError`` naming the file."""
        if method == "none":
            return cls(method, client_id=client_id)
        if secret_file is None:
            raise ValueError(f"client_auth {method} needs a secret file")
        return cls(method, client_id=client_id, secret=read_secret_file(secret_file))

    def headers(self) -> dict[str, str]:
        return {} if self._header is None else {"Authorization": self._header}

    def __repr__(self) -> str:
        return f"ClientAuth({self.method!r})"  # never the secret


def read_secret_file(path: Path) -> str:
    """The first non-empty, non-comment line of a secret file; ``ValueError`` naming the file (never the secret)."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {str(path)!r}: {type(exc).__name__}") from None
    secret = next((line for line in lines if line and not line.startswith("#")), "")
    if not secret:
        raise ValueError(f"{str(path)!r} holds no secret")
    return secret


def _static(url: str) -> UrlSource:
    async def resolve() -> str:
        return url

    return resolve


class Rfc7662Introspection:
    """RFC 7662 token introspection (see the module docstring)."""

    def __init__(
        self,
        client: BackendClient,
        url: str | UrlSource,
        *,
        endpoint: str = "introspection",
        auth: ClientAuth | None = None,
        token_type_hint: str | None = "access_token",  # noqa: S107 - RFC 7662 hint, not a secret
        fields: FieldMap | None = None,
        audiences: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.resolve_url = _static(url) if isinstance(url, str) else url
        self.endpoint = endpoint
        self.auth = auth or ClientAuth()
        self.token_type_hint = token_type_hint
        self.fields = fields or FieldMap()
        self.audiences = tuple(audiences)
        self._headers = {**self.auth.headers(), "Accept": "application/json"}

    async def check(self, token: str) -> Decision:
        url = await self.resolve_url()
        form = {"token": token}
        if self.token_type_hint:
            form["token_type_hint"] = self.token_type_hint
        return await self.client.call(self.endpoint, "POST", url, self._parse, data=form, headers=self._headers)

    def _parse(self, response: BackendResponse) -> Decision:
        if response.status != 200:
            raise BackendRejected(
                f"HTTP {response.status} from the introspection endpoint (check client_auth and the URL)"
            )
        return read_identity(parse_json_object(response.body), self.fields, audiences=self.audiences)


class JsonValidation:
    """An in-house validate endpoint: ``POST {"token": ...}`` answered with a JSON identity."""

    def __init__(
        self,
        client: BackendClient,
        url: str | UrlSource,
        *,
        endpoint: str = "introspection",
        auth: ClientAuth | None = None,
        fields: FieldMap | None = None,
        audiences: Sequence[str] = (),
        invalid_statuses: Collection[int] = DEFAULT_INVALID_STATUSES,
        token_field: str = "token",  # noqa: S107 - a field name, not a secret
    ) -> None:
        self.client = client
        self.resolve_url = _static(url) if isinstance(url, str) else url
        self.endpoint = endpoint
        self.auth = auth or ClientAuth()
        self.fields = fields or FieldMap(active=None)
        self.audiences = tuple(audiences)
        self.invalid_statuses = frozenset(invalid_statuses)
        self.token_field = token_field
        self._headers = {**self.auth.headers(), "Accept": "application/json"}

    async def check(self, token: str) -> Decision:
        url = await self.resolve_url()
        return await self.client.call(
            self.endpoint, "POST", url, self._parse, json={self.token_field: token}, headers=self._headers
        )

    def _parse(self, response: BackendResponse) -> Decision:
        if response.status in self.invalid_statuses:
            return Decision.inactive()
        if not 200 <= response.status < 300:
            raise BackendRejected(f"HTTP {response.status} from the validate endpoint (check the URL and client_auth)")
        if response.status == 204 or not response.body:
            raise BadBackendResponse("validate endpoint answered without a body")
        return read_identity(parse_json_object(response.body), self.fields, audiences=self.audiences)
