"""A test upstream: a real aiohttp app that reports exactly what it received.

Endpoints (any method, any prefix):
  .../echo...          JSON: method, raw path, query, header pairs (duplicates kept), body size and sha256
  .../slow?s=0.5       sleeps, then echoes (timeouts, graceful drain)
  .../stream?n=3       chunked response: n chunks, waiting for ``release`` between them
  .../hop              answers with hop-by-hop headers of its own
  .../ws               WebSocket: echo; "close:<code>" closes with that code; "headers" answers the upgrade's
                       headers as JSON pairs; offers subprotocol "superchat"
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web


@dataclass
class UpstreamState:
    requests: int = 0
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    ws_close_codes: list[int | None] = field(default_factory=list)


UPSTREAM_STATE = web.AppKey("upstream_state", UpstreamState)


async def _echo(request: web.Request) -> web.Response:
    state = request.app[UPSTREAM_STATE]
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        if size == 0:
            state.first_chunk.set()
        size += len(chunk)
        digest.update(chunk)
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_bytes": size,
            "body_sha256": digest.hexdigest(),
        }
    )


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("superchat",))
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            if message.data == "headers":  # what the upgrade request carried, for context-header tests
                await ws.send_str(json.dumps([[k, v] for k, v in request.headers.items()]))
                continue
            if message.data.startswith("close:"):
                await ws.close(code=int(message.data.split(":", 1)[1]))
                break
            await ws.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    request.app[UPSTREAM_STATE].ws_close_codes.append(ws.close_code)
    return ws


async def _handler(request: web.Request) -> web.StreamResponse:
    state = request.app[UPSTREAM_STATE]
    state.requests += 1
    last = request.path.rstrip("/").rsplit("/", 1)[-1]
    if last == "ws":
        return await _ws(request)
    if last == "slow":
        await asyncio.sleep(float(request.query.get("s", "0.5")))
    if last == "stream":
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        for index in range(int(request.query.get("n", "3"))):
            await response.write(f"chunk{index}\n".encode())
            if index == 0:
                await asyncio.wait_for(state.release.wait(), 5)
        await response.write_eof()
        return response
    if last == "hop":
        return web.Response(
            text="hop",
            headers={"Keep-Alive": "timeout=5", "X-Up-Private": "secret", "Connection": "X-Up-Private", "X-Kept": "1"},
        )
    return await _echo(request)


def create_upstream() -> web.Application:
    app = web.Application(client_max_size=2**40)
    app[UPSTREAM_STATE] = UpstreamState()
    app.router.add_route("*", "/{tail:[\\s\\S]*}", _handler)  # [\s\S]: paths with a line feed too
    return app


def header_values(echo: dict[str, object], name: str) -> list[str]:
    """All values of a header the upstream received (case-insensitive)."""
    pairs = echo["headers"]
    assert isinstance(pairs, list)
    return [v for k, v in pairs if k.lower() == name.lower()]
