"""Token shape checks (prefix, length, CRC32 checksum) remembered for the credentials seen recently.

:func:`gateway.credentials.tokens.parse_token` costs ~10 µs (the base62 checksum);
a client presents the same token on every request, so the parse of a well-formed
token is kept (bounded; malformed ones are never kept, so garbage cannot fill it).
The answer is a pure function of the text: remembering it changes nothing but time.

:attr:`ParsedTokens.known` answers from that memory alone (a dict lookup, no Python
call): a text it knows passed every check of ``parse_token`` (so it is made of
``[A-Za-z0-9_]`` only), which lets an authenticator skip re-checking it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from gateway.credentials.tokens import ParsedToken, TokenKind, parse_token

DEFAULT_MAX_ENTRIES: Final = 4096


class ParsedTokens:
    """``parse_token(text, kind)`` with a bounded memory of successes."""

    __slots__ = ("kind", "max_entries", "_parsed", "known")

    def __init__(self, kind: TokenKind, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.kind = kind
        self.max_entries = max_entries
        self._parsed: dict[str, ParsedToken] = {}
        # The parse of a text seen (and accepted) recently, else None: never parses. The dict is only ever
        # cleared in place, so this bound method stays current.
        self.known: Callable[[str], ParsedToken | None] = self._parsed.get

    def parse(self, text: str) -> ParsedToken:
        """The parsed token; raises :class:`~gateway.credentials.errors.MalformedCredential` like ``parse_token``."""
        found = self._parsed.get(text)
        if found is None:
            found = parse_token(text, self.kind)
            if len(self._parsed) >= self.max_entries:
                self._parsed.clear()  # rare: a flood of distinct well-formed tokens; start over
            self._parsed[text] = found
        return found
