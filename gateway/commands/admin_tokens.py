"""``gateway admin-token generate --name NAME [--read-only] [--append-to FILE]``.

Prints a new admin token (stdout) and the line that accepts it in admin.tokens_file
(``NAME:sha256:HEX``, stderr). With ``--append-to`` the line is added to that file,
rewritten atomically with mode 0600. Needs no configuration and no store.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.admin.tokens import admin_token_line, generate_admin_token, parse_admin_tokens
from gateway.commands.secret_files import prepare_private_file, read_text_if_exists
from gateway.commands.session import EXIT_OK, EXIT_USAGE


def generate(args: argparse.Namespace) -> int:
    token = generate_admin_token()
    try:
        line = admin_token_line(args.name, token, read_only=args.read_only)
        if args.append_to is not None:
            _append(Path(args.append_to), args.name, line)
    except (ValueError, OSError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"name": args.name, "token": token, "line": line}))
    else:
        print(token)
        print(f"admin.tokens_file line: {line}", file=sys.stderr)
    return EXIT_OK


def _append(path: Path, name: str, line: str) -> None:
    existing = read_text_if_exists(path) or ""
    if existing.strip():
        configured = parse_admin_tokens(existing)  # refuse to extend a file the gateway would reject
        if any(token.name == name for token in configured.tokens):
            raise ValueError(f"{str(path)!r} already has an admin token named {name!r}")
    text = existing + ("" if not existing or existing.endswith("\n") else "\n") + line + "\n"
    prepare_private_file(path, text).commit()


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("admin-token", help="admin tokens for the admin API")
    actions = parser.add_subparsers(dest="admin_token_action", metavar="ACTION", required=True)
    sub = actions.add_parser("generate", help="print a new admin token and its admin.tokens_file line")
    sub.add_argument("--name", required=True, help="the admin identity written to the audit trail")
    sub.add_argument("--read-only", action="store_true", help="the token may only read (GET)")
    sub.add_argument("--append-to", metavar="FILE", help="add the line to this tokens file (0600)")
    sub.add_argument("--json", action="store_true")
    sub.set_defaults(func=generate)
