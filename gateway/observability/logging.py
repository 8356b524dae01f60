"""Structured logging: JSON lines for machines, ``--log-format text`` for humans.

The request id lives in a context variable set by the request handler. A log
record factory copies it onto every record when the record is created, so every
line logged while handling a request carries it, whichever module logged it and
whenever the line is formatted.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp.http_exceptions import HttpProcessingError

if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:
    _LoggerAdapter = logging.LoggerAdapter

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "request_id"}


def _install_record_factory() -> None:
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_gateway_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    factory._gateway_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install_record_factory()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED}


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``ts level logger [request id] message key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        parts = [_timestamp(record.created), f"{record.levelname:<7}", record.name]
        if request_id is not None:
            parts.append(f"[{request_id}]")
        parts.append(record.getMessage())
        parts.extend(f"{k}={v}" for k, v in _fields(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "info", fmt: str = "json", stream: Any = None) -> None:
    """Install one handler on the root logger (idempotent: replaces a previous one)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Nothing formats thread or process names: skip gathering them for every record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # aiohttp's own access log would duplicate ours.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class ServerLog(_LoggerAdapter):
    """aiohttp's server logger (``aiohttp.server``) as the gateway's listeners use it.

    aiohttp answers a request it cannot parse (a malformed request line or header, a line
    longer than ``max_header_size``) with a 400 itself, and logs the parser's exception at
    ERROR with a traceback and a message quoting the offending bytes. A stream of garbage
    would fill the log with tracebacks, and the quoted header may be a credential. Such a
    refusal is logged here as one INFO line naming the client and the kind of error, never
    the bytes, and reported to ``on_malformed`` (a metric). Every other exception keeps
    aiohttp's logging.
    """

    def __init__(self, on_malformed: Callable[[], None] | None = None) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.on_malformed = on_malformed

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            if self.on_malformed is not None:
                self.on_malformed()
            self.logger.info(
                "malformed request refused",
                extra={
                    "client_ip": args[0] if args else None,  # aiohttp's message: "... from %s", request.remote
                    "error": type(exc_info).__name__,
                    "status": exc_info.code,
                },
            )
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)
