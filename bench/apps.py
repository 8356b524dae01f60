"""The reference servers the gateway is measured against, each run in its own process.

``python -m bench.apps upstream --port P``
    A tiny, fast aiohttp app answering every request with a small JSON body. It is
    the upstream of every proxy scenario and, measured directly, the ceiling of the
    whole set-up.

``python -m bench.apps minimal-proxy --port P --upstream http://127.0.0.1:U``
    The ceiling for *any* aiohttp reverse proxy: one pooled ClientSession, request
    and response headers copied minus hop-by-hop ones, the upstream body read whole
    and returned in a ``web.Response``. No routing, no context, no metrics, no log.
    The gateway's target is a fraction of this one's throughput.

Both run on uvloop when installed, with aiohttp's access log off, and stop cleanly
on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator, Sequence

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from bench.eventloop import uvloop_factory

UPSTREAM_BODY = b'{"ok":true,"service":"bench-upstream","message":"hello from the benchmark upstream"}'

# RFC 9110 §7.6.1 hop-by-hop fields, plus the ones aiohttp computes itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

UPSTREAM_URL = web.AppKey("upstream_url", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def _answer(request: web.Request) -> web.Response:
    if request.body_exists:
        await request.read()
    return web.Response(body=UPSTREAM_BODY, content_type="application/json")


def create_upstream() -> web.Application:
    """The benchmark upstream: any method, any path, a small JSON answer."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _answer)
    return app


async def _forward(request: web.Request) -> web.Response:
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP)
    body = await request.read() if request.body_exists else None
    async with request.app[SESSION].request(
        request.method,
        request.app[UPSTREAM_URL] + request.raw_path,
        headers=headers,
        data=body,
        allow_redirects=False,
    ) as upstream:
        payload = await upstream.read()
        out = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP)
        return web.Response(status=upstream.status, reason=upstream.reason, headers=out, body=payload)


def create_minimal_proxy(upstream_url: str) -> web.Application:
    """The minimal pass-through proxy: the throughput ceiling for an aiohttp proxy."""
    app = web.Application()
    app[UPSTREAM_URL] = upstream_url.rstrip("/")

    async def session(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        app[SESSION] = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", _forward)
    return app


async def serve(app: web.Application, host: str, port: int) -> None:
    """Listen until SIGTERM or SIGINT, then close cleanly."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apps", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("upstream", "minimal-proxy"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", help="upstream base URL (minimal-proxy only)")
    args = parser.parse_args(argv)
    if args.kind == "minimal-proxy":
        if not args.upstream:
            parser.error("minimal-proxy needs --upstream")
        app = create_minimal_proxy(args.upstream)
    else:
        app = create_upstream()
    with asyncio.Runner(loop_factory=uvloop_factory()) as runner:
        runner.run(serve(app, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
