"""Client and upstream helpers for services behind the gateway.

::

    signing.py     sign_legacy / sign_rfc9421: pure functions returning the headers that sign a request
    client.py      SignedClient: an aiohttp client signing every request (SERVICE_ID, SERVICE_KEY_FILE)
    context.py     the context headers and X-Gateway-Signature: sign_context / verify_context
    middleware.py  gateway_context_middleware: an aiohttp middleware for upstreams verifying X-Gateway-Signature

See docs/authentication.md, "Client side" and "Trusted context".
"""

from __future__ import annotations

from gateway.sdk.client import ServiceIdentity, SignedClient, SigningConfigError
from gateway.sdk.context import ContextSignatureError, GatewayContext, verify_context
from gateway.sdk.middleware import GATEWAY_CONTEXT, gateway_context_middleware
from gateway.sdk.signing import content_digest, legacy_signature, sign_legacy, sign_rfc9421

__all__ = [
    "GATEWAY_CONTEXT",
    "ContextSignatureError",
    "GatewayContext",
    "ServiceIdentity",
    "SignedClient",
    "SigningConfigError",
    "content_digest",
    "gateway_context_middleware",
    "legacy_signature",
    "sign_legacy",
    "sign_rfc9421",
    "verify_context",
]
