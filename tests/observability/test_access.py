"""The access-log writer: valid JSON whatever the client sent, one write per loop iteration."""

from __future__ import annotations

import asyncio
import io
import json

from gateway.observability.access import AccessLog


def write(log: AccessLog, path: str, principal: str | None = None, auth_method: str | None = None) -> None:
    log.write(
        request_id="abc",
        client_ip="2001:db8::1",
        route="client-api",
        method="GET",
        path=path,
        status=200,
        duration_ms=1.23456,
        upstream_ms=None,
        bytes_in=0,
        bytes_out=10,
        principal=principal,
        auth_method=auth_method,
    )


class CountingStream(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_json_lines_escape_client_bytes_and_batch_writes() -> None:
    stream = CountingStream()
    log = AccessLog(stream, "json")
    write(log, '/a"b\\c\x01\u00e9')
    write(log, "/second", principal="service:billing", auth_method="hmac_legacy")
    assert stream.getvalue() == ""  # queued until the loop turns
    await asyncio.sleep(0)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["path"] == '/a"b\\c\x01\u00e9'
    assert first["upstream_ms"] is None
    assert first["duration_ms"] == 1.235
    assert first["logger"] == "gateway.access"
    assert "principal" not in first
    assert second["principal"] == "service:billing"
    assert stream.writes == 1


def test_text_lines_and_writes_without_a_loop() -> None:
    stream = io.StringIO()
    write(AccessLog(stream, "text"), "/x y")
    line = stream.getvalue()
    assert line.endswith("\n")
    assert "gateway.access [abc] request client_ip=2001:db8::1 route=client-api method=GET path=/x y status=200" in line
