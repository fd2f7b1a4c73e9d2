"""The GraphQL scalars of the twin schema (ISO 8601 dates, times and durations, JSON) and how ontology value schemas
map onto them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from ontology.durations import read_duration
from ontology.errors import quoted
from ontology.schema import INTEGER_RANGES, Schema


def _iso_parser(kind: str, parse: Callable[[str], object]) -> Callable[[object], str]:
    def parse_value(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{kind} must be an ISO 8601 string, got {type(value).__name__}")
        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{quoted(value)} is not an ISO 8601 {kind}") from None
        return value

    return parse_value


def _parse_duration(value: str) -> None:
    read_duration(value)  # DurationError (a ValueError) when it is not ISO 8601 duration text


Date = NewType("Date", str)
DateTime = NewType("DateTime", str)
Time = NewType("Time", str)
Duration = NewType("Duration", str)
SCALAR_MAP: dict[object, ScalarDefinition] = {
    Date: strawberry.scalar(
        name="Date",
        description="A calendar date, ISO 8601 (2025-06-30).",
        serialize=str,
        parse_value=_iso_parser("date", dt.date.fromisoformat),
    ),
    DateTime: strawberry.scalar(
        name="DateTime",
        description="A date and time, ISO 8601 (2025-06-30T08:00:00).",
        serialize=str,
        parse_value=_iso_parser("date-time", dt.datetime.fromisoformat),
    ),
    Time: strawberry.scalar(
        name="Time",
        description="A time of day, ISO 8601 (08:30:00).",
        serialize=str,
        parse_value=_iso_parser("time", dt.time.fromisoformat),
    ),
    Duration: strawberry.scalar(
        name="Duration",
        description="A duration, ISO 8601 (P1DT2H).",
        serialize=str,
        parse_value=_iso_parser("duration", _parse_duration),
    ),
}

SCALAR_ANNOTATIONS = {
    "String": "str",
    "Int": "int",
    "Float": "float",
    "Boolean": "bool",
    "ID": "strawberry.ID",
    "Date": "Date",
    "DateTime": "DateTime",
    "Time": "Time",
    "Duration": "Duration",
    "JSON": "JSON",
}
_FLOATS = frozenset({"double", "float", "decimal", "long", "unsignedInteger", "unsignedLong"})
_TEMPORAL = {"date": "Date", "dateTime": "DateTime", "time": "Time", "duration": "Duration"}
FILTERABLE = frozenset({"String", "Int", "Float", "Boolean", "Date", "DateTime", "Time", "Duration"})
STRING_LIKE = frozenset({"String", "ID"})


def scalar_of(schema: Schema) -> tuple[str, bool]:
    """The GraphQL scalar for an ontology value schema, and whether the field is a list of it."""
    kind = schema.kind
    if kind == "boolean":
        return "Boolean", False
    if kind in INTEGER_RANGES and kind not in _FLOATS:
        return "Int", False
    if kind in _FLOATS:
        return "Float", False
    if kind in ("string", "uuid"):
        return "String", False
    if kind in _TEMPORAL:
        return _TEMPORAL[kind], False
    if kind == "enum":
        return ("Int" if schema.enum_value_kind == "integer" else "String"), False
    if kind == "array" and schema.element is not None:
        element, nested = scalar_of(schema.element)
        if not nested and element != "JSON":
            return element, True
    return "JSON", False
