"""Background tasks: stopping one the same way everywhere."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has finished, whatever it ended with.

    ``gather(..., return_exceptions=True)`` returns the task's own CancelledError instead of raising it,
    so a cancellation of the caller itself still propagates (awaiting the task under a suppress would
    swallow both).
    """
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
