"""Reading ``Authorization: Bearer <token>`` (RFC 6750 §2.1) once, for every bearer authenticator.

Several authenticators share the header: JWTs (three dot-separated segments)
and opaque tokens (service tokens, static internal tokens, which never contain a
dot). :func:`bearer_token` only extracts; each authenticator decides whether
the token is its kind, so the order of a route's authenticators never matters.
"""

from __future__ import annotations

import re
from typing import Final

from aiohttp.hdrs import AUTHORIZATION
from multidict import CIMultiDictProxy

MAX_TOKEN_LENGTH: Final = 16384
# RFC 6750 §2.1 b64token (token68)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

# Tokens that passed the checks below, remembered (a client sends the same token on every request): the
# answer is a pure function of the text, so this changes nothing but time. Bounded in entries and, by
# remembering only tokens up to REMEMBER_MAX_LENGTH characters, in memory (~4 MiB at most).
REMEMBER_MAX_ENTRIES: Final = 1024
REMEMBER_MAX_LENGTH: Final = 4096
_valid: set[str] = set()


class MalformedBearer(ValueError):
    """The Authorization header says Bearer but what follows is not one usable token."""


def _is_bearer(value: str) -> bool:
    return value[:7].lower() == "bearer " or value.strip().lower() == "bearer"


def bearer_token(headers: CIMultiDictProxy[str]) -> str | None:
    """The bearer token, ``None`` without a Bearer ``Authorization``; :class:`MalformedBearer` if unusable."""
    values = headers.getall(AUTHORIZATION, ())  # an istr: found without case-folding the name first
    if len(values) != 1:
        if any(_is_bearer(value) for value in values):
            raise MalformedBearer("more than one Authorization header")
        return None  # none, or only other schemes (Basic, a signature scheme): not a bearer credential
    value = values[0]
    if not value.startswith("Bearer ") and not _is_bearer(value):  # the usual spelling first, no lower()
        return None
    token = value[7:].strip(" \t")
    if token in _valid:
        return token
    if not token:
        raise MalformedBearer("empty bearer token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise MalformedBearer(f"bearer token longer than {MAX_TOKEN_LENGTH} characters")
    if not _TOKEN68.fullmatch(token):
        raise MalformedBearer("bearer token has characters outside RFC 6750 token68")
    if len(token) <= REMEMBER_MAX_LENGTH:
        if len(_valid) >= REMEMBER_MAX_ENTRIES:
            _valid.clear()  # rare: a flood of distinct tokens; start over
        _valid.add(token)
    return token


def looks_like_jwt(token: str) -> bool:
    """JWS compact serialization has dots; opaque gateway tokens never do."""
    return "." in token


BEARER_CHALLENGE: Final = 'Bearer realm="gateway"'


def bearer_error_challenge(error: str = "invalid_token") -> str:
    """A RFC 6750 §3 challenge naming the error (``invalid_token``, ``invalid_request``)."""
    return f'Bearer realm="gateway", error="{error}"'
