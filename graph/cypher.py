"""Safe Cypher building: identifiers, filter conditions, ordering — shared by every backend."""

from __future__ import annotations

import re
from typing import Any

from graph.errors import FieldNotReadable, QueryError
from graph.model import Condition, OrderBy, ReadScope
from graph.values import encode
from ontology.errors import UnknownTerm, quoted
from ontology.model import Ontology
from ontology.schema import Schema

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SYSTEM_FIELDS = frozenset({"uid", "_class"})
_COMPARISON = {"eq": "=", "ne": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def ident(name: str) -> str:
    """`name` quoted as a Cypher identifier (labels, relationship types, property keys); refuses odd names."""
    if not name or "`" in name or len(name) > 256:
        raise QueryError(f"{quoted(name)} is not a usable label, type or property name")
    return name if _IDENTIFIER.match(name) else f"`{name}`"


def labels_clause(labels: tuple[str, ...] | list[str]) -> str:
    """':Twin:A:B' for the given labels (Twin always first)."""
    return ":Twin" + "".join(f":{ident(label)}" for label in labels if label != "Twin")


def field_schema(ontology: Ontology, cls: str | None, field: str) -> Schema | None:
    """The schema of `field` on class `cls` (None for system fields); QueryError when the class lacks it."""
    if field in SYSTEM_FIELDS:
        return None
    if cls is None:
        for klass in ontology.classes.values():
            prop = next((p for p in klass.properties if p.name == field), None)
            if prop is not None:
                return prop.schema
        raise QueryError(f"no class has a property {quoted(field)}")
    try:
        props = ontology.properties(cls)
    except UnknownTerm as exc:
        raise QueryError(str(exc)) from None
    if field not in props:
        raise QueryError(f"{ontology.get(cls).name} has no property {quoted(field)}")
    return props[field].schema


def check_readable(scope: ReadScope, labels: tuple[str, ...], field: str, use: str) -> None:
    """FieldNotReadable when `scope` hides `field` for twins of these labels."""
    if field in scope.hidden_for(labels):
        raise FieldNotReadable(f"field {quoted(field)} may not be {use} by this caller")


def compile_conditions(
    ontology: Ontology,
    cls: str | None,
    conditions: list[Condition],
    scope: ReadScope,
    var: str = "n",
    prefix: str = "f",
) -> tuple[list[str], dict[str, Any]]:
    """WHERE clauses and parameters for `conditions` on node `var`, checked against ontology and scope."""
    labels = ontology.labels(cls) if cls else ()
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for i, cond in enumerate(conditions):
        name = f"{prefix}{i}"
        if cond.op == "exists":
            if cond.field not in ontology.relationship_types():
                raise QueryError(f"unknown relationship {quoted(cond.field)} in an exists filter")
            left, right = ("<-", "-") if cond.direction == "in" else ("-", "->" if cond.direction == "out" else "-")
            pattern = f"({var}){left}[:{ident(cond.field)}]{right}()"
            clauses.append(pattern if cond.value in (None, True) else f"NOT {pattern}")
            continue
        check_readable(scope, labels, cond.field, "filtered on")
        schema = field_schema(ontology, cls, cond.field)
        ref = f"{var}.{ident(cond.field)}"
        if cond.op in _COMPARISON:
            clauses.append(f"{ref} {_COMPARISON[cond.op]} ${name}")
            params[name] = encode(cond.value, schema)
        elif cond.op == "in":
            if not isinstance(cond.value, (list, tuple, set, frozenset)):
                raise QueryError(f"filter {cond.field} in: expected a list, got {type(cond.value).__name__}")
            clauses.append(f"{ref} IN ${name}")
            params[name] = [encode(v, schema) for v in cond.value]
        elif cond.op in ("contains", "starts_with"):
            if not isinstance(cond.value, str):
                raise QueryError(f"filter {cond.field} {cond.op}: expected text, got {type(cond.value).__name__}")
            keyword = "CONTAINS" if cond.op == "contains" else "STARTS WITH"
            clauses.append(f"toLower({ref}) {keyword} toLower(${name})")
            params[name] = cond.value
        elif cond.op == "is_null":
            clauses.append(f"{ref} IS NULL" if cond.value in (None, True) else f"{ref} IS NOT NULL")
        else:
            raise QueryError(f"unknown filter operator {quoted(cond.op)}")
    return clauses, params


def compile_order(
    ontology: Ontology, cls: str | None, order: list[OrderBy], scope: ReadScope, var: str = "n"
) -> str:
    """An ORDER BY clause (uid as the final tie-breaker, so pages are stable)."""
    labels = ontology.labels(cls) if cls else ()
    keys = []
    for key in order:
        check_readable(scope, labels, key.field, "sorted on")
        field_schema(ontology, cls, key.field)
        keys.append(f"{var}.{ident(key.field)}{' DESC' if key.descending else ''}")
    keys.append(f"{var}.uid")
    return "ORDER BY " + ", ".join(keys)


_WRITE_WORDS = re.compile(
    r"\b(CREATE|MERGE|DELETE|DETACH|SET|REMOVE|DROP|LOAD\s+CSV|FOREACH)\b|\bCALL\s+(db\.idx|db\.create|dbms|apoc)",
    re.IGNORECASE,
)
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|//[^\n]*|/\*.*?\*/", re.DOTALL)


def looks_like_write(cypher: str) -> bool:
    """True when the query text (outside strings and comments) contains a clause that writes."""
    return bool(_WRITE_WORDS.search(_STRINGS.sub(" ", cypher)))
