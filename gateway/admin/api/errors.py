"""The admin API's errors, and the translation of everything else into them.

::

    GatewayError
    └── AdminError                    500 admin.internal
        ├── AdminBadRequest           400 admin.bad_request         wrong JSON type, unknown field, bad value
        ├── AdminUnauthorized         401 admin.unauthorized        no / unknown admin token (WWW-Authenticate)
        ├── AdminForbidden            403 admin.forbidden           a read-only admin token tried to change something
        ├── AdminNotFound             404 admin.not_found           unknown endpoint, token, key or client
        ├── AdminMethodNotAllowed     405 admin.method_not_allowed  (with Allow)
        ├── AdminConflict             409 admin.conflict            duplicate name, id exists, not rotatable
        │                                 admin.kek_missing         an HMAC key, but no key-encryption key configured
        ├── AdminPayloadTooLarge      413 admin.payload_too_large
        ├── AdminUnsupportedMedia     415 admin.unsupported_media_type
        └── AdminUnavailable          503 admin.unavailable         the store cannot be reached (Retry-After)

:func:`translate` maps the store's and the credential layer's errors at the boundary.
An unexpected exception is logged (with its traceback, in the log only) and answered
500 ``admin.internal`` with no detail.
"""

from __future__ import annotations

from gateway.credentials.errors import CredentialError, EncryptionKeyMissing, MalformedCredential
from gateway.errors import GatewayError
from gateway.store.errors import Conflict, NotFound, StoreError, StoreUnavailable


class AdminError(GatewayError):
    status = 500
    code = "admin.internal"


class AdminBadRequest(AdminError):
    status = 400
    code = "admin.bad_request"


class AdminUnauthorized(AdminError):
    status = 401
    code = "admin.unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="gateway-admin"'})


class AdminForbidden(AdminError):
    status = 403
    code = "admin.forbidden"


class AdminNotFound(AdminError):
    status = 404
    code = "admin.not_found"


class AdminMethodNotAllowed(AdminError):
    status = 405
    code = "admin.method_not_allowed"


class AdminConflict(AdminError):
    status = 409
    code = "admin.conflict"


class AdminPayloadTooLarge(AdminError):
    status = 413
    code = "admin.payload_too_large"


class AdminUnsupportedMedia(AdminError):
    status = 415
    code = "admin.unsupported_media_type"


class AdminUnavailable(AdminError):
    status = 503
    code = "admin.unavailable"


def translate(exc: Exception) -> AdminError | None:
    """The admin error for a known failure, or ``None`` for an unexpected one (a bug: 500)."""
    if isinstance(exc, AdminError):
        return exc
    if isinstance(exc, MalformedCredential | ValueError):
        return AdminBadRequest(str(exc))
    if isinstance(exc, NotFound):
        return AdminNotFound(exc.detail)
    if isinstance(exc, Conflict):
        return AdminConflict(exc.detail)
    if isinstance(exc, StoreUnavailable):
        # The store's message names the (masked) URL and the failure: operators need it, clients are admins.
        return AdminUnavailable(exc.detail, headers=exc.headers)
    if isinstance(exc, EncryptionKeyMissing):
        return AdminConflict(exc.detail, code="admin.kek_missing")
    if isinstance(exc, StoreError | CredentialError):
        return AdminError(exc.detail, code=exc.code)
    return None
