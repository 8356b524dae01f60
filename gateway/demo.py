"""A demo upstream for ``make run`` and the tests: it echoes what it received.

``GET /anything`` answers JSON with the method, path, query, headers and body
size the upstream saw, which makes the gateway's work visible: the injected
context headers, the forwarding headers, the absence of stripped ones.
``/ws`` echoes WebSocket messages.
"""

from __future__ import annotations

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.Response:
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
    return web.json_response(
        {
            "service": "demo-upstream",
            "method": request.method,
            "path": request.raw_path.partition("?")[0],
            "query": request.query_string,
            "headers": dict(request.headers),
            "body_bytes": size,
        }
    )


async def websocket_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


def create_demo_upstream() -> web.Application:
    app = web.Application()
    app.router.add_get("/ws", websocket_echo)
    app.router.add_get("/{tail:.*}/ws", websocket_echo)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app
