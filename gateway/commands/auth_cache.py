"""``gateway auth-cache purge (--token-file FILE | --all)``: make a revocation at the identity service take effect now.

The token is read from a file or stdin (``-``), never from the command line (shell
history, ``ps``). Works on the configured store: every running replica drops its
in-memory copy (docs/auth-backend.md, "Revocation").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.backend.revocation import fingerprint, purge_decisions
from gateway.commands.flags import leaf, subcommands
from gateway.commands.session import Session, UsageError, bind


def _read_token(source: str) -> str:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise UsageError(f"--token-file: expected exactly one token, found {len(lines)} non-empty lines")
    return lines[0]


async def purge(session: Session) -> None:
    args = session.args
    if (args.token_file is None) == (not args.all):
        raise UsageError("give either --token-file FILE (- for stdin) or --all")
    token = _read_token(args.token_file) if args.token_file is not None else None
    purged = await purge_decisions(
        session.store,
        session.settings.authn,
        token=token,
        recorder=session.admin.audit,
        admin=session.admin.actor,
        principal=session.admin.actor,
        now=session.admin.now(),
    )
    if session.json:
        session.emit_json({"purged": purged})
    else:
        what = "every cached decision" if token is None else f"the decisions about {fingerprint(token)}"
        print(f"purged {what}: {purged} shared entries; running replicas drop theirs", file=session.out)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("auth-cache", help="the identity service's cached token decisions")
    actions = subcommands(group, "auth_cache")
    help_text = "forget a revoked token's cached decisions on every replica"
    parser = leaf(actions.add_parser("purge", help=help_text, description=help_text))
    parser.add_argument("--token-file", metavar="FILE", help="a file holding the token; - reads it from stdin")
    parser.add_argument("--all", action="store_true", help="forget every cached decision")
    parser.set_defaults(func=bind(purge))
