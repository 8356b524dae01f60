"""The route's client IP allowlist, on the IP the trusted-proxy resolver found (never a client-chosen header)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from gateway.pipeline.allowlists import IPAllowlist, Network
from gateway.pipeline.base import AccessDenied, RequestView


class IpAuthorizer:
    """Refuses clients outside ``networks`` (IPv4 and IPv6 CIDRs) with ``ip.denied``."""

    name: Final = "ip"

    def __init__(self, networks: Iterable[Network]) -> None:
        self.allowlist = IPAllowlist(networks)

    def authorize(self, view: RequestView) -> None:
        if not self.allowlist.allows(view.client_ip):
            raise AccessDenied("ip.denied", log_detail=f"client {view.client_ip} is outside the route's ip_allow")
