"""A stand-in identity service for the auth-backend benchmarks: RFC 7662 introspection, always healthy.

``python -m bench.identity --port P`` answers ``POST /introspect``: a token that starts
with ``bench-opaque-`` is active (``sub`` is the rest of it, ``exp`` an hour ahead),
anything else is inactive. Every other path answers 404 (the harness only needs an
answer to know the server is up). It counts the calls it answers and prints the
count to its log on exit, so a run shows how rarely the warm-cache gateway asked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from aiohttp import web

from bench.apps import serve
from bench.eventloop import uvloop_factory

TOKEN_PREFIX = "bench-opaque-"  # noqa: S105 - a test token prefix, not a secret
CALLS = web.AppKey("calls", list)


async def introspect(request: web.Request) -> web.Response:
    request.app[CALLS][0] += 1
    form = await request.post()
    token = str(form.get("token", ""))
    if not token.startswith(TOKEN_PREFIX):
        return web.json_response({"active": False})
    return web.json_response(
        {
            "active": True,
            "sub": token[len(TOKEN_PREFIX) :],
            "scope": "bench:read",
            "client_id": "bench",
            "exp": int(time.time()) + 3600,
        }
    )


def create_identity() -> web.Application:
    app = web.Application()
    app[CALLS] = [0]
    app.router.add_post("/introspect", introspect)

    async def report(app: web.Application) -> None:
        print(f"introspection calls answered: {app[CALLS][0]}", file=sys.stderr, flush=True)

    app.on_cleanup.append(report)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.identity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop_factory()) as runner:
        runner.run(serve(create_identity(), args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
