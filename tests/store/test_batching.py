"""The Batcher: calls made while a batch is written go in the next; each call gets its own answer."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.batching import Batcher
from gateway.store.errors import StoreUnavailable


async def test_calls_made_while_a_batch_is_written_go_in_the_next() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int]:
        batches.append(items)
        if len(batches) == 1:
            await release.wait()
        return [item * 10 for item in items]

    batcher = Batcher(write, "test", "interrupted")
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)  # the writer takes [1] and waits
    later = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    release.set()

    assert await first == 10
    assert await asyncio.gather(*later) == [20, 30, 40]
    assert batches == [[1], [2, 3, 4]]


async def test_a_failed_write_fails_each_call_with_an_error_of_its_own() -> None:
    async def write(items: list[int]) -> list[int]:
        raise StoreUnavailable("store down")

    batcher = Batcher(write, "test", "interrupted")
    results = await asyncio.gather(*(batcher.submit(n) for n in range(3)), return_exceptions=True)

    assert all(isinstance(r, StoreUnavailable) and r.detail == "store down" for r in results)
    assert len({id(r) for r in results}) == 3  # raised in three tasks: three tracebacks, not one shared


async def test_a_cancelled_caller_leaves_the_others_answered_and_the_writer_goes_on() -> None:
    async def write(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        return items

    batcher = Batcher(write, "test", "interrupted")
    calls = [asyncio.ensure_future(batcher.submit(n)) for n in range(5)]
    await asyncio.sleep(0)
    calls[2].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)

    assert isinstance(results[2], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 2] == [0, 1, 3, 4]
    assert await batcher.submit(7) == 7


async def test_drain_waits_for_the_calls_already_made() -> None:
    done: list[int] = []

    async def write(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        done.extend(items)
        return items

    batcher = Batcher(write, "test", "interrupted")
    call = asyncio.ensure_future(batcher.submit(5))
    await asyncio.sleep(0)
    await batcher.drain()
    assert done == [5]
    assert await call == 5
    await batcher.drain()  # nothing in flight: returns at once


@pytest.mark.parametrize("error", [ValueError("bug"), StoreUnavailable("down")])
async def test_an_error_of_the_write_is_a_store_error_for_the_caller(error: Exception) -> None:
    async def write(items: list[int]) -> list[int]:
        raise error

    with pytest.raises(StoreUnavailable):
        await Batcher(write, "test", "interrupted").submit(1)
