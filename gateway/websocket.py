"""WebSocket proxying: handshake with the upstream first, then pipe frames both ways.

The upstream's handshake decides the subprotocol (the client's offer is passed
on, the upstream's choice is answered to the client). A close from either side
is passed to the other with the same code.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable

if TYPE_CHECKING:
    from gateway.proxy import Gateway
    from gateway.routing import Route

log = logging.getLogger("gateway.websocket")

WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class UpstreamRejected(GatewayError):
    """The upstream answered the WebSocket handshake with a non-101 status."""

    code = "upstream.websocket_rejected"

    def __init__(self, status: int) -> None:
        super().__init__(f"upstream refused the WebSocket upgrade with status {status}")
        self.status = status  # type: ignore[misc]  # per-instance: pass the upstream's status on


def _offered_protocols(request: web.Request) -> tuple[str, ...]:
    values = request.headers.getall("Sec-WebSocket-Protocol", ())
    return tuple(p.strip() for value in values for p in value.split(",") if p.strip())


async def _pipe(source: WebSocket, target: WebSocket) -> None:
    async for message in source:
        if message.type is aiohttp.WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type is aiohttp.WSMsgType.BINARY:
            await target.send_bytes(message.data)
        elif message.type is aiohttp.WSMsgType.ERROR:
            break


async def proxy_websocket(
    gateway: Gateway, request: web.Request, route: Route, headers: CIMultiDict[str], url: str
) -> web.WebSocketResponse:
    session = gateway.sessions[route.origin]
    try:
        upstream = await session.ws_connect(
            url,
            headers=headers,
            protocols=_offered_protocols(request),
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
            autoping=True,
            max_msg_size=4 * 1024 * 1024,
        )
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status and exc.status != 101 and exc.status < 500:
            raise UpstreamRejected(exc.status) from exc
        raise UpstreamUnavailable("upstream WebSocket handshake failed") from exc
    except (aiohttp.ConnectionTimeoutError, TimeoutError) as exc:
        raise UpstreamTimeout("upstream did not accept the WebSocket connection in time") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable("upstream is unavailable") from exc

    client = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (), autoping=True, max_msg_size=4 * 1024 * 1024
    )
    try:
        await client.prepare(request)
        gateway.websockets.add(client)
        to_upstream = asyncio.create_task(_pipe(client, upstream))
        to_client = asyncio.create_task(_pipe(upstream, client))
        done, pending = await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.info("websocket pipe ended with an error", extra={"error": repr(task.exception())})
        # Pass the close code on to whichever side has not closed yet.
        if to_client in done:
            await client.close(code=upstream.close_code or aiohttp.WSCloseCode.OK)
        else:
            await upstream.close(code=client.close_code or aiohttp.WSCloseCode.OK)
    finally:
        if not upstream.closed:
            await upstream.close()
        if not client.closed:
            await client.close(code=aiohttp.WSCloseCode.GOING_AWAY)
    return client
