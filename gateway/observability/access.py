"""The access log: one line per request, written without the logging machinery.

Like nginx's and Envoy's, the access log is its own stream rather than a logger:
it runs on every request, and a ``logging`` record (stack walk, record object,
handler lock, generic formatter, a flush per line) costs more than the rest of the
gateway's own work on a request. Lines are built directly in the same shape as the
JSON (or text) application logs, queued, and written in one ``write`` + ``flush``
per event-loop iteration, so a busy loop pays one system call for many lines.
"""

from __future__ import annotations

import asyncio
import time
from json.encoder import encode_basestring_ascii as _json_string
from typing import TextIO


class _Clock:
    """``2026-11-23T16:32:44.759Z`` timestamps, formatting the seconds part once per second."""

    __slots__ = ("_second", "_prefix")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def stamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"


class AccessLog:
    """Writes access-log lines to ``stream`` in ``json`` or ``text`` format."""

    def __init__(self, stream: TextIO, fmt: str = "json") -> None:
        self.stream = stream
        self.format = fmt
        self._clock = _Clock()
        self._pending: list[str] = []

    def write(
        self,
        *,
        request_id: str,
        client_ip: str,
        route: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        upstream_ms: float | None,
        bytes_in: int,
        bytes_out: int,
        principal: str | None = None,
        auth_method: str | None = None,
    ) -> None:
        ts = self._clock.stamp(time.time())
        upstream = "null" if upstream_ms is None else f"{upstream_ms:.3f}"
        if self.format == "json":
            # Every string that can carry client bytes is JSON-escaped; the rest are validated tokens.
            line = (
                f'{{"ts":"{ts}","level":"info","logger":"gateway.access","msg":"request",'
                f'"request_id":{_json_string(request_id)},"client_ip":{_json_string(client_ip)},'
                f'"route":{_json_string(route)},"method":{_json_string(method)},"path":{_json_string(path)},'
                f'"status":{status},"duration_ms":{duration_ms:.3f},"upstream_ms":{upstream},'
                f'"bytes_in":{bytes_in},"bytes_out":{bytes_out}'
            )
            if principal is not None:
                line += f',"principal":{_json_string(principal)},"auth_method":{_json_string(auth_method or "")}'
            line += "}\n"
        else:
            line = (
                f"{ts} INFO    gateway.access [{request_id}] request client_ip={client_ip} route={route} "
                f"method={method} path={_json_string(path)[1:-1]} status={status} duration_ms={duration_ms:.3f} "
                f"upstream_ms={upstream} bytes_in={bytes_in} bytes_out={bytes_out}"
            )
            if principal is not None:
                line += f" principal={_json_string(principal)[1:-1]} auth_method={auth_method}"
            line += "\n"
        if not self._pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a synchronous caller): write at once
                self._pending.append(line)
                self.flush()
                return
        self._pending.append(line)

    def flush(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken log stream must not fail requests
            pass
