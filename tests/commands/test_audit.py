"""``gateway audit``: filters, JSON lines, and --follow in a real process."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from gateway.credentials.audit import AuditEvent, AuditResult
from gateway.store import Store
from tests.commands.conftest import Gateway, one_line


def append(gateway: Gateway, *events: AuditEvent) -> None:
    async def write(store: Store) -> None:
        await store.append_audit(events)

    gateway.inspect(write)


def test_filters_and_json_lines(gateway: Gateway) -> None:
    now = datetime.now(UTC)
    append(
        gateway,
        AuditEvent(time=now - timedelta(hours=5), result=AuditResult.DENY, reason="token.revoked",
                   principal="service:a"),
        AuditEvent(time=now - timedelta(minutes=30), result=AuditResult.ALLOW, reason="ok", principal="service:a"),
        AuditEvent(time=now - timedelta(minutes=20), result=AuditResult.DENY, reason="hmac.skew", principal="service:b",
                   route="orders", method="POST", client_ip="192.0.2.9"),
    )  # fmt: skip
    result = gateway("audit", "--since", "1h", "--result", "deny", "--json")
    assert result.code == 0, result.err
    [line] = result.out.splitlines()
    event = json.loads(line)
    assert (event["principal"], event["reason"], event["client_ip"]) == ("service:b", "hmac.skew", "192.0.2.9")
    text = gateway("audit", "--principal", "service:a").out.splitlines()
    assert text[0].split()[:3] == ["TIME", "RESULT", "REASON"]
    assert [row.split()[1] for row in text[1:]] == ["deny", "allow"]  # oldest first, like tail
    assert len(gateway("audit", "--limit", "1", "--json").out.splitlines()) == 1


def test_bad_filters(gateway: Gateway) -> None:
    for args, message in (
        (["--since", "last week"], "--since: not a duration (1h, 30m, 7d) or a time"),
        (["--result", "nope"], "--result: expected one of allow, deny, would_deny, admin"),
        (["--limit", "0"], "--limit: must be at least 1"),
        (["--until", "later"], "--until: not a time"),
    ):
        result = gateway("audit", *args)
        assert result.code == 2, args
        assert message in one_line(result)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_follow_prints_new_events_until_stopped(gateway: Gateway, stop: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "audit", "--follow", "--json", "--config", str(gateway.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        time.sleep(1.0)  # let it start and print the (empty) backlog
        append(
            gateway, AuditEvent(time=datetime.now(UTC), result=AuditResult.DENY, reason="token.expired", principal="x")
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 10)
        assert ready, "no event printed within 10 s"
        assert json.loads(process.stdout.readline())["reason"] == "token.expired"
        process.send_signal(stop)
        assert process.wait(10) == 0
        assert "Traceback" not in (process.stderr.read() if process.stderr else "")
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_follow_prints_late_writes_once_and_nothing_that_was_there_before(gateway: Gateway) -> None:
    now = datetime.now(UTC)
    append(
        gateway,
        *(
            AuditEvent(
                time=now - timedelta(seconds=3 - i), result=AuditResult.DENY, reason=f"before.{i}", principal="x"
            )
            for i in range(3)
        ),
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "audit",
            "--follow",
            "--json",
            "--limit",
            "1",
            "--config",
            str(gateway.config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "no backlog printed within 30 s"
        assert json.loads(process.stdout.readline())["reason"] == "before.2"  # the backlog: the newest one
        marked = datetime.now(UTC)
        append(gateway, AuditEvent(time=marked, result=AuditResult.DENY, reason="first", principal="x"))
        ready, _, _ = select.select([process.stdout], [], [], 10)
        assert ready, "the first event was not printed within 10 s"
        assert json.loads(process.stdout.readline())["reason"] == "first"
        # Then one timed before it, as another replica's batch (or a later flush) arrives.
        late = AuditEvent(time=marked - timedelta(seconds=1), result=AuditResult.DENY, reason="late", principal="x")
        append(gateway, late)
        ready, _, _ = select.select([process.stdout], [], [], 10)
        assert ready, "the late event was not printed within 10 s"
        assert json.loads(process.stdout.readline())["reason"] == "late"
        time.sleep(2.5)  # two more polls: nothing else (neither the late event again nor before.0 / before.1)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0 and out == "", (out, err)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
