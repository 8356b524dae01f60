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
from binascii import a2b_hex
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

from multidict import istr

from gateway.pipeline.authn.derived import MAX_KEYS, KeyUse, Mac, ServiceKeyUses, current_key_use
from gateway.pipeline.base import AuthError, AuthMethod, Principal, RequestView
from gateway.pipeline.sources import (
    KeyAlgorithm,
    NonceStore,
    PeekableServiceKeySource,
    ServiceKeySource,
    VerificationKey,
)

# istr: multidict finds an istr key without case-folding it first (as aiohttp's hdrs constants do).
SERVICE_ID_HEADER: Final = istr("X-Service-ID")
SIGNATURE_HEADER: Final = istr("X-Service-Signature")
TIMESTAMP_HEADER: Final = istr("X-Service-Timestamp")
DEFAULT_WINDOW: Final = 300.0

_SERVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_MAX_TIMESTAMP_DIGITS: Final = 12
_CHALLENGE: Final = 'ServiceSignature realm="gateway"'


class _Candidate(NamedTuple):
    use: KeyUse
    mac: Mac  # keyed with the key's secret (KeyUse.mac, never None for an HMAC key): copied per message


class _Candidates(NamedTuple):
    """The usable HMAC keys of one key list the source answered, derived once per list."""

    keys: Sequence[VerificationKey]  # held, so its id cannot be reused while remembered
    candidates: tuple[_Candidate, ...]
    until: float  # the earliest expires_at among them (inf without one): derived again from then on


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
        # id(key list) -> its usable HMAC keys (see _candidates), and the service ids that passed the syntax
        # check. Both are pure functions of what they are keyed by, bounded, and only save time.
        self._candidates_of: dict[int, _Candidates] = {}
        self._valid_ids: set[str] = set()

    def _fail(self, reason: str, log_detail: str) -> AuthError:
        return AuthError(reason, log_detail=log_detail, www_authenticate=_CHALLENGE)

    def _candidates(self, keys: Sequence[VerificationKey], now: float) -> _Candidates:
        """The :class:`_Candidate` of each HMAC key of ``keys`` not expired at ``now``, remembered for this list.

        Sources answer the very same list object while a service's keys are unchanged
        (:mod:`gateway.pipeline.store_sources`), so a request usually finds its candidates with one
        dict lookup. A revoked or changed key makes the source answer another list; an expiry is
        honoured through ``until``. A source answering a new list per call just misses every time.
        """
        candidates: list[_Candidate] = []
        until = math.inf
        for key in keys:
            if key.algorithm == KeyAlgorithm.HMAC_SHA256 and (key.expires_at is None or key.expires_at > now):
                use = self._uses.find(key)
                if use.mac is not None:
                    candidates.append(_Candidate(use, use.mac))
                if key.expires_at is not None:
                    until = min(until, key.expires_at)
        found = _Candidates(keys, tuple(candidates), until)
        if len(self._candidates_of) >= MAX_KEYS:
            self._candidates_of.clear()  # rare: as many key lists as services; start over
        self._candidates_of[id(keys)] = found
        return found

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
        if service_id not in self._valid_ids:  # a service sends the same id every time: one set lookup
            if not _SERVICE_ID.fullmatch(service_id):
                raise self._fail("hmac.malformed", "X-Service-ID is not a service id")
            if len(self._valid_ids) >= MAX_KEYS:
                self._valid_ids.clear()  # rare: a flood of distinct ids; start over
            self._valid_ids.add(service_id)
        # 64 hex digits, either case, inline (a call costs more than the check). a2b_hex: half the
        # instructions of bytes.fromhex, and no whitespace skipping (64 characters make 32 bytes).
        presented = None
        if len(signature) == 64 and signature.isascii():
            try:
                presented = a2b_hex(signature)
            except ValueError:  # binascii.Error
                pass
        if presented is None:
            raise self._fail("hmac.malformed", "X-Service-Signature is not 64 hex characters")
        # Unix seconds: 1 to 12 ASCII digits, which float() reads exactly (below 2**53) and in fewer
        # instructions than int().
        if not (0 < len(timestamp) <= _MAX_TIMESTAMP_DIGITS and timestamp.isascii() and timestamp.isdigit()):
            raise self._fail("hmac.malformed", "X-Service-Timestamp is not Unix seconds")

        now = self.clock()
        stamp = float(timestamp)
        if abs(now - stamp) > self.window:
            raise self._fail(
                "hmac.skew", f"service {service_id}: timestamp {timestamp} is {now - stamp:+.0f}s from now"
            )

        # Asked on every request (a revoked key stops working at once); its usable HMAC keys, derived once
        # per key list the source answers.
        keys = self._peek(service_id) if self._peek is not None else None
        if keys is None:
            keys = await self.keys.verification_keys(service_id)
        found = self._candidates_of.get(id(keys))
        if found is None or found.keys is not keys or found.until <= now:
            found = self._candidates(keys, now)
        candidates = found.candidates
        if not candidates:
            raise self._fail("hmac.unknown_key", f"service {service_id} has no active HMAC key")

        # The signed message (module docstring): the raw path without the query string.
        message = f"{service_id}:{req.method}:{req.raw_path.partition('?')[0]}:{timestamp}".encode()
        matched: KeyUse | None = None
        for use, keyed in candidates:
            mac = keyed.copy()
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

    async def recheck(self, principal: Principal) -> Principal:
        """The principal of the key that signed an open connection's upgrade, while that key stays active
        (the signature's time window has passed by then: the key is what can still be revoked)."""
        use = await current_key_use(self.keys, self._uses, principal, self.clock())
        if use is None:
            raise self._fail(
                "hmac.unknown_key", f"service {principal.service_id}: key {principal.credential_id!r} no longer active"
            )
        return use.principal
