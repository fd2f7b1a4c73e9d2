"""Expressions in CEL (the Common Expression Language, through the `common-expression-language` package): compiled
once, evaluated many times over plain values, sandboxed (no I/O, no loops, always terminates).

This module is self-contained on purpose (it imports only `cel`): any part of the twin that lets a file say a
condition (automations, event routes) compiles and evaluates it here. An `Expression` knows the top-level names it
reads (`names`) and the attribute paths it reads from each (`paths`), so a loader can check them against what it
will bind before anything runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

MAX_SOURCE_CHARS = 4_000
_STRING = re.compile(r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*\"""")
_PATH = re.compile(r"(?<![\w.])([A-Za-z_]\w*)((?:\s*\.\s*[A-Za-z_]\w*)+)")
_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")


class ExpressionError(ValueError):
    """An expression does not compile (the message says where and why) or cannot be evaluated over its values."""


@dataclass(frozen=True)
class Expression:
    """One compiled CEL expression: its source, the names it reads and the dotted paths it reads from them."""

    source: str
    program: Any = field(repr=False, compare=False)
    names: frozenset[str] = frozenset()
    paths: tuple[tuple[str, str], ...] = ()  # (name, first attribute) pairs, e.g. ("twin", "stockLevel")

    def evaluate(self, bindings: Bindings | Mapping[str, Any]) -> Any:
        """The value of the expression over `bindings` (prepared once with `bind` when several expressions share
        them); ExpressionError when a value is missing or of a type the expression cannot use."""
        context = bindings.context if isinstance(bindings, Bindings) else bindings
        try:
            return self.program.execute(context)
        except (KeyError, TypeError, ValueError, RuntimeError, ArithmeticError) as exc:  # the CEL runtime raises these
            raise ExpressionError(f"{_short(self.source)}: {type(exc).__name__}: {_first_line(exc)}") from None

    def holds(self, bindings: Bindings | Mapping[str, Any]) -> bool:
        """Whether the expression is true over `bindings` (a non-boolean result is an ExpressionError)."""
        value = self.evaluate(bindings)
        if not isinstance(value, bool):
            raise ExpressionError(
                f"{_short(self.source)}: a condition must be true or false, got {type(value).__name__}"
            )
        return value


@dataclass(frozen=True)
class Bindings:
    """Values bound to names once, for evaluating several expressions over them (binding costs more than a rule)."""

    context: Any = field(repr=False)


def bind(values: Mapping[str, Any]) -> Bindings:
    """Prepare `values` (plain dicts, lists, str, int, float, bool, None) for evaluation; ExpressionError for values
    CEL cannot hold (NaN and infinities become null first)."""
    try:
        return Bindings(cel.Context({name: _plain(value) for name, value in values.items()}))
    except (TypeError, ValueError) as exc:
        raise ExpressionError(f"values cannot be bound: {_first_line(exc)}") from None


def compile_expression(source: str) -> Expression:
    """Compile `source`; ExpressionError naming the line, column and problem when it is not valid CEL."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("an expression must be non-empty text")
    if len(source) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"an expression holds at most {MAX_SOURCE_CHARS} characters, got {len(source)}")
    try:
        program = cel.compile(source)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ExpressionError(_syntax_message(str(exc))) from None
    names = frozenset(program.variables())
    return Expression(source, program, names, _paths(source, names))


def _paths(source: str, names: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """(name, attribute) of every `name.attribute` the source reads, string literals left out."""
    text = _STRING.sub(lambda m: " " * len(m.group()), source)
    found: list[tuple[str, str]] = []
    for match in _PATH.finditer(text):
        head, rest = match.group(1), match.group(2)
        if head in names:
            attribute = rest.split(".")[1].strip()
            if (head, attribute) not in found:
                found.append((head, attribute))
    return tuple(found)


def _plain(value: Any) -> Any:
    """A value CEL can hold: non-finite floats as null, tuples and sets as lists, other scalars as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return str(value)


def _syntax_message(message: str) -> str:
    """The parser's message as `line L, column C: problem`."""
    match = _POSITION.search(message)
    if match is None:
        return f"not a valid expression: {_first_line(message)}"
    return f"line {match.group(1)}, column {match.group(2)}: {match.group(3).strip()[:200]}"


def _first_line(exc: BaseException | str) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _short(source: str) -> str:
    return repr(source if len(source) <= 60 else source[:57] + "...")
