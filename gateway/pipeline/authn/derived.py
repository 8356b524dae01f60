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

The memories are bounded; a flood of distinct records (there are as many as
operators registered) only starts them over.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from gateway.pipeline.base import CredentialKind, Principal, service_subject
from gateway.pipeline.sources import VerificationKey

MAX_KEYS: Final = 4096

S = TypeVar("S")
V = TypeVar("V")


class KeyedHmacs:
    """HMAC-SHA256 with a remembered keyed state per secret."""

    __slots__ = ("_states",)

    def __init__(self) -> None:
        self._states: dict[bytes, hmac.HMAC] = {}

    def digest(self, secret: bytes, message: bytes) -> bytes:
        """``hmac.digest(secret, message, "sha256")``, without keying a new state each time."""
        state = self._states.get(secret)
        if state is None:
            if len(self._states) >= MAX_KEYS:
                self._states.clear()
            state = self._states[secret] = hmac.new(secret, digestmod=hashlib.sha256)
        keyed = state.copy()
        keyed.update(message)
        return keyed.digest()


class PerRecord(Generic[S, V]):
    """``derive(record)``, remembered for the very record object (records are immutable)."""

    __slots__ = ("derive", "_values")

    def __init__(self, derive: Callable[[S], V]) -> None:
        self.derive = derive
        # id(record) -> (record, value): the record is held, so its id cannot be reused while remembered.
        self._values: dict[int, tuple[S, V]] = {}

    def of(self, record: S) -> V:
        found = self._values.get(id(record))
        if found is not None and found[0] is record:
            return found[1]
        value = self.derive(record)
        if len(self._values) >= MAX_KEYS:
            self._values.clear()
        self._values[id(record)] = (record, value)
        return value


class ServicePrincipals(PerRecord[VerificationKey, Principal]):
    """The principal each service key authenticates as with one scheme (``method``)."""

    __slots__ = ("method",)

    def __init__(self, method: str) -> None:
        super().__init__(self._principal)
        self.method = method

    def _principal(self, key: VerificationKey) -> Principal:
        return Principal(
            subject=service_subject(key.service_id),
            method=self.method,
            credential_kind=CredentialKind.SERVICE_KEY,
            credential_id=key.key_id,
            tenant=key.tenant,
            scopes=key.scopes,
            service_id=key.service_id,
            expires_at=key.expires_at,
        )
