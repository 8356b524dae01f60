"""Instructions per request of a server under test, counted by valgrind (callgrind), not timed.

On a shared machine the CPU time of a request swings by tens of per cent from one
minute to the next, which hides changes of a few per cent. Instruction counts do
not move: the same build, requests and environment give the same total within ~1 %.

For each scenario the scenario's server is started twice under
``valgrind --tool=callgrind`` (its dependencies run normally), sent ``N1`` and then
``N2`` requests of the scenario over a few keep-alive connections, stopped with
SIGTERM; ``(total(N2) - total(N1)) / (N2 - N1)`` is the cost of one request, start-up
and shutdown cancelled out. It counts user space only, of every thread of the
process (the store's thread too); the kernel's share is left out.

::

    python -m bench.instructions -s gateway-noauth -s gateway-token
    python -m bench.instructions -s gateway-rfc9421 --keep   # keep callgrind.out files
    callgrind_annotate --inclusive=yes var/bench/instructions/gateway-rfc9421.2.out | head -60

A second run of the same scenario lets you compare two builds: the figure is exact
enough to show a change of 5k instructions in 600k.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import re
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.scenarios import Scenario, catalog
from bench.servers import LaunchContext, ServerPool, ServerSpec

DEFAULT_WORKDIR = Path("var/bench/instructions")
_TOTALS = re.compile(rb"^(?:totals|summary):\s+(\d+)", re.MULTILINE)


def under_callgrind(spec: ServerSpec, out_file: Path) -> ServerSpec:
    """``spec`` started under valgrind's callgrind, writing its counts to ``out_file`` at exit."""

    def command(ctx: LaunchContext) -> list[str]:
        return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", *spec.command(ctx)]

    # A fixed hash seed: string hashes decide dict probe lengths, which move the count by ~5k between runs.
    env = {**spec.env, "PYTHONHASHSEED": "0"}
    return dataclasses.replace(spec, command=command, env=env, ready_timeout=max(spec.ready_timeout, 180.0))


async def _send(host: str, port: int, requests: Sequence[bytes], expect: int) -> None:
    """Send ``requests`` in order on one keep-alive connection, reading each whole response."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status != expect:
                raise RuntimeError(f"expected {expect}, got {status}: {head[:300]!r}")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length is None:
                raise RuntimeError(f"response without Content-Length: {head[:300]!r}")
            await reader.readexactly(int(length.group(1)))
    finally:
        writer.close()


async def _load(host: str, port: int, requests: list[bytes], expect: int, connections: int) -> None:
    share = [requests[i::connections] for i in range(connections)]
    await asyncio.gather(*(_send(host, port, part, expect) for part in share if part))


def count(
    scenario: Scenario, specs: dict[str, ServerSpec], workdir: Path, requests: int, connections: int, tag: str
) -> int:
    """Instructions of the scenario's server, from start to exit, having answered ``requests`` requests."""
    out_file = workdir / f"{scenario.name}.{tag}.out"
    out_file.unlink(missing_ok=True)
    wrapped = {**specs, scenario.target: under_callgrind(specs[scenario.target], out_file.resolve())}
    with ServerPool(wrapped, workdir) as pool:
        server = pool.start(scenario.target)
        spec = scenario.request
        # Fresh indexes each run (nonces must never repeat), rendered after start-up (timestamps fresh).
        indexes = itertools.islice(_INDEXES, spec.pool_size(requests))
        pool_requests = spec.render(f"{server.host}:{server.port}", indexes, pool.running)
        batch = list(itertools.islice(itertools.cycle(pool_requests), requests))
        asyncio.run(_load(server.host, server.port, batch, spec.expect_status, connections))
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(120)
    match = _TOTALS.search(out_file.read_bytes())
    if match is None:
        raise RuntimeError(f"{out_file}: no totals line")
    return int(match.group(1))


_INDEXES = itertools.count(10_000_000)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", "-s", action="append", required=True, metavar="NAME")
    parser.add_argument("--requests", default="200,1200", help="N1,N2 (default 200,1200)")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (default 8)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--keep", action="store_true", help="keep the callgrind output files")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    n1, n2 = (int(n) for n in args.requests.split(","))
    if not 0 <= n1 < n2:
        parser.error("--requests: N1 must be below N2")
    specs, scenarios = catalog()
    by_name = {s.name: s for s in scenarios}
    unknown = [name for name in args.scenario if name not in by_name]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)} (known: {', '.join(by_name)})")
    args.workdir.mkdir(parents=True, exist_ok=True)
    for name in args.scenario:
        scenario = by_name[name]
        totals = [count(scenario, specs, args.workdir, n, args.connections, str(i)) for i, n in enumerate((n1, n2), 1)]
        per_request = (totals[1] - totals[0]) / (n2 - n1)
        print(f"{name:<30} {per_request / 1000:8.1f}k instructions/request", flush=True)
        if not args.keep:
            for i in (1, 2):
                (args.workdir / f"{name}.{i}.out").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
