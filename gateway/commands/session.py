"""Running an operator command: configuration, the configured store, output, errors and exit codes.

Every operator command (``gateway keys|tokens|clients|audit ...``) loads the
configuration (``--config`` / ``GATEWAY_CONFIG``), opens the configured store and
KEK, runs, and closes the store. Its changes are audited as ``cli:<login>``.

Exit codes: 0 success; 1 the operation failed (unknown id, duplicate name, store
unreachable or lost mid-operation); 2 bad usage or input (bad CIDR, scope syntax,
expiry in the past, missing confirmation, bad configuration). A failure is one line
on stderr (``gateway: ...``), never a traceback; a failed command changed nothing.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from gateway.admin.actions import CredentialAdmin
from gateway.credentials.errors import CredentialError, EncryptionKeyMissing, MalformedCredential
from gateway.eventloop import run
from gateway.observability.audit import AuditTrail
from gateway.runtime import load_kek
from gateway.settings import ConfigError, Settings, load_settings
from gateway.store import Conflict, NotFound, Store, StoreConfigError, StoreError, open_store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """The command line is wrong in a way argparse cannot see (exit 2)."""


@dataclass
class Session:
    """What a command works with."""

    args: argparse.Namespace
    settings: Settings
    store: Store
    admin: CredentialAdmin
    out: TextIO
    err: TextIO

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def emit_json(self, value: object) -> None:
        print(json.dumps(value, indent=2, sort_keys=False), file=self.out)

    def note(self, text: str) -> None:
        """A message for the human at the terminal (stderr: stdout stays parseable)."""
        print(text, file=self.err)


Command = Callable[[Session], Awaitable[int | None]]


def actor() -> str:
    """The operator's identity in the audit trail: ``cli:<login>``."""
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"cli:uid-{os.getuid()}"


def run_command(
    args: argparse.Namespace, command: Command, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Load the configuration, open the store, run ``command``; map every failure to an exit code."""
    stdout, stderr = out or sys.stdout, err or sys.stderr
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        where = getattr(args, "config", None) or os.environ.get("GATEWAY_CONFIG") or "config/gateway.yaml"
        print(f"gateway: invalid configuration ({where}):", file=stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=stderr)
        return EXIT_USAGE
    try:
        result = run(_session(args, settings, command, stdout, stderr))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseException as exc:  # one line, never a traceback
        code, message = describe(exc)
        print(f"gateway: {message}", file=stderr)
        return code
    return EXIT_OK if result is None else result


def bind(command: Command) -> Callable[[argparse.Namespace], int]:
    """The ``func`` argparse calls for a subcommand: run ``command`` in a session."""
    return lambda args: run_command(args, command)


def describe(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message for a failure."""
    notes = "; ".join(getattr(exc, "__notes__", ()))
    suffix = f" ({notes})" if notes else ""
    if isinstance(exc, UsageError | MalformedCredential | ValueError):
        return EXIT_USAGE, f"{exc}{suffix}"
    if isinstance(exc, EncryptionKeyMissing):
        return EXIT_USAGE, exc.detail
    if isinstance(exc, StoreConfigError):
        return EXIT_USAGE, exc.detail
    if isinstance(exc, NotFound | Conflict):
        return EXIT_FAILED, f"{exc.detail}{suffix}"
    if isinstance(exc, StoreError):
        return EXIT_FAILED, f"{exc.detail or exc.code}{suffix} (nothing was changed by the failed step)"
    if isinstance(exc, CredentialError):
        return EXIT_USAGE, exc.detail
    if isinstance(exc, OSError):
        return EXIT_FAILED, f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    return EXIT_FAILED, f"internal error: {type(exc).__name__}: {exc}"


async def _session(
    args: argparse.Namespace, settings: Settings, command: Command, out: TextIO, err: TextIO
) -> int | None:
    box = load_kek(settings)
    store = await open_store(settings.store)
    trail = AuditTrail(store)  # not started: admin actions are written at once (record_now)
    try:
        admin = CredentialAdmin(store, actor=actor(), audit=trail, secret_box=box)
        return await command(Session(args, settings, store, admin, out, err))
    finally:
        await trail.close()
        if trail.pending:
            print(f"gateway: warning: {trail.pending} audit events could not be written", file=err)
        await store.close()


# -- output --------------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[object]], headers: Sequence[str], out: TextIO) -> None:
    """Aligned columns; ``-`` for empty cells."""
    text_rows = [[("-" if cell in (None, "", [], ()) else _cell(cell)) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in text_rows)]) for i, header in enumerate(headers)]
    print(
        "  ".join(header.upper().ljust(width) for header, width in zip(headers, widths, strict=True)).rstrip(), file=out
    )
    for row in text_rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)


def _cell(value: object) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)
