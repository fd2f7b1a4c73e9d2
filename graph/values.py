"""How ontology-typed values are stored as graph properties and read back (same on every backend)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ontology.durations import format_duration
from ontology.schema import Schema

# Stored as JSON text: the graph backends hold only primitives and flat arrays as property values.
_JSON_KINDS = frozenset(
    {
        "object",
        "map",
        "scaledDecimal",
        "point",
        "lineString",
        "polygon",
        "multiPoint",
        "multiLineString",
        "multiPolygon",
        "bytes",
    }
)


def stored_as_json(schema: Schema) -> bool:
    """Whether values of `schema` are stored as JSON text (objects, maps, nested or untyped arrays)."""
    return _stored_as_json(schema)


def _stored_as_json(schema: Schema) -> bool:
    if schema.kind in _JSON_KINDS:
        return True
    if schema.kind == "array":
        return schema.element is None or _stored_as_json(schema.element) or schema.element.kind == "array"
    return False


_AS_IS = frozenset({"boolean", "integer", "long", "double", "float", "string", "enum", "uuid"})


def stored_as_is(schema: Schema | None) -> bool:
    """Whether values of `schema` are stored unchanged (text, numbers, booleans): `encode` would return them."""
    return schema is not None and schema.kind in _AS_IS


def encode(value: Any, schema: Schema | None) -> Any:
    """The graph property value for `value`: temporal values as ISO 8601 text, nested values as JSON text."""
    if value is None:
        return None
    if schema is not None and _stored_as_json(schema):
        return json.dumps(value, sort_keys=True, default=_json_default)
    return _scalar(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        return format_duration(value)  # canonical ISO 8601, exact to the microsecond
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_scalar(v) for v in value]
    return value


def decode(value: Any, schema: Schema | None) -> Any:
    """The Python value for a stored graph property (inverse of `encode`, temporal values stay ISO text)."""
    if value is None or schema is None:
        return value
    if _stored_as_json(schema) and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        return _scalar(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
