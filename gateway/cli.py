"""Command line: ``gateway serve``, ``gateway check-config`` and the operator commands.

Exit codes: 0 success, 1 operation failed, 2 bad usage or bad configuration.
A configuration problem is printed as one ``key.path: message`` line each, never
as a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from gateway import __version__
from gateway.eventloop import run
from gateway.settings import ConfigError, Settings, load_settings
from gateway.units import parse_address

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _load(args: argparse.Namespace, err: TextIO) -> Settings | None:
    try:
        return load_settings(args.config)
    except ConfigError as exc:
        where = args.config or os.environ.get("GATEWAY_CONFIG") or "config/gateway.yaml"
        print(f"gateway: invalid configuration ({where}):", file=err)
        for problem in exc.problems:
            print(f"  {problem}", file=err)
        return None


def mask_url(url: str) -> str:
    """Hide the password of a store URL (``redis://:secret@host`` -> ``redis://:***@host``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load(args, sys.stderr)
    if settings is None:
        return EXIT_USAGE
    print(f"configuration OK ({settings.source})")
    print(f"listen:       {settings.listen}")
    print(f"admin_listen: {settings.admin_listen}")
    print(f"store:        {mask_url(settings.store)}")
    print(f"trusted_proxies: {', '.join(map(str, settings.trusted_proxies)) or '(none)'}")
    print("routes (longest prefix wins):")
    if not settings.routes:
        print("  (none: every request is answered 404)")
    for route in sorted(settings.routes, key=lambda r: len(r.prefix), reverse=True):
        methods = ",".join(sorted(route.methods)) if route.methods else "*"
        flags = [f for f, on in (("strip_prefix", route.strip_prefix), ("preserve_host", route.preserve_host)) if on]
        print(
            f"  {route.name:<16} {route.prefix:<20} {methods:<12} -> {route.upstream}"
            f"  connect={route.timeouts.connect:g}s read={route.timeouts.read:g}s max_body={route.max_body}"
            + (f"  {' '.join(flags)}" if flags else "")
        )
        if route.policy is not None:
            print(f"  {'':<16} policy: {route.policy.describe()}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _load(args, sys.stderr)
    if settings is None:
        return EXIT_USAGE
    from gateway.observability.logging import configure_logging
    from gateway.runtime import StartupError
    from gateway.server import serve

    # Command-line flags win over the file; the access log reads the same settings.
    log = dataclasses.replace(
        settings.log, level=args.log_level or settings.log.level, format=args.log_format or settings.log.format
    )
    settings = dataclasses.replace(settings, log=log)
    configure_logging(level=log.level, fmt=log.format)
    demo = parse_address(args.demo_upstream) if args.demo_upstream else None
    try:
        run(serve(settings, demo_upstream=demo))
    except StartupError as exc:
        print(f"gateway: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"gateway: cannot listen: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_demo_upstream(args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.demo import create_demo_upstream

    address = parse_address(args.listen)
    try:
        web.run_app(create_demo_upstream(), host=address.host, port=address.port, access_log=None, print=None)
    except OSError as exc:  # taken, or not an address of this host
        print(f"gateway: cannot listen: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _address(value: str) -> str:
    try:
        parse_address(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Authentication gateway (reverse proxy).")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config", "-c", metavar="FILE", help="YAML file (default: $GATEWAY_CONFIG or config/gateway.yaml)"
        )
        return p

    serve = with_config(commands.add_parser("serve", help="run the gateway"))
    serve.add_argument("--log-format", choices=("json", "text"), help="overrides log.format")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="overrides log.level")
    serve.add_argument(
        "--demo-upstream",
        metavar="HOST:PORT",
        type=_address,
        help="also start the demo echo upstream on this address (for make run and trying things out)",
    )
    serve.set_defaults(func=cmd_serve)

    check = with_config(commands.add_parser("check-config", help="validate the configuration and print the routes"))
    check.set_defaults(func=cmd_check_config)

    from gateway.commands import register_commands

    register_commands(commands)  # keys, tokens, clients, audit, admin-token

    from gateway.sdk.cli import register as register_sign

    register_sign(commands)  # gateway sign: one signed request, for checking a service key end to end

    demo = commands.add_parser("demo-upstream", help="run only the demo echo upstream")
    demo.add_argument("--listen", default="127.0.0.1:9000", type=_address, metavar="HOST:PORT")
    demo.set_defaults(func=cmd_demo_upstream)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)
