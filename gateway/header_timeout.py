"""Closes client connections that never send a whole request: the slowloris defence.

aiohttp bounds a kept-alive connection's wait for its next request (``keepalive_timeout``,
75 s), but not a new connection's wait for its first one: a client that connects and sends
nothing, or a request's headers a byte at a time, holds a connection (a file descriptor, a
parser) for as long as it likes, and enough of them exhaust the listener.

:class:`HeaderTimeout` looks at a listener's connections every ``interval`` seconds and closes
each one that, ``timeout`` seconds after it was first seen, has not yet delivered the headers of
its first request. It reads two attributes of aiohttp's ``RequestHandler`` (the count of
requests parsed and whether one is being handled): when a future aiohttp lacks them it says so
once at start-up and does nothing, rather than guess.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.tasks import cancel_and_wait

log = logging.getLogger("gateway.server")

DEFAULT_HEADER_TIMEOUT = 60.0
_ATTRIBUTES = ("_request_count", "_request_in_progress")


class HeaderTimeout:
    """Closes connections of ``server`` that have not delivered a first request within ``timeout`` seconds."""

    def __init__(
        self,
        server: web.Server,
        timeout: float,
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        self.timeout = timeout
        self.interval = min(1.0, timeout / 2)
        self.on_close = on_close
        self._clock = asyncio.get_running_loop().time
        self._first_seen: dict[int, tuple[RequestHandler, float]] = {}  # id -> (handler, when)
        self.usable = all(hasattr(RequestHandler, name) for name in _ATTRIBUTES)
        self._task: asyncio.Task[None] | None = None

    def sweep(self) -> int:
        """Close the connections past their time; returns how many."""
        now = self._clock()
        waiting: dict[int, tuple[RequestHandler, float]] = {}
        closed = 0
        for handler in self.server.connections:
            if handler._request_count or handler._request_in_progress:
                continue  # it has sent a request: aiohttp's keep-alive timeout takes over
            key = id(handler)
            seen = self._first_seen.get(key)
            since = seen[1] if seen is not None and seen[0] is handler else now
            if now - since >= self.timeout:
                handler.force_close()
                closed += 1
                if self.on_close is not None:
                    self.on_close()
            else:
                waiting[key] = (handler, since)
        self._first_seen = waiting  # closed and finished connections drop out
        return closed

    def start(self) -> None:
        if not self.usable:
            log.warning(
                "header_timeout is not enforced: this aiohttp's RequestHandler lacks "
                + ", ".join(name for name in _ATTRIBUTES if not hasattr(RequestHandler, name))
            )
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gateway-header-timeout")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sweep()
