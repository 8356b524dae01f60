"""The route's Origin allowlist: a browser request or WebSocket upgrade from another origin is refused.

A request without ``Origin`` is not a cross-origin browser request (a server, a
CLI, a same-origin navigation) and passes; the credential decides for it. Browsers
send ``Origin`` on every cross-origin request and every WebSocket handshake, so a
page on another site can neither call the route nor open a socket with the user's
cookies.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from gateway.pipeline.allowlists import OriginAllowlist
from gateway.pipeline.base import AccessDenied, RequestView

MAX_LOGGED_ORIGIN: Final = 200


class OriginAuthorizer:
    """Refuses a sent ``Origin`` that is not one of ``origins`` (exact or ``https://*.example.com``)."""

    name: Final = "origin"

    def __init__(self, origins: Iterable[str]) -> None:
        self.allowlist = OriginAllowlist(origins)

    def allows(self, origin: str) -> bool:
        return self.allowlist.allows(origin)

    def authorize(self, view: RequestView) -> None:
        origin = view.headers.get("Origin")
        if origin is not None and not self.allowlist.allows(origin):
            raise AccessDenied("origin.denied", log_detail=f"origin {origin[:MAX_LOGGED_ORIGIN]!r} is not allowed")
