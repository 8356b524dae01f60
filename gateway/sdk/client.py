"""A ready aiohttp client for services calling through the gateway: every request signed.

::

    async with SignedClient.from_env() as client:          # SERVICE_ID, SERVICE_KEY_FILE (+ SERVICE_KEY_ID)
        async with client.post("https://gw.example.com/v1/orders", json={"id": 1}) as response:
            print(response.status, await response.json())

Environment (read by :meth:`SignedClient.from_env` only):

- ``SERVICE_ID``: the calling service;
- ``SERVICE_KEY_FILE``: a file holding its HMAC secret (one line) or an Ed25519 private key (PEM);
- ``SERVICE_KEY_ID``: the key id for RFC 9421 (``<service>/<key id>`` or a bare key id);
- ``SERVICE_SIGNING_SCHEME``: ``rfc9421`` (default when ``SERVICE_KEY_ID`` is set) or ``legacy``.

Bodies are sent as the exact bytes signed (``data=bytes`` or ``json=...``, which is
serialized here); the URL is sent exactly as signed (percent-encoded once, here).
"""

from __future__ import annotations

import json as jsonlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import aiohttp
from aiohttp.client import _RequestContextManager
from yarl import URL

from gateway.sdk.signing import SigningKey, sign_legacy, sign_rfc9421

SCHEMES: Final = ("rfc9421", "legacy")


class SigningConfigError(ValueError):
    """The signing identity is incomplete or unreadable; the message names the variable or file."""


@dataclass(frozen=True)
class ServiceIdentity:
    """Who signs: the service, its key (secret or Ed25519 private key) and, for RFC 9421, the key id."""

    service_id: str
    key: SigningKey
    key_id: str | None = None
    scheme: str = "rfc9421"

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise SigningConfigError(f"unknown signing scheme {self.scheme!r} (expected one of: {', '.join(SCHEMES)})")
        if self.scheme == "rfc9421" and not self.key_id:
            raise SigningConfigError("RFC 9421 signing needs a key id (SERVICE_KEY_ID)")
        if self.scheme == "legacy" and not isinstance(self.key, str | bytes):
            raise SigningConfigError("the legacy scheme signs with a shared secret, not an Ed25519 key")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, scheme: str | None = None) -> ServiceIdentity:
        env = os.environ if environ is None else environ
        service_id = env.get("SERVICE_ID", "").strip()
        key_file = env.get("SERVICE_KEY_FILE", "").strip()
        if not service_id:
            raise SigningConfigError("SERVICE_ID is not set")
        if not key_file:
            raise SigningConfigError("SERVICE_KEY_FILE is not set")
        key = read_key_file(key_file)
        key_id = env.get("SERVICE_KEY_ID", "").strip() or None
        chosen = scheme or env.get("SERVICE_SIGNING_SCHEME", "").strip() or ("rfc9421" if key_id else "legacy")
        return cls(service_id, key, key_id, chosen)

    def sign(
        self, method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> dict[str, str]:
        """The headers that sign this request under the identity's scheme."""
        if self.scheme == "legacy":
            assert isinstance(self.key, str | bytes)  # noqa: S101 - checked in __post_init__
            return sign_legacy(self.service_id, self.key, method, url)
        assert self.key_id is not None  # noqa: S101 - checked in __post_init__
        return sign_rfc9421(method, url, key_id=self.key_id, key=self.key, headers=headers, body=body)


def read_key_file(path: str | Path) -> SigningKey:
    """A secret (first non-comment line) or an Ed25519 private key (PEM); errors name the file, never its content."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningConfigError(f"cannot read key file {str(path)!r}: {exc.__class__.__name__}") from None
    if "PRIVATE KEY" in text:
        return text.encode("utf-8")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    raise SigningConfigError(f"key file {str(path)!r} holds no key")


class SignedClient:
    """An aiohttp ``ClientSession`` wrapper that signs every request (see the module docstring).

    Pass ``session`` to share one (it is not closed here), or let the client open its own.
    """

    def __init__(self, identity: ServiceIdentity, *, session: aiohttp.ClientSession | None = None) -> None:
        self.identity = identity
        self._session = session
        self._owns_session = session is None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        scheme: str | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> SignedClient:
        return cls(ServiceIdentity.from_env(environ, scheme=scheme), session=session)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | str | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> _RequestContextManager:
        """Sign and send; use as ``async with client.request(...) as response``."""
        out = dict(headers or {})
        body: bytes | None
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":")).encode("utf-8")
            out.setdefault("Content-Type", "application/json")
        else:
            body = data.encode("utf-8") if isinstance(data, str) else data
        target = str(URL(url))  # percent-encoded once; sent exactly like this
        out.update(self.identity.sign(method, target, out, body))
        return self.session.request(method, URL(target, encoded=True), data=body, headers=out, **kwargs)

    def get(self, url: str, **kwargs: Any) -> _RequestContextManager:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> _RequestContextManager:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> _RequestContextManager:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> _RequestContextManager:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> _RequestContextManager:
        return self.request("DELETE", url, **kwargs)

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> SignedClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
