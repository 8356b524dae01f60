"""Scopes a route requires, for every method or per method.

A principal's scope ``orders:*`` covers every ``orders:...`` scope and ``*`` covers
everything (the shapes :func:`gateway.credentials.validation.parse_scope` accepts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from gateway.pipeline.base import AccessDenied, Principal

ANY_METHOD: Final = "*"


def covers(held: frozenset[str], required: frozenset[str]) -> bool:
    """Whether ``held`` grants every scope of ``required`` (exactly, or through ``x:*`` / ``*``)."""
    if required <= held:
        return True
    if "*" in held:
        return True
    wildcards = tuple(scope[:-1] for scope in held if scope.endswith(":*"))  # "orders:*" -> "orders:"
    return bool(wildcards) and all(scope in held or scope.startswith(wildcards) for scope in required)


class ScopeAuthorizer:
    """Refuses a principal lacking the scopes of the request's method with ``scope.insufficient``."""

    name: Final = "scopes"

    def __init__(self, by_method: Mapping[str, frozenset[str]]) -> None:
        self.by_method = {method: scopes for method, scopes in by_method.items() if method != ANY_METHOD}
        self.default = by_method.get(ANY_METHOD, frozenset())

    def required(self, method: str) -> frozenset[str]:
        return self.by_method.get(method, self.default)

    def authorize(self, method: str, principal: Principal) -> None:
        required = self.by_method.get(method, self.default)
        if required and not covers(principal.scopes, required):
            missing = ", ".join(sorted(required - principal.scopes))
            raise AccessDenied("scope.insufficient", log_detail=f"{principal.subject} lacks {missing} for {method}")
