"""The legacy service signature scheme, accepted byte for byte as existing services send it.

Headers::

    X-Service-ID:        main-backend
    X-Service-Timestamp: 1759742876                       (Unix seconds)
    X-Service-Signature: hex(HMAC-SHA256(key, message))   (64 lowercase hex characters)

    key     = the service secret's UTF-8 bytes
    message = f"{service_id}:{METHOD}:{path}:{timestamp}"
    path    = the request path as sent, still percent-encoded, without the query string

The signature covers neither the query string nor the body, and nothing binds it
to one request: within the window it can be replayed, with any query and any
body. ``replay_protection`` accepts each signature once; the RFC 9421 scheme
(:mod:`gateway.pipeline.authn.rfc9421`) covers query and body and is what new
services should use.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from collections.abc import Callable
from typing import Final

from gateway.pipeline.authn.derived import KeyUse, ServiceKeyUses
from gateway.pipeline.base import AuthError, AuthMethod, Principal, RequestView
from gateway.pipeline.sources import KeyAlgorithm, NonceStore, PeekableServiceKeySource, ServiceKeySource

SERVICE_ID_HEADER: Final = "X-Service-ID"
SIGNATURE_HEADER: Final = "X-Service-Signature"
TIMESTAMP_HEADER: Final = "X-Service-Timestamp"
DEFAULT_WINDOW: Final = 300.0

_SERVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_MAX_TIMESTAMP_DIGITS: Final = 12
_CHALLENGE: Final = 'ServiceSignature realm="gateway"'


def _signature_bytes(signature: str) -> bytes | None:
    """The 32 bytes of 64 hex digits (either case), else ``None``."""
    if len(signature) != 64 or not signature.isascii():
        return None
    try:
        raw = bytes.fromhex(signature)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None  # fromhex skips spaces: 64 characters must make 32 bytes


class LegacyHmacAuthenticator:
    """Verifies ``X-Service-*`` signatures against every active HMAC key of the calling service.

    ``window`` bounds the timestamp in both directions (seconds). With
    ``replay_protection`` each accepted signature is claimed in ``nonces`` for
    as long as it would stay acceptable, so a second use is refused on every
    replica sharing the store.
    """

    name: Final = AuthMethod.HMAC_LEGACY
    challenge: Final = _CHALLENGE

    def __init__(
        self,
        keys: ServiceKeySource,
        *,
        window: float = DEFAULT_WINDOW,
        replay_protection: bool = False,
        nonces: NonceStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        if replay_protection and nonces is None:
            raise ValueError("replay_protection needs a nonce store")
        self.keys = keys
        # The store adapter answers cached keys without a coroutine; other sources are awaited.
        self._peek = keys.peek_verification_keys if isinstance(keys, PeekableServiceKeySource) else None
        self.window = window
        # Only set when replay protection is on: its presence is the switch on the hot path.
        self.nonces = nonces if replay_protection else None
        self.clock = clock
        self._uses = ServiceKeyUses(AuthMethod.HMAC_LEGACY)

    def _fail(self, reason: str, log_detail: str) -> AuthError:
        return AuthError(reason, log_detail=log_detail, www_authenticate=_CHALLENGE)

    async def authenticate(self, request: RequestView) -> Principal | None:
        req = request.request  # RequestView's properties are Python calls: read the request itself
        headers = req.headers
        service_id = headers.get(SERVICE_ID_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        if service_id is None or signature is None or timestamp is None:
            if service_id is None and signature is None and timestamp is None:
                return None
            missing = [
                name
                for name, value in (
                    (SERVICE_ID_HEADER, service_id),
                    (SIGNATURE_HEADER, signature),
                    (TIMESTAMP_HEADER, timestamp),
                )
                if value is None
            ]
            raise self._fail("hmac.malformed", f"missing {', '.join(missing)}")
        if not _SERVICE_ID.fullmatch(service_id):
            raise self._fail("hmac.malformed", "X-Service-ID is not a service id")
        presented = _signature_bytes(signature)
        if presented is None:
            raise self._fail("hmac.malformed", "X-Service-Signature is not 64 hex characters")
        # Unix seconds: 1 to 12 ASCII digits.
        if not (0 < len(timestamp) <= _MAX_TIMESTAMP_DIGITS and timestamp.isascii() and timestamp.isdigit()):
            raise self._fail("hmac.malformed", "X-Service-Timestamp is not Unix seconds")

        now = self.clock()
        stamp = int(timestamp)
        if abs(now - stamp) > self.window:
            raise self._fail("hmac.skew", f"service {service_id}: timestamp {stamp} is {now - stamp:+.0f}s from now")

        # The keyed HMAC and principal of each usable key, found by the record's identity (no call).
        by_id = self._uses.by_id
        candidates: list[KeyUse] = []
        keys = self._peek(service_id) if self._peek is not None else None
        if keys is None:
            keys = await self.keys.verification_keys(service_id)
        for key in keys:
            if key.algorithm == KeyAlgorithm.HMAC_SHA256 and (key.expires_at is None or key.expires_at > now):
                use = by_id.get(id(key))
                if use is None or use.key is not key:
                    use = self._uses.find(key)
                candidates.append(use)
        if not candidates:
            raise self._fail("hmac.unknown_key", f"service {service_id} has no active HMAC key")

        # The signed message (module docstring): the raw path without the query string.
        message = f"{service_id}:{req.method}:{req.raw_path.partition('?')[0]}:{timestamp}".encode()
        matched: KeyUse | None = None
        for use in candidates:
            mac = use.mac.copy()  # type: ignore[union-attr]  # hmac-sha256 keys have one
            mac.update(message)
            if hmac.compare_digest(mac.digest(), presented):
                matched = use
                break
        if matched is None:
            raise self._fail(
                "hmac.bad_signature", f"service {service_id}: signature matches none of {len(candidates)} key(s)"
            )

        if self.nonces is not None:
            # Acceptable until timestamp + window: remember it exactly that long (at least a second).
            ttl = max(1, math.ceil(stamp + self.window - now))
            if not await self.nonces.claim(f"hmac:{service_id}", signature.lower(), ttl):
                raise self._fail(
                    "hmac.replay", f"service {service_id}: signature already used (key {matched.key.key_id})"
                )

        return matched.principal
