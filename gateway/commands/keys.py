"""``gateway keys generate|add|list|rotate|retire``: service signing keys.

``keys generate --service billing --env-file /srv/billing/.env --register`` is the
bootstrap a team runs once per service: a new 256-bit secret goes into
``/srv/billing/service-keys/billing.key`` (0600), the env file gets ``SERVICE_ID``,
``SERVICE_KEY_ID`` and ``SERVICE_KEY_FILE`` (0600), and the gateway's store gets
the key (encrypted under the KEK). Files are put in place only once the store has
the key; if the store write fails, nothing on disk changes.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from gateway.admin.inputs import parse_time
from gateway.admin.views import service_key_view, when
from gateway.commands.flags import duration_flag, flag, grace_flag, leaf, listed, subcommands
from gateway.commands.secret_files import (
    PendingFile,
    ensure_private_directory,
    env_file_text,
    prepare_private_file,
    read_text_if_exists,
)
from gateway.commands.session import Command, Session, UsageError, bind, table
from gateway.credentials.keys import generate_key_id, generate_service_secret, parse_key_id, parse_service_id
from gateway.credentials.models import ServiceKey
from gateway.credentials.validation import parse_scopes, parse_tenant
from gateway.store import StoreError

KEY_FILE_DIRECTORY = "service-keys"


def _print_keys(session: Session, keys: list[ServiceKey]) -> None:
    now = session.admin.now()
    if session.json:
        session.emit_json({"keys": [service_key_view(key, now) for key in keys]})
        return
    rows = []
    for key in keys:
        view = service_key_view(key, now)
        rows.append(
            [
                key.service_id,
                key.key_id,
                key.algorithm.value,
                view["state"],
                when(key.created),
                when(key.expires),
                key.tenant or "-",
                " ".join(sorted(key.scopes)) or "-",
            ]
        )
    table(rows, ["service", "key id", "algorithm", "state", "created", "expires", "tenant", "scopes"], session.out)


def _grants(args: argparse.Namespace) -> tuple[str | None, frozenset[str]]:
    """``--tenant`` and ``--scope``: what signatures made with the key are granted."""
    tenant = flag("--tenant", args.tenant, parse_tenant)
    return tenant, listed("--scope", args.scope, parse_scopes)


class ServiceEnvFiles:
    """The env file and key file of one service, prepared before and committed after the store write."""

    def __init__(self, service: str, env_file: Path, key_file: Path | None, *, replace_key_file: bool) -> None:
        self.env_file = env_file.expanduser().absolute()
        directory = self.env_file.parent
        self.key_file = (
            key_file.expanduser().absolute() if key_file else directory / KEY_FILE_DIRECTORY / f"{service}.key"
        )
        self.service = service
        if not directory.is_dir():
            raise ValueError(f"--env-file: directory does not exist: {str(directory)!r}")
        if self.key_file.exists() and not replace_key_file:
            raise UsageError(
                f"--key-file: {str(self.key_file)!r} exists (a key may be in use): "
                "use `gateway keys rotate`, or --force to overwrite"
            )
        self.pending: list[PendingFile] = []

    def prepare(self, secret: str, key_id: str) -> None:
        ensure_private_directory(self.key_file.parent)
        header = (
            f"Service credentials for {self.service}, written by `gateway keys` on "
            f"{datetime.now(UTC).isoformat(timespec='seconds')}.\n"
            "SERVICE_KEY_FILE holds the HMAC signing secret; keep both files private (mode 0600)."
        )
        env_text = env_file_text(
            read_text_if_exists(self.env_file),
            {"SERVICE_ID": self.service, "SERVICE_KEY_ID": key_id, "SERVICE_KEY_FILE": str(self.key_file)},
            header,
        )
        try:
            self.pending.append(prepare_private_file(self.key_file, secret + "\n"))
            self.pending.append(prepare_private_file(self.env_file, env_text))
        except BaseException:
            self.discard()
            raise

    def commit(self) -> None:
        for pending in self.pending:
            pending.commit()
        self.pending = []

    def discard(self) -> None:
        for pending in self.pending:
            pending.discard()
        self.pending = []


def _env_files(args: argparse.Namespace, service: str, *, replace_key_file: bool) -> ServiceEnvFiles | None:
    if args.env_file is None:
        if args.key_file is not None:
            raise UsageError("--key-file needs --env-file")
        return None
    return ServiceEnvFiles(
        service, Path(args.env_file), Path(args.key_file) if args.key_file else None, replace_key_file=replace_key_file
    )


def _report_files(session: Session, files: ServiceEnvFiles, key: ServiceKey | None, key_id: str) -> None:
    if session.json:
        session.emit_json(
            {
                "service": files.service,
                "key_id": key_id,
                "env_file": str(files.env_file),
                "key_file": str(files.key_file),
                "registered": key is not None,
                "key": None if key is None else service_key_view(key, session.admin.now()),
            }
        )
    else:
        print(f"env file:  {files.env_file}", file=session.out)
        print(f"key file:  {files.key_file}", file=session.out)
        print(
            f"key id:    {key_id}" + ("" if key is not None else "  (not registered: pass --register)"),
            file=session.out,
        )


async def generate(session: Session) -> None:
    args = session.args
    service = flag("--service", args.service, parse_service_id)
    assert service is not None  # noqa: S101 - required by argparse
    key_id = flag("--key-id", args.key_id, parse_key_id) or generate_key_id(session.admin.now())
    lifetime = duration_flag("--lifetime", args.lifetime, "90d")
    tenant, scopes = _grants(args)
    if (tenant is not None or scopes) and not args.register:
        raise UsageError("--tenant and --scope are stored with the key: add --register")
    files = _env_files(args, service, replace_key_file=args.force)
    secret = generate_service_secret()
    key: ServiceKey | None = None
    if files is not None:
        files.prepare(secret, key_id)
    try:
        if args.register:
            key = await session.admin.add_service_key(
                service, secret=secret, key_id=key_id, lifetime=lifetime, tenant=tenant, scopes=scopes
            )
        if files is not None:
            files.commit()
    except BaseException:
        if files is not None:
            files.discard()
        if key is not None:  # registered, but the files could not be put in place: do not leave it usable
            await _retire_quietly(session, key)
        raise
    if files is not None:
        _report_files(session, files, key, key_id)
    elif session.json:
        session.emit_json(
            {
                "service": service,
                "key_id": key_id,
                "secret": secret,
                "key": None if key is None else service_key_view(key, session.admin.now()),
            }
        )
    else:
        print(secret, file=session.out)
        if key is None:
            session.note(
                "not registered: register it with `gateway keys add --service ... --secret-file ...`, or use --register"
            )
    if key is not None:
        session.note(f"registered key {service}/{key.key_id}, valid until {when(key.expires)}")


async def _retire_quietly(session: Session, key: ServiceKey) -> None:
    try:
        await session.admin.retire_service_key(key.service_id, key.key_id)
    except StoreError:
        session.note(
            f"warning: key {key.service_id}/{key.key_id} is registered but its files were not written: retire it"
        )


def _read_secret(args: argparse.Namespace) -> str | None:
    if args.secret_stdin:
        return sys.stdin.readline().strip()
    if args.secret_file:
        try:
            return Path(args.secret_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--secret-file: cannot read {args.secret_file!r}: {type(exc).__name__}") from None
    return None


def _read_public_key(args: argparse.Namespace) -> bytes | None:
    if not args.public_key_file:
        return None
    try:
        return Path(args.public_key_file).read_bytes()
    except OSError as exc:
        raise ValueError(f"--public-key-file: cannot read {args.public_key_file!r}: {type(exc).__name__}") from None


async def add(session: Session) -> None:
    args = session.args
    secret, public_key = _read_secret(args), _read_public_key(args)
    not_before = flag("--not-before", args.not_before, parse_time)
    tenant, scopes = _grants(args)
    key = await session.admin.add_service_key(
        args.service,
        secret=secret,
        public_key=public_key,
        key_id=args.key_id,
        lifetime=duration_flag("--lifetime", args.lifetime, "90d"),
        not_before=not_before,
        tenant=tenant,
        scopes=scopes,
    )
    _print_keys(session, [key])


async def list_(session: Session) -> None:
    _print_keys(session, await session.admin.list_service_keys(session.args.service))


async def rotate(session: Session) -> None:
    args = session.args
    service = flag("--service", args.service, parse_service_id)
    assert service is not None  # noqa: S101 - required by argparse
    grace = grace_flag(args.grace)
    lifetime = duration_flag("--lifetime", args.lifetime, "90d")
    secret, public_key = _read_secret(args), _read_public_key(args)
    tenant, scopes = _grants(args)
    files = _env_files(args, service, replace_key_file=True)
    if files is not None and public_key is not None:
        raise UsageError("--env-file is for HMAC keys (an Ed25519 private key never reaches the gateway)")
    if files is not None and secret is None:
        secret = generate_service_secret()
    # The new key id is chosen here so the env file can name it before the store write.
    new_id = generate_key_id(session.admin.now())
    if files is not None:
        assert secret is not None  # noqa: S101 - generated above
        files.prepare(secret, new_id)
    try:
        generated, old, new = await session.admin.rotate_service_key(
            service,
            grace=grace,
            old_key_id=args.key_id,
            secret=secret,
            public_key=public_key,
            lifetime=lifetime,
            new_key_id=new_id,
            tenant=tenant,
            scopes=scopes if args.scope else None,  # none given: the old key's
        )
        if files is not None:
            files.commit()
    except BaseException:
        if files is not None:
            files.discard()
        raise
    if files is not None:
        _report_files(session, files, new, new.key_id)
    elif session.json:
        now = session.admin.now()
        session.emit_json(
            {"secret": generated, "key": service_key_view(new, now), "previous": service_key_view(old, now)}
        )
    else:
        if generated is not None:
            print(generated, file=session.out)
        session.note(f"new key {service}/{new.key_id}, valid until {when(new.expires)}")
    session.note(f"old key {service}/{old.key_id} stays valid until {when(old.expires)}")


async def retire(session: Session) -> None:
    key = await session.admin.retire_service_key(session.args.service, session.args.key_id)
    _print_keys(session, [key])


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("keys", help="service signing keys (HMAC secrets, Ed25519 public keys)")
    actions = subcommands(parser, "keys")

    def add_action(name: str, command: Command, help_text: str) -> argparse.ArgumentParser:
        sub = leaf(actions.add_parser(name, help=help_text, description=help_text))
        sub.set_defaults(func=bind(command))
        return sub

    def env_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--env-file", metavar="PATH", help="write SERVICE_ID / SERVICE_KEY_ID / SERVICE_KEY_FILE here (0600)"
        )
        sub.add_argument(
            "--key-file",
            metavar="PATH",
            help=f"where the secret goes (0600; default: <env dir>/{KEY_FILE_DIRECTORY}/<service>.key)",
        )

    def grants(sub: argparse.ArgumentParser, rotation: bool = False) -> None:
        default = " (default: the old key's)" if rotation else ""
        sub.add_argument("--tenant", help=f"tenant its signatures authenticate as{default}")
        sub.add_argument(
            "--scope", action="append", default=[], metavar="SCOPE", help=f"granted scope, repeat{default}"
        )

    def material(sub: argparse.ArgumentParser, *, required: bool) -> None:
        group = sub.add_mutually_exclusive_group(required=required)
        group.add_argument("--secret-file", metavar="PATH", help="file holding an HMAC secret (64+ hex characters)")
        group.add_argument("--secret-stdin", action="store_true", help="read the HMAC secret from stdin")
        group.add_argument("--public-key-file", metavar="PATH", help="Ed25519 public key: PEM, base64 or hex")

    sub = add_action(
        "generate", generate, "print a new 256-bit secret (64 hex); optionally write env files and register it"
    )
    sub.add_argument("--service", required=True, help="service id")
    sub.add_argument("--key-id", help="default: generated, sortable by day")
    sub.add_argument("--lifetime", metavar="DURATION", help="default 90d")
    sub.add_argument("--register", action="store_true", help="also store it (encrypted under the KEK)")
    sub.add_argument("--force", action="store_true", help="overwrite an existing key file")
    grants(sub)
    env_options(sub)

    sub = add_action("add", add, "register an existing HMAC secret or Ed25519 public key")
    sub.add_argument("--service", required=True)
    sub.add_argument("--key-id")
    sub.add_argument("--lifetime", metavar="DURATION", help="default 90d")
    sub.add_argument("--not-before", metavar="TIME")
    grants(sub)
    material(sub, required=True)

    sub = add_action("list", list_, "list keys (never their secrets)")
    sub.add_argument("--service")

    sub = add_action("rotate", rotate, "add a new key; the old one stays valid for --grace")
    sub.add_argument("--service", required=True)
    sub.add_argument("--key-id", help="the key to rotate out (default: the newest usable one)")
    sub.add_argument("--grace", metavar="DURATION", help="default 24h")
    sub.add_argument("--lifetime", metavar="DURATION", help="new key's lifetime, default 90d")
    grants(sub, rotation=True)
    material(sub, required=False)
    env_options(sub)

    sub = add_action("retire", retire, "retire a key now: signatures made with it are refused")
    sub.add_argument("--service", required=True)
    sub.add_argument("--key-id", required=True)
