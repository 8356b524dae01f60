"""What authenticators derive from a credential record, once per record: keyed HMACs and principals.

Each is a pure function of the record, and the credential sources return the very
same record object (a :class:`~gateway.pipeline.sources.VerificationKey`, a
:class:`~gateway.pipeline.sources.TokenRecord`) for as long as the stored credential
is unchanged (:mod:`gateway.pipeline.store_sources`), so remembering them changes
nothing but time:

- an HMAC-SHA256 state keyed with the secret is copied instead of keyed again (keying
  hashes two blocks and, through ``hmac.new``, looks the digest up by name): a check
  is a copy, the message and the two final blocks;
- the :class:`~gateway.pipeline.base.Principal` a record authenticates as.

:class:`ServiceKeyUses` keeps both for a service key in one :class:`KeyUse`, looked up by
the record's identity, so an authenticator finds the keyed HMAC and the principal with
one dict lookup and no Python call (:meth:`ServiceKeyUses.find`).

The memories are bounded; a flood of distinct records (there are as many as
operators registered) only starts them over.
"""

from __future__ import annotations

from _hashlib import HMAC, hmac_new
from collections.abc import Callable
from typing import Final, Generic, NamedTuple, TypeVar

from gateway.pipeline.base import CredentialKind, Principal, service_subject
from gateway.pipeline.sources import KeyAlgorithm, ServiceKeySource, VerificationKey

MAX_KEYS: Final = 4096
_HMAC_SHA256: Final = KeyAlgorithm.HMAC_SHA256

S = TypeVar("S")
V = TypeVar("V")


# OpenSSL's HMAC object, as hmac.new makes it for sha256 (CPython's hashlib needs OpenSSL here: the
# cryptography package does too): copy/update/digest are C calls, where hmac.HMAC wraps the same
# object in Python methods (copy, update, digest, _current: four Python calls per check).
Mac = HMAC


def keyed_sha256(secret: bytes) -> Mac:
    """An HMAC-SHA256 state keyed with ``secret``, to ``copy()`` per message."""
    return hmac_new(secret, digestmod="sha256")


class PerRecord(Generic[S, V]):
    """``derive(record)``, remembered for the very record object (records are immutable)."""

    __slots__ = ("derive", "limit", "_values")

    def __init__(self, derive: Callable[[S], V], *, limit: int = MAX_KEYS) -> None:
        self.derive = derive
        self.limit = limit  # records remembered before starting over
        # id(record) -> (record, value): the record is held, so its id cannot be reused while remembered.
        self._values: dict[int, tuple[S, V]] = {}

    def of(self, record: S) -> V:
        found = self._values.get(id(record))
        if found is not None and found[0] is record:
            return found[1]
        value = self.derive(record)
        if len(self._values) >= self.limit:
            self._values.clear()
        self._values[id(record)] = (record, value)
        return value


class KeyUse(NamedTuple):
    """What verifying with one service key needs, derived once per key record."""

    key: VerificationKey
    mac: Mac | None  # keyed with the secret, for hmac-sha256 keys (copy it per message); else None
    principal: Principal


class ServiceKeyUses:
    """The :class:`KeyUse` of each service key record, remembered for the very record object.

    Hot paths call :meth:`find` inline::

        use = uses.by_id.get(id(key))
        if use is None or use.key is not key:
            use = uses.find(key)
    """

    __slots__ = ("method", "by_id")

    def __init__(self, method: str) -> None:
        self.method = method
        # id(record) -> KeyUse holding the record, so its id cannot be reused while remembered.
        self.by_id: dict[int, KeyUse] = {}

    def find(self, key: VerificationKey) -> KeyUse:
        use = self.by_id.get(id(key))
        if use is not None and use.key is key:
            return use
        use = KeyUse(
            key,
            keyed_sha256(key.material) if key.algorithm == _HMAC_SHA256 else None,
            Principal(
                subject=service_subject(key.service_id),
                method=self.method,
                credential_kind=CredentialKind.SERVICE_KEY,
                credential_id=key.key_id,
                tenant=key.tenant,
                scopes=key.scopes,
                service_id=key.service_id,
                expires_at=key.expires_at,
            ),
        )
        if len(self.by_id) >= MAX_KEYS:
            self.by_id.clear()
        self.by_id[id(key)] = use
        return use


async def current_key_use(
    keys: ServiceKeySource, uses: ServiceKeyUses, principal: Principal, now: float
) -> KeyUse | None:
    """The :class:`KeyUse` of the service key ``principal`` was authenticated with, while that key is still
    active at ``now`` (not revoked, not expired); else ``None``.

    For a connection that outlives its signature's time window (a WebSocket): whether the key that signed its
    upgrade still holds, asked again when a credential changes. The key is named with its service
    (``service/key``, as :meth:`find` made the principal): a bare key id may name keys of several services.
    """
    key = await keys.key_by_id(f"{principal.service_id}/{principal.credential_id}")
    if key is None or (key.expires_at is not None and key.expires_at <= now):
        return None
    return uses.find(key)
