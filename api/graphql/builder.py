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
  `aggregate`, `history`, `lineage`, `auditLog`, `scenarios`, `scenarioRun`; mutations are declared here and resolved
  in api/graphql/mutations.py.

Resolution does not go through Strawberry resolvers: each root field is read with one plan (api/graphql/planning.py,
graph/engine.py) whose result is already shaped like the response, so every nested field reads its value by response
key (`api.graphql.completion.by_response_key`). `TwinSchema.bind` attaches the root resolvers. The schema executes with
`api.graphql.completion.CompletedExecutionContext`, which completes such results without a graphql-core call per field.
The names come from the naming plan (api/graphql/naming.py), the fixed types from api/graphql/types.py.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import strawberry
from graphql import GraphQLInterfaceType, GraphQLObjectType, GraphQLSchema
from strawberry.annotation import StrawberryAnnotation
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.types.arguments import StrawberryArgument
from strawberry.types.field import StrawberryField

from api.errors import api_error
from api.graphql import decisions as decision_fields
from api.graphql.completion import (
    CompletedExecutionContext,
    by_response_key,
    resolve_twin_type,
)
from api.graphql.naming import (
    ClassPlan,
    PropertyField,
    SchemaPlan,
    describe,
    plan_schema,
)
from api.graphql.planning import CompiledPlans
from api.graphql.scalars import SCALAR_ANNOTATIONS, SCALAR_MAP
from api.graphql.types import FILTER_TYPES, STATIC, Twin
from ontology.model import Ontology, PropertyDef


class _Builder:
    """Creates Strawberry types in a private module so that forward references between them resolve."""

    _counter = itertools.count(1)

    def __init__(self) -> None:
        self.module = types.ModuleType(f"api._generated_schema_{next(self._counter)}")
        sys.modules[self.module.__name__] = self.module
        self.ns = self.module.__dict__
        self.ns.update({"Optional": typing.Optional, "List": list, "strawberry": strawberry, **STATIC})

    def annotation(self, text_: str) -> StrawberryAnnotation:
        return StrawberryAnnotation(text_, namespace=self.ns)

    def field(
        self,
        name: str,
        annotation: str,
        *,
        description: str | None = None,
        args: Sequence[tuple[str, str]] = (),
        is_input: bool = False,
        deprecated: str | None = None,
    ) -> StrawberryField:
        result = StrawberryField(
            python_name=name,
            graphql_name=name,
            type_annotation=self.annotation(annotation),
            description=description or None,
            default=strawberry.UNSET if is_input else dataclass_missing(),
            deprecation_reason=deprecated,
        )
        if args:
            result.arguments = [StrawberryArgument(a, a, self.annotation(t), default=strawberry.UNSET) for a, t in args]
        return result

    def make(
        self,
        name: str,
        fields: Sequence[StrawberryField],
        kind: str = "type",
        bases: tuple[type, ...] = (),
        description: str | None = None,
    ) -> type:
        body: dict[str, Any] = {f.python_name: f for f in fields}
        # The annotation text goes into __annotations__ and the field's own annotation is cleared: Strawberry then
        # resolves it lazily in this module's namespace, so types may refer to types created after them.
        body["__annotations__"] = {f.python_name: f.type_annotation.raw_annotation for f in fields}  # type: ignore[union-attr]
        for f in fields:
            f.type_annotation = None
        body["__module__"] = self.module.__name__
        cls = types.new_class(name, bases, {}, lambda ns: ns.update(body))
        self.ns[name] = cls
        decorators: dict[str, Callable[..., type]] = {
            "type": strawberry.type,
            "interface": strawberry.interface,
            "input": strawberry.input,
        }
        return decorators[kind](cls, name=name, description=description or None)

    def enum(self, name: str, values: Iterable[str], description: str) -> type:
        members = {v: v for v in values}
        created = enum.Enum(name, members)  # type: ignore[misc]
        created.__module__ = self.module.__name__
        self.ns[name] = strawberry.enum(created, name=name, description=description)
        return self.ns[name]


def dataclass_missing() -> Any:
    """The dataclasses 'no default' marker (fields of output types need none)."""
    return dataclasses.MISSING


AS_OF = ("asOf", "Optional[DateTime]")  # root reads answered on the graph as it was (graph/as_of.py)
VALID_AT = ("validAt", "Optional[DateTime]")  # ... and as valid then by the sources' effective dates (valid_time.py)
AS_OF_NOTE = (
    " With `asOf`: on the graph as it was then (transaction time), same policy and masks; with `validAt`: with the"
    " values valid then by the sources' effective dates, as known at `asOf` (default now)."
)


def _connection_args(plan: ClassPlan) -> list[tuple[str, str]]:
    return [
        ("where", f"Optional[{plan.where}]"),
        ("orderBy", f"Optional[List[{plan.order_by}]]"),
        ("first", "Optional[int]"),
        ("after", "Optional[str]"),
    ]


@dataclass
class TwinSchema:
    """The generated Strawberry schema, its plan and its compiled selections; `bind` attaches root resolvers."""

    strawberry: strawberry.Schema
    plan: SchemaPlan
    compiled: CompiledPlans = field(default_factory=CompiledPlans)

    @property
    def graphql(self) -> GraphQLSchema:
        """The graphql-core schema under the Strawberry one."""
        return self.strawberry._schema

    def bind(self, type_name: str, field_name: str, resolver: Callable[..., Any]) -> None:
        """Resolve `type_name.field_name` with `resolver(root, info, **args)`."""
        gtype = self.graphql.type_map[type_name]
        if not isinstance(gtype, GraphQLObjectType | GraphQLInterfaceType):
            raise TypeError(f"GraphQL type {type_name!r} has no fields to resolve")
        gtype.fields[field_name].resolve = resolver

    def sdl(self) -> str:
        """The schema in SDL."""
        return self.strawberry.as_str() + "\n"


def build_schema(
    ontology: Ontology,
    extensions: Sequence[Callable[[], SchemaExtension]] = (),
    *,
    scenarios: bool = False,
    renames: Mapping[str, Mapping[str, str]] | None = None,
) -> TwinSchema:
    """Generate the GraphQL schema of `ontology` (`renames`: former property names kept one version, deprecated)."""
    plan = plan_schema(ontology, renames)
    b = _Builder()
    b.ns.update(decision_fields.TYPES)
    b.enum("TwinClass", sorted(plan.classes), "Classes of the ontology.")
    b.enum("RelationshipType", sorted(ontology.relationship_types()), "Relationship types of the ontology.")
    all_plans = [plan.twin, *plan.classes.values()]
    # where / order-by inputs
    for p in all_plans:
        sortable = ["uid", *(f.name for f in p.properties.values() if f.filterable)]
        b.enum(p.sort_field, sortable, f"Fields {p.cls or 'a twin'} can be sorted on.")
        b.make(
            p.order_by,
            [
                b.field("field", p.sort_field, is_input=True),
                b.field("direction", "Optional[SortDirection]", is_input=True),
            ],
            "input",
            description="A sort key; uid is always the final tie-breaker.",
        )
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
            fields.append(
                b.field(
                    f"{r.name}Exists",
                    "Optional[bool]",
                    is_input=True,
                    description=f"Whether a {r.name} relationship to a visible twin exists.",
                )
            )
            fields.append(
                b.field(
                    f"{r.name}Some",
                    f"Optional[{node.where}]",
                    is_input=True,
                    description=f"Some twin reached over {r.name} matches.",
                )
            )
        fields += [
            b.field("AND", f"Optional[List[{p.where}]]", is_input=True),
            b.field("OR", f"Optional[List[{p.where}]]", is_input=True),
            b.field("NOT", f"Optional[{p.where}]", is_input=True),
        ]
        b.make(p.where, fields, "input", description=f"Filter on {p.cls or 'twins'}.")
    # connections and edges
    for p in all_plans:
        node_type = p.position_type
        b.make(p.edge, [b.field("cursor", "str"), b.field("node", node_type)])
        b.make(
            p.connection,
            [
                b.field("totalCount", "int"),
                b.field("edges", f"List[{p.edge}]"),
                b.field("nodes", f"List[{node_type}]"),
                b.field("pageInfo", "PageInfo"),
            ],
        )
    made: set[str] = set()
    for p in plan.classes.values():
        for r in p.relations.values():
            if r.connection in made:
                continue
            made.add(r.connection)
            node_type = plan.plan_for(r.node_class).position_type
            edge_fields = [b.field("cursor", "str"), b.field("node", node_type)]
            for f in r.edge_props.values():
                edge_fields.append(b.field(f.name, _value_annotation(f), description=_prop_description(f.prop)))
            b.make(r.edge, edge_fields, description=f"A {r.rel_type} relationship ({r.direction}).")
            b.make(
                r.connection,
                [
                    b.field("totalCount", "int"),
                    b.field("edges", f"List[{r.edge}]"),
                    b.field("nodes", f"List[{node_type}]"),
                    b.field("pageInfo", "PageInfo"),
                ],
            )

    # twin interfaces and object types, parents first
    def twin_fields(p: ClassPlan) -> list[StrawberryField]:
        fields = [b.field("uid", "strawberry.ID"), b.field("className", "str"), b.field("labels", "List[str]")]
        for f in p.properties.values():
            fields.append(
                b.field(f.name, _value_annotation(f), description=_prop_description(f.prop), deprecated=f.deprecated)
            )
        for r in p.relations.values():
            node = plan.plan_for(r.node_class)
            direction = "outgoing" if r.direction == "out" else "incoming"
            fields.append(
                b.field(
                    r.name,
                    r.connection,
                    args=_connection_args(node),
                    description=f"Twins linked by {direction} {r.rel_type} relationships.",
                )
            )
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
        b.field(
            "twin",
            "Optional[Twin]",
            args=[("uid", "strawberry.ID"), AS_OF, VALID_AT, ("includeRetired", "Optional[bool]")],
            description="One twin by uid (a retired twin only with includeRetired: true)." + AS_OF_NOTE,
        ),
    ]
    for list_field, cls in plan.root_lists.items():
        p = plan.classes[cls]
        query_fields.append(
            b.field(
                list_field,
                p.connection,
                args=[*_connection_args(p), AS_OF, VALID_AT, ("includeRetired", "Optional[bool]")],
                description=f"{cls} twins (subclasses included), filtered, sorted and paged; retired twins (and "
                "their connections) only with includeRetired: true." + AS_OF_NOTE,
            )
        )
    query_fields += [
        b.field(
            "search",
            "List[SearchHit]",
            args=[
                ("text", "str"),
                ("classes", "Optional[List[TwinClass]]"),
                ("first", "Optional[int]"),
                AS_OF,
                VALID_AT,
            ],
            description="Full-text search over names and descriptions." + AS_OF_NOTE,
        ),
        b.field(
            "impact",
            "List[ImpactHit]",
            args=[("uid", "strawberry.ID"), ("maxDepth", "Optional[int]"), AS_OF, VALID_AT],
            description="Everything that transitively depends on a twin." + AS_OF_NOTE,
        ),
        b.field(
            "path",
            "Optional[PathResult]",
            args=[
                ("source", "strawberry.ID"),
                ("target", "strawberry.ID"),
                ("types", "Optional[List[RelationshipType]]"),
                ("maxDepth", "Optional[int]"),
                ("directed", "Optional[bool]"),
                AS_OF,
                VALID_AT,
            ],
            description="One shortest path between two twins." + AS_OF_NOTE,
        ),
        b.field(
            "aggregate",
            "List[AggregateRow]",
            args=[
                ("className", "TwinClass"),
                ("metrics", "Optional[List[AggregateMetric]]"),
                ("groupBy", "Optional[List[str]]"),
                ("where", "Optional[JSON]"),
                ("epsilon", "Optional[float]"),
                AS_OF,
                VALID_AT,
            ],
            description="Grouped count/sum/avg/min/max; `where` takes the class's where-input as JSON. Over a class "
            "with personal or confidential properties, a role with a privacy budget gets noisy COUNT/SUM/AVG "
            "(differential privacy; `epsilon` defaults to the role's per-query epsilon, and each metric says its "
            "accuracy)." + AS_OF_NOTE,
        ),
        b.field(
            "diff",
            "List[GraphDelta]",
            args=[("from", "DateTime"), ("to", "Optional[DateTime]"), ("first", "Optional[int]")],
            description="What changed in the graph between two times (`to` defaults to now): one entry per twin or "
            "link, twins first; filtered and masked like `changes` (needs history.read).",
        ),
        b.field(
            "history",
            "List[HistoryEntry]",
            args=[("uid", "strawberry.ID"), ("first", "Optional[int]")],
            description="Recorded changes of a twin (needs history.read).",
        ),
        b.field(
            "changes",
            "ChangePage",
            args=[("after", "Optional[int]"), ("first", "Optional[int]")],
            description="The change feed after the sequence number `after` (default 0), oldest first: changes of "
            "twins and links the caller may see, values masked (needs history.read).",
        ),
        b.field(
            "lineage",
            "List[LineageRecord]",
            args=[("uid", "strawberry.ID"), ("property", "Optional[str]"), ("first", "Optional[int]")],
            description="Where a twin's values came from (needs lineage.read).",
        ),
        b.field(
            "auditLog",
            "List[AuditRecord]",
            args=[
                ("subject", "Optional[str]"),
                ("operation", "Optional[str]"),
                ("decision", "Optional[str]"),
                ("first", "Optional[int]"),
                ("offset", "Optional[int]"),
            ],
            description="The audit log, newest first (needs audit.read: compliance and admin).",
        ),
        b.field(
            "scenarios",
            "List[ScenarioStudy]",
            args=[("first", "Optional[int]")],
            description="Stored what-if studies, newest first (needs scenario.read).",
        ),
        b.field(
            "scenarioRun",
            "Optional[ScenarioRun]",
            args=[("id", "strawberry.ID")],
            description="A study started with runScenario (by its run id) or a stored study (by its id).",
        ),
        b.field(
            "experiments",
            "List[ExperimentSummary]",
            args=[("first", "Optional[int]")],
            description="Stored experiments, newest first (needs scenario.read).",
        ),
        b.field(
            "experimentRun",
            "Optional[ExperimentRun]",
            args=[("id", "strawberry.ID")],
            description="An experiment started with runExperiment (by its run id) or a stored one (by its id).",
        ),
        b.field(
            "forecastSeries",
            "List[str]",
            args=[("prefix", "Optional[str]"), ("first", "Optional[int]")],
            description="Names of the series with a stored forecast whose classes the caller may read, sorted "
            "(needs forecast.read).",
        ),
        b.field(
            "forecast",
            "SeriesForecast",
            args=[("series", "str"), ("horizon", "Optional[int]"), ("historyPoints", "Optional[int]")],
            description="The newest stored forecast of a series (`twin forecast run`): history, forecast and 80 % "
            "band for `horizon` periods (all stored by default), with its model version and input digest (needs "
            "forecast.read and read access to every class the series is about).",
        ),
    ]
    query_fields += [b.field(n, t, args=a, description=d) for n, t, a, d in decision_fields.QUERY_FIELDS]
    query = b.make("Query", query_fields)
    mutation = b.make(
        "Mutation",
        [
            b.field(
                "upsertTwins",
                "WriteResult",
                args=[("twins", "List[TwinInput]")],
                description="Create or update twins; the batch is validated against the ontology.",
            ),
            b.field(
                "deleteTwins",
                "WriteResult",
                args=[("uids", "List[strawberry.ID]")],
                description="Delete twins with their relationships.",
            ),
            b.field(
                "upsertLinks",
                "WriteResult",
                args=[("links", "List[LinkInput]")],
                description="Create or update relationships.",
            ),
            b.field(
                "deleteLinks",
                "WriteResult",
                args=[("links", "List[LinkKeyInput]")],
                description="Delete relationships.",
            ),
            b.field(
                "transitionTwin",
                "TwinTransition",
                args=[("uid", "strawberry.ID"), ("state", "str"), ("reason", "Optional[str]")],
                description="Move a twin to a lifecycle state (planned, active, suspended, retired; needs "
                "twin.lifecycle and write on its class); retired twins are left out of reads, impact and studies, "
                "kept in history.",
            ),
            b.field(
                "runScenario",
                "ScenarioRun",
                args=[("spec", "str"), ("replications", "Optional[int]")],
                description="Start a what-if study (YAML spec) in the background; poll scenarioRun(id) for results.",
            ),
            b.field(
                "runExperiment",
                "ExperimentRun",
                args=[("spec", "str")],
                description="Start an experiment (a study spec with an `experiment:` block: grid, sensitivity or "
                "optimisation) in the background; poll experimentRun(id) for the best decision and its CI.",
            ),
            *(b.field(n, t, args=a, description=d) for n, t, a, d in decision_fields.MUTATION_FIELDS),
        ],
    )
    subscription = b.make(
        "Subscription",
        [
            b.field(
                "changes",
                "Change",
                args=[
                    ("after", "Optional[int]"),
                    ("classNames", "Optional[List[TwinClass]]"),
                    ("uid", "Optional[strawberry.ID]"),
                ],
                description="Changes as they are committed (over WebSocket, graphql-transport-ws): after the sequence "
                "number `after` (default: from now), of twins of these classes (and links touching "
                "them) or of one twin; filtered and masked like `changes` (needs history.read).",
            ),
            *(b.field(n, t, args=a, description=d) for n, t, a, d in decision_fields.SUBSCRIPTION_FIELDS),
        ],
    )
    schema = _QuietSchema(
        query=query,
        mutation=mutation,
        subscription=subscription,
        types=object_types,
        extensions=list(extensions),
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        execution_context_class=CompletedExecutionContext,
    )
    result = TwinSchema(schema, plan)
    _install_resolvers(result)
    return result


class _QuietSchema(strawberry.Schema):
    """A Strawberry schema that logs only unexpected errors (the caller's own mistakes are not server problems)."""

    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Log errors that are not meant for the caller (those are masked in the response)."""
        unexpected = [
            e
            for e in errors
            if e.original_error is not None and e.path is not None and api_error(e.original_error) is None
        ]
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
    return describe(prop.display_name, prop.description, extra)


def _install_resolvers(schema: TwinSchema) -> None:
    """Every non-root field reads its value by response key; abstract types resolve from `__typename`."""
    gql = schema.graphql
    roots = {gql.query_type.name if gql.query_type else "", gql.mutation_type.name if gql.mutation_type else ""}
    for name, gtype in gql.type_map.items():
        if name.startswith("__"):
            continue
        if isinstance(gtype, GraphQLInterfaceType):
            gtype.resolve_type = resolve_twin_type
        elif isinstance(gtype, GraphQLObjectType) and name not in roots:
            gtype.is_type_of = None
            for f in gtype.fields.values():
                f.resolve = by_response_key
