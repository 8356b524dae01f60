"""Declarations of the admin API's operations: what each one reads and answers.

One :class:`Operation` per method and path, with its request body (:class:`Body` of
:class:`Field`), query parameters (:class:`Param`) and response schema. The same
declarations validate requests (a wrong JSON type is a 400 naming the field) and
generate the OpenAPI document, so the document cannot drift from the handlers.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway.admin.inputs import parse_grace, parse_positive_duration, parse_since, parse_time

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.admin.actions import CredentialAdmin
    from gateway.runtime import Runtime

JSON = dict[str, Any]
MAX_BODY = 64 * 1024
DEFAULT_ERRORS = (400, 401, 403, 413, 415, 503)

_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class FieldError(ValueError):
    """Bad input, with the path of the field it concerns (``scopes[2]``, ``tokens[0].name``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")


class ItemError(ValueError):
    """Bad input in one item of an array."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


# -- value kinds: (JSON schema, converter) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """A value kind: its JSON Schema, and how a JSON value (or a query string) becomes a Python value."""

    name: str
    schema: JSON
    from_json: Callable[[object], object]
    from_text: Callable[[str], object] | None = None


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {json_type(value)}")
    if not value:
        raise ValueError("must not be empty")
    return value


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {json_type(value)}")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {json_type(value)}")
    return value


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array of strings, got {json_type(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ItemError(index, f"expected a string, got {json_type(item)}")
    return list(value)


def _time(value: object) -> datetime:
    _string(value)
    return parse_time(value)


def _duration(value: object) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(f"expected a duration string such as 24h or 90d, got {json_type(value)}")
    return parse_positive_duration(value)


def _grace(value: object) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(f"expected a duration string such as 24h or 0s, got {json_type(value)}")
    return parse_grace(value)


def _text_boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _text_integer(text: str) -> int:
    if not re.fullmatch(r"\d{1,9}", text):
        raise ValueError(f"expected an integer, got {text!r}")
    return int(text)


STRING = Kind("string", {"type": "string", "minLength": 1}, _string, _string)
INTEGER = Kind("integer", {"type": "integer"}, _integer, _text_integer)
BOOLEAN = Kind("boolean", {"type": "boolean"}, _boolean, _text_boolean)
STRINGS = Kind("strings", {"type": "array", "items": {"type": "string"}}, _strings)
TIME = Kind(
    "time",
    {"type": "string", "format": "date-time", "description": "RFC 3339; without an offset: UTC"},
    _time,
    parse_time,
)
DURATION = Kind(
    "duration",
    {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$", "examples": ["24h", "90d"]},
    _duration,
    parse_positive_duration,
)
GRACE = Kind(
    "grace",
    {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$", "examples": ["24h", "0s"]},
    _grace,
    parse_grace,
)


def choice(*values: str) -> Kind:
    def convert(value: object) -> str:
        if not isinstance(value, str) or value not in values:
            raise ValueError(f"expected one of {', '.join(values)}, got {value!r}")
        return value

    return Kind("choice", {"type": "string", "enum": list(values)}, convert, convert)


# -- fields and bodies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One member of a JSON request body."""

    name: str
    kind: Kind
    description: str
    required: bool = False
    check: Callable[[Any], object] | None = None  # domain validation after the type check
    items: Body | None = None  # for an array of objects

    def schema(self) -> JSON:
        if self.items is not None:
            return {"type": "array", "items": self.items.schema(), "description": self.description}
        return {**self.kind.schema, "description": self.description}

    def convert(self, value: object, where: str) -> object:
        try:
            if self.items is not None:
                if not isinstance(value, list):
                    raise ValueError(f"expected an array of objects, got {json_type(value)}")
                return [self.items.parse(item, f"{where}[{index}]") for index, item in enumerate(value)]
            converted = self.kind.from_json(value)
            return self.check(converted) if self.check is not None else converted
        except FieldError:
            raise
        except ItemError as exc:
            raise FieldError(f"{where}[{exc.index}]", exc.message) from None
        except ValueError as exc:
            raise FieldError(where, str(exc)) from None


@dataclass(frozen=True, slots=True)
class Body:
    """A JSON object with declared members; unknown members are refused (a typo never passes silently)."""

    fields: tuple[Field, ...]
    description: str = ""

    def schema(self) -> JSON:
        schema: JSON = {
            "type": "object",
            "properties": {f.name: f.schema() for f in self.fields},
            "additionalProperties": False,
        }
        required = [f.name for f in self.fields if f.required]
        if required:
            schema["required"] = required
        if self.description:
            schema["description"] = self.description
        return schema

    @property
    def required(self) -> bool:
        return any(f.required for f in self.fields)

    def parse(self, raw: object, where: str = "body") -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise FieldError(where, f"expected a JSON object, got {json_type(raw)}")
        known = {f.name: f for f in self.fields}
        for key in raw:
            if key not in known:
                raise FieldError(_join(where, str(key)), f"unknown field (expected one of: {', '.join(known)})")
        parsed: dict[str, Any] = {}
        for member in self.fields:
            value = raw.get(member.name)
            if value is None:
                if member.required:
                    raise FieldError(_join(where, member.name), "required")
                parsed[member.name] = None
                continue
            parsed[member.name] = member.convert(value, _join(where, member.name))
        return parsed


def _join(where: str, name: str) -> str:
    return name if where == "body" else f"{where}.{name}"


@dataclass(frozen=True, slots=True)
class Param:
    """One query parameter."""

    name: str
    kind: Kind
    description: str
    default: object = None

    def schema(self) -> JSON:
        schema = dict(self.kind.schema)
        if self.default is not None:
            schema["default"] = self.default
        return schema

    def parse(self, text: str | None, now: datetime) -> object:
        if text is None or text == "":
            text = None if self.default is None else str(self.default)
        if text is None:
            return None
        try:
            if self.kind.name == "since":
                return parse_since(text, now)
            if self.kind.from_text is None:
                raise ValueError("cannot be given in a query string")
            return self.kind.from_text(text)
        except ValueError as exc:
            raise FieldError(self.name, str(exc)) from None


SINCE = Kind(
    "since",
    {"type": "string", "description": "a duration ago (1h, 7d) or an RFC 3339 time", "examples": ["1h"]},
    _string,
)


# -- operations ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: JSON


@dataclass(slots=True)
class Call:
    """What a handler gets: the validated input and the operator's actions."""

    request: web.Request
    runtime: Runtime
    admin: CredentialAdmin
    body: dict[str, Any]
    query: dict[str, Any]
    path: Mapping[str, str]

    def now(self) -> datetime:
        return self.admin.now()


Handler = Callable[[Call], Awaitable[Reply]]


def ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True, slots=True)
class Operation:
    """One admin API endpoint: method, path under ``/admin/v1``, handler and its schemas."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    handler: Handler
    response: JSON
    status: int = 200
    body: Body | None = None
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()  # beyond DEFAULT_ERRORS: 404, 409 ...
    public: bool = False
    max_body: int = MAX_BODY
    description: str = ""
    path_params: dict[str, str] = field(default_factory=dict)

    @property
    def mutating(self) -> bool:
        return self.method not in ("GET", "HEAD")

    @property
    def path_names(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)
