"""``gateway tokens create|list|show|rotate|revoke|emergency-revoke|cleanup|expiring|usage|import``."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from gateway.admin.actions import LegacyToken
from gateway.admin.inputs import credential_id
from gateway.admin.views import token_state, token_view, when
from gateway.commands.flags import duration_flag, expiry_flags, grace_flag, leaf, listed, subcommands
from gateway.commands.session import Command, Session, UsageError, bind, table
from gateway.credentials.models import ServiceToken
from gateway.credentials.tokens import hash_token, is_token_hash
from gateway.credentials.validation import parse_cidrs, parse_reason, parse_scopes

_LEGACY_TOKEN = re.compile(r"^sk_[0-9a-f]{64}$")


def _print_issued(session: Session, text: str, record: ServiceToken, previous: ServiceToken | None = None) -> None:
    now = session.admin.now()
    if session.json:
        value: dict[str, object] = {"token": text, "record": token_view(record, now)}
        if previous is not None:
            value["previous"] = token_view(previous, now)
        session.emit_json(value)
    else:
        print(text, file=session.out)
    session.note(
        f"token {record.name!r} (id {credential_id(record.token_hash)}, owner {record.owner}, "
        f"expires {when(record.expires) or 'never'}): shown once, store it now"
    )
    if previous is not None:
        session.note(f"the previous token stays valid until {when(previous.expires)}")


def _print_tokens(session: Session, tokens: Sequence[ServiceToken]) -> None:
    now = session.admin.now()
    if session.json:
        session.emit_json({"tokens": [token_view(token, now) for token in tokens]})
        return
    rows = [
        [
            t.name,
            credential_id(t.token_hash),
            t.owner,
            token_state(t, now),
            sorted(t.scopes),
            when(t.expires),
            when(t.last_used),
            t.usage_count,
        ]
        for t in tokens
    ]
    table(rows, ["name", "id", "owner", "state", "scopes", "expires", "last used", "uses"], session.out)


async def create(session: Session) -> None:
    args = session.args
    text, token = await session.admin.create_token(
        name=args.name,
        owner=args.owner,
        scopes=listed("--scope", args.scope, parse_scopes),
        allowed_ips=[str(n) for n in listed("--allow-ip", args.allow_ip, parse_cidrs)],
        expires=expiry_flags(args.expires, args.expires_in, session.admin.now()),
    )
    _print_issued(session, text, token)


async def list_(session: Session) -> None:
    _print_tokens(session, await session.admin.list_tokens(owner=session.args.owner, include_inactive=session.args.all))


async def show(session: Session) -> None:
    token = await session.admin.find_token(session.args.ref)
    view = token_view(token, session.admin.now())
    if session.json:
        session.emit_json(view)
        return
    width = max(len(key) for key in view)
    for key, value in view.items():
        shown = ",".join(value) if isinstance(value, list) else ("-" if value is None else value)
        print(f"{key:<{width}}  {shown}", file=session.out)


async def rotate(session: Session) -> None:
    args = session.args
    text, old, new = await session.admin.rotate_token(
        args.ref, grace=grace_flag(args.grace), expires=expiry_flags(args.expires, args.expires_in, session.admin.now())
    )
    _print_issued(session, text, new, old)


async def revoke(session: Session) -> None:
    token = await session.admin.revoke_token(session.args.ref, reason=session.args.reason)
    if session.json:
        session.emit_json(token_view(token, session.admin.now()))
    else:
        print(f"revoked {token.name} ({credential_id(token.token_hash)})", file=session.out)


async def emergency_revoke(session: Session) -> None:
    args = session.args
    parse_reason(args.reason)
    if not args.yes:
        scope = "EVERY token" if args.all else f"every token of owner {args.owner!r}"
        raise UsageError(f"this revokes {scope} at once: add --yes to confirm")
    count = await session.admin.emergency_revoke(reason=args.reason, owner=None if args.all else args.owner)
    if session.json:
        session.emit_json({"count": count})
    else:
        print(f"revoked {count} tokens", file=session.out)


async def cleanup(session: Session) -> None:
    older_than = duration_flag("--older-than", session.args.older_than, "30d")
    if session.args.dry_run:
        cutoff = session.admin.now() - older_than
        doomed = [
            t
            for t in await session.admin.list_tokens(include_inactive=True)
            if (t.expires is not None and t.expires < cutoff) or (t.revoked_at is not None and t.revoked_at < cutoff)
        ]
        _print_tokens(session, doomed)
        return
    count = await session.admin.cleanup_tokens(older_than=older_than)
    if session.json:
        session.emit_json({"count": count})
    else:
        print(f"deleted {count} tokens that expired or were revoked more than {older_than} ago", file=session.out)


async def expiring(session: Session) -> None:
    tokens = await session.admin.expiring_tokens(within=duration_flag("--within", session.args.within, "7d"))
    _print_tokens(session, tokens)


async def usage(session: Session) -> None:
    args = session.args
    if args.ref is not None:
        tokens = [await session.admin.find_token(args.ref)]
    else:
        tokens = await session.admin.list_tokens(owner=args.owner, include_inactive=True)
        tokens.sort(key=lambda t: (-t.usage_count, t.name))
    if session.json:
        session.emit_json(
            {
                "usage": [
                    {
                        "name": t.name,
                        "id": credential_id(t.token_hash),
                        "owner": t.owner,
                        "usage_count": t.usage_count,
                        "last_used": when(t.last_used),
                    }
                    for t in tokens
                ]
            }
        )
        return
    rows = [[t.name, credential_id(t.token_hash), t.owner, t.usage_count, when(t.last_used)] for t in tokens]
    table(rows, ["name", "id", "owner", "uses", "last used"], session.out)


def legacy_lines(
    lines: Iterator[str], source: str, *, owner: str, scopes: list[str], allowed_ips: list[str]
) -> tuple[list[LegacyToken], list[int]]:
    """``NAME VALUE`` lines: VALUE is a SHA-256 (hex) or a legacy ``sk_`` + 64 hex token, hashed here.

    Returns the entries and the line number of each.
    """
    entries: list[LegacyToken] = []
    numbers: list[int] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{source}:{number}: expected NAME and a SHA-256 or a legacy sk_ token")
        name, value = parts
        if _LEGACY_TOKEN.match(value):
            digest = hash_token(value)  # hashed on this machine: the token itself goes nowhere
        elif is_token_hash(value.lower()):
            digest = value.lower()
        else:
            raise ValueError(f"{source}:{number}: not a SHA-256 (64 hex) nor a legacy sk_ + 64 hex token")
        entries.append(LegacyToken(name, digest, owner, frozenset(scopes), tuple(allowed_ips)))
        numbers.append(number)
    return entries, numbers


async def import_(session: Session) -> None:
    args = session.args
    listed("--scope", args.scope, parse_scopes)
    listed("--allow-ip", args.allow_ip, parse_cidrs)
    source = "<stdin>" if args.file == "-" else args.file
    if args.file == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {source!r}: {type(exc).__name__}") from None
    entries, numbers = legacy_lines(
        iter(text.splitlines()), source, owner=args.owner, scopes=args.scope, allowed_ips=args.allow_ip
    )
    try:
        count = await session.admin.import_tokens(entries)
    except ValueError as exc:  # name the file's lines rather than the batch's indexes
        message = re.sub(r"tokens\[(\d+)\]", lambda m: f"line {numbers[int(m.group(1))]}", str(exc))
        raise ValueError(f"{source}: {message}") from None
    if session.json:
        session.emit_json({"count": count})
    else:
        print(f"imported {count} legacy tokens", file=session.out)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("tokens", help="service tokens (sk_...) for CI systems and tools")
    actions = subcommands(parser, "tokens")

    def add(name: str, command: Command, help_text: str) -> argparse.ArgumentParser:
        sub = leaf(actions.add_parser(name, help=help_text, description=help_text))
        sub.set_defaults(func=bind(command))
        return sub

    def restrictions(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--scope", action="append", default=[], metavar="SCOPE", help="e.g. deploy:write (repeat)")
        sub.add_argument(
            "--allow-ip", action="append", default=[], metavar="CIDR", help="allowed client network (repeat)"
        )

    def expiry(sub: argparse.ArgumentParser) -> None:
        group = sub.add_mutually_exclusive_group()
        group.add_argument("--expires", metavar="TIME", help="expiry time, RFC 3339 (UTC if no offset)")
        group.add_argument("--expires-in", metavar="DURATION", help="lifetime, e.g. 90d")

    sub = add("create", create, "create a token; prints it once on stdout")
    sub.add_argument("--name", required=True, help="unique among live tokens")
    sub.add_argument("--owner", required=True, help="owner / service id")
    restrictions(sub)
    expiry(sub)

    sub = add("list", list_, "list tokens (active ones unless --all); never their secrets")
    sub.add_argument("--owner")
    sub.add_argument("--all", action="store_true", help="include revoked, expired and rotated-out tokens")

    sub = add("show", show, "one token by name, id or SHA-256, with its usage")
    sub.add_argument("ref", metavar="NAME|ID")

    sub = add("rotate", rotate, "issue a new token under the same name; the old one stays valid for --grace")
    sub.add_argument("ref", metavar="NAME|ID")
    sub.add_argument("--grace", metavar="DURATION", help="how long the old token stays valid (default 24h)")
    expiry(sub)

    sub = add("revoke", revoke, "revoke one token now")
    sub.add_argument("ref", metavar="NAME|ID")
    sub.add_argument("--reason", required=True)

    sub = add("emergency-revoke", emergency_revoke, "revoke every token, or every token of one owner (audited)")
    who = sub.add_mutually_exclusive_group(required=True)
    who.add_argument("--all", action="store_true", help="every token")
    who.add_argument("--owner", help="every token of this owner")
    sub.add_argument("--reason", required=True)
    sub.add_argument("--yes", action="store_true", help="confirm")

    sub = add("cleanup", cleanup, "delete tokens that expired or were revoked more than --older-than ago")
    sub.add_argument("--older-than", metavar="DURATION", help="default 30d")
    sub.add_argument("--dry-run", action="store_true", help="only list what would be deleted")

    sub = add("expiring", expiring, "unrevoked tokens expiring soon, soonest first")
    sub.add_argument("--within", metavar="DURATION", help="default 7d")

    sub = add("usage", usage, "usage counts and last use, most used first")
    sub.add_argument("ref", nargs="?", metavar="NAME|ID")
    sub.add_argument("--owner")

    sub = add("import", import_, "import legacy sk_ + 64 hex tokens by SHA-256 (or hash the tokens locally)")
    sub.add_argument("file", metavar="FILE", help="lines 'NAME SHA256' or 'NAME sk_<64 hex>'; - for stdin")
    sub.add_argument("--owner", required=True)
    restrictions(sub)
