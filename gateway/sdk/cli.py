"""``gateway sign [--scheme legacy|rfc9421] METHOD URL``: send one signed request and print the answer.

For operators checking a service key end to end. The identity comes from the flags
or, as a service would have it, from ``SERVICE_ID``, ``SERVICE_KEY_FILE`` and
``SERVICE_KEY_ID`` (what ``gateway keys generate --env-file`` writes). Prints the
status line, the response headers and the body; exits 0 for a 2xx/3xx answer, 1
for any other answer or a connection failure, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from pathlib import Path
from typing import TextIO

import aiohttp

from gateway.sdk.client import SCHEMES, ServiceIdentity, SignedClient, SigningConfigError, read_key_file

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser(
        "sign",
        help="send a request signed with a service key and print the response",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    sub.add_argument("method", metavar="METHOD")
    sub.add_argument("url", metavar="URL")
    sub.add_argument("--scheme", choices=SCHEMES, help="default: rfc9421 with a key id, else legacy")
    sub.add_argument("--service-id", metavar="ID", help="default: $SERVICE_ID")
    sub.add_argument("--key-id", metavar="ID", help="RFC 9421 keyid; default: $SERVICE_KEY_ID")
    sub.add_argument(
        "--key-file", metavar="PATH", help="HMAC secret or Ed25519 private key; default: $SERVICE_KEY_FILE"
    )
    sub.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'", help="repeatable")
    body = sub.add_mutually_exclusive_group()
    body.add_argument("-d", "--data", metavar="TEXT", help="request body")
    body.add_argument("--data-file", metavar="PATH", help="request body from a file ('-': stdin)")
    sub.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    sub.set_defaults(func=cmd_sign)


def _identity(args: argparse.Namespace) -> ServiceIdentity:
    service_id = args.service_id or os.environ.get("SERVICE_ID", "").strip()
    key_file = args.key_file or os.environ.get("SERVICE_KEY_FILE", "").strip()
    key_id = args.key_id or os.environ.get("SERVICE_KEY_ID", "").strip() or None
    if not service_id:
        raise SigningConfigError("no service id: pass --service-id or set SERVICE_ID")
    if not key_file:
        raise SigningConfigError("no key: pass --key-file or set SERVICE_KEY_FILE")
    scheme = args.scheme or ("rfc9421" if key_id else "legacy")
    return ServiceIdentity(service_id, read_key_file(key_file), key_id, scheme)


def _headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise SigningConfigError(f"not a header ('Name: value'): {value!r}")
        headers[name.strip()] = rest.strip()
    return headers


def _body(args: argparse.Namespace) -> bytes | None:
    if args.data is not None:
        return str(args.data).encode("utf-8")
    if args.data_file is not None:
        if args.data_file == "-":
            return sys.stdin.buffer.read()
        try:
            return Path(args.data_file).read_bytes()
        except OSError as exc:
            raise SigningConfigError(f"cannot read {args.data_file!r}: {exc.__class__.__name__}") from None
    return None


async def _send(
    identity: ServiceIdentity,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
    out: TextIO,
) -> int:
    async with SignedClient(identity) as client:
        async with client.request(
            method, url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            payload = await response.read()
            version = response.version
            line = f"HTTP/{version.major}.{version.minor}" if version is not None else "HTTP"
            out.write(f"{line} {response.status} {response.reason}\n")
            for name, value in response.headers.items():
                out.write(f"{name}: {value}\n")
            out.write("\n")
            out.write(payload.decode("utf-8", "replace"))
            if payload and not payload.endswith(b"\n"):
                out.write("\n")
            return EXIT_OK if response.status < 400 else EXIT_FAILED


def cmd_sign(args: argparse.Namespace) -> int:
    try:
        identity = _identity(args)
        headers = _headers(args.header)
        body = _body(args)
    except SigningConfigError as exc:
        print(f"gateway sign: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.url.startswith(("http://", "https://")):
        print(f"gateway sign: not an http(s) URL: {args.url!r}", file=sys.stderr)
        return EXIT_USAGE
    if not _METHOD.fullmatch(args.method):
        print(f"gateway sign: not an HTTP method: {args.method!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_send(identity, args.method.upper(), args.url, headers, body, args.timeout, sys.stdout))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        print(f"gateway sign: request failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:  # what aiohttp refuses to send: a URL, header name or value it cannot encode
        print(f"gateway sign: cannot send this request: {exc}", file=sys.stderr)
        return EXIT_USAGE
