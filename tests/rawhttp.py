"""Send exact bytes to a server: for requests an HTTP client library would normalise."""

from __future__ import annotations

import asyncio


async def raw_request(host: str, port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (request line and headers, CRLF-joined, no final blank line) and return (status, raw reply)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head.encode("latin-1") + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    status = int(reply.split(b" ", 2)[1])
    return status, reply
