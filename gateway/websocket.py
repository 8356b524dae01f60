"""WebSocket proxying: handshake with the upstream first, then pipe frames both ways.

The upstream's handshake decides the subprotocol (the client's offer is passed
on, the upstream's choice is answered to the client). A close from either side
is passed to the other with the same code. A connection opened with a credential
that expires (a JWT's ``exp``, a token's or key's expiry) is closed by the gateway
when it does: 1008 (policy violation) to the client, 1001 (going away) upstream.

A connection opened on an enforcing route is also watched (:class:`CredentialWatch`):
whenever the store announces a changed credential (a revocation, here or on another
replica), each watched connection's policy is asked again
(:meth:`~gateway.pipeline.policy.RoutePolicy.recheck`), and one it now refuses is
closed the same way, with the reason ``credential revoked``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from gateway.tasks import cancel_and_wait

if TYPE_CHECKING:
    from gateway.pipeline.base import AuthError
    from gateway.proxy import Gateway
    from gateway.routing import Route
    from gateway.store.base import Invalidation

log = logging.getLogger("gateway.websocket")

WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class UpstreamRejected(GatewayError):
    """The upstream answered the WebSocket handshake with a status other than 101: its refusal (4xx) is
    passed on; any other answer (a 200 from a server that does not speak WebSocket there) is a 502."""

    code = "upstream.websocket_rejected"

    def __init__(self, status: int) -> None:
        super().__init__(f"upstream refused the WebSocket upgrade with status {status}")
        self.status = status if 400 <= status < 500 else 502  # type: ignore[misc]  # per instance


class BadHandshake(GatewayError):
    """The client's WebSocket opening handshake lacks what RFC 6455 requires (``Sec-WebSocket-Key``...)."""

    status = 400
    code = "request.bad_websocket_handshake"


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


async def _refuse(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, link: _Link, why: str
) -> None:
    """Close both sides because the credential no longer holds (unless a close is already under way):
    1008 with ``why`` to the client, 1001 upstream."""
    if link.closing:
        return
    link.closing = True
    log.info("websocket closed: %s", why)
    await client.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION, message=why.encode())
    await upstream.close(code=aiohttp.WSCloseCode.GOING_AWAY)


async def _expire(
    expires_at: float, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, link: _Link
) -> None:
    """At ``expires_at`` (Unix seconds), when the credential the connection was opened with expires,
    close both sides."""
    await asyncio.sleep(max(0.0, expires_at - time.time()))
    await _refuse(client, upstream, link, "credential expired")


Recheck = Callable[[], Awaitable["AuthError | None"]]
"""Asks a connection's policy again (bound to its upgrade request): the refusal, or ``None``."""


class _Watched(NamedTuple):
    client: web.WebSocketResponse
    upstream: aiohttp.ClientWebSocketResponse
    recheck: Recheck


class CredentialWatch:
    """The open WebSockets of enforcing routes, asked again whenever a credential changes.

    :meth:`changed` is a store listener (it must not block): it starts one task that rechecks every
    watched connection in turn, after the other listeners (the credential cache) have dropped what
    changed. Changes arriving meanwhile make that task go round once more. Closed by :meth:`close`.
    """

    def __init__(self) -> None:
        self._open: dict[_Link, _Watched] = {}
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def add(
        self,
        link: _Link,
        client: web.WebSocketResponse,
        upstream: aiohttp.ClientWebSocketResponse,
        recheck: Recheck,
    ) -> None:
        self._open[link] = _Watched(client, upstream, recheck)

    def discard(self, link: _Link) -> None:
        self._open.pop(link, None)

    def changed(self, invalidation: Invalidation) -> None:
        if not self._open:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._recheck_all(), name="gateway-websocket-recheck")

    async def _recheck_all(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            refused: list[tuple[_Link, _Watched]] = []
            for link, watched in list(self._open.items()):
                if link.closing:
                    continue
                try:
                    if await watched.recheck() is not None:
                        refused.append((link, watched))
                except Exception:  # one connection's failure must not leave the others unchecked
                    log.exception("websocket recheck failed")
            # Together: each close waits for its client's answer (up to aiohttp's close timeout).
            await asyncio.gather(
                *(_refuse(w.client, w.upstream, link, "credential revoked") for link, w in refused),
                return_exceptions=True,
            )

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)


async def proxy_websocket(
    gateway: Gateway,
    request: web.Request,
    route: Route,
    headers: CIMultiDict[str],
    url: URL,
    expires_at: float | None = None,
    recheck: Recheck | None = None,
) -> web.WebSocketResponse:
    """Proxy one WebSocket; ``expires_at`` (Unix seconds): when the credential it was opened with expires;
    ``recheck``: asks its policy again when a credential changes (:class:`CredentialWatch`).

    The client's handshake is checked before the upstream is dialled; the upstream's answer to its own is
    awaited for the route's read timeout at most, like any answer."""
    if not web.WebSocketResponse().can_prepare(request).ok:  # checks the handshake's headers, sends nothing
        raise BadHandshake("not a valid WebSocket opening handshake (RFC 6455: Sec-WebSocket-Key, -Version: 13)")
    session = gateway.sessions[route.origin]
    try:
        async with asyncio.timeout(route.settings.timeouts.read or None):
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
    link = _Link()
    try:
        await client.prepare(request)
        gateway.websockets.add(client)
        if expires_at is not None:
            expiry = asyncio.create_task(_expire(expires_at, client, upstream, link))
        if recheck is not None:
            gateway.credential_watch.add(link, client, upstream, recheck)
        await asyncio.gather(_pipe(client, upstream, link), _pipe(upstream, client, link))
    finally:
        gateway.credential_watch.discard(link)
        if expiry is not None:
            expiry.cancel()
        if not upstream.closed:
            await upstream.close()
        if not client.closed:
            await client.close(code=aiohttp.WSCloseCode.GOING_AWAY)
    return client
