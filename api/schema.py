"""The GraphQL schema, generated from the ontology at start-up with Strawberry's dynamic type creation.

Shape of the generated schema (see tests/api/snapshots/schema.graphql for the core ontology's):

* `interface Twin { uid className labels }` is implemented by every twin type.
* A class with subclasses becomes an interface named after the class (`Asset`) plus an object type for its direct
  instances (`AssetTwin`); a leaf class becomes an object type named after the class (`Employee`). Every object type
  implements `Twin` and the interfaces of all its ancestors; fields are flattened (inherited properties and
  relationships are repeated), so multiple inheritance (Facility is an Asset and a Location) needs no field merging.
* Properties become typed fields (String, Int, Float, Boolean, Date, DateTime, Time, Duration, JSON).
* Every relationship is a connection field in both directions: outgoing by its name (`worksIn`), incoming by the OWL
  inverse name when the ontology declares one (`hasMember`) or `<name>Inverse`; both take
  `where`/`orderBy`/`first`/`after`, and their edges carry the relationship's own properties.
* Root fields: `twin(uid)`, one connection per class (`employees`, `assets`, ...), `search`, `impact`, `path`,
  `aggregate`, `history`, `lineage`, `auditLog`, `scenarios`, `scenarioRun`; mutations are declared here and resolved in api/mutations.py.

Resolution does not go through Strawberry resolvers: each root field is compiled into one Cypher query
(api/compiler.py) whose result is already shaped like the response, so every nested field reads its value by
response key (`info.path.key`). `TwinSchema.bind` attaches the root resolvers. The schema executes with
`api.completion.CompletedExecutionContext`, which completes such results without a graphql-core call per field.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NewType

import strawberry
from graphql import GraphQLSchema
from strawberry.annotation import StrawberryAnnotation
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.scalars import JSON
from strawberry.types.arguments import StrawberryArgument
from strawberry.types.field import StrawberryField

from ontology.durations import read_duration
from ontology.errors import quoted
from ontology.model import ClassDef, Ontology, PropertyDef, RelationshipDef, text
from ontology.schema import INTEGER_RANGES, Schema

# ---------------------------------------------------------------------------------------------------------- scalars


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
SCALAR_MAP = {
    Date: strawberry.scalar(name="Date", description="A calendar date, ISO 8601 (2025-06-30).",
                            serialize=str, parse_value=_iso_parser("date", dt.date.fromisoformat)),
    DateTime: strawberry.scalar(name="DateTime", description="A date and time, ISO 8601 (2025-06-30T08:00:00).",
                                serialize=str, parse_value=_iso_parser("date-time", dt.datetime.fromisoformat)),
    Time: strawberry.scalar(name="Time", description="A time of day, ISO 8601 (08:30:00).",
                            serialize=str, parse_value=_iso_parser("time", dt.time.fromisoformat)),
    Duration: strawberry.scalar(name="Duration", description="A duration, ISO 8601 (P1DT2H).",
                                serialize=str, parse_value=_iso_parser("duration", _parse_duration)),
}

SCALAR_ANNOTATIONS = {
    "String": "str", "Int": "int", "Float": "float", "Boolean": "bool", "ID": "strawberry.ID",
    "Date": "Date", "DateTime": "DateTime", "Time": "Time", "Duration": "Duration", "JSON": "JSON",
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


# ------------------------------------------------------------------------------------------------------ static types


@strawberry.interface(description="Anything in the twin graph.")
class Twin:
    """The interface every generated twin type implements."""

    uid: strawberry.ID
    className: str = strawberry.field(description="The twin's ontology class.")
    labels: list[str] = strawberry.field(description="The class and all its superclasses.")


@strawberry.type(description="Relay-style page information.")
class PageInfo:
    """Where a page sits in the full result."""

    hasNextPage: bool
    hasPreviousPage: bool
    startCursor: str | None
    endCursor: str | None


@strawberry.enum(description="Sort direction.")
class SortDirection(enum.Enum):
    """Ascending or descending."""

    ASC = "ASC"
    DESC = "DESC"


@strawberry.enum(description="Aggregate functions.")
class AggregateFunction(enum.Enum):
    """count/sum/avg/min/max."""

    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"


@strawberry.input(description="One metric of an aggregate: a function and (except for COUNT) a property.")
class AggregateMetric:
    """A requested metric."""

    fn: AggregateFunction
    field: str | None = None


@strawberry.type(description="One computed metric.")
class MetricValue:
    """The value of a metric in one group."""

    name: str
    fn: AggregateFunction
    field: str | None
    value: float | None


@strawberry.type(description="One group of an aggregate.")
class AggregateRow:
    """Group key values and metric results."""

    group: JSON
    metrics: list[MetricValue]


@strawberry.type(description="A full-text search hit.")
class SearchHit:
    """A twin found by text, with its score."""

    score: float
    twin: Twin


@strawberry.type(description="A twin hit when the start twin fails.")
class ImpactHit:
    """Distance and one shortest chain from the failing twin."""

    depth: int
    path: list[strawberry.ID]
    via: list[str]
    twin: Twin


@strawberry.type(description="A path between two twins.")
class PathResult:
    """The twins in order and the relationship types between them."""

    length: int
    types: list[str]
    nodes: list[Twin]


@strawberry.type(description="One recorded change of a twin or its links (values masked by policy).")
class HistoryEntry:
    """A change as recorded by the graph's history."""

    id: int
    uid: strawberry.ID
    kind: str
    op: str
    className: str | None
    linkType: str | None
    target: str | None
    actor: str
    source: str | None
    runId: str | None
    at: DateTime
    before: JSON | None
    after: JSON | None


@strawberry.type(description="One change of the change feed, with its gap-free sequence number (values masked by policy).")
class Change:
    """A committed change of a twin or a link."""

    seq: int
    uid: strawberry.ID
    kind: str
    op: str
    className: str | None
    linkType: str | None
    target: str | None
    actor: str
    source: str | None
    runId: str | None
    at: DateTime
    before: JSON | None
    after: JSON | None


@strawberry.type(description="A page of the change feed: the changes the caller may see, and where to go on from.")
class ChangePage:
    """Changes after a cursor; `cursor` is the sequence number to pass as `after` next (it passes hidden changes
    too), `head` the newest sequence number in the feed."""

    changes: list[Change]
    cursor: int
    head: int


@strawberry.type(description="Where one property value came from (value masked by policy).")
class LineageRecord:
    """A provenance record of the lineage store."""

    twinUid: strawberry.ID
    property: str
    valueDigest: str | None = strawberry.field(
        description="SHA-256 of the value's canonical JSON; null unless the caller may see the value or its hash "
                    "(an unsalted digest of a short value gives the value away).")
    value: JSON | None
    erased: bool
    sourceSystem: str
    sourceObject: str
    recordKey: str
    sourceField: str | None
    runId: str
    mappingRule: str | None
    transform: str | None
    recordedAt: DateTime | None


@strawberry.type(description="One record of the tamper-evident audit log.")
class AuditRecord:
    """An audited operation."""

    seq: int
    time: DateTime
    subject: str
    roles: list[str]
    operation: str
    variablesDigest: str
    decision: str
    policyVersion: str
    rowsReturned: int | None
    detail: str
    hash: str


@strawberry.type(description="One KPI of one scenario over the replications, and its difference to baseline.")
class ScenarioSummary:
    """Mean, 95 % confidence interval, P10/P90, paired difference to baseline, probability of a breach."""

    scenario: str
    kpi: str
    n: int
    mean: float
    ciLow: float
    ciHigh: float
    p10: float
    p90: float
    diffMean: float | None
    diffLow: float | None
    diffHigh: float | None
    pBreach: float | None


@strawberry.type(description="A stored what-if study: its spec, seeds and results.")
class ScenarioStudy:
    """A study the results store keeps (re-running it reproduces these numbers)."""

    id: strawberry.ID
    name: str
    createdAt: DateTime
    replications: int
    seed: int
    modelVersion: str
    twinStateTime: DateTime
    executor: str
    wallSeconds: float
    spec: str
    summaries: list[ScenarioSummary]


@strawberry.type(description="A study started through the API (or a stored one): its status and, when done, results.")
class ScenarioRun:
    """Status of a background study; `study` is set once it has completed."""

    id: strawberry.ID
    name: str
    status: str
    startedAt: DateTime | None
    finishedAt: DateTime | None
    error: str | None
    study: ScenarioStudy | None


@strawberry.type(description="What a write did.")
class WriteResult:
    """Counts of a write."""

    created: int
    updated: int
    unchanged: int
    deleted: int


@strawberry.input(description="A twin to create or update; properties are checked against the class.")
class TwinInput:
    """One twin to upsert."""

    uid: strawberry.ID
    properties: JSON
    className: str = strawberry.field(description="Ontology class name.")


@strawberry.input(description="A relationship to create or update.")
class LinkInput:
    """One link to upsert."""

    type: str
    source: strawberry.ID
    target: strawberry.ID
    properties: JSON | None = None


@strawberry.input(description="A relationship to delete.")
class LinkKeyInput:
    """One link to delete."""

    type: str
    source: strawberry.ID
    target: strawberry.ID


def _filter_input(name: str, annotation: type, ops: Sequence[str], description: str) -> type:
    fields: dict[str, Any] = {}
    body: dict[str, Any] = {"__module__": __name__}
    for op in ops:
        python = "in_" if op == "in" else op
        fields[python] = (list[annotation] if op == "in" else bool if op == "isNull" else annotation) | None  # type: ignore[valid-type]
        body[python] = strawberry.field(name=op, default=strawberry.UNSET)
    body["__annotations__"] = fields
    cls = types.new_class(name, (), {}, lambda ns: ns.update(body))
    return strawberry.input(cls, name=name, description=description)


_ORDERED = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "isNull")
StringFilter = _filter_input("StringFilter", str, (*_ORDERED, "contains", "startsWith"),
                             "Conditions on a text field (contains/startsWith ignore case).")
IntFilter = _filter_input("IntFilter", int, _ORDERED, "Conditions on an integer field.")
FloatFilter = _filter_input("FloatFilter", float, _ORDERED, "Conditions on a number field.")
BooleanFilter = _filter_input("BooleanFilter", bool, ("eq", "ne", "isNull"), "Conditions on a boolean field.")
DateFilter = _filter_input("DateFilter", Date, _ORDERED, "Conditions on a date field.")
DateTimeFilter = _filter_input("DateTimeFilter", DateTime, _ORDERED, "Conditions on a date-time field.")
TimeFilter = _filter_input("TimeFilter", Time, _ORDERED, "Conditions on a time field.")
DurationFilter = _filter_input("DurationFilter", Duration, ("eq", "ne", "in", "isNull"), "Conditions on a duration.")
FILTER_TYPES = {
    "String": "StringFilter", "ID": "StringFilter", "Int": "IntFilter", "Float": "FloatFilter",
    "Boolean": "BooleanFilter", "Date": "DateFilter", "DateTime": "DateTimeFilter", "Time": "TimeFilter",
    "Duration": "DurationFilter",
}
_STATIC = {
    "Twin": Twin, "PageInfo": PageInfo, "SortDirection": SortDirection, "AggregateFunction": AggregateFunction,
    "AggregateMetric": AggregateMetric, "MetricValue": MetricValue, "AggregateRow": AggregateRow,
    "SearchHit": SearchHit, "ImpactHit": ImpactHit, "PathResult": PathResult, "HistoryEntry": HistoryEntry,
    "Change": Change, "ChangePage": ChangePage, "LineageRecord": LineageRecord, "AuditRecord": AuditRecord, "WriteResult": WriteResult, "TwinInput": TwinInput,
    "ScenarioSummary": ScenarioSummary, "ScenarioStudy": ScenarioStudy, "ScenarioRun": ScenarioRun,
    "LinkInput": LinkInput, "LinkKeyInput": LinkKeyInput, "StringFilter": StringFilter, "IntFilter": IntFilter,
    "FloatFilter": FloatFilter, "BooleanFilter": BooleanFilter, "DateFilter": DateFilter,
    "DateTimeFilter": DateTimeFilter, "TimeFilter": TimeFilter, "DurationFilter": DurationFilter,
    "Date": Date, "DateTime": DateTime, "Time": Time, "Duration": Duration, "JSON": JSON,
}
SYSTEM_FIELDS = ("uid", "className", "labels")
ROOT_FIELDS = ("twin", "search", "impact", "path", "aggregate", "history", "changes", "lineage", "auditLog",
               "scenarios", "scenarioRun")

# ------------------------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class PropertyField:
    """A property as a GraphQL field: its ontology definition and scalar."""

    name: str  # GraphQL field name
    prop: PropertyDef
    scalar: str
    is_list: bool

    @property
    def filterable(self) -> bool:
        """Whether `where` and `orderBy` may use it."""
        return not self.is_list and self.scalar in FILTERABLE


@dataclass(frozen=True)
class RelationField:
    """A relationship as a connection field, in one direction."""

    name: str  # GraphQL field name
    rel_type: str
    direction: str  # "out" | "in"
    node_class: str | None  # class name of the nodes at the other end; None = any twin
    edge_props: Mapping[str, PropertyField]
    connection: str  # GraphQL connection type name
    edge: str


@dataclass
class ClassPlan:
    """Everything the schema and the compiler need to know about one class (or `Twin` when cls is None)."""

    cls: str | None
    type_name: str  # object type for direct instances
    interface_name: str | None  # interface named after the class when it has subclasses
    list_field: str | None
    where: str
    sort_field: str
    order_by: str
    connection: str
    edge: str
    properties: dict[str, PropertyField] = field(default_factory=dict)
    relations: dict[str, RelationField] = field(default_factory=dict)
    description: str = ""

    @property
    def position_type(self) -> str:
        """The GraphQL type of a field that holds twins of this class or its subclasses."""
        return self.interface_name or self.type_name


@dataclass
class SchemaPlan:
    """The generated schema's mapping back to ontology terms."""

    ontology: Ontology
    classes: dict[str, ClassPlan]  # class name -> plan
    twin: ClassPlan  # the plan for "any twin"
    by_object: dict[str, str]  # GraphQL object type name -> class name
    root_lists: dict[str, str]  # root field -> class name

    def plan_for(self, cls: str | None) -> ClassPlan:
        """The plan of class `cls` (None = any twin)."""
        return self.twin if cls is None else self.classes[cls]

    def object_type(self, cls: str) -> str | None:
        """The GraphQL object type of a twin whose class is `cls` (None for a class the schema does not know)."""
        plan = self.classes.get(cls)
        return plan.type_name if plan else None


_NAME = re.compile(r"[^_0-9A-Za-z]")


def graphql_name(raw: str) -> str:
    """`raw` as a valid GraphQL name (invalid characters become '_'; never starting with a digit or '__')."""
    name = _NAME.sub("_", raw) or "_"
    if name[0].isdigit():
        name = "_" + name
    while name.startswith("__"):
        name = name[1:]
    return name


def _upper_first(name: str) -> str:
    return name[:1].upper() + name[1:]


def _lower_first(name: str) -> str:
    match = re.match(r"^[A-Z]+", name)
    if not match:
        return name
    run = match.group(0)
    if len(run) == len(name) or len(run) == 1:
        return name[: len(run)].lower() + name[len(run):]
    return run[:-1].lower() + name[len(run) - 1:]


def plural(name: str) -> str:
    """An English plural good enough for field names (entities, processes, kpis)."""
    if re.search(r"[^aeiou]y$", name):
        return name[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", name):
        return name + "es"
    return name + "s"


def _describe(display: Any, description: Any, extra: str = "") -> str:
    parts = [p for p in (text(description) or text(display), extra) if p]
    return " ".join(parts)


class _Names:
    """Allocates unique GraphQL type names."""

    def __init__(self, reserved: Iterable[str]) -> None:
        self.used = set(reserved)

    def take(self, wanted: str) -> str:
        name = wanted
        for i in itertools.count(2):
            if name not in self.used:
                break
            name = f"{wanted}{i}"
        self.used.add(name)
        return name


def plan_schema(ontology: Ontology) -> SchemaPlan:
    """Map every class, property and relationship of `ontology` to GraphQL names."""
    names = _Names([*_STATIC, "Query", "Mutation", "TwinClass", "RelationshipType", "TwinWhere", "TwinSortField",
                    "TwinOrderBy", "TwinConnection", "TwinEdge"])
    defs: dict[str, ClassDef] = {}
    for cls in sorted(ontology.classes.values(), key=lambda c: c.name):
        if cls.name in defs:
            continue  # an ambiguous class name (two DTDL ids): the first one wins
        defs[cls.name] = cls
    has_children = {ontology.classes[p].name for c in ontology.classes.values() for p in c.parents if p in ontology.classes}
    classes: dict[str, ClassPlan] = {}
    by_object: dict[str, str] = {}
    twin = ClassPlan(None, "Twin", None, None, "TwinWhere", "TwinSortField", "TwinOrderBy", "TwinConnection",
                     "TwinEdge", description="Any twin.")
    root_names = set(ROOT_FIELDS)
    root_lists: dict[str, str] = {}
    for name, cls in defs.items():
        base = graphql_name(name)
        interface = names.take(base) if name in has_children else None
        type_name = names.take(f"{base}Twin" if interface else base)
        list_field = plural(_lower_first(base))
        while list_field in root_names:
            list_field += "List"
        root_names.add(list_field)
        plan = ClassPlan(
            cls=name, type_name=type_name, interface_name=interface, list_field=list_field,
            where=names.take(f"{base}Where"), sort_field=names.take(f"{base}SortField"),
            order_by=names.take(f"{base}OrderBy"), connection=names.take(f"{base}Connection"),
            edge=names.take(f"{base}Edge"), description=_describe(cls.display_name, cls.description),
        )
        classes[name] = plan
        by_object[type_name] = name
        root_lists[list_field] = name
    connections: dict[tuple[str, str | None], tuple[str, str]] = {}  # (field, node class) -> (connection, edge)

    def connection_for(field_name: str, node_class: str | None) -> tuple[str, str]:
        key = (field_name, node_class)
        if key not in connections:
            base = _upper_first(graphql_name(field_name))
            if any(k[0] == field_name for k in connections):
                base += classes[node_class].type_name if node_class else "Twin"
            connections[key] = (names.take(f"{base}Connection"), names.take(f"{base}Edge"))
        return connections[key]

    rel_types = ontology.relationship_types()
    for name, plan in classes.items():
        cls = defs[name]
        for prop_name, prop in ontology.properties(cls.id).items():
            gname = graphql_name(prop_name)
            if gname in SYSTEM_FIELDS:
                continue
            scalar, is_list = scalar_of(prop.schema)
            plan.properties[gname] = PropertyField(gname, prop, scalar, is_list)
        taken = set(plan.properties) | set(SYSTEM_FIELDS)
        for rel_name, rel in ontology.relationships(cls.id).items():
            gname = graphql_name(rel_name)
            if gname in taken:
                continue
            target = ontology.classes[rel.target].name if rel.target in ontology.classes else None
            props = _edge_props([rel])
            conn, edge = connection_for(gname, target)
            plan.relations[gname] = RelationField(gname, rel_name, "out", target, props, conn, edge)
            taken.add(gname)
        for rel_name, declared in sorted(rel_types.items()):
            sources = [
                (owner, rel) for owner, rel in declared
                if rel.target is None or (rel.target in ontology.classes and ontology.is_a(cls.id, rel.target))
            ]
            if not sources:
                continue
            inverses = {rel.inverse for _, rel in sources}
            wanted = graphql_name(inverses.pop()) if len(inverses) == 1 and None not in inverses else None
            gname = wanted if wanted and wanted not in taken else graphql_name(f"{rel_name}Inverse")
            if gname in taken:
                continue
            node_class = _common_ancestor(ontology, [owner for owner, _ in sources])
            props = _edge_props([rel for _, rel in sources])
            conn, edge = connection_for(gname, node_class)
            plan.relations[gname] = RelationField(gname, rel_name, "in", node_class, props, conn, edge)
            taken.add(gname)
    return SchemaPlan(
        ontology=ontology, classes=classes, twin=twin, by_object=by_object, root_lists=root_lists,
    )


def _edge_props(rels: Sequence[RelationshipDef]) -> dict[str, PropertyField]:
    result: dict[str, PropertyField] = {}
    for rel in rels:
        for prop in rel.properties:
            gname = graphql_name(prop.name)
            if gname not in ("cursor", "node") and gname not in result:
                scalar, is_list = scalar_of(prop.schema)
                result[gname] = PropertyField(gname, prop, scalar, is_list)
    return result


def _common_ancestor(ontology: Ontology, class_ids: Sequence[str]) -> str | None:
    common: set[str] | None = None
    for cid in class_ids:
        line = {cid, *ontology.ancestors(cid)}
        common = line if common is None else common & line
    if not common:
        return None
    best = max(common, key=lambda c: (len(ontology.ancestors(c)), c))
    return ontology.classes[best].name


# --------------------------------------------------------------------------------------------------- type building


class _Builder:
    """Creates Strawberry types in a private module so that forward references between them resolve."""

    _counter = itertools.count(1)

    def __init__(self) -> None:
        self.module = types.ModuleType(f"api._generated_schema_{next(self._counter)}")
        sys.modules[self.module.__name__] = self.module
        self.ns = self.module.__dict__
        self.ns.update({"Optional": typing.Optional, "List": typing.List, "strawberry": strawberry, **_STATIC})

    def annotation(self, text_: str) -> StrawberryAnnotation:
        return StrawberryAnnotation(text_, namespace=self.ns)

    def field(self, name: str, annotation: str, *, description: str | None = None,
              args: Sequence[tuple[str, str]] = (), is_input: bool = False) -> StrawberryField:
        result = StrawberryField(
            python_name=name, graphql_name=name, type_annotation=self.annotation(annotation),
            description=description or None, default=strawberry.UNSET if is_input else dataclass_missing(),
        )
        if args:
            result.arguments = [StrawberryArgument(a, a, self.annotation(t), default=strawberry.UNSET) for a, t in args]
        return result

    def make(self, name: str, fields: Sequence[StrawberryField], kind: str = "type", bases: tuple[type, ...] = (),
             description: str | None = None) -> type:
        body: dict[str, Any] = {f.python_name: f for f in fields}
        # The annotation text goes into __annotations__ and the field's own annotation is cleared: Strawberry then
        # resolves it lazily in this module's namespace, so types may refer to types created after them.
        body["__annotations__"] = {f.python_name: f.type_annotation.raw_annotation for f in fields}  # type: ignore[union-attr]
        for f in fields:
            f.type_annotation = None
        body["__module__"] = self.module.__name__
        cls = types.new_class(name, bases, {}, lambda ns: ns.update(body))
        self.ns[name] = cls
        decorate = {"type": strawberry.type, "interface": strawberry.interface, "input": strawberry.input}[kind]
        return decorate(cls, name=name, description=description or None)

    def enum(self, name: str, values: Iterable[str], description: str) -> type:
        members = {v: v for v in values}
        created = enum.Enum(name, members)  # type: ignore[misc]
        created.__module__ = self.module.__name__
        self.ns[name] = strawberry.enum(created, name=name, description=description)
        return self.ns[name]


def dataclass_missing() -> Any:
    """The dataclasses 'no default' marker (fields of output types need none)."""
    import dataclasses

    return dataclasses.MISSING


def _connection_args(plan: ClassPlan) -> list[tuple[str, str]]:
    return [("where", f"Optional[{plan.where}]"), ("orderBy", f"Optional[List[{plan.order_by}]]"),
            ("first", "Optional[int]"), ("after", "Optional[str]")]


@dataclass
class TwinSchema:
    """The generated Strawberry schema and its plan; `bind` attaches root resolvers."""

    strawberry: strawberry.Schema
    plan: SchemaPlan

    @property
    def graphql(self) -> GraphQLSchema:
        """The graphql-core schema under the Strawberry one."""
        return self.strawberry._schema

    def bind(self, type_name: str, field_name: str, resolver: Callable[..., Any]) -> None:
        """Resolve `type_name.field_name` with `resolver(root, info, **args)`."""
        self.graphql.type_map[type_name].fields[field_name].resolve = resolver  # type: ignore[union-attr]

    def sdl(self) -> str:
        """The schema in SDL."""
        return self.strawberry.as_str() + "\n"


def by_response_key(source: Any, info: Any, **_: Any) -> Any:
    """Default resolver: compiled results are dicts keyed by response key (alias or field name)."""
    if isinstance(source, Mapping):
        return source.get(info.path.key)
    return getattr(source, info.field_name, None)


def resolve_twin_type(value: Any, info: Any, abstract_type: Any) -> str | None:
    """The concrete GraphQL type of a compiled twin (its `__typename` key, set by the compiler)."""
    return value.get("__typename") if isinstance(value, Mapping) else None


def build_schema(ontology: Ontology, extensions: Sequence[Callable[[], SchemaExtension]] = (),
                 *, scenarios: bool = False) -> TwinSchema:
    """Generate the GraphQL schema of `ontology`."""
    plan = plan_schema(ontology)
    b = _Builder()
    b.enum("TwinClass", sorted(plan.classes), "Classes of the ontology.")
    b.enum("RelationshipType", sorted(ontology.relationship_types()), "Relationship types of the ontology.")
    all_plans = [plan.twin, *plan.classes.values()]
    # where / order-by inputs
    for p in all_plans:
        sortable = ["uid", *(f.name for f in p.properties.values() if f.filterable)]
        b.enum(p.sort_field, sortable, f"Fields {p.cls or 'a twin'} can be sorted on.")
        b.make(p.order_by, [b.field("field", p.sort_field, is_input=True),
                            b.field("direction", "Optional[SortDirection]", is_input=True)], "input",
               description="A sort key; uid is always the final tie-breaker.")
    for p in all_plans:
        fields = [
            b.field("uid", "Optional[StringFilter]", is_input=True),
            b.field("className", "Optional[StringFilter]", is_input=True),
        ]
        for f in p.properties.values():
            if f.filterable:
                fields.append(b.field(f.name, f"Optional[{FILTER_TYPES[f.scalar]}]", is_input=True))
        for r in p.relations.values():
            node = plan.plan_for(r.node_class)
            fields.append(b.field(f"{r.name}Exists", "Optional[bool]", is_input=True,
                                  description=f"Whether a {r.name} relationship to a visible twin exists."))
            fields.append(b.field(f"{r.name}Some", f"Optional[{node.where}]", is_input=True,
                                  description=f"Some twin reached over {r.name} matches."))
        fields += [b.field("AND", f"Optional[List[{p.where}]]", is_input=True),
                   b.field("OR", f"Optional[List[{p.where}]]", is_input=True),
                   b.field("NOT", f"Optional[{p.where}]", is_input=True)]
        b.make(p.where, fields, "input", description=f"Filter on {p.cls or 'twins'}.")
    # connections and edges
    for p in all_plans:
        node = p.position_type
        b.make(p.edge, [b.field("cursor", "str"), b.field("node", node)])
        b.make(p.connection, [b.field("totalCount", "int"), b.field("edges", f"List[{p.edge}]"),
                              b.field("nodes", f"List[{node}]"), b.field("pageInfo", "PageInfo")])
    made: set[str] = set()
    for p in plan.classes.values():
        for r in p.relations.values():
            if r.connection in made:
                continue
            made.add(r.connection)
            node = plan.plan_for(r.node_class).position_type
            edge_fields = [b.field("cursor", "str"), b.field("node", node)]
            for f in r.edge_props.values():
                edge_fields.append(b.field(f.name, _value_annotation(f), description=_prop_description(f.prop)))
            b.make(r.edge, edge_fields, description=f"A {r.rel_type} relationship ({r.direction}).")
            b.make(r.connection, [b.field("totalCount", "int"), b.field("edges", f"List[{r.edge}]"),
                                  b.field("nodes", f"List[{node}]"), b.field("pageInfo", "PageInfo")])

    # twin interfaces and object types, parents first
    def twin_fields(p: ClassPlan) -> list[StrawberryField]:
        fields = [b.field("uid", "strawberry.ID"), b.field("className", "str"), b.field("labels", "List[str]")]
        for f in p.properties.values():
            fields.append(b.field(f.name, _value_annotation(f), description=_prop_description(f.prop)))
        for r in p.relations.values():
            node = plan.plan_for(r.node_class)
            direction = "outgoing" if r.direction == "out" else "incoming"
            fields.append(b.field(r.name, r.connection, args=_connection_args(node),
                                  description=f"Twins linked by {direction} {r.rel_type} relationships."))
        return fields

    order = sorted(plan.classes.values(), key=lambda p: (len(ontology.ancestors(p.cls or "")), p.cls or ""))
    interfaces: dict[str, type] = {}
    object_types: list[type] = []
    for p in order:
        cls_id = ontology.get(p.cls or "").id
        ancestors = [ontology.classes[a].name for a in ontology.ancestors(cls_id)]
        bases = tuple(interfaces[a] for a in ancestors if a in interfaces) + (Twin,)
        if p.interface_name:
            interfaces[p.cls or ""] = b.make(p.interface_name, twin_fields(p), "interface", bases, p.description)
            object_bases: tuple[type, ...] = (interfaces[p.cls or ""], *bases)
        else:
            object_bases = bases
        object_types.append(b.make(p.type_name, twin_fields(p), "type", _mro_safe(object_bases), p.description))
    # root fields
    query_fields = [
        b.field("twin", "Optional[Twin]", args=[("uid", "strawberry.ID")], description="One twin by uid."),
    ]
    for list_field, cls in plan.root_lists.items():
        p = plan.classes[cls]
        query_fields.append(b.field(list_field, p.connection, args=_connection_args(p),
                                    description=f"{cls} twins (subclasses included), filtered, sorted and paged."))
    query_fields += [
        b.field("search", "List[SearchHit]", args=[("text", "str"), ("classes", "Optional[List[TwinClass]]"),
                                                    ("first", "Optional[int]")],
                description="Full-text search over names and descriptions."),
        b.field("impact", "List[ImpactHit]", args=[("uid", "strawberry.ID"), ("maxDepth", "Optional[int]")],
                description="Everything that transitively depends on a twin."),
        b.field("path", "Optional[PathResult]",
                args=[("source", "strawberry.ID"), ("target", "strawberry.ID"),
                      ("types", "Optional[List[RelationshipType]]"), ("maxDepth", "Optional[int]"),
                      ("directed", "Optional[bool]")],
                description="One shortest path between two twins."),
        b.field("aggregate", "List[AggregateRow]",
                args=[("className", "TwinClass"), ("metrics", "Optional[List[AggregateMetric]]"),
                      ("groupBy", "Optional[List[str]]"), ("where", "Optional[JSON]")],
                description="Grouped count/sum/avg/min/max; `where` takes the class's where-input as JSON."),
        b.field("history", "List[HistoryEntry]", args=[("uid", "strawberry.ID"), ("first", "Optional[int]")],
                description="Recorded changes of a twin (needs history.read)."),
        b.field("changes", "ChangePage", args=[("after", "Optional[int]"), ("first", "Optional[int]")],
                description="The change feed after the sequence number `after` (default 0), oldest first: changes of "
                            "twins and links the caller may see, values masked (needs history.read)."),
        b.field("lineage", "List[LineageRecord]",
                args=[("uid", "strawberry.ID"), ("property", "Optional[str]"), ("first", "Optional[int]")],
                description="Where a twin's values came from (needs lineage.read)."),
        b.field("auditLog", "List[AuditRecord]",
                args=[("subject", "Optional[str]"), ("operation", "Optional[str]"), ("decision", "Optional[str]"),
                      ("first", "Optional[int]"), ("offset", "Optional[int]")],
                description="The audit log, newest first (needs audit.read: compliance and admin)."),
        b.field("scenarios", "List[ScenarioStudy]", args=[("first", "Optional[int]")],
                description="Stored what-if studies, newest first (needs scenario.read)."),
        b.field("scenarioRun", "Optional[ScenarioRun]", args=[("id", "strawberry.ID")],
                description="A study started with runScenario (by its run id) or a stored study (by its id)."),
    ]
    query = b.make("Query", query_fields)
    mutation = b.make("Mutation", [
        b.field("upsertTwins", "WriteResult", args=[("twins", "List[TwinInput]")],
                description="Create or update twins; the batch is validated against the ontology."),
        b.field("deleteTwins", "WriteResult", args=[("uids", "List[strawberry.ID]")],
                description="Delete twins with their relationships."),
        b.field("upsertLinks", "WriteResult", args=[("links", "List[LinkInput]")],
                description="Create or update relationships."),
        b.field("deleteLinks", "WriteResult", args=[("links", "List[LinkKeyInput]")],
                description="Delete relationships."),
        b.field("runScenario", "ScenarioRun", args=[("spec", "str"), ("replications", "Optional[int]")],
                description="Start a what-if study (YAML spec) in the background; poll scenarioRun(id) for results."),
    ])
    subscription = b.make("Subscription", [
        b.field("changes", "Change",
                args=[("after", "Optional[int]"), ("classNames", "Optional[List[TwinClass]]"),
                      ("uid", "Optional[strawberry.ID]")],
                description="Changes as they are committed (over WebSocket, graphql-transport-ws): after the sequence "
                            "number `after` (default: from now), of twins of these classes (and links touching "
                            "them) or of one twin; filtered and masked like `changes` (needs history.read)."),
    ])
    from api.completion import CompletedExecutionContext  # it reads this module's resolvers: imported late

    schema = _QuietSchema(query=query, mutation=mutation, subscription=subscription, types=object_types,
                          extensions=list(extensions),
                          config=StrawberryConfig(scalar_map=SCALAR_MAP),
                          execution_context_class=CompletedExecutionContext)
    result = TwinSchema(schema, plan)
    _install_resolvers(result)
    return result


class _QuietSchema(strawberry.Schema):
    """A Strawberry schema that logs only unexpected errors (the caller's own mistakes are not server problems)."""

    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Log errors that are not meant for the caller (those are masked in the response)."""
        from api.errors import api_error

        unexpected = [e for e in errors if e.original_error is not None and e.path is not None
                      and api_error(e.original_error) is None]
        if unexpected:
            super().process_errors(unexpected, execution_context)


def _mro_safe(bases: tuple[type, ...]) -> tuple[type, ...]:
    """Bases in an order Python's MRO accepts: drop any base another base already inherits from."""
    kept = [b for b in bases if not any(o is not b and issubclass(o, b) for o in bases)]
    return tuple(dict.fromkeys(kept))


def _value_annotation(f: PropertyField) -> str:
    base = SCALAR_ANNOTATIONS[f.scalar]
    return f"Optional[List[Optional[{base}]]]" if f.is_list else f"Optional[{base}]"


def _prop_description(prop: PropertyDef) -> str:
    extra = f"Classification: {prop.classification or 'Internal'}."
    if prop.unit:
        extra += f" Unit: {prop.unit}."
    if prop.schema.kind == "enum":
        extra += " One of: " + ", ".join(str(v.value) for v in prop.schema.enum_values) + "."
    return _describe(prop.display_name, prop.description, extra)


def _install_resolvers(schema: TwinSchema) -> None:
    """Every non-root field reads its value by response key; abstract types resolve from `__typename`."""
    from graphql import GraphQLInterfaceType, GraphQLObjectType

    gql = schema.graphql
    roots = {gql.query_type.name, gql.mutation_type.name if gql.mutation_type else ""}
    for name, gtype in gql.type_map.items():
        if name.startswith("__"):
            continue
        if isinstance(gtype, GraphQLInterfaceType):
            gtype.resolve_type = resolve_twin_type
        elif isinstance(gtype, GraphQLObjectType) and name not in roots:
            gtype.is_type_of = None
            for f in gtype.fields.values():
                f.resolve = by_response_key
