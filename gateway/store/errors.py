"""Errors raised by the credential store.

::

    GatewayError
    └── StoreError                 500 store.error
        ├── StoreConfigError       500 store.config          unknown scheme, malformed URL
        ├── StoreUnavailable       503 store.unavailable     unreachable at start-up, or lost mid-operation
        ├── NotFound               404 store.not_found       the credential to change does not exist
        ├── Conflict               409 store.conflict        the change contradicts what is stored
        │   └── DuplicateName      409 store.duplicate_name  a live token already has this name
        └── (backend errors are translated into these at the boundary, ``raise ... from exc``)

Messages name the store by its URL with the password masked, never a secret.
A failed operation changes nothing: every multi-record write is one transaction.
"""

from __future__ import annotations

from gateway.errors import GatewayError


class StoreError(GatewayError):
    """Base of the store errors."""

    status = 500
    code = "store.error"


class StoreConfigError(StoreError):
    """The store URL is malformed or names a scheme no backend serves."""

    code = "store.config"


class StoreUnavailable(StoreError):
    """The store cannot be reached or failed mid-operation; the operation changed nothing."""

    status = 503
    code = "store.unavailable"

    def __init__(self, detail: str = "", *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class NotFound(StoreError):
    """The credential named by an update, rotation or revocation does not exist."""

    status = 404
    code = "store.not_found"


class Conflict(StoreError):
    """The change contradicts stored state (an id or hash that already exists, a rotation of a replaced token)."""

    status = 409
    code = "store.conflict"


class DuplicateName(Conflict):
    """A live (not revoked, not replaced) token already has this name."""

    code = "store.duplicate_name"
