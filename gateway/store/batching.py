"""Calls answered in batches: the ones made while a batch is being written go in the next.

A replay-protected route claims a nonce per request. Claimed one call at a time, each
claim paid a hand-over to the SQLite store's thread and back (~140 µs of CPU) or a Redis
round trip through redis-py (~90 µs); written together, the claims in flight share one.
Under load a batch holds about as many calls as requests are waiting for one; alone, a
call is a batch of one, written at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from gateway.store.errors import StoreError, StoreUnavailable

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """``submit`` queues an item and waits for its result; one task writes what is queued with ``write``
    (which answers a result per item, in order) until nothing is left.

    A failed write fails each of its batch's calls with a :class:`StoreUnavailable` of its own (a store error's
    detail, or ``interrupted`` and the error's type for anything else, a cancellation included); a call whose
    caller was cancelled is simply not answered.
    """

    def __init__(self, write: Callable[[list[Item]], Awaitable[Sequence[Result]]], name: str, interrupted: str) -> None:
        self._write = write
        self._name = name
        self._interrupted = interrupted
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Result] = loop.create_future()
        self._queue.append((item, answer))
        if self._writer is None:
            self._writer = loop.create_task(self._run(), name=self._name)
        return await answer

    async def drain(self) -> None:
        """Wait until the calls already made are answered."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self._write([item for item, _ in batch])
                except BaseException as exc:
                    for _, answer in batch:
                        if not answer.done():  # its caller may have been cancelled meanwhile
                            answer.set_exception(
                                StoreUnavailable(
                                    exc.detail
                                    if isinstance(exc, StoreError)
                                    else f"{self._interrupted} ({type(exc).__name__})"
                                )
                            )
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, answer), result in zip(batch, results, strict=True):
                    if not answer.done():
                        answer.set_result(result)
        finally:
            self._writer = None
