"""``python -m bench`` (``make bench``): run the scenarios side by side, print a table, write JSON.

Every option also reads an environment variable, for ``make bench`` users:
BENCH_DURATION, BENCH_ROUNDS, BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_TIMEOUT,
BENCH_LOADER, BENCH_SCENARIOS (comma-separated), BENCH_OUT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from bench.loader import LoaderFailed, choose_loader
from bench.results import Report, now
from bench.runner import DEFAULT_WORKDIR, Bench, BenchError, BenchOptions
from bench.scenarios import Scenario, catalog
from bench.servers import REPO_ROOT, ServerFailed

DEFAULT_OUT = REPO_ROOT / "var" / "bench" / "results.json"

T = TypeVar("T")


def _env(name: str, convert: Callable[[str], T], default: T) -> T:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return convert(raw)
    except ValueError:
        raise SystemExit(f"bench: {name}={raw!r} is not a valid value") from None


def _positive(convert: Callable[[str], T]) -> Callable[[str], T]:
    def parse(raw: str) -> T:
        value = convert(raw)
        if not value > 0:  # type: ignore[operator]
            raise ValueError(raw)
        return value

    return parse


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(raw)
        return raw

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration",
        type=_positive(float),
        default=_env("BENCH_DURATION", _positive(float), 2.0),
        help="seconds of load per scenario per round (wrk rounds up to whole seconds; default 2)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive(int),
        default=_env("BENCH_ROUNDS", _positive(int), 8),
        help="interleaved rounds (default 8: many short rounds pair scenarios closely in time)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=_env("BENCH_WARMUP", float, 1.0),
        help="seconds of discarded load per scenario before the rounds (0: none; default 1)",
    )
    parser.add_argument(
        "--no-pairing",
        action="store_true",
        help="do not measure each ratio's baseline right before and after it (fewer measurements, noisier ratios)",
    )
    parser.add_argument(
        "--same-processes",
        action="store_true",
        help="keep each server's process for the whole run instead of a new one per round (faster, biased)",
    )
    parser.add_argument("--connections", type=_positive(int), default=_env("BENCH_CONNECTIONS", _positive(int), 32))
    parser.add_argument("--timeout", type=_positive(float), default=_env("BENCH_TIMEOUT", _positive(float), 5.0))
    parser.add_argument(
        "--loader",
        choices=("auto", "wrk", "python"),
        default=_env("BENCH_LOADER", _one_of("auto", "wrk", "python"), "auto"),
        help="auto: wrk if available (installed with apt-get when root), else the Python loader",
    )
    parser.add_argument("--no-install", action="store_true", help="never try to install wrk")
    parser.add_argument(
        "--scenario",
        "-s",
        action="append",
        metavar="NAME",
        help="run only these scenarios (repeatable; the scenarios they are compared to are added)",
    )
    parser.add_argument("--alone", action="store_true", help="with --scenario: do not add the compared-to scenarios")
    parser.add_argument(
        "--store-lookup",
        choices=("auto", "yes", "no"),
        default=_env("BENCH_STORE_LOOKUP", _one_of("auto", "yes", "no"), "auto"),
        help="also run bench/store_lookup.py (auto: when no --scenario is given)",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--out", type=Path, default=_env("BENCH_OUT", Path, DEFAULT_OUT), help="JSON results file")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="generated configs, request pools, logs")
    parser.add_argument("--require-targets", action="store_true", help="exit 1 when a scenario misses its target ratio")
    return parser


def select(scenarios: Sequence[Scenario], names: Sequence[str] | None, *, alone: bool = False) -> list[Scenario]:
    """The named scenarios plus (unless ``alone``), transitively, those they are compared to; in catalogue order."""
    if not names:
        return list(scenarios)
    by_name = {s.name: s for s in scenarios}
    for name in names:
        if name not in by_name:
            raise SystemExit(f"bench: unknown scenario {name!r} (known: {', '.join(by_name)})")
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            compare_to = by_name[name].compare_to
            if not alone and compare_to is not None and compare_to in by_name:
                pending.append(compare_to)
    return [s for s in scenarios if s.name in wanted]


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the server pool, which stops every server


def _store_lookup(say: Callable[[str], None]) -> Any:
    """The credential-cache lookup benchmark of bench/store_lookup.py, when that module is there."""
    try:
        from bench import store_lookup
    except ImportError as exc:
        say(f"\nstore lookups: skipped ({exc})")
        return None
    say("\nstore lookups through the credential cache (bench/store_lookup.py):")
    figures = store_lookup.run()
    say(store_lookup.report(figures))
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    specs, scenarios = catalog()
    if args.list:
        for s in scenarios:
            versus = f" (vs {s.compare_to})" if s.compare_to else ""
            print(f"{s.name:<22} {s.description}{versus}")
        return 0
    names = args.scenario or [n.strip() for n in os.environ.get("BENCH_SCENARIOS", "").split(",") if n.strip()]
    chosen = select(scenarios, names, alone=args.alone)
    options = BenchOptions(
        args.duration,
        args.rounds,
        args.warmup,
        args.connections,
        args.timeout,
        args.workdir,
        paired=not args.no_pairing,
        fresh_processes=not args.same_processes,
    )

    def say(line: str) -> None:
        print(line, flush=True)

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        loader = choose_loader(args.loader, allow_install=not args.no_install, note=say)
        say(f"benchmark: {', '.join(s.name for s in chosen)} with {loader.name}")
        started = now()
        measurements = Bench(chosen, specs, loader, options, say).run()
    except (BenchError, ServerFailed, LoaderFailed) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    report = Report.build(chosen, measurements, options, loader.name, started)
    print()
    print(report.table())
    extra: dict[str, Any] = {}
    if args.store_lookup == "yes" or (args.store_lookup == "auto" and not names):
        try:
            extra["store_lookup"] = _store_lookup(say)
        except KeyboardInterrupt:
            print("bench: interrupted", file=sys.stderr)
            return 130
    report.write_json(args.out, extra)
    print(f"\nresults: {args.out}")
    if report.failed:
        return 1
    if args.require_targets and any(r.met is False for r in report.ratios):
        return 1
    return 0
