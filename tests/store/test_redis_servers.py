"""The Redis test fixtures never let CI skip the Redis tests."""

from __future__ import annotations

import pytest

from tests.redis_servers import require_binary


def test_missing_redis_server_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must not be skipped in CI"):
        require_binary("redis-server")


def test_missing_redis_server_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        require_binary("redis-server")
