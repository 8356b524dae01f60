"""``gateway audit [--since 1h|TIME] [--principal P] [--result deny] [--limit N] [--follow]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Sequence
from datetime import datetime, timedelta

from gateway.admin.inputs import parse_since, parse_time
from gateway.admin.views import audit_view, when
from gateway.commands.flags import flag, leaf
from gateway.commands.session import Session, bind, table
from gateway.credentials.audit import AuditEvent, AuditResult

FOLLOW_INTERVAL = 1.0
# Decisions reach the store in batches, up to the writer's flush interval (1 s by default) after their time, and
# each replica flushes on its own: --follow looks this far back for events written late. One written later still
# (after a store outage) is in `gateway audit`, not in the follow.
FOLLOW_LOOKBACK = timedelta(seconds=5)
FOLLOW_PAGE = 1000
FOLLOW_MAX_PAGES = 20  # per poll: past that the terminal cannot keep up anyway; the rest waits for the next poll
HEADERS = ["time", "result", "reason", "principal", "credential", "request", "client ip", "admin action"]


def _row(event: AuditEvent) -> list[object]:
    credential = f"{event.credential_kind}:{event.credential_id}" if event.credential_kind else event.credential_id
    request = f"{event.method} {event.route}".strip()
    action = f"{event.action} {event.target}".strip()
    return [
        when(event.time),
        event.result.value,
        event.reason,
        event.principal,
        credential,
        request,
        event.client_ip,
        action,
    ]


def _emit(session: Session, events: Sequence[AuditEvent], *, header: bool) -> None:
    if session.json:
        for event in events:  # one JSON object per line: easy to pipe into jq, also while following
            print(json.dumps(audit_view(event)), file=session.out, flush=True)
    elif header:
        table([_row(event) for event in events], HEADERS, session.out)
    else:
        for event in events:
            print("  ".join(str(cell or "-") for cell in _row(event)), file=session.out, flush=True)


def _result(text: str) -> AuditResult:
    try:
        return AuditResult(text)
    except ValueError:
        raise ValueError(f"expected one of {', '.join(r.value for r in AuditResult)}, got {text!r}") from None


async def audit(session: Session) -> None:
    args = session.args
    now = session.admin.now()
    since = flag("--since", args.since, lambda text: parse_since(text, now))
    until = flag("--until", args.until, parse_time)
    result = flag("--result", args.result, _result)
    if args.limit < 1:
        raise ValueError(f"--limit: must be at least 1, got {args.limit}")
    stop = asyncio.Event()
    seen: dict[str, datetime] = {}
    if args.follow:
        # Before the backlog is printed: a SIGTERM right after the first lines must end the command cleanly.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        # What the store holds before the backlog is read is the backlog's business (shown or left out by the
        # filters): only what is written from now on is followed.
        seen = {event.event_id: event.time for event in await _recent(session, now - FOLLOW_LOOKBACK, result)}
    events = await session.admin.query_audit(
        since=since, until=until, principal=args.principal, result=result, limit=args.limit, newest_first=True
    )
    events.reverse()  # the newest N, printed oldest first: like tail
    _emit(session, events, header=True)
    if args.follow:
        seen.update((event.event_id, event.time) for event in events)
        await _follow(session, seen, result, stop)


async def _recent(session: Session, since: datetime, result: AuditResult | None) -> list[AuditEvent]:
    """The events from ``since`` on, oldest first, page by page (bounded by FOLLOW_MAX_PAGES)."""
    found: list[AuditEvent] = []
    cursor = since
    for _ in range(FOLLOW_MAX_PAGES):
        page = await session.admin.query_audit(
            since=cursor, principal=session.args.principal, result=result, limit=FOLLOW_PAGE, newest_first=False
        )
        found += page
        if len(page) < FOLLOW_PAGE or page[-1].time == cursor:
            break
        cursor = page[-1].time  # the next page starts at the last time: its repeats are told apart by id
    return found


async def _follow(session: Session, seen: dict[str, datetime], result: AuditResult | None, stop: asyncio.Event) -> None:
    """Poll for new events until Ctrl-C or SIGTERM (both end the command normally, exit 0).

    Events are not written in the order of their times (batches, replicas), so each poll reads the last
    FOLLOW_LOOKBACK and prints what it has not seen, by event id: ``seen`` holds the ids (with their times)
    already shown or present before the command started.
    """
    loop = asyncio.get_running_loop()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FOLLOW_INTERVAL)
            if stop.is_set():
                break
            horizon = session.admin.now() - FOLLOW_LOOKBACK
            fresh = [event for event in await _recent(session, horizon, result) if event.event_id not in seen]
            if fresh:
                _emit(session, fresh, header=False)
                seen.update((event.event_id, event.time) for event in fresh)
            for event_id in [event_id for event_id, time in seen.items() if time < horizon]:
                del seen[event_id]  # out of the window: never read again
    except asyncio.CancelledError:
        # Ctrl-C: asyncio.Runner cancels the main task. For --follow that is how one stops: not an error.
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = leaf(commands.add_parser("audit", help="read the audit trail (authentication decisions, admin actions)"))
    parser.add_argument("--since", metavar="DURATION|TIME", help="e.g. 1h, 7d or 2030-01-01T00:00:00Z")
    parser.add_argument("--until", metavar="TIME")
    parser.add_argument("--principal", help="service:<id>, client:<id>, admin:<name>, cli:<login>...")
    parser.add_argument("--result", metavar="RESULT", help="allow, deny, would_deny or admin")
    parser.add_argument("--limit", type=int, default=50, help="the newest N events (default 50)")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new events (Ctrl-C to stop)")
    parser.set_defaults(func=bind(audit))
