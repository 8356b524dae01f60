"""A batch of decisions as one text, the form both persistent stores keep them in.

The audit trail writes the pipeline's decisions in batches (rows of
:data:`~gateway.store.codec.DECISION_COLUMNS`). Storing each decision as a row, or as a
stream entry, costs the store a record per decision and the gateway a bound parameter
or a command argument per field; a batch as one text costs one ``%`` format per row:

- fields joined by ``US`` (``\\x1f``) and rows by ``RS`` (``\\x1e``). A batch in which
  some value holds one of those two characters is written as JSON instead (its text
  starts with ``[``): nothing is escaped on the common path, and nothing is lost on
  the rare one.

SQLite keeps a batch as a row of ``audit_batches`` (:mod:`gateway.store.sqlite_audit`),
Redis as an entry of the audit stream (:mod:`gateway.store.redis`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Final

from gateway.store.codec import DECISION_COLUMNS, AuditRow

FIELD_SEPARATOR: Final = "\x1f"  # ASCII unit separator
ROW_SEPARATOR: Final = "\x1e"  # ASCII record separator

WIDTH: Final = len(DECISION_COLUMNS)
TIME: Final = DECISION_COLUMNS.index("time")
RESULT: Final = DECISION_COLUMNS.index("result")
PRINCIPAL: Final = DECISION_COLUMNS.index("principal")
EVENT_ID: Final = DECISION_COLUMNS.index("event_id")
_ROW_FORMAT: Final = FIELD_SEPARATOR.join(["%s"] * WIDTH)
# Per-row steps as C calls through map(): a batch holds hundreds of rows.
_format_row = _ROW_FORMAT.__mod__
time_of = itemgetter(TIME)
principal_of = itemgetter(PRINCIPAL)
result_of = itemgetter(RESULT)


def encode(rows: Sequence[AuditRow]) -> str:
    """``rows`` as one text (see the module docstring); :func:`decode` reads it back."""
    text = ROW_SEPARATOR.join(map(_format_row, rows))
    # A separator inside a value would add one: count them all (two C-level scans, no per-value check).
    if text.count(FIELD_SEPARATOR) != len(rows) * (WIDTH - 1) or text.count(ROW_SEPARATOR) != len(rows) - 1:
        return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return text


def decode(text: str) -> list[AuditRow]:
    """The rows of a batch's text, with their times as integers again."""
    if text.startswith("["):
        return [tuple(row) for row in json.loads(text)]
    rows: list[AuditRow] = []
    for record in text.split(ROW_SEPARATOR):
        fields: list[int | str] = list(record.split(FIELD_SEPARATOR))
        fields[TIME] = int(fields[TIME])
        rows.append(tuple(fields))
    return rows


def matching(
    rows: Iterable[AuditRow], since: int | None, until: int | None, principal: str | None, result: str | None
) -> Iterator[AuditRow]:
    """The rows whose time (microseconds) is in ``[since, until)`` and whose principal and result (its text)
    are those given (``None``: any)."""
    for row in rows:
        time = row[TIME]
        assert isinstance(time, int)  # noqa: S101 - decode makes it one
        if (
            (since is None or time >= since)
            and (until is None or time < until)
            and (principal is None or row[PRINCIPAL] == principal)
            and (result is None or row[RESULT] == result)
        ):
            yield row
