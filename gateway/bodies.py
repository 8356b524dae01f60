"""Request bodies as they arrive, with a limit on how long the client may pause.

A client that sends a body's first bytes and then stalls (a slow POST) holds its
connection and, while the body streams upstream, a pooled upstream connection: a
few hundred such requests would exhaust an upstream's pool. :func:`body_chunks`
yields the chunks of a body and raises :class:`~gateway.errors.RequestBodyTimeout`
(408) when no byte arrives for ``idle`` seconds, as nginx's ``client_body_timeout``
does (also 60 s by default).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import StreamReader

from gateway.errors import RequestBodyTimeout

DEFAULT_BODY_TIMEOUT = 60.0


async def body_chunks(content: StreamReader, idle: float) -> AsyncIterator[bytes]:
    """The chunks of ``content`` until its end; a pause of more than ``idle`` seconds raises."""
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await content.readany()
        except TimeoutError:
            raise RequestBodyTimeout(f"no request body bytes for {idle:g}s") from None
        if not chunk:
            return
        yield chunk
