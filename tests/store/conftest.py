"""The store fixtures: every contract test runs once per backend URL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.store import Store, open_store
from tests.redis_servers import delete_prefixed, unique_prefix, with_prefix

BACKENDS = ("memory", "sqlite", "redis", "redis_cluster")
SHARED_BACKENDS = ("sqlite", "redis", "redis_cluster")  # two store instances see the same data


def backend_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'gateway.db'}"
    else:
        base: str = request.getfixturevalue("redis_url" if backend == "redis" else "redis_cluster_url")
        prefix = unique_prefix()
        yield with_prefix(base, prefix)
        delete_prefixed(base, prefix)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from backend_url(request, request.param, tmp_path)


@pytest.fixture(params=SHARED_BACKENDS)
def shared_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from backend_url(request, request.param, tmp_path)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()
