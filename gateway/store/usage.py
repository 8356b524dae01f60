"""Credential usage (count, last used), recorded without a store write per request.

The data plane calls :meth:`UsageRecorder.token_used` / :meth:`api_key_used`
(or, on the hot path, :meth:`count_token` / :meth:`count_api_key` with a Unix
timestamp): a dictionary update, no I/O. Every ``interval`` seconds the counts
are written in one batch (:meth:`Store.record_usage`); a failed write puts them
back to be retried with the next batch, so counts are late rather than lost. The
buffer is bounded by distinct credentials; beyond that, new credentials are
counted in ``dropped`` instead (existing ones keep counting).

Pending counts keep ``last_used`` as a float (Unix seconds): no ``datetime`` is
made per request, only one per credential at flush. A float holds a present-day
timestamp to better than a microsecond, so the datetime written is the one a
``datetime`` would have given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.store.base import Store, Usage
from gateway.store.errors import StoreError
from gateway.tasks import cancel_and_wait

log = logging.getLogger("gateway.store.usage")

DEFAULT_INTERVAL = 10.0
DEFAULT_MAX_PENDING = 100_000


class _Count:
    """One credential's pending usage: updated in place, no object made per request."""

    __slots__ = ("count", "last_used")

    def __init__(self, count: int, last_used: float) -> None:
        self.count = count
        self.last_used = last_used  # Unix seconds


def _merge(into: dict[str, _Count], ident: str, count: int, last_used: float) -> None:
    previous = into.get(ident)
    if previous is None:
        into[ident] = _Count(count, last_used)
    else:
        previous.count += count
        if last_used > previous.last_used:
            previous.last_used = last_used


def _as_usage(pending: dict[str, _Count]) -> dict[str, Usage]:
    return {ident: (c.count, datetime.fromtimestamp(c.last_used, UTC)) for ident, c in pending.items()}


class UsageRecorder:
    """Batches usage of service tokens and API keys into periodic store writes."""

    def __init__(
        self,
        store: Store,
        *,
        interval: float = DEFAULT_INTERVAL,
        max_pending: int = DEFAULT_MAX_PENDING,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.interval = interval
        self.max_pending = max_pending
        self.dropped = 0
        self._clock = clock
        self._tokens: dict[str, _Count] = {}
        self._api_keys: dict[str, _Count] = {}
        self._task: asyncio.Task[None] | None = None

    def token_used(self, token_hash: str, at: datetime | None = None) -> None:
        self._count(self._tokens, token_hash, (at or self._clock()).timestamp())

    def api_key_used(self, key_hash: str, at: datetime | None = None) -> None:
        self._count(self._api_keys, key_hash, (at or self._clock()).timestamp())

    def count_token(self, token_hash: str, at: float) -> None:
        """:meth:`token_used` at ``at`` (Unix seconds, e.g. ``time.time()``): the per-request path."""
        self._count(self._tokens, token_hash, at)

    def count_api_key(self, key_hash: str, at: float) -> None:
        """:meth:`api_key_used` at ``at`` (Unix seconds)."""
        self._count(self._api_keys, key_hash, at)

    def _count(self, pending: dict[str, _Count], ident: str, at: float) -> None:
        found = pending.get(ident)
        if found is not None:
            found.count += 1
            if at > found.last_used:
                found.last_used = at
        elif len(self._tokens) + len(self._api_keys) >= self.max_pending:
            self.dropped += 1
        else:
            pending[ident] = _Count(1, at)

    @property
    def pending(self) -> int:
        return len(self._tokens) + len(self._api_keys)

    async def flush(self) -> None:
        """Write what has been counted so far; on failure keep it for the next flush and re-raise."""
        tokens, self._tokens = self._tokens, {}
        api_keys, self._api_keys = self._api_keys, {}
        try:
            if tokens:
                await self.store.record_usage(_as_usage(tokens))
                tokens = {}
            if api_keys:
                await self.store.record_api_key_usage(_as_usage(api_keys))
        except BaseException:
            for ident, count in tokens.items():
                _merge(self._tokens, ident, count.count, count.last_used)
            for ident, count in api_keys.items():
                _merge(self._api_keys, ident, count.count, count.last_used)
            raise

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gateway-usage-flush")

    async def close(self) -> None:
        """Stop the periodic flush and write what is left (best effort)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        with contextlib.suppress(StoreError):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except StoreError as exc:
                log.warning("usage flush failed; will retry", extra={"error": exc.detail, "pending": self.pending})
