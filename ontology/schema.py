"""Value schemas (DTDL's schema system, which also covers OWL's XSD datatypes) and value checking."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from ontology.durations import is_duration

# Primitive schema names as DTDL spells them; OWL/XSD datatypes map onto these.
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "byte": (-(2**7), 2**7 - 1),
    "short": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
    "unsignedByte": (0, 2**8 - 1),
    "unsignedShort": (0, 2**16 - 1),
    "unsignedInteger": (0, 2**32 - 1),
    "unsignedLong": (0, 2**64 - 1),
}
FLOAT_KINDS = frozenset({"double", "float", "decimal"})
TEMPORAL_KINDS = frozenset({"date", "dateTime", "time", "duration"})
GEOSPATIAL_KINDS = frozenset({"point", "lineString", "polygon", "multiPoint", "multiLineString", "multiPolygon"})
PRIMITIVES = frozenset(
    {"boolean", "string", "uuid", "bytes", "scaledDecimal"}
    | set(INTEGER_RANGES)
    | FLOAT_KINDS
    | TEMPORAL_KINDS
    | GEOSPATIAL_KINDS
)
COMPLEX_KINDS = frozenset({"enum", "object", "map", "array"})

_GEO_TYPES = {
    "point": "Point",
    "lineString": "LineString",
    "polygon": "Polygon",
    "multiPoint": "MultiPoint",
    "multiLineString": "MultiLineString",
    "multiPolygon": "MultiPolygon",
}


@dataclass(frozen=True)
class EnumValue:
    """One member of an enum: its name and the value stored in instance data."""

    name: str
    value: str | int
    display_name: tuple[tuple[str, str], ...] = ()
    description: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Field:
    """A named field of an Object schema (also used for command payloads)."""

    name: str
    schema: Schema
    display_name: tuple[tuple[str, str], ...] = ()
    description: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Schema:
    """A value type: a primitive name, or enum/object/map/array with their parts."""

    kind: str
    id: str | None = None
    enum_value_kind: str | None = None  # "integer" or "string" for enums
    enum_values: tuple[EnumValue, ...] = ()
    fields: tuple[Field, ...] = ()
    element: Schema | None = None  # array element or map value
    map_key: str | None = None  # name of a map's key
    map_value: str | None = None  # name of a map's value
    display_name: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    description: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def is_primitive(self) -> bool:
        """True for a primitive schema (not enum, object, map or array)."""
        return self.kind in PRIMITIVES

    def describe(self) -> str:
        """A short human-readable name of this schema, for messages and listings."""
        if self.kind == "array" and self.element is not None:
            return f"array<{self.element.describe()}>"
        if self.kind == "map" and self.element is not None:
            return f"map<string,{self.element.describe()}>"
        if self.kind == "enum":
            return f"enum({', '.join(str(v.value) for v in self.enum_values)})"
        if self.kind == "object":
            return f"object{{{', '.join(f.name for f in self.fields)}}}"
        return self.kind


def primitive(kind: str) -> Schema:
    """The schema for a primitive type name; raises ValueError for an unknown name."""
    if kind not in PRIMITIVES:
        raise ValueError(f"unknown primitive schema {kind!r}")
    return Schema(kind=kind)


def check_value(value: Any, schema: Schema, path: str = "") -> list[tuple[str, str]]:
    """Every (path, problem) where `value` does not fit `schema`; empty when it fits."""
    kind = schema.kind
    if kind == "boolean":
        return [] if isinstance(value, bool) else [(path, f"expected boolean, got {_kind_of(value)}")]
    if kind in INTEGER_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            return [(path, f"expected {kind}, got {_kind_of(value)}")]
        lo, hi = INTEGER_RANGES[kind]
        return [] if lo <= value <= hi else [(path, f"{value} is outside the range of {kind}")]
    if kind in FLOAT_KINDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [(path, f"expected {kind}, got {_kind_of(value)}")]
        return [] if math.isfinite(value) else [(path, f"{value} is not a finite number")]
    if kind == "string":
        if not isinstance(value, str):
            return [(path, f"expected string, got {_kind_of(value)}")]
        return [(path, "text may not contain the NUL character (\\x00)")] if "\x00" in value else []
    if kind == "uuid":
        return _check_parse(value, path, kind, lambda s: uuid.UUID(s))
    if kind == "bytes":
        return [] if isinstance(value, (bytes, str)) else [(path, f"expected bytes, got {_kind_of(value)}")]
    if kind == "date":
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return []
        return _check_parse(value, path, kind, dt.date.fromisoformat)
    if kind == "dateTime":
        if isinstance(value, dt.datetime):
            return []
        return _check_parse(value, path, kind, dt.datetime.fromisoformat)
    if kind == "time":
        if isinstance(value, dt.time):
            return []
        return _check_parse(value, path, kind, dt.time.fromisoformat)
    if kind == "duration":
        if isinstance(value, dt.timedelta):
            return []
        if is_duration(value):
            return []
        return [(path, f"expected an ISO 8601 duration such as 'P1DT2H', got {value!r}")]
    if kind == "scaledDecimal":
        if isinstance(value, dict) and isinstance(value.get("scale"), int) and isinstance(value.get("value"), str):
            return []
        return [(path, "expected scaledDecimal {scale: integer, value: string}")]
    if kind in GEOSPATIAL_KINDS:
        if isinstance(value, dict) and value.get("type") == _GEO_TYPES[kind] and "coordinates" in value:
            return []
        return [(path, f"expected a GeoJSON {_GEO_TYPES[kind]}")]
    if kind == "enum":
        allowed = [v.value for v in schema.enum_values]
        if isinstance(value, bool) or value not in allowed:
            return [(path, f"{value!r} is not one of {allowed}")]
        return []
    if kind == "array":
        if not isinstance(value, (list, tuple)):
            return [(path, f"expected array, got {_kind_of(value)}")]
        assert schema.element is not None
        problems: list[tuple[str, str]] = []
        for i, item in enumerate(value):
            problems += check_value(item, schema.element, f"{path}[{i}]")
        return problems
    if kind == "map":
        if not isinstance(value, dict):
            return [(path, f"expected map, got {_kind_of(value)}")]
        assert schema.element is not None
        problems = []
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append((path, f"map key {key!r} is not a string"))
            problems += check_value(item, schema.element, f"{path}.{key}")
        return problems
    if kind == "object":
        if not isinstance(value, dict):
            return [(path, f"expected object, got {_kind_of(value)}")]
        known = {f.name: f for f in schema.fields}
        problems = [(f"{path}.{k}", "unknown field") for k in value if k not in known]
        for name, item in value.items():
            if name in known and item is not None:
                problems += check_value(item, known[name].schema, f"{path}.{name}")
        return problems
    return [(path, f"unknown schema kind {kind!r}")]


def _check_parse(value: Any, path: str, kind: str, parse: Any) -> list[tuple[str, str]]:
    if not isinstance(value, str):
        return [(path, f"expected {kind}, got {_kind_of(value)}")]
    try:
        parse(value)
    except ValueError:
        return [(path, f"{value!r} is not a valid {kind}")]
    return []


def _kind_of(value: Any) -> str:
    return type(value).__name__
