"""Bearer credential formats: service tokens (``sk_``) and API keys (``ak_``).

A current-format credential is GitHub's scheme::

    sk_ 7Hq0...(43 base62 characters: 256 bits of randomness)... 1mZ0aQ
    └┬┘ └──────────────────── random ───────────────────────┘ └checksum┘

The checksum is CRC32 over the prefix and the random part, written as 6 base62
characters. A mistyped, truncated or pasted-twice token fails :func:`parse_token`
without costing a store lookup, and secret scanners can recognise a leaked token
with near-zero false positives.

Older service tokens (``sk_`` + 64 lowercase hex characters, no checksum) are
recognised as :attr:`TokenFormat.LEGACY_HEX`; they keep working once imported by
their SHA-256 hash.

Only :func:`hash_token` of a credential is ever stored: the SHA-256 of the whole
token text (prefix included), as 64 lowercase hex characters.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from enum import StrEnum

from gateway.credentials.errors import MalformedCredential

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 43  # 43 * log2(62) = 256.03 bits
CHECKSUM_LENGTH = 6  # 62**6 > 2**32: any CRC32 fits
LEGACY_HEX_LENGTH = 64

_BASE62_SET = frozenset(BASE62)
_HEX = re.compile(r"^[0-9a-f]{64}$")


class TokenKind(StrEnum):
    """What a bearer credential is, told by its prefix."""

    SERVICE_TOKEN = "sk_"  # noqa: S105 - a prefix, not a password
    API_KEY = "ak_"

    @property
    def label(self) -> str:
        return "service token" if self is TokenKind.SERVICE_TOKEN else "API key"


class TokenFormat(StrEnum):
    CHECKSUMMED = "v1"  # prefix + 43 base62 + 6 base62 CRC32
    LEGACY_HEX = "legacy"  # sk_ + 64 lowercase hex, no checksum; importable by hash only


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A well-formed credential, reduced to what may be kept: never the secret itself."""

    kind: TokenKind
    format: TokenFormat
    hash: str  # SHA-256 of the whole token, 64 lowercase hex characters
    hint: str  # prefix + first 4 + last 4 characters, for humans telling tokens apart


def base62_encode(number: int, width: int) -> str:
    """``number`` in base62, left-padded with ``0`` to ``width`` characters."""
    if number < 0:
        raise ValueError("base62 encodes non-negative integers")
    digits: list[str] = []
    rest = number
    while rest:
        rest, digit = divmod(rest, 62)
        digits.append(BASE62[digit])
    text = "".join(reversed(digits))
    if len(text) > width:
        raise ValueError(f"{number} does not fit in {width} base62 characters")
    return text.rjust(width, "0")


def checksum(prefix: str, body: str) -> str:
    """The 6-character base62 CRC32 of ``prefix + body``."""
    return base62_encode(zlib.crc32((prefix + body).encode("ascii")), CHECKSUM_LENGTH)


def generate_token(kind: TokenKind) -> str:
    """A new credential of ``kind``: prefix, 256 random bits in base62, checksum."""
    body = "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    return kind.value + body + checksum(kind.value, body)


def generate_service_token() -> str:
    """A new ``sk_`` service token. Show it once; store only :func:`hash_token` of it."""
    return generate_token(TokenKind.SERVICE_TOKEN)


def generate_api_key() -> str:
    """A new ``ak_`` API key. Show it once; store only :func:`hash_token` of it."""
    return generate_token(TokenKind.API_KEY)


def hash_token(token: str) -> str:
    """SHA-256 of the whole token text (prefix included), 64 lowercase hex characters."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_hint(token: str) -> str:
    """``sk_7Hq0…1mZ0``: enough to tell tokens apart in a list, far too little to guess one."""
    prefix = token[:3]
    return f"{prefix}{token[3:7]}…{token[-4:]}"


def is_token_hash(value: str) -> bool:
    """True for a SHA-256 as :func:`hash_token` writes it (64 lowercase hex characters)."""
    return bool(_HEX.match(value))


def parse_token(text: str, kind: TokenKind | None = None, *, allow_legacy: bool = True) -> ParsedToken:
    """Check a presented credential's shape and checksum; return its hash and format.

    ``kind`` restricts the accepted prefix (an API key is not a service token).
    Raises :class:`MalformedCredential` with a message naming what is wrong but never
    echoing the credential.
    """
    found = _kind_of(text)
    if found is None or (kind is not None and found is not kind):
        expected = kind.label if kind is not None else "service token or API key"
        article = "an" if expected.startswith("API") else "a"
        why = "unknown prefix" if found is None else f"the {found.value} prefix marks {found.label}s"
        raise MalformedCredential(f"not {article} {expected}: {why}")
    body = text[len(found.value) :]
    if found is TokenKind.SERVICE_TOKEN and len(body) == LEGACY_HEX_LENGTH and _HEX.match(body):
        if not allow_legacy:
            raise MalformedCredential("legacy hex service tokens are not accepted here")
        return ParsedToken(found, TokenFormat.LEGACY_HEX, hash_token(text), token_hint(text))
    if len(body) != RANDOM_LENGTH + CHECKSUM_LENGTH:
        raise MalformedCredential(f"malformed {found.label}: wrong length")
    if not _BASE62_SET.issuperset(body):
        raise MalformedCredential(f"malformed {found.label}: unexpected character")
    random_part, presented = body[:RANDOM_LENGTH], body[RANDOM_LENGTH:]
    if not hmac.compare_digest(presented, checksum(found.value, random_part)):
        raise MalformedCredential(f"malformed {found.label}: checksum mismatch (mistyped or truncated?)")
    return ParsedToken(found, TokenFormat.CHECKSUMMED, hash_token(text), token_hint(text))


def looks_valid(text: str, kind: TokenKind | None = None, *, allow_legacy: bool = True) -> bool:
    """True when :func:`parse_token` would accept ``text`` (no store lookup, no exception)."""
    try:
        parse_token(text, kind, allow_legacy=allow_legacy)
    except MalformedCredential:
        return False
    return True


def _kind_of(text: str) -> TokenKind | None:
    for kind in TokenKind:
        if text.startswith(kind.value):
            return kind
    return None
