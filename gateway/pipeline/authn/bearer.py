"""Reading ``Authorization: Bearer <token>`` (RFC 6750 §2.1) once, for every bearer authenticator.

Several authenticators share the header: JWTs (three dot-separated segments)
and opaque tokens (service tokens, static internal tokens, which never contain a
dot). :func:`bearer_token` only extracts; each authenticator decides whether
the token is its kind, so the order of a route's authenticators never matters.
"""

from __future__ import annotations

import re
from typing import Final

from multidict import CIMultiDictProxy

MAX_TOKEN_LENGTH: Final = 16384
# RFC 6750 §2.1 b64token (token68)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class MalformedBearer(ValueError):
    """The Authorization header says Bearer but what follows is not one usable token."""


def bearer_token(headers: CIMultiDictProxy[str]) -> str | None:
    """The bearer token, ``None`` without a Bearer ``Authorization``; :class:`MalformedBearer` if unusable."""
    values = headers.getall("Authorization", ())
    if not values:
        return None
    bearers = [value for value in values if value[:7].lower() == "bearer " or value.strip().lower() == "bearer"]
    if not bearers:
        return None  # another scheme (Basic, a signature scheme): not a bearer credential
    if len(values) > 1:
        raise MalformedBearer("more than one Authorization header")
    token = bearers[0][7:].strip(" \t")
    if not token:
        raise MalformedBearer("empty bearer token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise MalformedBearer(f"bearer token longer than {MAX_TOKEN_LENGTH} characters")
    if not _TOKEN68.fullmatch(token):
        raise MalformedBearer("bearer token has characters outside RFC 6750 token68")
    return token


def looks_like_jwt(token: str) -> bool:
    """JWS compact serialization has dots; opaque gateway tokens never do."""
    return "." in token


BEARER_CHALLENGE: Final = 'Bearer realm="gateway"'


def bearer_error_challenge(error: str = "invalid_token") -> str:
    """A RFC 6750 §3 challenge naming the error (``invalid_token``, ``invalid_request``)."""
    return f'Bearer realm="gateway", error="{error}"'
