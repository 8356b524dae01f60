"""Every backend implements the Store protocol (checked by mypy on this file, and at run time)."""

from __future__ import annotations

import inspect
from pathlib import Path

from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SqliteStore


async def test_every_backend_implements_the_protocol(tmp_path: Path) -> None:
    backends: list[Store] = [
        MemoryStore(),
        SqliteStore(f"sqlite:///{tmp_path / 'gateway.db'}"),
        RedisStore("redis://127.0.0.1:1/0"),  # built, never connected
    ]
    wanted = {name for name, _ in inspect.getmembers(Store) if not name.startswith("_")}
    for backend in backends:
        missing = {name for name in wanted if not hasattr(backend, name)}
        assert not missing, f"{type(backend).__name__} lacks {sorted(missing)}"
        for name in wanted - {"url"}:
            assert inspect.iscoroutinefunction(getattr(backend, name)), f"{type(backend).__name__}.{name} is not async"
        await backend.close()
