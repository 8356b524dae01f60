"""One circuit breaker per backend endpoint: pybreaker's state machine plus what it lacks under asyncio.

pybreaker counts failures, opens after ``fail_max`` consecutive ones, and after
``reset_timeout`` lets a call through half-open: success closes, failure opens
again. It is used only through ``calling()`` (a synchronous context manager
around the awaited call, which keeps its state machine correct under asyncio;
its ``call_async`` needs Tornado). :class:`EndpointBreaker` adds:

- **Admission before pybreaker**: while open, a call fails fast with
  :class:`~gateway.backend.errors.CircuitOpen` and the seconds left until a trial
  (the ``Retry-After``), without touching the network or pybreaker.
- **One trial call at a time**: pybreaker lets every caller through half-open;
  here the first caller after ``reset_timeout`` is the trial, and others fail fast
  until it ends.
- **A concurrency limit**: at most ``max_concurrent`` calls in flight; an excess
  call waits up to ``queue_timeout`` for a slot, then fails as
  :class:`~gateway.backend.errors.BackendBusy` (our limit, not a backend failure).
- **What counts**: a :class:`~gateway.backend.errors.BackendUnavailable`
  (timeout, transport error, 5xx, bad answer) is a failure; a
  :class:`~gateway.backend.errors.BackendRejected` (4xx) means the backend is up.
  Cancellation never reaches the breaker from a caller: the client runs each call
  in its own task (see :mod:`gateway.backend.client`), so a client that hangs up
  leaves the call to finish and count for what it really was.
- **Observability**: state gauge and transitions counter, and a log line on each
  state change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import pybreaker

from gateway.backend.errors import BackendBusy, BackendRejected, CircuitOpen
from gateway.backend.metrics import BackendMetrics

log = logging.getLogger("gateway.backend")


class CircuitState(IntEnum):
    """The exported value of ``gateway_circuit_state``."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


_STATES = {
    pybreaker.STATE_CLOSED: CircuitState.CLOSED,
    pybreaker.STATE_OPEN: CircuitState.OPEN,
    pybreaker.STATE_HALF_OPEN: CircuitState.HALF_OPEN,
}


def _not_a_failure(error: BaseException) -> bool:
    # 4xx: the backend answered. Cancellation only happens at shutdown (calls run in their own task).
    return isinstance(error, BackendRejected | asyncio.CancelledError)


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: EndpointBreaker) -> None:
        self.owner = owner

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self.owner._changed(getattr(old_state, "name", None), new_state.name)


class EndpointBreaker:
    """The breaker, trial gate and concurrency limit of one backend endpoint (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        max_concurrent: int = 64,
        queue_timeout: float = 0.05,
        metrics: BackendMetrics | None = None,
    ) -> None:
        if fail_max < 1 or reset_timeout <= 0 or max_concurrent < 1 or queue_timeout < 0:
            raise ValueError("fail_max, reset_timeout and max_concurrent must be positive, queue_timeout not negative")
        self.name = name
        self.reset_timeout = reset_timeout
        self.queue_timeout = queue_timeout
        self.max_concurrent = max_concurrent
        self.metrics = metrics
        self.closing = False
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=[_not_a_failure],
            listeners=[_Listener(self)],
            state_storage=self._storage,
            name=name,
            throw_new_error_on_trip=False,  # the call that trips it fails with its own error
        )
        self._trial = False
        self._slots = asyncio.Semaphore(max_concurrent)
        self._in_flight = 0
        if metrics is not None:
            metrics.circuit_state.labels(name).set(CircuitState.CLOSED)

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> CircuitState:
        return _STATES[self._storage.state]

    @property
    def fail_counter(self) -> int:
        """Consecutive failures counted so far (0 after a success)."""
        return int(self._storage.counter)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def retry_after(self) -> float:
        """Seconds until a trial call may be made: 0 when closed, or when open long enough."""
        if self._storage.state != pybreaker.STATE_OPEN:
            return 0.0
        opened_at: datetime | None = self._storage.opened_at
        if opened_at is None:
            return 0.0
        return max(0.0, (opened_at - datetime.now(UTC)).total_seconds() + self.reset_timeout)

    def short_circuited(self) -> bool:
        """Whether a call made now would fail fast without reaching the backend (cheap)."""
        state = self._storage.state
        if state == pybreaker.STATE_CLOSED:
            return False
        return self._trial or (state == pybreaker.STATE_OPEN and self.retry_after() > 0)

    def describe(self) -> str:
        state = self.state
        if state is CircuitState.OPEN:
            wait = self.retry_after()
            return f"open (trial call in {math.ceil(wait)}s)" if wait > 0 else "open (trial call due)"
        if state is CircuitState.HALF_OPEN:
            return "half-open (trial call in flight)"
        return "closed"

    # -- a call ------------------------------------------------------------------------------
    def admit(self) -> bool:
        """Let a call go ahead or raise :class:`CircuitOpen`; ``True`` when it is the half-open trial.

        A trial admitted here must be released with :meth:`release` whatever happens.
        """
        state = self._storage.state
        if state == pybreaker.STATE_CLOSED:
            return False
        if state == pybreaker.STATE_OPEN:
            wait = self.retry_after()
            if wait > 0:
                raise CircuitOpen(f"circuit open for {self.name}", backend=self.name, retry_after=wait)
        if self._trial:  # half-open, or open and due: exactly one caller gets to try
            raise CircuitOpen(f"circuit half-open for {self.name}: trial in flight", backend=self.name)
        self._trial = True
        return True

    def release(self, trial: bool) -> None:
        if trial:
            self._trial = False

    async def acquire_slot(self) -> None:
        """Take one of ``max_concurrent`` call slots; :class:`BackendBusy` if none frees within the queue timeout.

        Give it back with :meth:`release_slot` when the call is over.
        """
        if self._slots.locked():
            try:
                async with asyncio.timeout(self.queue_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise BackendBusy(f"{self.max_concurrent} calls to {self.name} in flight", backend=self.name) from None
        else:
            await self._slots.acquire()
        self._in_flight += 1

    def release_slot(self) -> None:
        self._in_flight -= 1
        self._slots.release()

    @contextlib.contextmanager
    def counting(self) -> Any:
        """pybreaker's ``calling()``: the awaited call inside is counted as success or failure."""
        with self._breaker.calling():
            yield

    # -- state changes -----------------------------------------------------------------------
    def _changed(self, old: str | None, new: str) -> None:
        if self.closing:
            return
        state = _STATES[new]
        if self.metrics is not None:
            self.metrics.circuit_state.labels(self.name).set(state)
            self.metrics.transitions.labels(self.name, state.name.lower()).inc()
        if state is CircuitState.OPEN:
            log.warning(
                "auth backend circuit opened",
                extra={"backend": self.name, "from": old, "retry_after_s": self.reset_timeout},
            )
        elif state is CircuitState.CLOSED:
            log.info("auth backend circuit closed", extra={"backend": self.name, "from": old})
        else:
            log.info("auth backend circuit half-open: trial call", extra={"backend": self.name})
