"""Signing requests for the gateway, for any HTTP client: pure functions that return the headers to send.

Legacy scheme (existing services)::

    headers = sign_legacy("billing", secret, "GET", "/v1/orders?page=2")

RFC 9421 HTTP Message Signatures (recommended: covers the method, authority,
path, query and, with a body, a ``Content-Digest`` of it; a fresh nonce per
request makes each signature usable once)::

    headers = sign_rfc9421("POST", "https://gw.example.com/v1/orders", key_id="billing/20250314-k7Qz2pXa",
                           key=secret, body=payload)

``key`` is the shared HMAC secret (``str`` or ``bytes``) or an Ed25519 private key
(``Ed25519PrivateKey``, or its PEM). Send the URL exactly as signed (already
percent-encoded: with aiohttp, ``yarl.URL(url, encoded=True)``) and the body
bytes exactly as signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.pipeline.authn.signature_base import MessageParts, SfItem, serialize_inner_list, signature_base

DEFAULT_COMPONENTS: Final = ("@method", "@authority", "@path", "@query")
DEFAULT_LABEL: Final = "sig"
CONTENT_DIGEST: Final = "content-digest"

SigningKey = str | bytes | Ed25519PrivateKey


def legacy_signature(service_id: str, secret: str | bytes, method: str, path: str, timestamp: int | str) -> str:
    """``hex(HMAC-SHA256(secret, f"{service_id}:{METHOD}:{path}:{timestamp}"))``; ``path`` without the query."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    message = f"{service_id}:{method.upper()}:{path}:{timestamp}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_legacy(
    service_id: str, secret: str | bytes, method: str, target: str, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three ``X-Service-*`` headers for a request to ``target`` (a path, or a full URL; the query is ignored)."""
    path = URL(target, encoded=True).raw_path if "://" in target else target.partition("?")[0]
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "X-Service-ID": service_id,
        "X-Service-Signature": legacy_signature(service_id, secret, method, path or "/", stamp),
        "X-Service-Timestamp": str(stamp),
    }


def content_digest(body: bytes) -> str:
    """An RFC 9530 ``Content-Digest`` (sha-256) field value."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode('ascii')}:"


def _component(name: str) -> SfItem:
    text = name if name.startswith('"') else http_sf.ser(name)
    parsed: Any = http_sf.parse(text.encode("ascii"), tltype="item")
    return parsed[0], dict(parsed[1])


def _private_key(key: SigningKey) -> Ed25519PrivateKey | bytes:
    if isinstance(key, Ed25519PrivateKey):
        return key
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if b"PRIVATE KEY" in raw:
        loaded = load_pem_private_key(raw.strip(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError("the PEM private key is not an Ed25519 key")
        return loaded
    return raw


def sign_rfc9421(
    method: str,
    url: str,
    *,
    key_id: str,
    key: SigningKey,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    components: Sequence[str] = DEFAULT_COMPONENTS,
    created: int | None = None,
    expires: int | None = None,
    nonce: str | bool = True,
    tag: str | None = None,
    label: str = DEFAULT_LABEL,
) -> dict[str, str]:
    """The headers that sign this request: ``Signature-Input``, ``Signature`` and, with a body, ``Content-Digest``.

    ``headers`` are the other headers the request will carry (needed when a
    covered component names one). ``nonce=True`` draws a random nonce, ``False``
    sends none. With a ``body``, ``content-digest`` is covered as well.
    """
    target = URL(url, encoded=True)
    all_headers: CIMultiDict[str] = CIMultiDict(headers or {})
    added: dict[str, str] = {}
    covered = [_component(name) for name in components]
    if body is not None:
        added["Content-Digest"] = all_headers["Content-Digest"] = content_digest(body)
        if not any(name == CONTENT_DIGEST for name, _ in covered):
            covered.append((CONTENT_DIGEST, {}))
    params: dict[str, Any] = {"created": int(time.time()) if created is None else created}
    if expires is not None:
        params["expires"] = expires
    params["keyid"] = key_id
    if nonce:
        params["nonce"] = secrets.token_urlsafe(16) if nonce is True else nonce
    signer = _private_key(key)
    params["alg"] = "ed25519" if isinstance(signer, Ed25519PrivateKey) else "hmac-sha256"
    if tag is not None:
        params["tag"] = tag
    host = target.host_port_subcomponent or ""
    parts = MessageParts(method.upper(), target.scheme, host, target.raw_path_qs, CIMultiDictProxy(all_headers))
    base = signature_base(parts, covered, params)
    if isinstance(signer, Ed25519PrivateKey):
        signature = signer.sign(base)
    else:
        signature = hmac.new(signer, base, hashlib.sha256).digest()
    added["Signature-Input"] = f"{label}={serialize_inner_list(covered, params)}"
    added["Signature"] = f"{label}=:{base64.b64encode(signature).decode('ascii')}:"
    return added
