"""``gateway clients register|list|show|update`` and ``gateway clients keys add|rotate|revoke``."""

from __future__ import annotations

import argparse

from gateway.admin.inputs import credential_id
from gateway.admin.views import api_key_state, api_key_view, client_view, when
from gateway.commands.flags import OneLineParser, expiry_flags, grace_flag, leaf, listed, subcommands
from gateway.commands.session import Command, Session, UsageError, bind, table
from gateway.credentials.models import ApiClient, ApiKey
from gateway.credentials.validation import parse_cidrs, parse_origins, parse_scopes


def _print_clients(session: Session, clients: list[ApiClient]) -> None:
    if session.json:
        session.emit_json({"clients": [client_view(client) for client in clients]})
        return
    rows = [
        [c.client_id, c.name, c.tenant, [str(n) for n in c.allowed_ips], list(c.allowed_origins), sorted(c.scopes)]
        for c in clients
    ]
    table(rows, ["client id", "name", "tenant", "allowed ips", "allowed origins", "scopes"], session.out)


def _print_issued_key(session: Session, text: str, key: ApiKey, extra: dict[str, object] | None = None) -> None:
    if session.json:
        session.emit_json({"api_key": text, "key": api_key_view(key, session.admin.now()), **(extra or {})})
    else:
        print(text, file=session.out)
    session.note(f"API key {credential_id(key.key_hash)} of {key.client_id}: shown once, store it now")


async def register_client(session: Session) -> None:
    args = session.args
    client, text, key = await session.admin.register_client(
        name=args.name,
        tenant=args.tenant,
        allowed_ips=[str(network) for network in listed("--allow-ip", args.allow_ip, parse_cidrs)],
        allowed_origins=listed("--allow-origin", args.allow_origin, parse_origins),
        scopes=listed("--scope", args.scope, parse_scopes),
        key_expires=expiry_flags(
            args.key_expires, args.key_expires_in, session.admin.now(), names=("--key-expires", "--key-expires-in")
        ),
    )
    if session.json:
        session.emit_json(
            {"client": client_view(client), "api_key": text, "key": api_key_view(key, session.admin.now())}
        )
    else:
        print(f"client_id  {client.client_id}", file=session.out)
        print(f"api_key    {text}", file=session.out)
    session.note("the API key is shown once: store it now")


async def list_clients(session: Session) -> None:
    _print_clients(session, await session.admin.list_clients(tenant=session.args.tenant))


async def show_client(session: Session) -> None:
    client, keys = await session.admin.get_client(session.args.client_id)
    now = session.admin.now()
    if session.json:
        session.emit_json(client_view(client, keys, now))
        return
    _print_clients(session, [client])
    print(file=session.out)
    rows = [
        [
            credential_id(k.key_hash),
            k.hint,
            api_key_state(k, now),
            when(k.created),
            when(k.expires),
            when(k.last_used),
            k.usage_count,
        ]
        for k in keys
    ]
    table(rows, ["key id", "hint", "state", "created", "expires", "last used", "uses"], session.out)


def _edited(current: list[str], add: list[str], remove: list[str], what: str) -> list[str] | None:
    if not add and not remove:
        return None
    missing = [value for value in remove if value not in current]
    if missing:
        raise UsageError(f"{what}: not in the list, cannot remove: {', '.join(missing)}")
    return [value for value in current if value not in remove] + [value for value in add if value not in current]


async def update_client(session: Session) -> None:
    args = session.args
    client, _ = await session.admin.get_client(args.client_id)
    # Normalise what was given the way the client's lists are stored, so removal matches.
    ips = _edited(
        [str(n) for n in client.allowed_ips],
        [str(n) for n in listed("--allow-ip", args.allow_ip, parse_cidrs)],
        [str(n) for n in listed("--remove-ip", args.remove_ip, parse_cidrs)],
        "--remove-ip",
    )
    origins = _edited(
        list(client.allowed_origins),
        list(listed("--allow-origin", args.allow_origin, parse_origins)),
        list(listed("--remove-origin", args.remove_origin, parse_origins)),
        "--remove-origin",
    )
    scopes = _edited(
        sorted(client.scopes),
        sorted(listed("--scope", args.scope, parse_scopes)),
        sorted(listed("--remove-scope", args.remove_scope, parse_scopes)),
        "--remove-scope",
    )
    updated = await session.admin.update_client(
        args.client_id, name=args.name, allowed_ips=ips, allowed_origins=origins, scopes=scopes
    )
    _print_clients(session, [updated])


async def add_key(session: Session) -> None:
    args = session.args
    text, key = await session.admin.add_api_key(
        args.client_id, expires=expiry_flags(args.expires, args.expires_in, session.admin.now())
    )
    _print_issued_key(session, text, key)


async def rotate_key(session: Session) -> None:
    args = session.args
    text, old, new = await session.admin.rotate_api_key(
        args.client_id,
        args.key_id,
        grace=grace_flag(args.grace),
        expires=expiry_flags(args.expires, args.expires_in, session.admin.now()),
    )
    _print_issued_key(session, text, new, {"previous": api_key_view(old, session.admin.now())})
    session.note(f"the previous key stays valid until {when(old.expires)}")


async def revoke_key(session: Session) -> None:
    key = await session.admin.revoke_api_key(session.args.client_id, session.args.key_id, reason=session.args.reason)
    if session.json:
        session.emit_json(api_key_view(key, session.admin.now()))
    else:
        print(f"revoked API key {credential_id(key.key_hash)} of {key.client_id}", file=session.out)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("clients", help="API clients (SDKs, browser apps) and their ak_ keys")
    actions = subcommands(parser, "clients")

    def add(
        parent: argparse._SubParsersAction[OneLineParser], name: str, command: Command, help_text: str
    ) -> argparse.ArgumentParser:
        sub = leaf(parent.add_parser(name, help=help_text, description=help_text))
        sub.set_defaults(func=bind(command))
        return sub

    def expiry(sub: argparse.ArgumentParser) -> None:
        group = sub.add_mutually_exclusive_group()
        group.add_argument("--expires", metavar="TIME", help="key expiry time, RFC 3339")
        group.add_argument("--expires-in", metavar="DURATION", help="key lifetime, e.g. 365d")

    sub = add(actions, "register", register_client, "register a client; prints its id and first API key (once)")
    sub.add_argument("--name", required=True, help="unique client name")
    sub.add_argument("--tenant", required=True)
    sub.add_argument("--allow-ip", action="append", default=[], metavar="CIDR", help="allowed client network (repeat)")
    sub.add_argument(
        "--allow-origin", action="append", default=[], metavar="URL", help="allowed browser origin (repeat)"
    )
    sub.add_argument("--scope", action="append", default=[], metavar="SCOPE", help="repeat")
    group = sub.add_mutually_exclusive_group()
    group.add_argument("--key-expires", metavar="TIME")
    group.add_argument("--key-expires-in", metavar="DURATION")

    sub = add(actions, "list", list_clients, "list clients")
    sub.add_argument("--tenant")

    sub = add(actions, "show", show_client, "one client and its keys (never their secrets)")
    sub.add_argument("client_id", metavar="CLIENT_ID")

    sub = add(actions, "update", update_client, "rename a client or edit its allowlists and scopes")
    sub.add_argument("client_id", metavar="CLIENT_ID")
    sub.add_argument("--name")
    sub.add_argument("--allow-ip", action="append", default=[], metavar="CIDR")
    sub.add_argument("--remove-ip", action="append", default=[], metavar="CIDR")
    sub.add_argument("--allow-origin", action="append", default=[], metavar="URL")
    sub.add_argument("--remove-origin", action="append", default=[], metavar="URL")
    sub.add_argument("--scope", action="append", default=[], metavar="SCOPE")
    sub.add_argument("--remove-scope", action="append", default=[], metavar="SCOPE")

    keys_parser = actions.add_parser("keys", help="a client's API keys")
    key_actions = subcommands(keys_parser, "client_keys")
    sub = add(key_actions, "add", add_key, "add an API key; prints it once")
    sub.add_argument("client_id", metavar="CLIENT_ID")
    expiry(sub)
    sub = add(key_actions, "rotate", rotate_key, "issue a new key; the old one stays valid for --grace")
    sub.add_argument("client_id", metavar="CLIENT_ID")
    sub.add_argument("key_id", metavar="KEY_ID")
    sub.add_argument("--grace", metavar="DURATION", help="default 24h")
    expiry(sub)
    sub = add(key_actions, "revoke", revoke_key, "revoke an API key now")
    sub.add_argument("client_id", metavar="CLIENT_ID")
    sub.add_argument("key_id", metavar="KEY_ID")
    sub.add_argument("--reason", required=True)
