"""Service-token lookups through the credential cache: 10 tokens in the store vs 1,000,000.

``python -m bench.store_lookup`` (or :func:`run` from the bench harness) builds two
SQLite stores, one with 10 tokens and one with 1,000,000 (bulk-inserted), warms a
:class:`~gateway.store.cache.CredentialCache` in front of each with one token, and
measures lookups per second of that token, alternating between the two stores
round by round so a noisy neighbour hits both alike. A cached lookup makes no store
round trip (``store_waits`` counts lookups that had to wait for the store: 0), so
the two figures should differ by well under 10 %. For contrast, the same lookups
straight from the store (no cache) are measured too. The big store is filled
inside SQLite (see :func:`fill`), so a run takes well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.eventloop import uvloop_factory
from gateway.credentials import ServiceToken
from gateway.store import Store, open_store
from gateway.store.cache import CredentialCache

DEFAULT_SIZES = (10, 1_000_000)


@dataclass
class LookupFigures:
    """One store size's results, over alternating samples."""

    tokens_in_store: int
    cached_per_second: float  # best sample: interference only ever slows a sample down
    cached_median_per_second: float
    uncached_per_second: float
    store_waits: int  # cached lookups that waited for the store (expected: 0)
    background_refreshes: int
    build_seconds: float


def fill(path: Path, count: int) -> float:
    """Bulk-insert ``count`` tokens with random hashes straight into the store's SQLite file.

    Generated inside SQLite (a recursive CTE and ``randomblob``): a million rows take
    seconds, where building a million records in Python would take minutes. Their
    texts are never needed; only the table's size matters here.
    """
    started = time.perf_counter()
    created = int(datetime.now(UTC).timestamp() * 1_000_000)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tokens' AND sql IS NOT NULL"
        ).fetchall()
        conn.execute("BEGIN IMMEDIATE")
        # As bulk loaders do: drop the secondary indexes, insert in key order, rebuild them.
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        conn.execute(
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?) "
            "INSERT INTO tokens (token_hash, name, owner, created, format, hint, scopes, allowed_ips, usage_count) "
            "SELECT lower(hex(randomblob(32))) AS h, 'bench-' || n, 'bench', ?, 'v1', '', '[]', '[]', 0 "
            "FROM seq ORDER BY h",
            (count, created),
        )
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.perf_counter() - started


async def _timed(lookups: int, cache: CredentialCache | None, store: Store, token_hash: str) -> float:
    started = time.perf_counter()
    if cache is not None:
        for _ in range(lookups):
            await cache.token(token_hash)
    else:
        for _ in range(lookups):
            await store.get_token(token_hash)
    return lookups / (time.perf_counter() - started)


async def measure(
    sizes: Sequence[int] = DEFAULT_SIZES, *, lookups: int = 50_000, rounds: int = 20, workdir: Path | None = None
) -> list[LookupFigures]:
    """Build one store per size, then alternate short measurement samples between them."""
    directory = Path(tempfile.mkdtemp(prefix="store-lookup-", dir=workdir)).resolve()
    stores: list[Store] = []
    caches: list[CredentialCache] = []
    try:
        targets: list[str] = []
        builds: list[float] = []
        for size in sizes:
            path = directory / f"tokens-{size}.db"
            store = await open_store(f"sqlite:///{path}")  # creates the file and its schema
            stores.append(store)
            builds.append(await asyncio.to_thread(fill, path, size - 1))
            _, token = ServiceToken.issue(name="the-one", owner="bench")
            await store.create_token(token)
            targets.append(token.token_hash)
        for store, target in zip(stores, targets, strict=True):
            cache = CredentialCache(store)
            await cache.start()
            caches.append(cache)
            if await cache.token(target) is None:  # warm: the one miss
                raise RuntimeError("the benchmark token was not found in its store")
        misses_before = [cache.stats.misses for cache in caches]
        cached: list[list[float]] = [[] for _ in sizes]
        uncached: list[list[float]] = [[] for _ in sizes]
        order = list(range(len(sizes)))
        for _ in range(rounds):
            for index in order:
                cached[index].append(await _timed(lookups, caches[index], stores[index], targets[index]))
            for index in order:
                uncached[index].append(await _timed(max(1, lookups // 50), None, stores[index], targets[index]))
            order.reverse()  # neither store always goes first
        return [
            LookupFigures(
                tokens_in_store=size,
                cached_per_second=max(cached[index]),
                cached_median_per_second=statistics.median(cached[index]),
                uncached_per_second=max(uncached[index]),
                store_waits=caches[index].stats.misses - misses_before[index],
                background_refreshes=caches[index].stats.refreshes,
                build_seconds=builds[index],
            )
            for index, size in enumerate(sizes)
        ]
    finally:
        for cache in caches:
            await cache.close()
        for store in stores:
            await store.close()
        shutil.rmtree(directory, ignore_errors=True)


def run(
    sizes: Sequence[int] = DEFAULT_SIZES, *, lookups: int = 50_000, rounds: int = 20, workdir: Path | None = None
) -> list[dict[str, float | int]]:
    """Entry point for the bench harness: the figures as plain dictionaries."""
    with asyncio.Runner(loop_factory=uvloop_factory()) as runner:
        figures = runner.run(measure(sizes, lookups=lookups, rounds=rounds, workdir=workdir))
    return [asdict(f) for f in figures]


def report(figures: Sequence[dict[str, float | int]]) -> str:
    header = ("tokens in store", "cached lookups/s", "(median)", "store waits", "uncached lookups/s", "fill s")
    lines = [f"{header[0]:>16} {header[1]:>17} {header[2]:>10} {header[3]:>12} {header[4]:>19} {header[5]:>7}"]
    for f in figures:
        lines.append(
            f"{f['tokens_in_store']:>16,} {f['cached_per_second']:>17,.0f} {f['cached_median_per_second']:>10,.0f} "
            f"{f['store_waits']:>12} {f['uncached_per_second']:>19,.0f} {f['build_seconds']:>7.1f}"
        )
    if len(figures) >= 2:
        for label, field in (("best", "cached_per_second"), ("median", "cached_median_per_second")):
            low, high = figures[0][field], figures[-1][field]
            lines.append(f"cached ({label}): {abs(high - low) / max(low, high) * 100:.1f} % apart (target: < 10 %)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_lookup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", default=",".join(map(str, DEFAULT_SIZES)), help="store sizes, comma-separated")
    parser.add_argument("--lookups", type=int, default=50_000, help="cached lookups per sample")
    parser.add_argument("--rounds", type=int, default=20, help="samples per store size")
    parser.add_argument("--workdir", type=Path, default=None, help="where the SQLite files go (default: $TMPDIR)")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.tokens.split(",") if size.strip()]
    if not sizes or min(sizes) < 1:
        parser.error("--tokens: positive store sizes, e.g. 10,1000000")
    print(report(run(sizes, lookups=args.lookups, rounds=args.rounds, workdir=args.workdir)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
