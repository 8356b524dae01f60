"""What a scenario sends: a request spec, rendered ahead of time into a pool of raw requests.

Credentials that change per request (HMAC signatures with a nonce and a
timestamp, JWTs, service tokens) are computed by a ``HeaderFactory`` *before*
a measurement starts, never while it runs: the load generator only replays
ready bytes, so signing cost cannot make it the bottleneck. The pool is written
to a file both load generators read (``wrk`` through a Lua script, the Python
loader directly): each request is a 10-digit decimal length followed by the raw
HTTP/1.1 request bytes.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.servers import RunningServer

_LENGTH_DIGITS = 10
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class RequestDraft:
    """One request about to be rendered, as a HeaderFactory sees it.

    ``index`` is unique across the whole benchmark run; ``servers`` gives access to
    the running servers and to what their launch left in ``info`` (keys, tokens).
    """

    index: int
    method: str
    path: str
    host: str
    body: bytes
    servers: Mapping[str, RunningServer]


HeaderFactory = Callable[[RequestDraft], Mapping[str, str]]
"""Computes the per-request headers (a signature, a token) for one draft."""


@dataclass(frozen=True)
class RequestSpec:
    """The request a scenario sends.

    ``per_request`` adds headers computed for each request. ``variants`` is how
    many distinct requests to pre-compute (they are replayed round-robin);
    ``unique=True`` instead sizes the pool so no request is ever sent twice
    (replay-protected nonces). Pools are rendered again before every measurement,
    so timestamps stay fresh.
    """

    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    per_request: HeaderFactory | None = None
    variants: int = 1000
    unique: bool = False
    expect_status: int = 200

    def pool_size(self, expected_requests: int) -> int:
        if self.per_request is None:
            return 1
        if self.unique:
            return max(expected_requests, 1)
        return max(self.variants, 1)

    def render(self, host: str, indexes: Iterable[int], servers: Mapping[str, RunningServer]) -> list[bytes]:
        """Raw HTTP/1.1 requests, one per index."""
        static = {"Host": host, **self.headers}
        if self.body or self.method in _BODY_METHODS:
            static["Content-Length"] = str(len(self.body))
        static_block = _header_block(static)
        head = f"{self.method} {self.path} HTTP/1.1\r\n".encode("latin-1")
        if self.per_request is None:
            request = head + static_block + b"\r\n" + self.body
            return [request for _ in indexes]
        out = []
        for index in indexes:
            draft = RequestDraft(index, self.method, self.path, host, self.body, servers)
            extra = _header_block(self.per_request(draft))
            out.append(head + static_block + extra + b"\r\n" + self.body)
        return out


def _header_block(headers: Mapping[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        if not name or any(c in name for c in ":\r\n ") or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r}: not a valid field name/value for a raw request")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


def write_pool(path: Path, requests: Iterable[bytes]) -> int:
    """Write requests in the pool format; returns how many were written."""
    count = 0
    with path.open("wb") as out:
        for request in requests:
            out.write(b"%010d" % len(request))
            out.write(request)
            count += 1
    return count


def read_pool(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out = []
    pos = 0
    while pos < len(data):
        length = int(data[pos : pos + _LENGTH_DIGITS])
        start = pos + _LENGTH_DIGITS
        out.append(data[start : start + length])
        pos = start + length
    if not out:
        raise ValueError(f"{path}: empty request pool")
    return out


def probe(host: str, port: int, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send one raw request on a fresh connection; return (status, first bytes of the response)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received and len(received) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    try:
        status = int(received.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise ValueError(f"no HTTP response from {host}:{port}: {received[:200]!r}") from None
    return status, received[:600]
