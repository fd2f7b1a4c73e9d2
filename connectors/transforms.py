"""Value transforms a mapping applies to source fields: rename, cast, unit, lookup, named functions, expressions.

Expressions are evaluated by `simpleeval` (an AST whitelist: arithmetic, comparisons, boolean logic, conditional
expressions, literals, the record's fields as names and the functions in `EXPRESSION_FUNCTIONS`); there is no
attribute access to dunder names, no imports and no calls outside that list, and Python's eval() is never used.
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import simpleeval

from connectors.errors import ConnectorError
from connectors.source import change_time
from ontology.durations import canonical_duration, format_duration

__all__ = [
    "CASTS",
    "EXPRESSION_FUNCTIONS",
    "NAMED_FUNCTIONS",
    "UNITS",
    "Cast",
    "Expression",
    "Lookup",
    "Named",
    "Template",
    "Transform",
    "TransformError",
    "UnitConversion",
    "cast_value",
    "convert_unit",
    "normalise_email",
]


class TransformError(ConnectorError, ValueError):
    """A value could not be transformed; `rule` names the transform, the message says what was wrong with what."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.message = message
        super().__init__(f"{rule}: {message}")


# ----------------------------------------------------------------------------------------------------- casts
_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


def _to_string(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def _to_integer(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} has a fractional part")
        return int(value)
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValueError(f"{value!r} has a fractional part")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            number = Decimal(text)  # "12.0" -> 12; "1e3" -> 1000
            if number != number.to_integral_value():
                raise ValueError(f"{value!r} has a fractional part") from None
            return int(number)
    raise ValueError(f"cannot read an integer from a {type(value).__name__}")


def _to_double(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, (int, float, Decimal)):
        result = float(value)
    elif isinstance(value, str):
        result = float(Decimal(value.strip()))
    else:
        raise ValueError(f"cannot read a number from a {type(value).__name__}")
    if math.isnan(result) or math.isinf(result):
        raise ValueError(f"{value!r} is not a finite number")
    return result


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"{value!r} is not a boolean (true/false, yes/no, 1/0)")


def _to_datetime(value: Any) -> str:
    moment = change_time(value)  # sources keep naive times in UTC (documented per source)
    if moment is None:
        raise ValueError(f"cannot read a date-time from {value!r}")
    return moment.isoformat()


def _to_date(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 10:  # a date-time: keep its calendar day
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
        return dt.date.fromisoformat(text).isoformat()
    raise ValueError(f"cannot read a date from a {type(value).__name__}")


def _to_duration(value: Any) -> str:
    """Canonical ISO 8601 duration text of a timedelta, a number of seconds or duration text."""
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a number of seconds")
        return format_duration(dt.timedelta(seconds=value))
    if isinstance(value, str):
        return canonical_duration(value.strip())
    raise ValueError(f"{value!r} is not a duration (ISO 8601 text or seconds)")


CASTS: dict[str, Callable[[Any], Any]] = {
    "string": _to_string,
    "integer": _to_integer,
    "long": _to_integer,
    "double": _to_double,
    "float": _to_double,
    "decimal": _to_double,
    "boolean": _to_boolean,
    "date": _to_date,
    "dateTime": _to_datetime,
    "duration": _to_duration,
}
"""Cast target -> converter; targets are ontology primitive names (dates and times become ISO 8601 text)."""


def cast_value(value: Any, target: str) -> Any:
    """`value` converted to the ontology primitive `target`; None stays None; TransformError when impossible."""
    if value is None:
        return None
    try:
        converter = CASTS[target]
    except KeyError:
        raise TransformError("cast", f"unknown cast target {target!r}; use one of {', '.join(CASTS)}") from None
    try:
        return converter(value)
    except (ValueError, InvalidOperation, OverflowError, OSError) as exc:
        raise TransformError(f"cast:{target}", f"{_preview(value)} cannot be cast to {target}: {exc}") from None


# ----------------------------------------------------------------------------------------------------- units
UNITS: dict[str, tuple[str, float, float]] = {
    # name: (dimension, factor to the dimension's base unit, offset added after scaling)
    "second": ("time", 1.0, 0.0),
    "s": ("time", 1.0, 0.0),
    "minute": ("time", 60.0, 0.0),
    "min": ("time", 60.0, 0.0),
    "hour": ("time", 3600.0, 0.0),
    "h": ("time", 3600.0, 0.0),
    "day": ("time", 86400.0, 0.0),
    "d": ("time", 86400.0, 0.0),
    "week": ("time", 604800.0, 0.0),
    "millimetre": ("length", 0.001, 0.0),
    "mm": ("length", 0.001, 0.0),
    "centimetre": ("length", 0.01, 0.0),
    "cm": ("length", 0.01, 0.0),
    "metre": ("length", 1.0, 0.0),
    "m": ("length", 1.0, 0.0),
    "kilometre": ("length", 1000.0, 0.0),
    "km": ("length", 1000.0, 0.0),
    "inch": ("length", 0.0254, 0.0),
    "foot": ("length", 0.3048, 0.0),
    "mile": ("length", 1609.344, 0.0),
    "square_metre": ("area", 1.0, 0.0),
    "m2": ("area", 1.0, 0.0),
    "square_foot": ("area", 0.09290304, 0.0),
    "gram": ("mass", 0.001, 0.0),
    "g": ("mass", 0.001, 0.0),
    "kilogram": ("mass", 1.0, 0.0),
    "kg": ("mass", 1.0, 0.0),
    "tonne": ("mass", 1000.0, 0.0),
    "t": ("mass", 1000.0, 0.0),
    "pound": ("mass", 0.45359237, 0.0),
    "watt": ("power", 1.0, 0.0),
    "W": ("power", 1.0, 0.0),
    "kilowatt": ("power", 1000.0, 0.0),
    "kW": ("power", 1000.0, 0.0),
    "megawatt": ("power", 1e6, 0.0),
    "MW": ("power", 1e6, 0.0),
    "horsepower": ("power", 745.69987158, 0.0),
    "kelvin": ("temperature", 1.0, 0.0),
    "K": ("temperature", 1.0, 0.0),
    "celsius": ("temperature", 1.0, 273.15),
    "degC": ("temperature", 1.0, 273.15),
    "fahrenheit": ("temperature", 5 / 9, 459.67 * 5 / 9),
    "degF": ("temperature", 5 / 9, 459.67 * 5 / 9),
    "percent": ("ratio", 0.01, 0.0),
    "%": ("ratio", 0.01, 0.0),
    "fraction": ("ratio", 1.0, 0.0),
    "cent": ("money", 0.01, 0.0),
    "unit": ("money", 1.0, 0.0),
    "thousand": ("money", 1000.0, 0.0),
}
"""Units the `unit` transform knows, by dimension; conversions only within one dimension."""


def convert_unit(value: Any, source: str, target: str) -> Any:
    """`value` (a number or numeric text) expressed in `source` units, converted to `target` units."""
    if value is None:
        return None
    for unit in (source, target):
        if unit not in UNITS:
            raise TransformError("unit", f"unknown unit {unit!r}")
    from_dim, from_factor, from_offset = UNITS[source]
    to_dim, to_factor, to_offset = UNITS[target]
    if from_dim != to_dim:
        raise TransformError("unit", f"cannot convert {from_dim} ({source}) into {to_dim} ({target})")
    try:
        number = _to_double(value)
    except (ValueError, InvalidOperation) as exc:
        raise TransformError(f"unit:{source}->{target}", f"{_preview(value)} is not a number: {exc}") from None
    base = number * from_factor + from_offset
    return (base - to_offset) / to_factor


# ----------------------------------------------------------------------------------------------------- email
def normalise_email(value: Any, plus_domains: frozenset[str] | None = None) -> str | None:
    """An e-mail address lower-cased and trimmed, without the local part's `+tag` for `plus_domains` (all if None)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if "@" not in text:
        return text or None
    local, _, domain = text.rpartition("@")
    if "+" in local and (plus_domains is None or domain in plus_domains):
        local = local.split("+", 1)[0]
    return f"{local}@{domain}"


# ----------------------------------------------------------------------------------------- named functions
def _text_function(name: str, function: Callable[[str], Any]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TransformError(name, f"expected text, got {type(value).__name__} {_preview(value)}")
        return function(value)

    return apply


def _empty_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


NAMED_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "trim": _text_function("trim", str.strip),
    "lower": _text_function("lower", str.lower),
    "upper": _text_function("upper", str.upper),
    "title": _text_function("title", str.title),
    "email": lambda value: normalise_email(value),
    "empty_to_none": _empty_to_none,
    "round2": lambda value: None if value is None else round(_to_double(value), 2),
    "negate": lambda value: None if value is None else -_to_double(value),
}
"""Argument-free transforms a mapping may list by name in `transform:`."""


# ----------------------------------------------------------------------------------------------------- steps
class Transform:
    """One step of a property's pipeline: takes the current value and the whole record, returns the new value."""

    name: str = "transform"

    def apply(self, value: Any, record: Mapping[str, Any]) -> Any:
        """The transformed value (TransformError when the value does not fit)."""
        raise TransformError(self.name, "abstract transform")  # every concrete step overrides this


@dataclass(frozen=True)
class Cast(Transform):
    """Convert to an ontology primitive type."""

    target: str

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"cast:{self.target}"

    def apply(self, value: Any, record: Mapping[str, Any]) -> Any:
        """The cast value."""
        return cast_value(value, self.target)


@dataclass(frozen=True)
class UnitConversion(Transform):
    """Convert a number between units of one dimension."""

    source: str
    target: str

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"unit:{self.source}->{self.target}"

    def apply(self, value: Any, record: Mapping[str, Any]) -> Any:
        """The converted number."""
        return convert_unit(value, self.source, self.target)


@dataclass(frozen=True)
class Lookup(Transform):
    """Replace a code by its value from a table; a code not in the table takes `default` or is an error."""

    table: Mapping[str, Any]
    default: Any = None
    has_default: bool = False

    @property
    def name(self) -> str:  # type: ignore[override]
        return "lookup"

    def apply(self, value: Any, record: Mapping[str, Any]) -> Any:
        """The looked-up value."""
        if value is None:
            return None
        key = value if isinstance(value, str) else _to_string(value)
        if key in self.table:
            return self.table[key]
        if self.has_default:
            return self.default
        known = ", ".join(sorted(map(str, self.table))[:10])
        raise TransformError("lookup", f"{_preview(value)} is not in the lookup table ({known})")


@dataclass(frozen=True)
class Named(Transform):
    """A transform from `NAMED_FUNCTIONS`."""

    function: str

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.function

    def apply(self, value: Any, record: Mapping[str, Any]) -> Any:
        """The function's result."""
        try:
            return NAMED_FUNCTIONS[self.function](value)
        except TransformError:
            raise
        except (ValueError, InvalidOperation) as exc:
            raise TransformError(self.function, f"{_preview(value)}: {exc}") from None


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None and v != ""), None)


def _concat(*values: Any) -> str:
    return "".join(_to_string(v) for v in values if v is not None)


def _part(text: Any, sep: str, index: int) -> str | None:
    """The index-th piece of `text` split on `sep` (negative counts from the end); None when out of range."""
    if text is None:
        return None
    parts = str(text).split(sep)
    return parts[index] if -len(parts) <= index < len(parts) else None


EXPRESSION_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "str": _to_string,
    "int": _to_integer,
    "float": _to_double,
    "bool": _to_boolean,
    "round": round,
    "abs": abs,
    "min": min,
    "max": max,
    "len": len,
    "lower": lambda s: None if s is None else str(s).lower(),
    "upper": lambda s: None if s is None else str(s).upper(),
    "trim": lambda s: None if s is None else str(s).strip(),
    "coalesce": _coalesce,
    "concat": _concat,
    "date": _to_date,
    "datetime": _to_datetime,
    "email": lambda s: normalise_email(s),
    "part": _part,
}
"""Functions an expression may call (nothing else is callable)."""


_TOP_LEVEL: Any = object()
"""Marks a top-level evaluation: `value` then names the record's field, not a pipeline value."""


@dataclass(frozen=True)
class Expression(Transform):
    """A safe expression over the record's fields; in a pipeline step `value` is the pipeline's current value."""

    source: str
    _parsed: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def compile(cls, source: str) -> Expression:
        """Parse `source` once; a syntax error or a forbidden construct raises TransformError."""
        evaluator = simpleeval.SimpleEval(functions={**EXPRESSION_FUNCTIONS, "field": lambda name: None})
        try:
            parsed = evaluator.parse(source)
        except SyntaxError as exc:
            raise TransformError("expression", f"{source!r} is not a valid expression: {exc.msg}") from None
        return cls(source, parsed)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"expr:{self.source}"

    def names(self) -> set[str]:
        """The names (record fields or `value`) the expression reads."""
        return (
            {node.id for node in ast.walk(ast.parse(self.source, mode="eval")) if isinstance(node, ast.Name)}
            - set(EXPRESSION_FUNCTIONS)
            - {"None", "True", "False", "field"}
        )

    def evaluate(self, record: Mapping[str, Any], value: Any = _TOP_LEVEL) -> Any:
        """The expression's value for this record; `value` is the pipeline value only when one is passed."""
        names = dict(record)
        if value is not _TOP_LEVEL:  # a pipeline step: `value` is the current value, not a record field
            names["value"] = value
        functions = {**EXPRESSION_FUNCTIONS, "field": lambda name: record.get(name)}
        evaluator = simpleeval.SimpleEval(functions=functions, names=names)
        try:
            return evaluator.eval(self.source, previously_parsed=self._parsed)
        except simpleeval.NameNotDefined as exc:
            raise TransformError("expression", f"{self.source!r}: unknown field {exc.name!r}") from None
        except simpleeval.InvalidExpression as exc:
            raise TransformError("expression", f"{self.source!r} is not allowed: {exc}") from None
        except TransformError:
            raise
        except (ArithmeticError, TypeError, ValueError, InvalidOperation) as exc:
            raise TransformError("expression", f"{self.source!r} failed: {type(exc).__name__}: {exc}") from None

    def apply(self, value: Any, record: Mapping[str, Any]) -> Any:
        """The expression evaluated with `value` bound."""
        return self.evaluate(record, value)


@dataclass(frozen=True)
class Template:
    """A text template over record fields, e.g. 'hr:employee:{employee_id}' (str.format field names only)."""

    source: str
    fields: tuple[str, ...] = ()
    parts: tuple[tuple[str, str | None], ...] = ()  # (literal text, field name or None), in order

    @classmethod
    def compile(cls, source: str) -> Template:
        """Parse `source`; only plain `{field}` placeholders are allowed (no attributes, indexes or conversions)."""
        names: list[str] = []
        try:
            parsed = list(string.Formatter().parse(source))
        except ValueError as exc:
            raise TransformError("template", f"{source!r} is not a valid template: {exc}") from None
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) or spec or conversion:
                raise TransformError("template", f"{source!r}: placeholder {{{name}}} must be a plain field name")
            names.append(name)
        return cls(source, tuple(dict.fromkeys(names)), tuple((literal, name) for literal, name, _, _ in parsed))

    def render(self, record: Mapping[str, Any]) -> str:
        """The template filled from the record in one pass (a value's own braces stay as they are); a missing or
        empty field raises TransformError naming it."""
        out: list[str] = []
        for literal, name in self.parts:
            out.append(literal)
            if name is None:
                continue
            value = record.get(name)
            if value is None or value == "":
                raise TransformError("template", f"field {name!r} of {self.source!r} is empty")
            kind = type(value)
            out.append(value if kind is str else str(value) if kind is int else _to_string(value))
        return "".join(out)

    def render_or_none(self, record: Mapping[str, Any]) -> str | None:
        """The filled template, or None when one of its fields is empty (an optional reference)."""
        for name in self.fields:
            value = record.get(name)
            if value is None or value == "":
                return None
        return self.render(record)


def _preview(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
