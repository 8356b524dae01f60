"""The backend client's circuit breaker, trial gate and limits, against the fake identity service over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from gateway.backend.breaker import CircuitState, EndpointBreaker
from gateway.backend.client import BackendClient, BackendLimits
from gateway.backend.errors import (
    BackendBusy,
    BackendError,
    BackendHttpError,
    BackendRejected,
    BackendTimeout,
    BackendTransportError,
    CircuitOpen,
)
from gateway.backend.introspect import Rfc7662Introspection
from gateway.backend.metrics import BackendMetrics
from tests.fakes.identity_service import IdentityService
from tests.processes import free_port

LIMITS = BackendLimits(timeout=0.3, fail_max=3, reset_timeout=0.3, max_concurrent=8, queue_timeout=0.05)


@pytest.fixture
async def metrics() -> BackendMetrics:
    return BackendMetrics(CollectorRegistry())


@pytest.fixture
async def client(metrics: BackendMetrics) -> AsyncIterator[BackendClient]:
    backend = BackendClient(LIMITS, metrics)
    yield backend
    await backend.close()


def introspection(client: BackendClient, identity: IdentityService) -> Rfc7662Introspection:
    return Rfc7662Introspection(client, f"{identity.issuer}/introspect")


def sample(metrics: BackendMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def fail(checker: Rfc7662Introspection, times: int) -> list[BackendError]:
    errors = []
    for _ in range(times):
        with pytest.raises(BackendError) as caught:
            await checker.check("tok")
        errors.append(caught.value)
    return errors


async def test_fail_max_failures_open_the_circuit_then_calls_fail_fast_without_reaching_the_backend(
    client: BackendClient, identity: IdentityService, metrics: BackendMetrics
) -> None:
    identity.mode = "error"
    checker = introspection(client, identity)
    errors = await fail(checker, 3)
    assert all(isinstance(e, BackendHttpError) for e in errors)
    breaker = client.breakers["introspection"]
    assert breaker.state is CircuitState.OPEN
    assert identity.calls["introspect"] == 3

    started = time.perf_counter()
    with pytest.raises(CircuitOpen) as caught:
        await checker.check("tok")
    assert time.perf_counter() - started < 0.005  # no network, no waiting
    assert 0 < caught.value.retry_after <= LIMITS.reset_timeout
    assert identity.calls["introspect"] == 3
    assert sample(metrics, "gateway_circuit_state", backend="introspection") == 1
    assert sample(metrics, "gateway_circuit_transitions_total", backend="introspection", to="open") == 1
    assert sample(metrics, "gateway_auth_backend_calls_total", backend="introspection", outcome="open") == 1
    assert sample(metrics, "gateway_auth_backend_calls_total", backend="introspection", outcome="http_5xx") == 3


async def test_after_reset_timeout_exactly_one_trial_call_is_made_and_success_closes(
    client: BackendClient, identity: IdentityService, metrics: BackendMetrics
) -> None:
    identity.mode = "error"
    checker = introspection(client, identity)
    await fail(checker, 3)
    await asyncio.sleep(LIMITS.reset_timeout + 0.05)
    identity.mode = "slow"
    identity.delay = 0.1
    identity.add("tok")

    results = await asyncio.gather(*(checker.check("tok") for _ in range(20)), return_exceptions=True)

    assert identity.calls["introspect"] == 4  # one trial, while 19 callers failed fast
    decisions = [r for r in results if not isinstance(r, BaseException)]
    assert len(decisions) == 1 and decisions[0].active
    assert all(isinstance(r, CircuitOpen) for r in results if isinstance(r, BaseException))
    assert client.breakers["introspection"].state is CircuitState.CLOSED
    assert sample(metrics, "gateway_circuit_state", backend="introspection") == 0
    assert sample(metrics, "gateway_circuit_transitions_total", backend="introspection", to="half_open") == 1
    assert sample(metrics, "gateway_circuit_transitions_total", backend="introspection", to="closed") == 1
    assert (await checker.check("tok")).active  # closed: calls go through again


async def test_a_failed_trial_opens_the_circuit_again_for_a_full_reset_timeout(
    client: BackendClient, identity: IdentityService
) -> None:
    identity.mode = "error"
    checker = introspection(client, identity)
    await fail(checker, 3)
    await asyncio.sleep(LIMITS.reset_timeout + 0.05)
    with pytest.raises(BackendHttpError):
        await checker.check("tok")  # the trial
    assert client.breakers["introspection"].state is CircuitState.OPEN
    with pytest.raises(CircuitOpen) as caught:
        await checker.check("tok")
    assert caught.value.retry_after > LIMITS.reset_timeout / 2
    assert identity.calls["introspect"] == 4


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("error", BackendHttpError),
        ("hang", BackendTimeout),
        ("down", BackendTransportError),
    ],
)
async def test_timeouts_5xx_and_dropped_connections_count(
    client: BackendClient, identity: IdentityService, mode: str, error: type[BackendError]
) -> None:
    identity.mode = mode
    checker = introspection(client, identity)
    for count in (1, 2):
        with pytest.raises(error):
            await checker.check("tok")
        assert client.breakers["introspection"].fail_counter == count


async def test_a_refused_connection_counts(client: BackendClient) -> None:
    checker = Rfc7662Introspection(client, f"http://127.0.0.1:{free_port()}/introspect")
    for _ in range(3):
        with pytest.raises(BackendTransportError):
            await checker.check("tok")
    assert client.breakers["introspection"].state is CircuitState.OPEN


async def test_4xx_answers_do_not_count_and_reset_the_failure_count(
    client: BackendClient, identity: IdentityService
) -> None:
    checker = introspection(client, identity)
    identity.mode = "error"
    await fail(checker, 2)
    identity.mode = "reject"
    for _ in range(5):
        with pytest.raises(BackendRejected):
            await checker.check("tok")
    breaker = client.breakers["introspection"]
    assert breaker.state is CircuitState.CLOSED
    assert breaker.fail_counter == 0  # the backend answered: it is up


async def test_a_caller_that_gives_up_is_not_a_backend_failure(
    client: BackendClient, identity: IdentityService, metrics: BackendMetrics
) -> None:
    identity.mode = "slow"
    identity.delay = 0.1
    identity.add("tok")
    checker = introspection(client, identity)
    for _ in range(5):  # more than fail_max: each caller is cancelled (a client hanging up)
        task = asyncio.ensure_future(checker.check("tok"))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.2)  # the calls themselves finish
    breaker = client.breakers["introspection"]
    assert breaker.state is CircuitState.CLOSED and breaker.fail_counter == 0
    assert sample(metrics, "gateway_auth_backend_calls_total", backend="introspection", outcome="ok") == 5


async def test_a_cancelled_trial_caller_still_lets_its_call_decide(
    client: BackendClient, identity: IdentityService
) -> None:
    identity.mode = "error"
    checker = introspection(client, identity)
    await fail(checker, 3)
    await asyncio.sleep(LIMITS.reset_timeout + 0.05)
    identity.mode = "slow"
    identity.delay = 0.1
    identity.add("tok")
    task = asyncio.ensure_future(checker.check("tok"))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(CircuitOpen):
        await checker.check("tok")  # the trial is still in flight
    await asyncio.sleep(0.2)
    assert client.breakers["introspection"].state is CircuitState.CLOSED
    assert (await checker.check("tok")).active


async def test_calls_over_max_concurrent_wait_briefly_then_fail_as_busy(
    identity: IdentityService, metrics: BackendMetrics
) -> None:
    limits = BackendLimits(timeout=2, max_concurrent=2, queue_timeout=0.05)
    client = BackendClient(limits, metrics)
    try:
        identity.hold = asyncio.Event()
        identity.add("tok")
        checker = Rfc7662Introspection(client, f"{identity.issuer}/introspect")
        first = [asyncio.ensure_future(checker.check("tok")) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(BackendBusy):
            await checker.check("tok")
        waiting = asyncio.ensure_future(checker.check("tok"))  # waits for a slot...
        await asyncio.sleep(0.01)
        identity.hold.set()  # ...which frees in time
        assert all(d.active for d in await asyncio.gather(*first, waiting))
        assert identity.calls["introspect"] == 3
        assert client.breakers["introspection"].fail_counter == 0  # our own limit is no backend failure
        assert sample(metrics, "gateway_auth_backend_calls_total", backend="introspection", outcome="busy") == 1
    finally:
        await client.close()


def test_breaker_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="fail_max"):
        EndpointBreaker("x", fail_max=0)
    with pytest.raises(ValueError, match="max_concurrent"):
        EndpointBreaker("x", max_concurrent=0)
