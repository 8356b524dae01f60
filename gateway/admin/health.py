"""``/metrics``, ``/healthz`` and ``/readyz`` on the admin listener.

``/healthz`` answers while the process runs. ``/readyz`` runs every registered
readiness check (configuration, store, auth backends...) and answers 503 with a
JSON body naming what is not ready; it also turns 503 once draining starts, so
load balancers stop sending new requests before the listener closes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.errors import problem_response

# A check returns None when ready, or a short reason when not.
ReadinessCheck = Callable[[], Awaitable[str | None]]


class Degraded(str):
    """A check's detail that does not make the gateway unready: it can still serve (shown, not failed)."""

    __slots__ = ()


CHECK_TIMEOUT = 2.0


@dataclass
class Readiness:
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    draining: bool = False

    def add(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    async def report(self) -> tuple[bool, dict[str, str]]:
        results: dict[str, str] = {"config": "ok"}

        async def run(name: str, check: ReadinessCheck) -> None:
            try:
                problem = await asyncio.wait_for(check(), CHECK_TIMEOUT)
            except TimeoutError:
                problem = f"no answer within {CHECK_TIMEOUT:g}s"
            except Exception as exc:  # a failing check is a report, never a 500
                problem = f"{type(exc).__name__}: {exc}"
            results[name] = "ok" if problem is None else problem

        await asyncio.gather(*(run(name, check) for name, check in self.checks.items()))
        if self.draining:
            results["draining"] = "shutting down"
        ready = all(value == "ok" or isinstance(value, Degraded) for value in results.values())
        return ready, results


READINESS = web.AppKey("readiness", Readiness)
REGISTRY = web.AppKey("registry", CollectorRegistry)


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, checks = await request.app[READINESS].report()
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return web.Response(status=200 if ready else 503, text=json.dumps(body), content_type="application/json")


@web.middleware
async def ops_problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin listener's own 404 and 405 (a path or method it does not serve) as problem documents, like
    every other error of the gateway, instead of aiohttp's plain text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return problem_response(404, "admin.not_found", f"no endpoint {request.path[:200]}", None)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return problem_response(
            405, "admin.method_not_allowed", f"{request.method} is not allowed here", None, {"Allow": allowed}
        )


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
