"""Declarative mappings (YAML) from source records to ontology terms, checked against the ontology when loaded.

A mapping file describes one source system. Format (every key except those marked optional is required)::

    system: hr                              # source system name, recorded in lineage
    description: HR system (optional)
    entities:                               # processed in this order (targets of links first)
      - name: employees                     # source object: table, file, model, endpoint or topic
        class: Employee                     # ontology class of the twins
        uid: "hr:employee:{employee_id}"    # uid rule: a template over source fields
        key: employee_id                    # source key field(s) (optional for sources with their own keys)
        watermark: updated_at               # change watermark field (optional: full reads only)
        source: {table: employees}          # where to read, interpreted by the connector's source kind; a
                                            # `fields` (Tryton) or `columns` (SQL) list must fetch every field
                                            # a rule reads; a SQL `query` that joins tables lists the joined
                                            # tables' change-time columns in `related_watermarks`
        properties:                         # ontology property: rule
          employeeId: employee_id           #   a field name = rename
          name: {template: "{first_name} {last_name}"}
          salary: {field: salary_cents, unit: {from: cent, to: unit}, cast: double}
          email: {field: work_email, transform: [trim, lower]}
          jobTitle: {field: position_id, lookup: {map: {P1: Engineer}, default: Staff}}
          capacityHoursPerWeek: {expr: "hours_per_day * 5"}
          description: {const: "imported", default: "..."}
        links:                              # relationships from this twin
          - type: reportsTo
            target: "hr:employee:{manager_id}"   # an empty field means no link; or {expr: "..."}
            target_class: Employee          # optional; checked against the relationship's range
            properties: {level: level}      # optional relationship properties (rules as above)
        identity:                           # optional identity resolution (connectors/identity.py)
          domain: person                    # records of one domain may merge into one twin
          email: email                      # mapped property matched after normalisation
          exact: [employeeId]               # mapped properties matched exactly
          fuzzy: {name: name, organisation: "{company}", threshold: 92}
          plus_domains: [example.com]       # where `local+tag@domain` means `local@domain` (default: all)
          authoritative: true               # on a shared twin: this mapping's class and values win; a
                                            # non-authoritative source only fills properties still empty
        update_only: false                  # true: only update existing twins (telemetry), never create
        optional: false                     # true: a source without this object (an ERP module not activated)
                                            # skips the entity with a note in the run report; false: the
                                            # other entities still run, then the run fails naming it
        ledger: true                        # false: stream (no per-key state, no deletion detection)
        telemetry: {time: ts, metrics: {temperature_c: temperature}}   # append readings to the time series
        lifecycle:                          # optional: the twin's lifecycle state from a source field
          field: status                     #   (planned, active, suspended, retired; graph/lifecycle.py)
          map: {"1": active, "9": retired}  #   source value -> state (values not listed: `default`)
          default: active                   #   optional; without it an unlisted value quarantines the record
        on_delete: delete                   # or `retire`: a record gone from the source retires its twin
        valid_from: effective_date          # optional: the field saying when the record's values take effect
                                            #   (ISO 8601 date or date and time; kept as valid time beside
                                            #   transaction time, read with validAt: graph/valid_time.py)
      - name: employee_skills               # an association row becomes one link, not a twin
        link:
          type: hasSkill
          source: "hr:employee:{employee_id}"
          source_class: Employee
          target: "hr:skill:{skill_id}"
          target_class: Skill
          properties: {level: {field: level, cast: integer}}

A property rule takes its value from `field`, `template`, `expr` or `const`, then applies `transform` (a list of
steps: names from `connectors.transforms.NAMED_FUNCTIONS` or `{cast: T}`, `{unit: {from, to}}`,
`{lookup: {map, default}}`, `{expr: "..."}` where `value` is the current value), then the shortcut keys in the
order `lookup`, `unit`, `cast`, then `default` when the value is empty, and finally a cast to the property's
ontology type when the value does not already have it (e.g. a date object becomes ISO text).

Every problem found at load time (unknown class, property or relationship, a cast to the wrong type, a lookup
value outside an enum, a required property left unmapped, a bad template or expression) is reported with the
file, the line and the offending term, all problems at once.
"""

from __future__ import annotations

import ast
import datetime as dt
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from connectors.errors import ConnectorError
from connectors.transforms import (
    CASTS,
    NAMED_FUNCTIONS,
    UNITS,
    Cast,
    Expression,
    Lookup,
    Named,
    Template,
    Transform,
    TransformError,
    UnitConversion,
    cast_value,
)
from graph.lifecycle import STATES
from ontology.errors import UnknownTerm
from ontology.model import Ontology, PropertyDef
from ontology.safe_yaml import load_yaml
from ontology.schema import Schema, check_value

__all__ = [
    "EntityMapping",
    "IdentityRule",
    "LinkRule",
    "MappingError",
    "MappingProblem",
    "PropertyRule",
    "SourceMapping",
    "TelemetryRule",
    "load_mapping",
    "parse_mapping",
]


# ------------------------------------------------------------------------------------------------------ errors
@dataclass(frozen=True)
class MappingProblem:
    """One problem of a mapping file: where (file, line), which term, and what is wrong."""

    file: str
    line: int
    term: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.term}: {self.message}"


class MappingError(ConnectorError, ValueError):
    """A mapping file is malformed or does not fit the ontology; lists every problem with file, line and term."""

    def __init__(self, problems: list[MappingProblem]) -> None:
        self.problems = problems
        shown = "".join(f"\n  - {p}" for p in problems[:30])
        more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
        super().__init__(f"mapping refused: {len(problems)} problem(s){shown}{more}")


# ------------------------------------------------------------------------------------------ YAML with lines
class _LocatedMap(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int = 0
    lines: dict[Any, int]


class _LocatedList(list[Any]):
    """A YAML sequence that remembers its own line and the line of each item."""

    line: int = 0
    lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that keeps line numbers (1-based) and refuses duplicate keys."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> _LocatedMap:
    loader.flatten_mapping(node)
    result = _LocatedMap()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {result.lines[key]})", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


def _construct_list(loader: _LineLoader, node: yaml.SequenceNode) -> _LocatedList:
    result = _LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_list)


# ------------------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class PropertyRule:
    """How one ontology property (of a twin or a link) is computed from a source record."""

    name: str
    source_field: str | None = None
    template: Template | None = None
    expression: Expression | None = None
    const: Any = None
    has_const: bool = False
    steps: tuple[Transform, ...] = ()
    default: Any = None
    schema: Schema | None = None
    line: int = 0
    _conform: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    @property
    def source_fields(self) -> tuple[str, ...]:
        """The source fields the rule reads (for lineage)."""
        if self.source_field is not None:
            return (self.source_field,)
        if self.template is not None:
            return self.template.fields
        if self.expression is not None:
            return tuple(sorted(self.expression.names()))  # top level: `value` is a record field
        return ()

    @property
    def reads(self) -> tuple[str, ...]:
        """Every source field the rule reads: its field, template or expression, and expression steps (`field("a.b")`
        calls with a literal name included), for the check that the source fetches them."""
        found = list(self.source_fields)
        if self.expression is not None:
            found += _expression_reads(self.expression)
        for step in self.steps:
            if isinstance(step, Expression):
                found += [name for name in _expression_reads(step) if name != "value"]
        return tuple(dict.fromkeys(found))

    @property
    def transform_text(self) -> str | None:
        """The pipeline as text for lineage, e.g. 'template:{a} {b} | cast:double'; None for a plain rename."""
        parts: list[str] = []
        if self.template is not None:
            parts.append(f"template:{self.template.source}")
        if self.expression is not None:
            parts.append(self.expression.name)
        if self.has_const:
            parts.append(f"const:{self.const!r}")
        parts += [step.name for step in self.steps]
        if self.default is not None:
            parts.append(f"default:{self.default!r}")
        return " | ".join(parts) if parts else None

    def compute(self, record: Mapping[str, Any]) -> Any:
        """The property's value for this record (TransformError when a step refuses the value)."""
        if self.source_field is not None:
            value = record.get(self.source_field)
        elif self.template is not None:
            value = self.template.render_or_none(record)
        elif self.expression is not None:
            value = self.expression.evaluate(record)
        else:
            value = self.const
        for step in self.steps:
            value = step.apply(value, record)
        if value is None or value == "":
            if self.default is not None:
                value = self.default
            elif value == "":
                value = None
        if value is not None and self._conform is not None:
            value = self._conform(value)
        return value


@dataclass(frozen=True)
class LinkRule:
    """A relationship produced by a record: type, source and target uid rules, properties."""

    type: str
    target: Template | None
    source: Template | None = None  # None: the record's own twin
    target_class: str | None = None
    source_class: str | None = None
    properties: tuple[PropertyRule, ...] = ()
    line: int = 0
    target_expr: Expression | None = None

    def target_of(self, record: Mapping[str, Any]) -> str | None:
        """The target uid for this record, or None when the reference is empty (no link)."""
        if self.target is not None:
            return self.target.render_or_none(record)
        assert self.target_expr is not None
        value = self.target_expr.evaluate(record)
        return None if value is None or value == "" else str(value)

    @property
    def target_text(self) -> str:
        """The target rule as text (lineage)."""
        return self.target.source if self.target is not None else (self.target_expr.source if self.target_expr else "")

    @property
    def target_fields(self) -> tuple[str, ...]:
        """The source fields the target rule reads."""
        if self.target is not None:
            return self.target.fields
        return tuple(sorted(self.target_expr.names())) if self.target_expr else ()

    @property
    def reads(self) -> tuple[str, ...]:
        """Every source field the link reads: source and target rules and the link's properties."""
        found = [*(self.source.fields if self.source is not None else ()), *self.target_fields]
        if self.target_expr is not None:
            found += _expression_reads(self.target_expr)
        for rule in self.properties:
            found += rule.reads
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class FuzzyRule:
    """Fuzzy match on a name property within the same organisation, above a similarity threshold (0-100)."""

    name: str
    organisation: Template | None
    threshold: float


@dataclass(frozen=True)
class IdentityRule:
    """How records of an entity are matched to twins of the same identity domain from other sources."""

    domain: str
    email: str | None = None
    exact: tuple[str, ...] = ()
    fuzzy: FuzzyRule | None = None
    plus_domains: frozenset[str] | None = None
    authoritative: bool = False


@dataclass(frozen=True)
class TelemetryRule:
    """Readings of a record appended to the telemetry time series: the time field and field -> metric names."""

    time: str
    metrics: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class LifecycleRule:
    """The lifecycle state of a record's twin: a source field's value mapped to a state, or the default."""

    field: str
    states: Mapping[str, str]
    default: str | None = None

    def state_of(self, fields: Mapping[str, Any]) -> str | None:
        """The state the record's field names (its text), the default for any other value; None without one."""
        value = fields.get(self.field)
        return self.states.get("" if value is None else str(value), self.default)


@dataclass(frozen=True)
class EntityMapping:
    """One source object mapped to a class (twins) or, with `link`, to one relationship per record."""

    name: str
    file: str
    line: int
    cls: str | None = None
    uid: Template | None = None
    key: tuple[str, ...] = ()
    watermark: str | None = None
    source: Mapping[str, Any] = field(default_factory=dict)
    properties: tuple[PropertyRule, ...] = ()
    links: tuple[LinkRule, ...] = ()
    link: LinkRule | None = None
    identity: IdentityRule | None = None
    telemetry: TelemetryRule | None = None
    update_only: bool = False
    ledger: bool = True
    optional: bool = False
    source_line: int = 0
    lifecycle: LifecycleRule | None = None
    on_delete: str = "delete"  # or "retire": a record gone from the source retires its twin instead
    valid_from: str | None = None  # the source field giving when the record's values take effect (valid time)

    @property
    def reads(self) -> dict[str, tuple[str, ...]]:
        """The source fields each rule reads, by rule ('uid', 'key', a property, 'links.<type>', 'link',
        'identity', 'telemetry'): what the source must fetch for the rule to see a value."""
        found: dict[str, tuple[str, ...]] = {}
        if self.key:
            found["key"] = self.key
        if self.uid is not None:
            found["uid"] = self.uid.fields
        for rule in self.properties:
            found[rule.name] = rule.reads
        for link in self.links:
            found[f"links.{link.type}"] = link.reads
        if self.link is not None:
            found["link"] = self.link.reads
        if self.identity is not None and self.identity.fuzzy is not None and self.identity.fuzzy.organisation:
            found["identity"] = self.identity.fuzzy.organisation.fields
        if self.telemetry is not None:
            found["telemetry"] = (self.telemetry.time, *(f for f, _ in self.telemetry.metrics))
        if self.lifecycle is not None:
            found["lifecycle"] = (self.lifecycle.field,)
        if self.valid_from is not None:
            found["valid_from"] = (self.valid_from,)
        return {rule: fields for rule, fields in found.items() if fields}

    @property
    def is_association(self) -> bool:
        """True when each record becomes a link rather than a twin."""
        return self.link is not None

    def line_of_field(self, source_field: str) -> int:
        """The mapping line that reads `source_field`: the first rule using it, else the `source:` line."""
        rules: list[PropertyRule | LinkRule] = [*self.properties, *self.links, *([self.link] if self.link else [])]
        for rule in rules:
            if isinstance(rule, PropertyRule):
                if source_field in rule.source_fields:
                    return rule.line
                continue
            for prop in rule.properties:
                if source_field in prop.source_fields:
                    return prop.line
            source_fields = rule.source.fields if rule.source is not None else ()
            if source_field in (*rule.target_fields, *source_fields):
                return rule.line
        if self.uid is not None and source_field in self.uid.fields:
            return self.line
        return self.source_line or self.line

    def rule_name(self, prop: str) -> str:
        """The mapping rule id recorded in lineage, e.g. 'sample_hr.yaml#employees.salary'."""
        return f"{self._rule_prefix}.{prop}"

    @cached_property
    def _rule_prefix(self) -> str:
        """'<mapping file name>#<entity>' (computed once: rule ids are asked for per written value)."""
        return f"{Path(self.file).name}#{self.name}"


@dataclass(frozen=True)
class SourceMapping:
    """A loaded, ontology-checked mapping file: the source system and its entities in processing order."""

    system: str
    path: str
    entities: tuple[EntityMapping, ...]
    description: str = ""

    def entity(self, name: str) -> EntityMapping:
        """The entity called `name`."""
        for entity in self.entities:
            if entity.name == name:
                return entity
        raise KeyError(f"{self.path}: no entity {name!r} (known: {', '.join(e.name for e in self.entities)})")


def _expression_reads(expression: Expression) -> list[str]:
    """The record fields an expression reads: its names, and the literal names it passes to `field(...)`."""
    found = sorted(expression.names())
    for node in ast.walk(ast.parse(expression.source, mode="eval")):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "field":
            found += [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    return found


# a query that reads more than one table: a JOIN, or a comma between tables in FROM
_JOIN = re.compile(r"\bjoin\b|\bfrom\s+[\w.\"`]+(\s+(as\s+)?\w+)?\s*,", re.IGNORECASE)

# ---------------------------------------------------------------------------------------------------- loading
# (file, text) -> (ontology, its class and schema counts, the checked mapping): a file read again unchanged against
# the same, unchanged ontology is not parsed and checked again (the ontology only ever grows, so counts name its state)
_checked: dict[tuple[str, str], tuple[Ontology, int, int, SourceMapping]] = {}
_CHECKED_MAX = 64


def load_mapping(path: Path | str, ontology: Ontology) -> SourceMapping:
    """Read and check a mapping file; MappingError lists every problem with file, line and term."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError([MappingProblem(str(path), 0, "file", f"cannot read the mapping: {exc.strerror}")]) from None
    key = (str(path), text)
    known = _checked.get(key)
    if known is not None and known[0] is ontology and known[1:3] == (len(ontology.classes), len(ontology.schemas)):
        return known[3]
    mapping = parse_mapping(text, ontology, str(path))
    if len(_checked) >= _CHECKED_MAX:
        _checked.clear()
    _checked[key] = (ontology, len(ontology.classes), len(ontology.schemas), mapping)
    return mapping


def parse_mapping(text: str, ontology: Ontology, file: str = "<mapping>") -> SourceMapping:
    """Check mapping YAML `text` (named `file` in messages) against the ontology."""
    try:
        document = load_yaml(text, file, loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise MappingError([MappingProblem(file, line, "yaml", f"not valid YAML: {problem}")]) from None
    return _Checker(ontology, file).mapping(document)


_CAST_FAMILY = {
    "string": "text",
    "integer": "integer",
    "long": "integer",
    "double": "number",
    "float": "number",
    "decimal": "number",
    "boolean": "boolean",
    "date": "date",
    "dateTime": "dateTime",
    "duration": "duration",
}
_SCHEMA_FAMILY = {
    "string": "text",
    "uuid": "text",
    "anyURI": "text",
    "integer": "integer",
    "long": "integer",
    "int": "integer",
    "short": "integer",
    "byte": "integer",
    "double": "number",
    "float": "number",
    "decimal": "number",
    "boolean": "boolean",
    "date": "date",
    "dateTime": "dateTime",
    "duration": "duration",
    "enum": "enum",
}
_COMPATIBLE = {
    ("integer", "number"),
    ("number", "integer"),
    ("date", "dateTime"),
    ("dateTime", "date"),
    ("text", "enum"),
    ("integer", "enum"),
}


def _as_string(v: Any) -> Any:
    return v if type(v) is str else cast_value(v, "string")


def _as_double(v: Any) -> Any:
    return v if type(v) is float else (float(v) if type(v) is int else cast_value(v, "double"))


def _as_integer(v: Any) -> Any:
    return v if type(v) is int else cast_value(v, "integer")


def _as_boolean(v: Any) -> Any:
    return v if type(v) is bool else cast_value(v, "boolean")


def _as_date(v: Any) -> Any:
    return v if type(v) is str and len(v) == 10 else cast_value(v, "date")


def _as_date_time(v: Any) -> Any:
    return cast_value(v, "dateTime") if not (type(v) is str and v.endswith("+00:00")) else v


def _as_duration(v: Any) -> Any:
    return cast_value(v, "duration")


_INTEGER_KINDS = frozenset(
    ("integer", "long", "int", "short", "byte", "unsignedInt", "unsignedLong", "unsignedShort", "unsignedByte")
)


def _conformer(schema: Schema | None) -> Callable[[Any], Any] | None:
    """A final cast into the property's type, skipping values that already have it (fast path); a module-level
    function, so a mapping can be sent to a worker process (connectors/sync/workers.py)."""
    if schema is None:
        return None
    kind = schema.kind
    if kind == "string":
        return _as_string
    if kind in ("double", "float", "decimal"):
        return _as_double
    if kind in _INTEGER_KINDS:
        return _as_integer
    if kind == "boolean":
        return _as_boolean
    if kind == "date":
        return _as_date
    if kind == "dateTime":
        return _as_date_time
    if kind == "duration":
        return _as_duration
    if kind == "enum" and schema.enum_value_kind == "integer":
        return _as_integer
    return None


class _Checker:
    """Builds the typed mapping while collecting every problem with its line."""

    def __init__(self, ontology: Ontology, file: str) -> None:
        self.ontology = ontology
        self.file = file
        self.problems: list[MappingProblem] = []

    def problem(self, line: int, term: str, message: str) -> None:
        self.problems.append(MappingProblem(self.file, line, term, message))

    @staticmethod
    def line_of(container: Any, key: Any, default: int = 0) -> int:
        if isinstance(container, _LocatedMap):
            return container.lines.get(key, container.line)
        if isinstance(container, _LocatedList) and isinstance(key, int) and key < len(container.lines):
            return container.lines[key]
        return getattr(container, "line", default)

    # --------------------------------------------------------------------------------------- top level
    def mapping(self, document: Any) -> SourceMapping:
        if not isinstance(document, dict):
            self.problem(1, "document", "a mapping file must be a YAML mapping with `system` and `entities`")
            raise MappingError(self.problems)
        self.unknown_keys(document, {"system", "description", "entities"}, "mapping")
        system = document.get("system")
        if not isinstance(system, str) or not system:
            self.problem(self.line_of(document, "system", 1), "system", "needs `system: <source system name>`")
        entities_doc = document.get("entities")
        entities: list[EntityMapping] = []
        if not isinstance(entities_doc, list) or not entities_doc:
            self.problem(self.line_of(document, "entities", 1), "entities", "needs a non-empty list of entities")
        else:
            names: dict[str, int] = {}
            for index, item in enumerate(entities_doc):
                line = self.line_of(entities_doc, index)
                if not isinstance(item, dict):
                    self.problem(line, f"entities[{index}]", "each entity must be a mapping")
                    continue
                entity = self.entity(item, line)
                if entity is None:
                    continue
                if entity.name in names:
                    self.problem(line, entity.name, f"entity defined twice (first on line {names[entity.name]})")
                names[entity.name] = line
                entities.append(entity)
        if self.problems:
            raise MappingError(self.problems)
        return SourceMapping(str(system), self.file, tuple(entities), str(document.get("description") or ""))

    def unknown_keys(self, doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in doc:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(sorted(allowed))}"
                self.problem(self.line_of(doc, key), str(key), f"unknown key in {where}{extra}")

    def names(self, doc: Mapping[str, Any], key: str, where: str, line: int) -> list[str]:
        """A field that takes one name or a list of names; a problem (and []) for anything else."""
        value = doc.get(key)
        if value is None:
            return []
        values = [value] if isinstance(value, str) else value if isinstance(value, list) else None
        if values is None or any(not isinstance(v, str) or not v for v in values):
            self.problem(self.line_of(doc, key, line), f"{where}.{key}", f"{key} must be a name or a list of names")
            return []
        return list(values)

    def flag(self, doc: Mapping[str, Any], key: str, default: bool, where: str, line: int) -> bool:
        """A yes/no field: YAML true or false only (the text "no" is not false)."""
        value = doc.get(key, default)
        if not isinstance(value, bool):
            self.problem(self.line_of(doc, key, line), f"{where}.{key}", f"{key} must be true or false, not {value!r}")
            return default
        return value

    # ----------------------------------------------------------------------------------------- entities
    def entity(self, doc: Mapping[str, Any], line: int) -> EntityMapping | None:
        self.unknown_keys(
            doc,
            {
                "name",
                "class",
                "uid",
                "key",
                "watermark",
                "source",
                "properties",
                "links",
                "link",
                "identity",
                "telemetry",
                "update_only",
                "ledger",
                "optional",
                "lifecycle",
                "on_delete",
                "valid_from",
            },
            "entity",
        )
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            self.problem(line, "name", "every entity needs a `name`")
            return None
        keys = tuple(self.names(doc, "key", name, line))
        watermark = doc.get("watermark")
        if watermark is not None and not isinstance(watermark, str):
            self.problem(self.line_of(doc, "watermark"), f"{name}.watermark", "watermark must be a field name")
        source = doc.get("source") or {}
        if not isinstance(source, dict):
            self.problem(self.line_of(doc, "source"), f"{name}.source", "source must be a mapping of options")
            source = {}
        common = EntityMapping(
            name=name,
            file=self.file,
            line=line,
            key=keys,
            watermark=watermark,
            source=dict(source),
            update_only=self.flag(doc, "update_only", False, name, line),
            ledger=self.flag(doc, "ledger", True, name, line),
            optional=self.flag(doc, "optional", False, name, line),
            source_line=self.line_of(doc, "source", line),
        )
        if "link" in doc:
            for forbidden in ("class", "uid", "properties", "links", "identity", "telemetry", "valid_from"):
                if forbidden in doc:
                    self.problem(
                        self.line_of(doc, forbidden),
                        f"{name}.{forbidden}",
                        "an association entity (`link:`) maps each record to one link only",
                    )
            link = self.association(doc["link"], name, self.line_of(doc, "link"))
            return self.fetched(replace(common, link=link), doc) if link else None
        cls_name = doc.get("class")
        cls_line = self.line_of(doc, "class", line)
        try:
            cls = self.ontology.get(str(cls_name))
        except UnknownTerm:
            hint = difflib.get_close_matches(str(cls_name), [c.name for c in self.ontology.classes.values()], n=1)
            self.problem(cls_line, str(cls_name), "unknown class" + (f"; did you mean {hint[0]!r}?" if hint else ""))
            return None
        uid = self.template(doc.get("uid"), f"{name}.uid", self.line_of(doc, "uid", line), required=True)
        defs = self.ontology.properties(cls.id)
        properties = self.property_rules(
            doc.get("properties") or {}, defs, f"{name}", cls.name, self.line_of(doc, "properties", line)
        )
        mapped = {rule.name for rule in properties}
        if not common.update_only:
            for prop in defs.values():
                if prop.required and prop.name not in mapped:
                    self.problem(
                        self.line_of(doc, "properties", line),
                        f"{name}.{prop.name}",
                        f"{cls.name} requires {prop.name!r} but the mapping sets no rule for it",
                    )
        links = self.link_rules(doc.get("links") or [], cls.id, name, self.line_of(doc, "links", line))
        identity = self.identity(doc.get("identity"), defs, name, self.line_of(doc, "identity", line))
        telemetry = self.telemetry(doc.get("telemetry"), name, self.line_of(doc, "telemetry", line))
        lifecycle = self.lifecycle(doc.get("lifecycle"), name, self.line_of(doc, "lifecycle", line))
        on_delete = doc.get("on_delete", "delete")
        if on_delete not in ("delete", "retire"):
            self.problem(
                self.line_of(doc, "on_delete", line),
                f"{name}.on_delete",
                f"on_delete must be delete or retire, not {on_delete!r}",
            )
            on_delete = "delete"
        valid_from = doc.get("valid_from")
        if valid_from is not None and (not isinstance(valid_from, str) or not valid_from):
            self.problem(
                self.line_of(doc, "valid_from", line),
                f"{name}.valid_from",
                f"valid_from must name the source field with the effective date, not {valid_from!r}",
            )
            valid_from = None
        return self.fetched(
            replace(
                common,
                cls=cls.name,
                uid=uid,
                properties=properties,
                links=links,
                identity=identity,
                telemetry=telemetry,
                lifecycle=lifecycle,
                on_delete=on_delete,
                valid_from=valid_from,
            ),
            doc,
        )

    def fetched(self, entity: EntityMapping, doc: Mapping[str, Any]) -> EntityMapping:
        """Refuse rules that read a field the entity's source does not fetch (a Tryton `source.fields` or SQL
        `source.columns` list: anything else would come out empty for every record, silently), and a SQL `query`
        that joins tables without the joined tables' change times (incremental runs could not see their changes)."""
        source = entity.source
        line = self.line_of(doc, "source", entity.line)
        related = source.get("related_watermarks") or []
        if not isinstance(related, list) or any(not isinstance(c, str) or not c for c in related):
            self.problem(line, f"{entity.name}.source.related_watermarks", "must be a list of column names")
            related = []
        listed, option = (source.get("fields"), "fields") if "fields" in source else (source.get("columns"), "columns")
        if isinstance(listed, list) and all(isinstance(f, str) for f in listed):
            fetched = set(listed)
            if option == "columns":  # a SQL source fetches its key and watermark columns as well
                fetched |= {*entity.key, *([entity.watermark] if entity.watermark else []), *related}
            for rule, fields in entity.reads.items():
                missing = [f for f in fields if f not in fetched]
                if missing:
                    rule_line = next((r.line for r in entity.properties if r.name == rule), 0) or line
                    self.problem(
                        rule_line,
                        f"{entity.name}.{rule}",
                        f"reads {', '.join(repr(f) for f in missing)} but source.{option} does not fetch "
                        f"{'it' if len(missing) == 1 else 'them'} (the rule reads: {', '.join(fields)}; "
                        f"fetched: {', '.join(listed)}); add {'it' if len(missing) == 1 else 'them'} "
                        f"to source.{option}",
                    )
        query = source.get("query")
        if isinstance(query, str) and entity.watermark and not related and _JOIN.search(query):
            self.problem(
                line,
                f"{entity.name}.source.query",
                f"the query joins tables, but an incremental run reads only rows whose {entity.watermark!r} "
                f"changed, so changes to a joined table would be missed: select each joined table's change "
                f"time as a column and list those columns in source.related_watermarks (or drop `watermark` "
                f"to read the query fully every run)",
            )
        return entity

    def template(self, value: Any, term: str, line: int, *, required: bool = False) -> Template | None:
        if value is None:
            if required:
                self.problem(line, term, 'needs a uid rule such as "system:kind:{key_field}"')
            return None
        if not isinstance(value, str):
            self.problem(line, term, 'must be a template text such as "hr:employee:{employee_id}"')
            return None
        try:
            template = Template.compile(value)
        except TransformError as exc:
            self.problem(line, term, exc.message)
            return None
        if required and not template.fields:
            self.problem(line, term, f"{value!r} has no {{field}} placeholder, so every record would get one uid")
        return template

    # --------------------------------------------------------------------------------------- properties
    def property_rules(
        self, doc: Any, defs: Mapping[str, PropertyDef], where: str, owner: str, line: int
    ) -> tuple[PropertyRule, ...]:
        if not isinstance(doc, dict):
            self.problem(line, f"{where}.properties", "properties must be a mapping of property: rule")
            return ()
        rules = []
        for prop_name, spec in doc.items():
            prop_line = self.line_of(doc, prop_name, line)
            prop = defs.get(prop_name)
            if prop is None:
                hint = difflib.get_close_matches(str(prop_name), sorted(defs), n=1)
                self.problem(
                    prop_line,
                    str(prop_name),
                    f"{owner} has no property {prop_name!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""),
                )
                continue
            rule = self.property_rule(prop, spec, f"{where}.{prop_name}", prop_line)
            if rule is not None:
                rules.append(rule)
        return tuple(rules)

    def property_rule(self, prop: PropertyDef, spec: Any, term: str, line: int) -> PropertyRule | None:
        schema = prop.schema
        if isinstance(spec, str):
            return PropertyRule(prop.name, source_field=spec, schema=schema, line=line, _conform=_conformer(schema))
        if not isinstance(spec, dict):
            self.problem(line, term, "a rule is a field name or a mapping with field/template/expr/const")
            return None
        self.unknown_keys(
            spec,
            {"field", "template", "expr", "const", "transform", "cast", "unit", "lookup", "default"},
            f"rule {term}",
        )
        sources = [k for k in ("field", "template", "expr", "const") if k in spec]
        if len(sources) != 1:
            self.problem(
                line,
                term,
                "give exactly one of field, template, expr, const"
                + (f" (got {', '.join(sources)})" if sources else ""),
            )
            return None
        kwargs: dict[str, Any] = {}
        if "field" in spec:
            if not isinstance(spec["field"], str):
                self.problem(line, term, "field must be a source field name")
                return None
            kwargs["source_field"] = spec["field"]
        elif "template" in spec:
            kwargs["template"] = self.template(spec["template"], term, line)
        elif "expr" in spec:
            kwargs["expression"] = self.expression(spec["expr"], term, line)
        else:
            kwargs["const"], kwargs["has_const"] = spec["const"], True
        steps: list[Transform] = []
        transform = spec.get("transform") or []
        if not isinstance(transform, list):
            transform = [transform]
        for item in transform:
            step = self.step(item, term, self.line_of(spec, "transform", line))
            if step is not None:
                steps.append(step)
        for key in ("lookup", "unit", "cast"):
            if key in spec:
                step = self.step({key: spec[key]}, term, self.line_of(spec, key, line))
                if step is not None:
                    steps.append(step)
        self.check_output(steps, kwargs, schema, term, line)
        default = spec.get("default")
        if default is not None:
            for _where, message in check_value(default, schema, term):
                self.problem(self.line_of(spec, "default", line), f"{term}.default", message)
        return PropertyRule(
            prop.name,
            steps=tuple(steps),
            default=default,
            schema=schema,
            line=line,
            _conform=_conformer(schema),
            **kwargs,
        )

    def expression(self, source: Any, term: str, line: int) -> Expression | None:
        if not isinstance(source, str):
            self.problem(line, term, "expr must be an expression text")
            return None
        try:
            return Expression.compile(source)
        except TransformError as exc:
            self.problem(line, term, exc.message)
            return None

    def step(self, item: Any, term: str, line: int) -> Transform | None:
        if isinstance(item, str):
            if item not in NAMED_FUNCTIONS:
                hint = difflib.get_close_matches(item, sorted(NAMED_FUNCTIONS), n=1)
                self.problem(
                    line,
                    item,
                    f"unknown transform in {term}"
                    + (f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(NAMED_FUNCTIONS)}"),
                )
                return None
            return Named(item)
        if not isinstance(item, dict) or len(item) != 1:
            self.problem(
                line,
                term,
                "a transform step is a name or one of {cast: T}, {unit: {from, to}}, "
                "{lookup: {map, default}}, {expr: ...}",
            )
            return None
        ((kind, arg),) = item.items()
        if kind == "cast":
            if arg not in CASTS:
                self.problem(line, str(arg), f"unknown cast target in {term}; use one of {', '.join(CASTS)}")
                return None
            return Cast(str(arg))
        if kind == "unit":
            if not isinstance(arg, dict) or set(arg) != {"from", "to"}:
                self.problem(line, term, "unit needs {from: UNIT, to: UNIT}")
                return None
            bad = [str(u) for u in (arg["from"], arg["to"]) if u not in UNITS]
            if bad:
                self.problem(line, bad[0], f"unknown unit in {term}")
                return None
            if UNITS[arg["from"]][0] != UNITS[arg["to"]][0]:
                self.problem(line, f"{arg['from']}->{arg['to']}", f"units of different dimensions in {term}")
                return None
            return UnitConversion(str(arg["from"]), str(arg["to"]))
        if kind == "lookup":
            if not isinstance(arg, dict) or not isinstance(arg.get("map"), dict):
                self.problem(line, term, "lookup needs {map: {code: value, ...}, default: value (optional)}")
                return None
            return Lookup({str(k): v for k, v in arg["map"].items()}, arg.get("default"), "default" in arg)
        if kind == "expr":
            return self.expression(arg, term, line)
        self.problem(line, str(kind), f"unknown transform step in {term}")
        return None

    def check_output(
        self, steps: list[Transform], kwargs: dict[str, Any], schema: Schema, term: str, line: int
    ) -> None:
        """Refuse rules whose last explicit cast, lookup values or constant cannot fit the property's type."""
        want = _SCHEMA_FAMILY.get(schema.kind)
        last = next((s for s in reversed(steps) if isinstance(s, (Cast, Lookup))), None)
        if isinstance(last, Cast) and want is not None:
            got = _CAST_FAMILY[last.target]
            if got != want and (got, want) not in _COMPATIBLE and want != "text":
                self.problem(
                    line, f"cast:{last.target}", f"{term} is {schema.describe()} but the rule casts to {last.target}"
                )
        if isinstance(last, Lookup) and last is steps[-1]:
            for code, value in last.table.items():
                if value is not None and check_value(value, schema, term):
                    self.problem(
                        line, str(value), f"lookup value for {code!r} does not fit {term} ({schema.describe()})"
                    )
        if kwargs.get("has_const") and not steps and kwargs["const"] is not None:
            const = kwargs["const"]
            if isinstance(const, (dt.date, dt.datetime)):
                const = const.isoformat()
            if check_value(const, schema, term):
                self.problem(line, repr(kwargs["const"]), f"constant does not fit {term} ({schema.describe()})")
            kwargs["const"] = const

    # -------------------------------------------------------------------------------------------- links
    def link_rules(self, doc: Any, cls_id: str, where: str, line: int) -> tuple[LinkRule, ...]:
        if not isinstance(doc, list):
            self.problem(line, f"{where}.links", "links must be a list")
            return ()
        rules = []
        for index, item in enumerate(doc):
            item_line = self.line_of(doc, index, line)
            if not isinstance(item, dict):
                self.problem(item_line, f"{where}.links[{index}]", "a link rule is a mapping with type and target")
                continue
            self.unknown_keys(item, {"type", "target", "target_class", "properties"}, f"link of {where}")
            rule = self.link_rule(item, cls_id, None, f"{where}.links[{index}]", item_line)
            if rule is not None:
                rules.append(rule)
        return tuple(rules)

    def association(self, doc: Any, where: str, line: int) -> LinkRule | None:
        if not isinstance(doc, dict):
            self.problem(line, f"{where}.link", "link must be a mapping with type, source, target and classes")
            return None
        self.unknown_keys(
            doc, {"type", "source", "target", "source_class", "target_class", "properties"}, f"link of {where}"
        )
        source_class = doc.get("source_class")
        try:
            source_id = self.ontology.get(str(source_class)).id
        except UnknownTerm:
            self.problem(
                self.line_of(doc, "source_class", line),
                str(source_class),
                "unknown class (an association needs source_class)",
            )
            return None
        source = self.template(
            doc.get("source"), f"{where}.link.source", self.line_of(doc, "source", line), required=True
        )
        rule = self.link_rule(doc, source_id, source, f"{where}.link", line)
        if rule is not None and rule.target_class is None:
            self.problem(line, f"{where}.link.target_class", "an association needs target_class")
        return rule

    def link_rule(
        self, doc: Mapping[str, Any], cls_id: str, source: Template | None, term: str, line: int
    ) -> LinkRule | None:
        rel_type = doc.get("type")
        rel = self.ontology.relationships(cls_id).get(str(rel_type))
        cls_name = self.ontology.get(cls_id).name
        type_line = self.line_of(doc, "type", line)
        if rel is None:
            if rel_type in self.ontology.relationship_types():
                self.problem(type_line, str(rel_type), f"{cls_name} may not have relationship {rel_type!r}")
            else:
                hint = difflib.get_close_matches(str(rel_type), sorted(self.ontology.relationship_types()), n=1)
                self.problem(
                    type_line, str(rel_type), "unknown relationship" + (f"; did you mean {hint[0]!r}?" if hint else "")
                )
            return None
        raw_target = doc.get("target")
        target_expr = None
        target = None
        if isinstance(raw_target, dict) and set(raw_target) == {"expr"}:
            target_expr = self.expression(raw_target["expr"], f"{term}.target", self.line_of(doc, "target", line))
        else:
            target = self.template(raw_target, f"{term}.target", self.line_of(doc, "target", line), required=True)
        target_class = doc.get("target_class")
        target_name = None
        if target_class is not None:
            try:
                target_def = self.ontology.get(str(target_class))
            except UnknownTerm:
                self.problem(self.line_of(doc, "target_class", line), str(target_class), "unknown class")
                return None
            target_name = target_def.name
            for v in self.ontology.validate_relationship(str(rel_type), cls_id, target_def.id):
                self.problem(self.line_of(doc, "target_class", line), str(target_class), v.message)
        props_doc = doc.get("properties") or {}
        rel_props = {p.name: p for p in rel.properties}
        properties = self.property_rules(
            props_doc, rel_props, term, f"relationship {rel_type}", self.line_of(doc, "properties", line)
        )
        if target is None and target_expr is None:
            return None
        return LinkRule(
            str(rel_type),
            target,
            source,
            target_name,
            cls_name if source is not None else None,
            properties,
            line,
            target_expr,
        )

    # ------------------------------------------------------------------------------------------ identity
    def identity(self, doc: Any, defs: Mapping[str, PropertyDef], where: str, line: int) -> IdentityRule | None:
        if doc is None:
            return None
        if not isinstance(doc, dict):
            self.problem(line, f"{where}.identity", "identity must be a mapping")
            return None
        self.unknown_keys(
            doc, {"domain", "email", "exact", "fuzzy", "plus_domains", "authoritative"}, f"identity of {where}"
        )
        domain = doc.get("domain")
        if not isinstance(domain, str) or not domain:
            self.problem(line, f"{where}.identity.domain", "identity needs a domain (e.g. person)")
            return None
        email = doc.get("email")
        if email is not None and not isinstance(email, str):
            self.problem(self.line_of(doc, "email", line), f"{where}.identity.email", "email must be a property name")
            email = None
        exact = self.names(doc, "exact", f"{where}.identity", line)
        for prop in ([email] if email else []) + exact:
            if prop not in defs:
                self.problem(
                    self.line_of(doc, "email" if prop == email else "exact", line),
                    str(prop),
                    "identity refers to a property the class does not have",
                )
        fuzzy = None
        fuzzy_doc = doc.get("fuzzy")
        if fuzzy_doc is not None:
            if not isinstance(fuzzy_doc, dict) or "name" not in fuzzy_doc:
                self.problem(
                    self.line_of(doc, "fuzzy", line),
                    f"{where}.identity.fuzzy",
                    "fuzzy needs {name: PROPERTY, organisation: TEMPLATE, threshold: 0-100}",
                )
            else:
                if fuzzy_doc["name"] not in defs:
                    self.problem(
                        self.line_of(doc, "fuzzy", line),
                        str(fuzzy_doc["name"]),
                        "identity refers to a property the class does not have",
                    )
                threshold = fuzzy_doc.get("threshold", 90)
                if not isinstance(threshold, (int, float)) or not 0 < threshold <= 100:
                    self.problem(self.line_of(doc, "fuzzy", line), str(threshold), "threshold must be in (0, 100]")
                    threshold = 90
                org = self.template(
                    fuzzy_doc.get("organisation"),
                    f"{where}.identity.fuzzy.organisation",
                    self.line_of(doc, "fuzzy", line),
                )
                fuzzy = FuzzyRule(str(fuzzy_doc["name"]), org, float(threshold))
        if not email and not exact and fuzzy is None:
            self.problem(line, f"{where}.identity", "identity needs at least one of email, exact, fuzzy")
        plus = self.names(doc, "plus_domains", f"{where}.identity", line)
        plus_domains = frozenset(d.lower() for d in plus) if doc.get("plus_domains") is not None else None
        return IdentityRule(
            domain,
            email,
            tuple(exact),
            fuzzy,
            plus_domains,
            self.flag(doc, "authoritative", False, f"{where}.identity", line),
        )

    def lifecycle(self, doc: Any, where: str, line: int) -> LifecycleRule | None:
        if doc is None:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("field"), str) or not isinstance(doc.get("map"), dict):
            self.problem(
                line, f"{where}.lifecycle", "lifecycle needs {field: FIELD, map: {VALUE: STATE}, default: STATE}"
            )
            return None
        self.unknown_keys(doc, {"field", "map", "default"}, f"{where}.lifecycle")
        states = {str(value): state for value, state in doc["map"].items()}
        default = doc.get("default")
        for state in [*states.values(), *([default] if default is not None else [])]:
            if state not in STATES:
                self.problem(
                    line, f"{where}.lifecycle", f"unknown lifecycle state {state!r}; the states are {', '.join(STATES)}"
                )
                return None
        return LifecycleRule(doc["field"], states, default)

    def telemetry(self, doc: Any, where: str, line: int) -> TelemetryRule | None:
        if doc is None:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("time"), str) or not doc.get("metrics"):
            self.problem(line, f"{where}.telemetry", "telemetry needs {time: FIELD, metrics: [FIELD] or {FIELD: NAME}}")
            return None
        metrics = doc["metrics"]
        if isinstance(metrics, dict):
            pairs = [(k, str(v)) for k, v in metrics.items()]
        else:
            pairs = [(m, m) for m in self.names(doc, "metrics", f"{where}.telemetry", line)]
        return TelemetryRule(doc["time"], tuple((str(a), str(b)) for a, b in pairs))
