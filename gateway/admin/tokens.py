"""Admin tokens: who may call the admin API, read from ``admin.tokens_file`` (again when it changes).

The file holds one named token per line; only SHA-256 digests are kept in memory::

    # NAME:sha256:HEX       the SHA-256 of the token (recommended: the file then holds no secret)
    # NAME:TOKEN            the token itself (at least 32 characters), hashed on load
    # ... read-only         optional flag: this token may only read (GET), never change anything
    ops:sha256:6f1ed002ab5595859014ebf0951522d9f6e9fb7c5d6e0d4b8c6b2d6e1d0e9f53
    dashboards:sha256:8a0f5b1d1e7f3c1c8d0f0a6c2b9e4e4e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c read-only

``gateway admin-token generate --name NAME`` prints a new token and its line. A
presented token is hashed and compared with every configured digest in constant
time (:func:`hmac.compare_digest`, no early exit), so the answer time does not
depend on which token, if any, matched. Problems are reported by line number;
no message ever repeats a token.

The gateway reads the file again when it changes (:class:`AdminTokenFile`, checked at
most once a second when the admin API is called): removing a line revokes that token,
adding one accepts it, without a restart (a Kubernetes Secret updated in place works).
A changed file that cannot be read or parsed is refused with an error log naming the
problem, and the tokens read before stay in force.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("gateway.admin")

ADMIN_TOKEN_PREFIX = "gwa_"  # noqa: S105 - a prefix, not a secret: lets secret scanners spot leaked admin tokens
MIN_PLAIN_TOKEN_LENGTH = 32
READ_ONLY_FLAG = "read-only"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class AdminToken:
    """One accepted admin token, by name and SHA-256 digest only."""

    name: str
    digest: bytes = field(repr=False)
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class AdminTokens:
    """The configured admin tokens (possibly none: then nobody may use the admin API)."""

    tokens: tuple[AdminToken, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def authenticate(self, presented: str) -> AdminToken | None:
        """The token ``presented`` matches, compared with every digest in constant time."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: AdminToken | None = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.digest):
                found = token  # keep going: the time taken must not tell which one matched
        return found


def generate_admin_token() -> str:
    """A new admin token: ``gwa_`` + 256 random bits (url-safe base64)."""
    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


def admin_token_line(name: str, token: str, *, read_only: bool = False) -> str:
    """The tokens-file line that accepts ``token`` under ``name`` without holding the token itself."""
    parse_admin_token_name(name)
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    return f"{name}:sha256:{digest}" + (f" {READ_ONLY_FLAG}" if read_only else "")


def parse_admin_token_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"an admin token name is 1-64 characters of [A-Za-z0-9_.@-]: {value!r}")
    return value


def parse_admin_tokens(text: str) -> AdminTokens:
    """Parse a tokens file's text; ``ValueError`` naming the first bad line (never its token)."""
    tokens: list[AdminToken] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        body, _, flags = line.partition(" ")
        flag_words = flags.split()
        if any(word != READ_ONLY_FLAG for word in flag_words):
            raise ValueError(f"line {number}: unknown flag (the only flag is {READ_ONLY_FLAG!r})")
        name, colon, secret = body.partition(":")
        if not colon or not secret:
            raise ValueError(f"line {number}: expected NAME:sha256:HEX or NAME:TOKEN")
        try:
            parse_admin_token_name(name)
        except ValueError:
            raise ValueError(f"line {number}: an admin token name is 1-64 characters of [A-Za-z0-9_.@-]") from None
        if secret.startswith("sha256:"):
            hexdigest = secret[len("sha256:") :]
            if not _SHA256.match(hexdigest):
                raise ValueError(f"line {number}: sha256: must be followed by 64 hex characters")
            digest = bytes.fromhex(hexdigest)
        elif len(secret) < MIN_PLAIN_TOKEN_LENGTH:
            raise ValueError(f"line {number}: a plain admin token is at least {MIN_PLAIN_TOKEN_LENGTH} characters")
        else:
            digest = hashlib.sha256(secret.encode("utf-8")).digest()
        if name in names:
            raise ValueError(f"line {number}: duplicate admin token name {name!r}")
        if digest in digests:
            raise ValueError(f"line {number}: the same token is listed twice")
        names.add(name)
        digests.add(digest)
        tokens.append(AdminToken(name, digest, read_only=bool(flag_words)))
    if not tokens:
        raise ValueError("holds no admin token (lines NAME:sha256:HEX or NAME:TOKEN)")
    return AdminTokens(tuple(tokens))


def load_admin_tokens(path: Path) -> AdminTokens:
    """Read and parse ``path``; ``ValueError`` with a message that can follow the key name."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {str(path)!r}: {type(exc).__name__}") from None
    try:
        return parse_admin_tokens(text)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r}: {exc}") from None


RELOAD_CHECK_INTERVAL = 1.0  # seconds between two looks at the file (one stat)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is rewritten or replaced (a Secret's symlink swap too); ``None``: missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class AdminTokenFile:
    """The admin tokens in force: those of ``path``, read again when the file changes (see the module docstring).

    ``tokens`` were read at start-up (where a bad file stops the gateway); ``path`` ``None``: no file,
    the tokens never change.
    """

    def __init__(
        self,
        path: Path | None,
        tokens: AdminTokens,
        *,
        check_interval: float = RELOAD_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.check_interval = check_interval
        self._clock = clock
        self._tokens = tokens
        self._stamp = _stamp(path) if path is not None else None
        self._next_check = clock() + check_interval

    def current(self) -> AdminTokens:
        """The tokens in force now, after a look at the file if the last one is older than the interval."""
        if self.path is None:
            return self._tokens
        now = self._clock()
        if now < self._next_check:
            return self._tokens
        self._next_check = now + self.check_interval
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return self._tokens
        self._stamp = stamp
        try:
            tokens = load_admin_tokens(self.path)
        except ValueError as exc:
            log.error(
                "admin tokens file changed but was not loaded: the tokens read before stay in force",
                extra={"tokens_file": str(self.path), "error": str(exc)},
            )
            return self._tokens
        self._tokens = tokens
        log.info("admin tokens reloaded", extra={"tokens_file": str(self.path), "tokens": len(tokens.tokens)})
        return tokens
