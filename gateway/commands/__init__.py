"""The operator commands: ``gateway keys|tokens|clients|audit|admin-token|auth-cache ...``.

::

    session.py       configuration, the configured store, exit codes, output
    flags.py         --config / --json, value flags parsed with one-line errors
    secret_files.py  0600 files created atomically (env files, key files)
    keys.py tokens.py clients.py audit.py admin_tokens.py   one module per command

Every command runs against the store of the gateway's configuration; what it
changes is audited as ``cli:<login>``. See docs/cli.md.
"""

from __future__ import annotations

import argparse

from gateway.commands import admin_tokens, audit, auth_cache, clients, keys, tokens


def register_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operator commands to ``gateway``'s subcommands."""
    for module in (keys, tokens, clients, audit, admin_tokens, auth_cache):
        module.register(commands)
