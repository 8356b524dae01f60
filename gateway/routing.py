"""Route table: segment-aware longest-prefix match, then method.

``/v1/user`` matches ``/v1/user`` and ``/v1/user/42`` but not ``/v1/username``.
Among routes whose prefix matches, the longest prefix that accepts the method
wins; if prefixes match but none accepts the method the answer is 405.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_plus, urlsplit

from aiohttp import ClientTimeout

from gateway.errors import MethodNotAllowed, RouteNotFound
from gateway.settings import RouteSettings


@dataclass(frozen=True, slots=True)
class Route:
    """A configured route with what the proxy needs precomputed."""

    settings: RouteSettings
    origin: str  # scheme://host:port of the upstream: the connection pool key
    base_path: str  # upstream path prefix, without trailing slash
    timeout: ClientTimeout = field(compare=False)

    @property
    def name(self) -> str:
        return self.settings.name

    @classmethod
    def from_settings(cls, settings: RouteSettings) -> Route:
        parts = urlsplit(settings.upstream)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        return cls(
            settings=settings,
            origin=f"{parts.scheme}://{host}:{port}",
            base_path=parts.path.rstrip("/"),
            timeout=ClientTimeout(total=None, sock_connect=settings.timeouts.connect, sock_read=settings.timeouts.read),
        )

    def upstream_url(self, raw_path: str, raw_query: str) -> str:
        """Build the upstream URL from the request path and query exactly as sent (still percent-encoded)."""
        path = raw_path
        if self.settings.strip_prefix and self.settings.prefix != "/":
            path = raw_path[len(self.settings.prefix) :] or "/"
        url = self.origin + self.base_path + path
        return f"{url}?{raw_query}" if raw_query else url

    def allows(self, method: str) -> bool:
        methods = self.settings.methods
        return methods is None or method in methods


class RouteTable:
    """Immutable lookup structure built once from the configured routes."""

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.routes = routes
        self._by_prefix: dict[str, list[Route]] = {}
        for route in routes:
            self._by_prefix.setdefault(route.settings.prefix, []).append(route)
        # Distinct prefix lengths, longest first: one dict probe per length.
        self._lengths = sorted({len(p) for p in self._by_prefix if p != "/"}, reverse=True)
        self._root = self._by_prefix.get("/", [])

    @classmethod
    def from_settings(cls, routes: tuple[RouteSettings, ...]) -> RouteTable:
        return cls(tuple(Route.from_settings(r) for r in routes))

    def match(self, method: str, path: str) -> Route:
        """Return the route for ``path``; raise RouteNotFound or MethodNotAllowed."""
        matched_any = False
        path_length = len(path)
        for length in self._lengths:
            if length > path_length or (length < path_length and path[length] != "/"):
                continue
            candidates = self._by_prefix.get(path[:length])
            if candidates is None:
                continue
            matched_any = True
            for route in candidates:
                if route.allows(method):
                    return route
        for route in self._root:
            matched_any = True
            if route.allows(method):
                return route
        if matched_any:
            raise MethodNotAllowed(f"method {method} is not allowed here", headers={"Allow": self._allowed(path)})
        raise RouteNotFound("no route for this path")

    def _allowed(self, path: str) -> str:
        methods: set[str] = set()
        for route in self.routes:
            prefix = route.settings.prefix
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                methods |= route.settings.methods or set()
        return ", ".join(sorted(methods))


def without_query_parameter(query: str, name: str) -> str:
    """``query`` (raw, still percent-encoded) without the parameters called ``name``; the rest byte for byte."""
    kept = [piece for piece in query.split("&") if unquote_plus(piece.partition("=")[0]) != name]
    return "&".join(kept)
