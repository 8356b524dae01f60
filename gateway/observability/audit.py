"""The audit trail writer: events recorded on the request path, written in batches off it.

::

    pipeline / admin API --record(event)--> [ bounded buffer ] --every flush_interval,--> Store.append_audit
                          (no I/O, no await)                     or when batch_size wait

- :meth:`AuditTrail.record` appends to memory and returns: the request never waits
  for the store. The pipeline reports its decisions with :meth:`AuditTrail.record_decision`,
  which builds the decision's store row (:data:`~gateway.store.codec.DECISION_COLUMNS`,
  with its time in microseconds and its id) there and then, from the decision's facts
  (:func:`decision_facts`, kept by the policy for a principal it allows again) and the
  request's own fields: a request pays for two tuples, never an
  :class:`~gateway.credentials.audit.AuditEvent` object, and writing a batch
  (:meth:`Store.append_audit_rows`) does no per-row work on the event loop.
- The buffer is bounded (``buffer`` events). When it is full, the **oldest
  successes** are dropped first; denials, would-be denials and admin actions are
  dropped only when the buffer holds nothing else (memory stays bounded even when
  the store is down during an attack). Every drop is counted in
  ``gateway_audit_events_dropped_total{result}``.
- A failed write puts its batch back in front of the buffer for the next try (still
  bounded, by the same rule), and the writer backs off for one interval.
- Retention: every hour (and at start) events older than ``retention`` are deleted
  (:meth:`Store.prune_audit`; on Redis the stream is capped by the store as well).
- :meth:`AuditTrail.close` stops the writer and flushes what is left.

Admin actions are written at once with :meth:`AuditTrail.record_now` (they fall back to
the buffer if the store refuses), so an operator's change is on record before the
answer goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Final, Protocol, cast

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.store.base import Store
from gateway.store.codec import AuditRow
from gateway.store.errors import StoreError

log = logging.getLogger("gateway.audit")

DEFAULT_BUFFER = 10_000
DEFAULT_BATCH_SIZE = 500
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_RETENTION = 30 * 86400.0
PRUNE_INTERVAL = 3600.0
CLOSE_TIMEOUT = 5.0
_DROP_LOG_INTERVAL = 10.0

# (arrival order, event or decision row). No AuditResult member in it: an entry of a decision holds only
# ints and strings, so the garbage collector stops tracking it at its first pass instead of walking the
# whole buffer in every older-generation collection (longer pauses on the event loop).
_Entry = tuple[int, AuditEvent | AuditRow]
_ID_SUFFIX: Final = 0xFFFFFFFF

_RESULT_TEXT: Final = {result: result.value for result in AuditResult}
_RESULT_OF_TEXT: Final = {result.value: result for result in AuditResult}
_ALLOW_TEXT: Final = AuditResult.ALLOW.value


_item_of = itemgetter(1)


def _result(item: AuditEvent | AuditRow) -> AuditResult:
    return item.result if isinstance(item, AuditEvent) else _RESULT_OF_TEXT[str(item[0])]


# A decision's facts: the values of DECISION_FACT_COLUMNS (its row starts with them).
DecisionFacts = tuple[str, str, str, str, str, str, str, str]


def decision_facts(
    result: AuditResult,
    reason: str,
    route: str,
    credential_kind: str,
    credential_id: str,
    principal: str,
    tenant: str,
    detail: str,
) -> DecisionFacts:
    """What a decision shares with every decision of its kind, for :meth:`AuditTrail.record_decision`."""
    return (_RESULT_TEXT[result], reason, route, credential_kind, credential_id, principal, tenant, detail)


class AuditSink(Protocol):
    """Where audit events are reported (the admin API's refusals); ``record`` must not block."""

    def record(self, event: AuditEvent) -> None: ...


class AuditMetrics:
    """The audit writer's metrics, on the gateway's registry (or a private one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry(auto_describe=True)
        self.dropped = Counter(
            "gateway_audit_events_dropped_total",
            "Audit events dropped because the buffer was full, by result (successes go first).",
            ["result"],
            registry=registry,
        )
        self.written = Counter(
            "gateway_audit_events_written_total", "Audit events written to the store.", registry=registry
        )
        self.write_failures = Counter(
            "gateway_audit_write_failures_total",
            "Batches of audit events the store refused (kept for the next try).",
            registry=registry,
        )
        self.pruned = Counter(
            "gateway_audit_events_pruned_total", "Audit events deleted by retention.", registry=registry
        )
        # Read at scrape time (the trail sets its function): not updated per event.
        self.buffered = Gauge("gateway_audit_events_buffered", "Audit events waiting to be written.", registry=registry)
        # Children created up front: the label set is bounded and record() stays cheap.
        self.dropped_by_result = {result: self.dropped.labels(result.value) for result in AuditResult}


class AuditTrail:
    """Buffers audit events and writes them to the store in batches (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        registry: CollectorRegistry | None = None,
        buffer: int = DEFAULT_BUFFER,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        retention: float = DEFAULT_RETENTION,
        prune_interval: float = PRUNE_INTERVAL,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if buffer <= 0 or batch_size <= 0 or flush_interval <= 0 or retention < 0 or prune_interval <= 0:
            raise ValueError("buffer, batch_size, flush_interval and prune_interval must be positive")
        self.store = store
        self.capacity = buffer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retention = retention
        self.prune_interval = prune_interval
        self.metrics = AuditMetrics(registry)
        self.dropped: dict[AuditResult, int] = dict.fromkeys(AuditResult, 0)
        self._clock = clock
        self._successes: deque[_Entry] = deque()  # result=allow: the first to go when full
        self._kept: deque[_Entry] = deque()  # denials, would-be denials, admin actions
        self._wake = asyncio.Event()
        self._attention = min(batch_size, buffer + 1)  # how many pending events call for _attend()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._last_drop_log = 0.0
        self._unlogged_drops = 0
        # Arrival numbers order the buffer; a decision's id ends with the low 32 bits of its own. They start
        # at a random number so ids of the same nanosecond from other processes differ too.
        self._arrivals = random.getrandbits(32)
        self.metrics.buffered.set_function(lambda: self.pending)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def pending(self) -> int:
        return len(self._successes) + len(self._kept)

    # -- the request path --------------------------------------------------------------------
    def record(self, event: AuditEvent) -> None:
        """Queue ``event`` for the next batch. Never blocks, never raises for a full buffer."""
        self._arrivals += 1
        self._queue(self._arrivals, event.result, event)

    def record_decision(
        self, ns: int, facts: DecisionFacts, method: str, request_id: str, client_ip: str, user_agent: str
    ) -> None:
        """Queue a pipeline decision (``ns``: its time.time_ns()) like :meth:`record`, as its store row.

        ``facts`` (:func:`decision_facts`) are what it shares with every decision of its kind; a caller
        that decides the same way again keeps them. The row is the same on every try of its batch. Its
        id is the event id format (new_event_id): 16 hex digits of nanoseconds, then 8 that tell apart
        events of the same instant, here the arrival number: no system call for randomness per event.
        One ``%`` format of one integer makes all 24 digits (``ns`` < 2**64 until the year 2554).
        """
        self._arrivals = arrival = self._arrivals + 1
        row = facts + (
            ns // 1000,  # microseconds, as the store keeps times
            method,
            request_id,
            client_ip,
            user_agent,
            "%024x" % ((ns << 32) | (arrival & _ID_SUFFIX)),  # half the cost of an f-string
        )
        # _queue, inline: this runs for every audited request.
        successes, kept = self._successes, self._kept
        (successes if facts[0] == _ALLOW_TEXT else kept).append((arrival, row))
        if len(successes) + len(kept) >= self._attention:
            self._attend()

    def _queue(self, arrival: int, result: AuditResult, item: AuditEvent | AuditRow) -> None:
        (self._successes if result is AuditResult.ALLOW else self._kept).append((arrival, item))
        if self.pending >= self._attention:
            self._attend()

    def _attend(self) -> None:
        """The buffer reached a batch or overflowed: drop what does not fit, wake the writer."""
        if self.pending > self.capacity:
            self._shed()
        if self.pending >= self.batch_size:
            self._wake.set()

    async def record_now(self, event: AuditEvent) -> None:
        """Write ``event`` at once (admin actions); if the store refuses, keep it for the next batch."""
        try:
            await self.store.append_audit([event])
        except StoreError as exc:
            log.warning("audit event not written yet; kept for the next batch", extra={"error": exc.detail})
            self.record(event)
            return
        self.metrics.written.inc()

    def _shed(self) -> None:
        """Drop events until the buffer fits: the oldest successes first, then the oldest of the rest."""
        while self.pending > self.capacity:
            _, item = self._successes.popleft() if self._successes else self._kept.popleft()
            result = _result(item)
            self.dropped[result] += 1
            self.metrics.dropped_by_result[result].inc()
            self._unlogged_drops += 1
            if result is not AuditResult.ALLOW:
                # Only reached when the buffer holds nothing but failures and admin actions.
                log.error("audit buffer full of denials: dropped one", extra={"result": result.value})
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
            log.warning(
                "audit buffer full: events dropped (successes first)",
                extra={"dropped": self._unlogged_drops, "capacity": self.capacity},
            )
            self._last_drop_log = now
            self._unlogged_drops = 0

    # -- writing -----------------------------------------------------------------------------
    def _take(self, limit: int) -> list[_Entry]:
        """The oldest ``limit`` events across both queues, in arrival order."""
        successes, kept = self._successes, self._kept
        if not kept or not successes:  # the usual case (one kind only): no merge, one C-level copy
            queue = kept or successes
            if len(queue) <= limit:
                everything = list(queue)
                queue.clear()
                return everything
            take = queue.popleft
            return [take() for _ in range(limit)]
        batch: list[_Entry] = []
        while len(batch) < limit and (successes or kept):
            if not kept or (successes and successes[0][0] < kept[0][0]):
                batch.append(successes.popleft())
            else:
                batch.append(kept.popleft())
        return batch

    def _put_back(self, batch: list[_Entry]) -> None:
        """Return a batch the store refused to the front of the buffer (it is older than the rest)."""
        for entry in reversed(batch):
            (self._successes if _result(entry[1]) is AuditResult.ALLOW else self._kept).appendleft(entry)
        if self.pending > self.capacity:
            self._shed()

    async def flush(self) -> int:
        """Write the events buffered now, in batches; returns how many were written.

        On a store error the unwritten events go back to the buffer and the error is raised.
        """
        async with self._flush_lock:
            remaining, written = self.pending, 0
            while remaining > 0 and self.pending:
                batch = self._take(min(self.batch_size, remaining))
                remaining -= len(batch)
                items: list[AuditEvent | AuditRow] = list(map(_item_of, batch))  # C loops, no per-item bytecode
                mixed = set(map(type, items)) != {tuple}  # events too (admin actions, the admin API's refusals)
                rows = [item for item in items if type(item) is tuple] if mixed else cast(list[AuditRow], items)
                try:
                    if mixed:  # rare
                        events = [item for item in items if isinstance(item, AuditEvent)]
                        await self.store.append_audit(events)
                        batch = [entry for entry in batch if type(entry[1]) is tuple]  # what is left to write
                        written += len(events)
                        self.metrics.written.inc(len(events))
                    if rows:
                        await self.store.append_audit_rows(rows)
                except BaseException as exc:  # cancelled too: a duplicate beats a lost audit event
                    self._put_back(batch)
                    if isinstance(exc, StoreError):
                        self.metrics.write_failures.inc()
                    raise
                written += len(batch)
                self.metrics.written.inc(len(batch))
            return written

    async def prune(self) -> int:
        """Delete events older than ``retention`` (nothing when retention is 0)."""
        if not self.retention:
            return 0
        pruned = await self.store.prune_audit(self._clock() - timedelta(seconds=self.retention))
        self.metrics.pruned.inc(pruned)
        if pruned:
            log.info("audit events pruned", extra={"pruned": pruned, "retention_s": self.retention})
        return pruned

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the periodic writer (and retention)."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="gateway-audit-writer")

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop the writer and write what is left (best effort within ``timeout``). Idempotent."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                log.warning("audit writer did not stop in time")
        if self.pending:
            try:
                await asyncio.wait_for(self.flush(), timeout)
            except (StoreError, TimeoutError) as exc:
                log.error(
                    "audit events lost at shutdown: the store did not take them",
                    extra={"events": self.pending, "error": getattr(exc, "detail", type(exc).__name__)},
                )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            if self.stopping:
                break  # close() flushes
            try:
                if self.pending:
                    await self.flush()
            except StoreError as exc:
                log.warning("audit write failed; will retry", extra={"error": exc.detail, "pending": self.pending})
                # Back off one interval, even if batches fill meanwhile: do not hammer a store that is down.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped(), self.flush_interval)
                continue
            if self.retention and loop.time() >= next_prune:
                next_prune = loop.time() + self.prune_interval
                try:
                    await self.prune()
                except StoreError as exc:
                    log.warning("audit retention failed; will retry", extra={"error": exc.detail})

    async def _stopped(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()
