"""How ontology-typed values are stored as graph properties and read back (same on every backend)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from ontology.errors import quoted
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
        return _iso_duration(value)
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


def _iso_duration(delta: dt.timedelta) -> str:
    """ISO 8601 text for `delta`, exact to the microsecond (integer arithmetic: no rounding, no exponent)."""
    sign = "-" if delta < dt.timedelta(0) else ""
    delta = abs(delta)
    hours, rest = divmod(delta.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    fraction = f".{delta.microseconds:06d}".rstrip("0") if delta.microseconds else ""
    return f"{sign}P{delta.days}DT{hours}H{minutes}M{seconds}{fraction}S"


_DURATION_PARTS = re.compile(
    r"(?P<sign>-)?P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)(?:\.(?P<fraction>\d{1,6}))?S)?)?"
)


def parse_duration(text: str) -> dt.timedelta:
    """The timedelta of ISO 8601 duration text as `encode` writes it (inverse of the stored form).

    Years and months have no fixed length and fractions beyond the microsecond cannot be held, so such text is
    refused rather than approximated.
    """
    match = _DURATION_PARTS.fullmatch(text) if isinstance(text, str) else None
    if match is None or text.rstrip("T").endswith("P"):
        raise ValueError(
            f"{quoted(text)} is not an ISO 8601 duration in weeks, days, hours, minutes and seconds "
            "(at most 6 decimals)"
        )
    parts = match.groupdict()
    delta = dt.timedelta(
        weeks=int(parts["weeks"] or 0),
        days=int(parts["days"] or 0),
        hours=int(parts["hours"] or 0),
        minutes=int(parts["minutes"] or 0),
        seconds=int(parts["seconds"] or 0),
        microseconds=int((parts["fraction"] or "").ljust(6, "0") or 0),
    )
    return -delta if parts["sign"] else delta
