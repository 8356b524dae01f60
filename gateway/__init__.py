"""Authentication gateway: an aiohttp reverse proxy that decides identity once, at the edge."""

from __future__ import annotations

__version__ = "0.1.0"
