"""Why a call to the auth backend gave no usable answer.

::

    BackendError                  outcome (metric label), retry_after (seconds)
    ├── BackendUnavailable        the backend is down, slow or broken: counted by the circuit breaker
    │   ├── BackendTimeout        no complete answer within the per-call timeout      timeout
    │   ├── BackendTransportError connection refused, reset, closed mid-answer       transport
    │   ├── BackendHttpError      a 5xx answer                                        http_5xx
    │   └── BadBackendResponse    not JSON, a required field missing, wrong types,    bad_response
    │                             too large, a redirect: never taken for an answer
    ├── CircuitOpen               the breaker is open (or its one trial call is out):  open
    │                             no call was made, not counted again
    ├── BackendBusy               too many calls in flight, none freed in time:        busy
    │                             our own limit, not counted
    └── BackendRejected           a 4xx answer to the gateway's own request (bad      rejected
                                  client credentials, wrong URL): the backend is up,
                                  so not counted, but there is no decision either

Every one of them means "the gateway cannot decide": the authenticator answers
503 ``backend.unavailable`` with ``Retry-After`` (fail closed), unless a stale grace
applies. None of them is ever cached as a negative answer.
"""

from __future__ import annotations

from typing import ClassVar


class BackendError(Exception):
    """The backend gave no usable answer; ``detail`` is for operators (never holds a token or secret)."""

    outcome: ClassVar[str] = "error"

    def __init__(self, detail: str, *, backend: str = "", retry_after: float = 1.0) -> None:
        super().__init__(detail)
        self.detail = detail
        self.backend = backend
        self.retry_after = retry_after

    def again(self) -> BackendError:
        """A fresh copy to raise for one more waiter of a shared call.

        Raising the shared object would stitch every waiter's frames into its
        traceback (and, through the frames holding it, into reference cycles that
        only the garbage collector can free: pauses in the tail latency).
        """
        return type(self)(self.detail, backend=self.backend, retry_after=self.retry_after)


class BackendUnavailable(BackendError):
    """The backend failed: the circuit breaker counts it."""

    outcome: ClassVar[str] = "unavailable"


class BackendTimeout(BackendUnavailable):
    outcome: ClassVar[str] = "timeout"


class BackendTransportError(BackendUnavailable):
    outcome: ClassVar[str] = "transport"


class BackendHttpError(BackendUnavailable):
    outcome: ClassVar[str] = "http_5xx"


class BadBackendResponse(BackendUnavailable):
    """The answer cannot be trusted as a decision (malformed, oversized, wrong types)."""

    outcome: ClassVar[str] = "bad_response"


class CircuitOpen(BackendError):
    """Short-circuited: the breaker is open, or half-open with its one trial call in flight."""

    outcome: ClassVar[str] = "open"


class BackendBusy(BackendError):
    """The endpoint's concurrent-call limit was reached and no slot freed within the queue timeout."""

    outcome: ClassVar[str] = "busy"


class BackendRejected(BackendError):
    """A 4xx answer to the gateway's own request: a configuration problem, not an outage."""

    outcome: ClassVar[str] = "rejected"
