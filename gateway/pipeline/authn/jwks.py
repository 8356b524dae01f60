"""JWT verification keys: static (PEM file, shared secret file) or fetched from a JWKS URL.

JWKS are fetched with aiohttp, never with PyJWT's ``PyJWKClient`` (it uses
``urllib`` and would block the event loop), and parsed with ``jwt.PyJWKSet``.
The set is cached and refreshed:

- in the background once it is older than ``refresh_interval`` (the request
  that notices does not wait; the cached keys keep serving);
- on an unknown ``kid``, at most once per ``min_refresh_interval`` (a token
  with a random ``kid`` cannot make the gateway hammer the identity provider);
- single-flight: concurrent callers share one fetch.

``generation`` counts the fetches that changed the key set (a key added, withdrawn or
replaced): the JWT authenticator's memory of verified tokens never outlives it.

A failed refresh keeps the keys already held. With no keys at all the gateway
cannot decide and answers 503 (:class:`~gateway.pipeline.base.AuthUnavailable`).

Given a ``fetch`` (the gateway passes :meth:`gateway.backend.wiring.AuthBackends.jwks_fetch`),
the document is fetched through the auth backend client instead (its circuit
breaker, timeout, concurrency and size limits), and its URL may come from OIDC
discovery (``url`` is then ``None`` until the first fetch tells it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWKSet
from jwt.exceptions import PyJWTError

from gateway.pipeline.base import AuthUnavailable

log = logging.getLogger("gateway.auth.jwks")

DEFAULT_REFRESH_INTERVAL: Final = 300.0
DEFAULT_MIN_REFRESH_INTERVAL: Final = 30.0
DEFAULT_FETCH_TIMEOUT: Final = 5.0
MAX_JWKS_BYTES: Final = 512 * 1024
MIN_HMAC_SECRET_BYTES: Final = 32  # RFC 7518 §3.2: at least the hash size (HS256)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
JwtKey = PublicKey | bytes


class JwtKeySource(Protocol):
    """Where a JWT provider's verification keys come from."""

    @property
    def symmetric(self) -> bool:
        """True for shared secrets (HS* only), False for public keys (never HS*)."""
        ...

    @property
    def jwks_url(self) -> str | None:
        """The URL keys are fetched from, the only ``jku`` a token may name."""
        ...

    async def key_for(self, kid: str | None) -> tuple[JwtKey, str | None] | None:
        """The key for ``kid`` and the algorithm it is bound to (a JWK's ``alg``), or ``None``."""
        ...


class StaticJwtKeys:
    """Keys configured once: public keys from PEM (several, by ``kid``, for rotation) or one shared secret."""

    jwks_url: Final = None

    def __init__(self, keys: Mapping[str | None, JwtKey]) -> None:
        if not keys:
            raise ValueError("no JWT verification key configured")
        kinds = {isinstance(key, bytes) for key in keys.values()}
        if len(kinds) > 1:
            raise ValueError("a JWT provider uses either a shared secret or public keys, not both")
        self.symmetric = kinds == {True}
        for key in keys.values():
            if isinstance(key, bytes) and len(key) < MIN_HMAC_SECRET_BYTES:
                raise ValueError(f"a JWT shared secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")
        self.keys = dict(keys)

    @classmethod
    def from_pem(cls, pems: Mapping[str | None, bytes]) -> StaticJwtKeys:
        """Public keys (``SubjectPublicKeyInfo`` PEM) by ``kid``; ``None`` is the key for tokens without one."""
        keys: dict[str | None, JwtKey] = {}
        for kid, pem in pems.items():
            try:
                key = load_pem_public_key(pem)
            except ValueError as exc:
                raise ValueError(f"JWT key {kid!r} is not a PEM public key") from exc
            if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
                raise ValueError(f"JWT key {kid!r} is not an RSA, EC or Ed25519 public key")
            keys[kid] = key
        return cls(keys)

    @classmethod
    def from_files(cls, files: Mapping[str | None, str | Path], *, secret: bool = False) -> StaticJwtKeys:
        """Read PEM public keys (or, with ``secret``, one shared secret per file, stripped) by ``kid``."""
        contents: dict[str | None, bytes] = {}
        for kid, path in files.items():
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot read JWT key file {str(path)!r}: {exc.__class__.__name__}") from None
            contents[kid] = data.strip() if secret else data
        return cls(dict(contents)) if secret else cls.from_pem(contents)

    async def key_for(self, kid: str | None) -> tuple[JwtKey, str | None] | None:
        key = self.keys.get(kid)
        if key is None and len(self.keys) == 1:
            # One configured key verifies every token, whatever kid it names.
            key = next(iter(self.keys.values()))
        return None if key is None else (key, None)


class JwksKeys:
    """Public keys fetched from a JWKS URL, cached, refreshed in the background and on unknown ``kid``.

    Give it a ``session`` to share one, or let it open its own; call
    :meth:`close` on shutdown either way (it closes only a session it opened).
    """

    symmetric: Final = False

    def __init__(
        self,
        url: str | None,
        *,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_INTERVAL,
        timeout: float = DEFAULT_FETCH_TIMEOUT,
        max_bytes: int = MAX_JWKS_BYTES,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[], Awaitable[tuple[str, bytes]]] | None = None,
    ) -> None:
        if url is None and fetch is None:
            raise ValueError("a JWKS key source needs a URL or a fetch")
        self.jwks_url: str | None = url
        self.url = url or "(OIDC discovery)"
        self._fetch_document = fetch  # -> (the URL it used, the JWKS bytes)
        self.refresh_interval = refresh_interval
        self.min_refresh_interval = min_refresh_interval
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_bytes = max_bytes
        self.clock = clock
        self.fetches = 0  # successful and failed attempts, for tests and metrics
        # Counts changes of the key set: the JWT authenticator forgets tokens it verified with an older one.
        self.generation = 0
        self._session = session
        self._owns_session = session is None
        self._keys: dict[str | None, tuple[JwtKey, str | None]] = {}
        self._loaded = False
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._inflight: asyncio.Task[bool] | None = None

    @property
    def loaded(self) -> bool:
        """Whether keys were fetched at least once (they keep serving while refreshes fail)."""
        return self._loaded

    async def key_for(self, kid: str | None) -> tuple[JwtKey, str | None] | None:
        now = self.clock()
        if not self._loaded:
            # Never loaded: wait for a fetch, but a down provider is asked at most once per interval.
            if self._inflight is None and now - self._attempted_at < self.min_refresh_interval:
                raise self._unavailable()
            if not await self._refresh(force=True):
                raise self._unavailable()
        elif now - self._fetched_at > self.refresh_interval and now - self._attempted_at >= self.min_refresh_interval:
            self._start_refresh()  # stale: refresh behind the request, keep serving the keys held
        found = self._lookup(kid)
        if found is None and (self._inflight is not None or now - self._attempted_at >= self.min_refresh_interval):
            # An unknown kid may be a key the provider just rotated in.
            await self._refresh(force=False)
            found = self._lookup(kid)
        return found

    def _unavailable(self) -> AuthUnavailable:
        return AuthUnavailable(
            "jwt.jwks_unavailable", log_detail=f"no keys from {self.url}", retry_after=self.min_refresh_interval
        )

    def _lookup(self, kid: str | None) -> tuple[JwtKey, str | None] | None:
        found = self._keys.get(kid)
        if found is None and kid is None and len(self._keys) == 1:
            found = next(iter(self._keys.values()))
        return found

    async def refresh(self) -> bool:
        """Fetch now (joining a fetch in flight); ``True`` if keys were loaded."""
        return await self._refresh(force=True)

    async def _refresh(self, *, force: bool) -> bool:
        task = self._inflight
        if task is None:
            if not force and self.clock() - self._attempted_at < self.min_refresh_interval:
                return False
            task = self._start_refresh()
        # shield: a caller giving up (client gone) must not cancel the fetch others wait for.
        return await asyncio.shield(task)

    def _start_refresh(self) -> asyncio.Task[bool]:
        if self._inflight is None:
            self._attempted_at = self.clock()
            self._inflight = asyncio.get_running_loop().create_task(self._fetch())
            self._inflight.add_done_callback(self._fetch_done)
        return self._inflight

    def _fetch_done(self, task: asyncio.Task[bool]) -> None:
        self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved: _fetch logs its own failures

    async def _fetch(self) -> bool:
        self.fetches += 1
        try:
            keys = await self._download()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure leaves the held keys in place
            log.warning("JWKS fetch failed", extra={"url": self.url, "error": f"{exc.__class__.__name__}: {exc}"})
            return False
        if keys != self._keys:  # cryptography's public keys compare by value: an unchanged set is no change
            self.generation += 1
        self._keys = keys
        self._loaded = True
        self._fetched_at = self.clock()
        return True

    async def _download(self) -> dict[str | None, tuple[JwtKey, str | None]]:
        if self._fetch_document is not None:
            url, body = await self._fetch_document()
            keys = parse_jwks(body)
            self.jwks_url = self.url = url  # the only jku a token may name
            return keys
        if self._session is None:
            self._session = aiohttp.ClientSession(trust_env=False)
        async with self._session.get(self.url, timeout=self.timeout, allow_redirects=False) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            if response.content_length is not None and response.content_length > self.max_bytes:
                raise ValueError(f"JWKS larger than {self.max_bytes} bytes")
            body = await response.content.read(self.max_bytes + 1)
            if len(body) > self.max_bytes:
                raise ValueError(f"JWKS larger than {self.max_bytes} bytes")
        return parse_jwks(body)

    async def close(self) -> None:
        task = self._inflight
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None


def parse_jwks(body: bytes) -> dict[str | None, tuple[JwtKey, str | None]]:
    """Signature keys of a JWKS document: ``{kid: (key, the JWK's alg or None)}``.

    Symmetric (``oct``) and encryption keys are dropped. Raises ``ValueError``
    when the document holds no usable key.
    """
    try:
        document: Any = json.loads(body)
    except ValueError as exc:
        raise ValueError("JWKS is not JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("JWKS has no 'keys' list")
    # A key set published at a URL is public: a symmetric key there would let anyone sign.
    candidates = [
        key
        for key in document["keys"]
        if isinstance(key, dict) and key.get("kty") != "oct" and key.get("use", "sig") == "sig"
    ]
    try:
        key_set = PyJWKSet(candidates)
    except PyJWTError as exc:
        raise ValueError(f"JWKS holds no usable signature key: {exc}") from exc
    declared_alg = {key.get("kid"): key.get("alg") for key in candidates}
    keys: dict[str | None, tuple[JwtKey, str | None]] = {}
    for jwk in key_set:
        kid = jwk.key_id if isinstance(jwk.key_id, str) else None
        alg = declared_alg.get(kid)
        keys[kid] = (jwk.key, alg if isinstance(alg, str) else None)
    return keys
