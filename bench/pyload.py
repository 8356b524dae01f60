"""The Python load generator: the fallback when wrk is not available.

``python -m bench.pyload --port P --pool FILE --connections C --duration S``
prints one JSON object (the LoadResult fields). It runs in its own process on
uvloop, with one raw ``asyncio.Protocol`` per keep-alive connection replaying
the pre-rendered pool and a deliberately small HTTP/1.1 response reader
(Content-Length, chunked, ``Connection: close``): an HTTP client library would
spend more CPU per request than the servers it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from bench.loader import LoadResult, LoadSettings, run_loader_process
from bench.request import read_pool
from bench.servers import REPO_ROOT

_NO_BODY = frozenset({204, 304})


def percentile(sorted_values: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class _Run:
    """State shared by every connection of one load run."""

    def __init__(self, pool: list[bytes], expect_status: int, deadline_ns: int, timeout_ns: int) -> None:
        self.pool = pool
        self.cursor = 0
        self.expect_status = expect_status
        self.deadline_ns = deadline_ns
        self.timeout_ns = timeout_ns
        self.latencies: list[int] = []
        self.unexpected_status = 0
        self.errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
        self.connections: set[_Connection] = set()

    def next_request(self) -> bytes:
        request = self.pool[self.cursor]
        self.cursor = (self.cursor + 1) % len(self.pool)
        return request


class _Connection(asyncio.Protocol):
    def __init__(self, run: _Run, closed: asyncio.Future[None]) -> None:
        self.run = run
        self.closed = closed
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.started_ns = 0
        self.in_flight = False
        self.status = 0
        self.body_end: int | None = None  # index in buffer where the response ends, once known
        self.chunk_pos: int | None = None  # next chunk-size line, for chunked bodies
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.run.connections.add(self)
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.connections.discard(self)
        if self.in_flight and time.perf_counter_ns() < self.run.deadline_ns:
            self.run.errors["read"] += 1
        if not self.closed.done():
            self.closed.set_result(None)

    def _send(self) -> None:
        assert self.transport is not None
        if time.perf_counter_ns() >= self.run.deadline_ns:
            self.transport.close()
            return
        self.buffer.clear()
        self.body_end = self.chunk_pos = None
        self.in_flight = True
        self.started_ns = time.perf_counter_ns()
        self.transport.write(self.run.next_request())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            complete = self._complete()
        except ValueError:
            self.run.errors["read"] += 1
            self.in_flight = False
            assert self.transport is not None
            self.transport.abort()
            return
        if not complete:
            return
        now = time.perf_counter_ns()
        self.in_flight = False
        if now <= self.run.deadline_ns:
            self.run.latencies.append(now - self.started_ns)
            if self.status != self.run.expect_status:
                self.run.unexpected_status += 1
        if self.keep_alive:
            self._send()
        else:
            assert self.transport is not None
            self.transport.close()

    def _complete(self) -> bool:
        buf = self.buffer
        if self.body_end is None and self.chunk_pos is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(buf[:end]).lower()
            self.status = int(head[9:12])
            self.keep_alive = b"\r\nconnection: close" not in head
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                self.body_end = end + 4 + int(head[at + 17 : line_end if line_end >= 0 else len(head)])
            elif b"\r\ntransfer-encoding: chunked" in head:
                self.chunk_pos = end + 4
            elif self.status in _NO_BODY or self.status < 200:
                self.body_end = end + 4
            else:
                raise ValueError("response without length on a keep-alive connection")
        if self.chunk_pos is not None:
            return self._chunks_complete()
        assert self.body_end is not None
        return len(buf) >= self.body_end

    def _chunks_complete(self) -> bool:
        buf = self.buffer
        pos = self.chunk_pos
        assert pos is not None
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return False
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            if size == 0:  # last chunk, then optional trailers, then CRLF
                return buf.find(b"\r\n", line_end + 2) == line_end + 2 or b"\r\n\r\n" in buf[line_end:]
            if len(buf) < line_end + 2 + size + 2:
                self.chunk_pos = pos
                return False
            pos = line_end + 2 + size + 2
            self.chunk_pos = pos


async def _connection_loop(run: _Run, host: str, port: int) -> None:
    """Keep one connection busy until the deadline, reconnecting after errors or closes."""
    loop = asyncio.get_running_loop()
    while time.perf_counter_ns() < run.deadline_ns:
        closed: asyncio.Future[None] = loop.create_future()
        try:
            await loop.create_connection(functools.partial(_Connection, run, closed), host, port)
        except OSError:
            run.errors["connect"] += 1
            await asyncio.sleep(0.01)
            continue
        await closed


async def _watch_timeouts(run: _Run) -> None:
    while time.perf_counter_ns() < run.deadline_ns:
        await asyncio.sleep(0.05)
        now = time.perf_counter_ns()
        for conn in list(run.connections):
            if conn.in_flight and now - conn.started_ns > run.timeout_ns and conn.transport is not None:
                run.errors["timeout"] += 1
                conn.in_flight = False
                conn.transport.abort()


async def generate_load(
    host: str, port: int, pool: list[bytes], expect_status: int, settings: LoadSettings
) -> dict[str, Any]:
    """Run the load and return the LoadResult fields."""
    started = time.perf_counter_ns()
    run = _Run(pool, expect_status, started + int(settings.duration * 1e9), int(settings.timeout * 1e9))
    watcher = asyncio.create_task(_watch_timeouts(run))
    loops = [asyncio.create_task(_connection_loop(run, host, port)) for _ in range(settings.connections)]
    try:
        # Responses due after the deadline are not counted; give them `timeout` to close cleanly.
        await asyncio.wait_for(asyncio.gather(*loops), settings.duration + settings.timeout)
    except TimeoutError:
        pass
    finally:
        for conn in list(run.connections):
            if conn.transport is not None:
                conn.transport.abort()
        watcher.cancel()
        for task in (*loops, watcher):
            task.cancel()
        await asyncio.gather(*loops, watcher, return_exceptions=True)
    duration_s = (min(time.perf_counter_ns(), run.deadline_ns) - started) / 1e9
    latencies = sorted(run.latencies)
    ms = 1e6
    return {
        "requests": len(latencies),
        "duration_s": duration_s,
        "p50_ms": percentile(latencies, 0.50) / ms,
        "p90_ms": percentile(latencies, 0.90) / ms,
        "p99_ms": percentile(latencies, 0.99) / ms,
        "max_ms": (latencies[-1] if latencies else 0) / ms,
        "mean_ms": (sum(latencies) / len(latencies) if latencies else 0) / ms,
        "unexpected_status": run.unexpected_status,
        "errors": run.errors,
    }


class PythonLoader:
    """``python -m bench.pyload`` in a separate process."""

    name = "python (asyncio + uvloop, raw sockets)"

    def run(
        self, host: str, port: int, pool: Path, expect_status: int, settings: LoadSettings, workdir: Path
    ) -> LoadResult:
        argv = [
            sys.executable,
            "-m",
            "bench.pyload",
            f"--host={host}",
            f"--port={port}",
            f"--pool={pool}",
            f"--connections={settings.connections}",
            f"--duration={settings.duration}",
            f"--timeout={settings.timeout}",
            f"--expect-status={expect_status}",
        ]
        return run_loader_process(argv, settings.duration + settings.timeout + 30, json.loads, cwd=REPO_ROOT)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pyload", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool", type=Path, required=True, help="request pool file (bench/request.py format)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--expect-status", type=int, default=200)
    args = parser.parse_args(argv)
    from bench.eventloop import uvloop_factory

    settings = LoadSettings(args.duration, args.connections, args.timeout)
    with asyncio.Runner(loop_factory=uvloop_factory()) as runner:
        result = runner.run(generate_load(args.host, args.port, read_pool(args.pool), args.expect_status, settings))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
