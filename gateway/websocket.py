"""WebSocket proxying: handshake with the upstream first, then pipe frames both ways.

The upstream's handshake decides the subprotocol (the client's offer is passed
on, the upstream's choice is answered to the client). A close from either side
is passed to the other with the same code. A connection opened with a credential
that expires (a JWT's ``exp``, a token's or key's expiry) is closed by the gateway
when it does: 1008 (policy violation) to the client, 1001 (going away) upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

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


class _Link:
    """The two directions of one proxied WebSocket; the first to see a close handles it."""

    __slots__ = ("closing",)

    def __init__(self) -> None:
        self.closing = False


def _wire_code(code: int | None) -> int:
    # 1005, 1006 and 1015 are never sent in a close frame (RFC 6455 §7.4.1).
    if code is None or code in (1005, 1006, 1015):
        return aiohttp.WSCloseCode.GOING_AWAY if code is not None else aiohttp.WSCloseCode.OK
    return code


async def _pipe(source: WebSocket, target: WebSocket, link: _Link) -> None:
    """Copy frames until ``source`` closes, then pass the close (same code) on to ``target``.

    Both ends run with autoclose off, so the close is forwarded before the side that
    started it is answered; closing ``target`` also ends the opposite pipe, which is
    waiting in ``target.receive()`` (aiohttp supports close() from another task).
    """
    async for message in source:
        if message.type is aiohttp.WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type is aiohttp.WSMsgType.BINARY:
            await target.send_bytes(message.data)
        elif message.type is aiohttp.WSMsgType.ERROR:
            log.info("websocket error", extra={"error": repr(message.data)})
            break
    if link.closing:
        return
    link.closing = True
    code = _wire_code(source.close_code)
    await target.close(code=code)
    await source.close(code=code)


async def _expire(
    expires_at: float, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, link: _Link
) -> None:
    """At ``expires_at`` (Unix seconds), when the credential the connection was opened with expires,
    close both sides (unless a close is already under way)."""
    await asyncio.sleep(max(0.0, expires_at - time.time()))
    if link.closing:
        return
    link.closing = True
    log.info("websocket closed: its credential expired")
    await client.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION, message=b"credential expired")
    await upstream.close(code=aiohttp.WSCloseCode.GOING_AWAY)


async def proxy_websocket(
    gateway: Gateway,
    request: web.Request,
    route: Route,
    headers: CIMultiDict[str],
    url: URL,
    expires_at: float | None = None,
) -> web.WebSocketResponse:
    """Proxy one WebSocket; ``expires_at`` (Unix seconds): when the credential it was opened with expires."""
    session = gateway.sessions[route.origin]
    try:
        upstream = await session.ws_connect(
            url,
            headers=headers,
            protocols=_offered_protocols(request),
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
            autoclose=False,
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
        protocols=(upstream.protocol,) if upstream.protocol else (),
        autoclose=False,
        autoping=True,
        max_msg_size=4 * 1024 * 1024,
    )
    expiry: asyncio.Task[None] | None = None
    try:
        await client.prepare(request)
        gateway.websockets.add(client)
        link = _Link()
        if expires_at is not None:
            expiry = asyncio.create_task(_expire(expires_at, client, upstream, link))
        await asyncio.gather(_pipe(client, upstream, link), _pipe(upstream, client, link))
    finally:
        if expiry is not None:
            expiry.cancel()
        if not upstream.closed:
            await upstream.close()
        if not client.closed:
            await client.close(code=aiohttp.WSCloseCode.GOING_AWAY)
    return client
