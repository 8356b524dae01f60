"""``gateway serve``: listeners, signals and graceful drain.

SIGTERM (or SIGINT) turns ``/readyz`` to 503, stops accepting new connections,
answers with ``Connection: close`` from then on, and waits for in-flight
requests (uploads still arriving included) for up to ``drain_timeout``. Only
then are the remaining connections closed and WebSockets closed with 1001; the
process exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time

from aiohttp import web

from gateway.admin.health import Readiness
from gateway.app import GATEWAY, create_admin_app, create_app
from gateway.header_timeout import HeaderTimeout
from gateway.observability.metrics import GatewayMetrics
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.units import Address

log = logging.getLogger("gateway.server")

SHUTDOWN_FLOOR = 0.1  # seconds left to requests cancelled at the drain deadline to finish their cleanup

# The cyclic garbage collector's first threshold while serving (CPython's default: 700). See settle_memory.
GC_THRESHOLD = 7_000


def settle_memory() -> None:
    """Tune the cyclic garbage collector for serving, once start-up is done.

    Freezes what start-up built (modules, configuration, the apps, the credential caches as
    loaded): a full collection no longer walks those hundreds of thousands of objects, and
    they are never garbage. Raises the first threshold: with 32 requests in flight their
    coroutines, futures and headers keep the count of young objects hovering near CPython's
    700, so a young collection ran every ~30 requests, each walking everything in flight.
    At 7,000 one runs every few thousand. Measured on the benchmark (docs/benchmarks.md):
    the garbage collector took ~7 % of the gateway's CPU, and ~15 ms pauses set the p99.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


async def _start(app: web.Application, address: Address, drain_timeout: float) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=drain_timeout)
    await runner.setup()
    site = web.TCPSite(runner, address.host, address.port, backlog=1024, reuse_address=True)
    await site.start()
    return runner


def _bound(runner: web.AppRunner) -> list[str]:
    out = []
    for sockname in runner.addresses:
        host, port = sockname[0], sockname[1]
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return out


async def serve(settings: Settings, *, demo_upstream: Address | None = None) -> None:
    """Open the runtime (store, cache, usage, audit), serve until SIGTERM/SIGINT, drain, then stop it.

    Raises :class:`~gateway.runtime.StartupError` before binding anything when the store or KEK is unusable.
    """
    metrics = GatewayMetrics()
    runtime = await Runtime.open(settings, registry=metrics.registry)
    try:
        await runtime.start()
        await _serve(settings, runtime, metrics, demo_upstream)
    finally:
        await runtime.stop()  # after the drain: the last requests' audit events and usage are written


async def _serve(settings: Settings, runtime: Runtime, metrics: GatewayMetrics, demo_upstream: Address | None) -> None:
    """Run the gateway until SIGTERM/SIGINT, then drain and return."""
    app = create_app(settings, metrics, runtime=runtime)
    gateway = app[GATEWAY]
    readiness = Readiness()
    admin_app = create_admin_app(gateway, readiness, runtime)

    runners: list[web.AppRunner] = []
    if demo_upstream is not None:
        from gateway.demo import create_demo_upstream

        runners.append(await _start(create_demo_upstream(), demo_upstream, 1.0))
        log.info("demo upstream listening", extra={"address": _bound(runners[-1])})
    main_runner = await _start(app, settings.listen, settings.drain_timeout)
    admin_runner = await _start(admin_app, settings.admin_listen, 1.0)
    header_timeouts = [
        HeaderTimeout(runner.server, settings.header_timeout, on_close=metrics.header_timeouts.inc)
        for runner in (main_runner, admin_runner)
        if runner.server is not None
    ]
    for header_timeout in header_timeouts:
        header_timeout.start()
    log.info("gateway listening", extra={"address": _bound(main_runner), "config": settings.source})
    log.info("admin listening", extra={"address": _bound(admin_runner)})
    for route in gateway.routes.routes:
        log.info(
            "route",
            extra={
                "route": route.name,
                "prefix": route.settings.prefix,
                "upstream": route.settings.upstream,
                "methods": sorted(route.settings.methods) if route.settings.methods else "*",
            },
        )

    if demo_upstream is not None:
        host = "127.0.0.1" if settings.listen.host in ("0.0.0.0", "::", "") else settings.listen.host  # noqa: S104
        prefix = gateway.routes.routes[0].settings.prefix.rstrip("/") if gateway.routes.routes else ""
        print(f"\nTry it:  curl -i http://{host}:{settings.listen.port}{prefix}/hello\n", flush=True)

    settle_memory()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("draining", extra={"deadline_s": settings.drain_timeout, "in_flight": gateway.in_flight})
        readiness.draining = True
        gateway.draining = True
        deadline = time.monotonic() + settings.drain_timeout
        for site in list(main_runner.sites):
            await site.stop()  # no new connections; open ones keep being served
        # aiohttp's cleanup closes connections at once (dropping request bodies still
        # arriving), so wait for in-flight requests here first.
        while gateway.in_flight > len(gateway.websockets) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # The rest of the deadline, then aiohttp cancels what is still running. Never 0: aiohttp reads a
        # shutdown timeout of 0 as "no limit" and would wait for a request stuck upstream (a read timeout later).
        main_runner._shutdown_timeout = max(SHUTDOWN_FLOOR, deadline - time.monotonic())
        await main_runner.cleanup()
        log.info("drained", extra={"in_flight": gateway.in_flight})
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        for header_timeout in header_timeouts:
            await header_timeout.stop()
        await admin_runner.cleanup()
        for runner in runners:
            await runner.cleanup()
