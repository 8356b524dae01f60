"""Argument parsing helpers for the operator commands.

Values (durations, times, CIDRs, scopes) are parsed by the command, not by argparse,
so a bad value is one line naming the flag (``--expires-in: not a duration ...``)
and exit 2, like every other bad input.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn, TypeVar

from gateway.admin.inputs import expiry, parse_grace, parse_positive_duration, parse_time

T = TypeVar("T")


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gateway: {self.prog.removeprefix('gateway ')}: {message} (see --help)\n")


def leaf(parser: argparse.ArgumentParser, *, json: bool = True) -> argparse.ArgumentParser:
    """Options every operator command takes: ``--config`` and (where output is data) ``--json``."""
    parser.add_argument(
        "--config", "-c", metavar="FILE", help="YAML file (default: $GATEWAY_CONFIG or config/gateway.yaml)"
    )
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of text")
    return parser


def subcommands(parser: argparse.ArgumentParser, title: str) -> argparse._SubParsersAction[OneLineParser]:
    return parser.add_subparsers(dest=f"{title}_action", metavar="ACTION", required=True, parser_class=OneLineParser)


def flag(name: str, value: str | None, parse: Callable[[str], T]) -> T | None:
    """``parse(value)`` with a failure reported against ``name``; ``None`` passes through."""
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def listed(name: str, values: list[str], parse: Callable[[list[str]], T]) -> T:
    """``parse(values)`` for a repeated flag, a failure reported against ``name``."""
    try:
        return parse(values)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def duration_flag(name: str, value: str | None, default: str) -> timedelta:
    parsed = flag(name, value if value is not None else default, parse_positive_duration)
    assert parsed is not None  # noqa: S101 - a default is always given
    return parsed


def grace_flag(value: str | None, default: str = "24h") -> timedelta:
    parsed = flag("--grace", value if value is not None else default, parse_grace)
    assert parsed is not None  # noqa: S101 - a default is always given
    return parsed


def expiry_flags(
    expires: str | None,
    expires_in: str | None,
    now: datetime,
    *,
    names: tuple[str, str] = ("--expires", "--expires-in"),
) -> datetime | None:
    when = flag(names[0], expires, parse_time)
    lifetime = flag(names[1], expires_in, parse_positive_duration)
    try:
        return expiry(expires=when, expires_in=lifetime, now=now)
    except ValueError as exc:
        raise ValueError(f"{names[0]}/{names[1]}: {exc}") from None
