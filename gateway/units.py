"""Parsers for the small value types that appear in configuration.

Each parser raises ``ValueError`` with a message meant to follow a key path,
for example ``routes[0].timeouts.read: not a duration: '3 parsecs'``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
# The longest duration accepted anywhere: 100 years (36500d). Longer ones mean "never" and would overflow
# datetime arithmetic (a lifetime added to now) and the event loop's timers.
MAX_DURATION = 36500 * 86400.0

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
    "TB": 1000**4,
    "TiB": 1024**4,
}


def parse_bool(value: object) -> bool:
    """Only YAML booleans: ``yes``, ``"true"`` or 1 are refused, not guessed."""
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def parse_positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def parse_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number (0 or more), got {value!r}")
    return value


def parse_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def parse_file(value: object, kind: str = "file") -> Path:
    """A path naming a regular file this process can open; ``kind`` names it in errors (``secret file``)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a file path, got {value!r}")
    path = Path(value)
    try:
        if not path.is_file():
            raise ValueError(f"{kind} not found: {value!r}")
        with path.open("rb"):
            pass
    except OSError as exc:  # permission denied, a name too long...
        raise ValueError(f"{kind} not readable: {value!r} ({exc.strerror or exc})") from None
    return path


def parse_secret_file(value: object) -> Path:
    return parse_file(value, "secret file")


def parse_positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be more than zero: {value!r}")
    return seconds


def parse_duration(value: object) -> float:
    """``2s``, ``500ms``, ``5m``, ``1h``, ``90d`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, float):
        seconds = value
    elif isinstance(value, int):  # compared before float(), which overflows on a very large one
        seconds = float(value) if abs(value) <= MAX_DURATION else (math.inf if value > 0 else -math.inf)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError(f"not a duration (use e.g. 500ms, 2s, 5m): {value!r}")
    if math.isnan(seconds):
        raise ValueError(f"not a duration: {value!r}")
    if seconds < 0:
        raise ValueError(f"must not be negative: {value!r}")
    if seconds > MAX_DURATION:
        raise ValueError(f"too long (at most 36500d, 100 years): {value!r}")
    return seconds


def parse_size(value: object) -> int:
    """``10MiB``, ``512KB``, ``1GiB`` or a number of bytes -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    else:
        raise ValueError(f"not a size (use e.g. 64KiB, 10MiB): {value!r}")
    if size < 0:
        raise ValueError(f"must not be negative: {value!r}")
    return size


@dataclass(frozen=True, slots=True)
class Address:
    """A ``host:port`` listen address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_address(value: object) -> Address:
    """``0.0.0.0:8080``, ``[::1]:9901`` or ``localhost:8080`` -> Address."""
    if not isinstance(value, str):
        raise ValueError(f"not a host:port address: {value!r}")
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"not a host:port address: {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {value!r}")
    return Address(host, port)


def parse_network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR (``10.0.0.0/8``, ``2001:db8::/32``) or a single address."""
    if not isinstance(value, str):
        raise ValueError(f"not a CIDR: {value!r}")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"not a CIDR: {value!r} ({exc})") from None
