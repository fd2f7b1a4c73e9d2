"""A typed read plan — what one read of the twin graph selects, filters, sorts, pages and returns — and its typed rows.

An edge (the GraphQL layer, the CLI, a study) says *what* it wants as a plan; `graph/engine.py` renders the plan as one
Cypher query through the backend's dialect, with the caller's `ReadScope` applied to every twin it touches, and turns
what comes back into the rows below. Nothing outside `graph/` writes Cypher.

Names in a plan are ontology names (class names, property names, relationship types), never GraphQL names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from graph.model import Metric
from ontology.schema import Schema

StepDirection = Literal["out", "in"]
CompareOp = Literal["eq", "ne", "lt", "lte", "gt", "gte", "in", "is_null", "contains", "starts_with"]


@dataclass(frozen=True)
class Step:
    """One relationship hop from a twin: its type, which way it points, and the class of the twins it reaches."""

    rel_type: str
    direction: StepDirection
    node_class: str | None  # None: any twin


# ---------------------------------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class Compare:
    """One condition on a property (`uid` and `_class` included); `value` is already checked against the field."""

    field: str
    op: CompareOp
    value: Any = None
    schema: Schema | None = None  # how the value is stored (None: as given)


@dataclass(frozen=True)
class AllOf:
    """Every filter holds (none: true)."""

    items: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one filter holds (none: false)."""

    items: tuple[Filter, ...]


@dataclass(frozen=True)
class Not:
    """The filter does not hold (null stays null, as in Cypher's three-valued logic)."""

    item: Filter


@dataclass(frozen=True)
class Related:
    """Some twin the caller may see is reached over `step` (and matches `where`) — or, with `exists` false, none is."""

    step: Step
    where: Filter | None = None
    exists: bool = True


Filter: TypeAlias = Compare | AllOf | AnyOf | Not | Related


@dataclass(frozen=True)
class Sort:
    """A sort key; `uid` is always the last one (stable pages), ascending unless it is given here descending."""

    field: str
    descending: bool = False


@dataclass(frozen=True)
class Window:
    """A page: `limit` rows from `offset` (the engine returns one more row when there is a next page)."""

    offset: int
    limit: int


# -------------------------------------------------------------------------------------------------- projections


@dataclass(eq=False)
class Projection:
    """What is returned of each twin at one position: uid and class always, these properties, nested connections.

    Built up while an edge reads its request (properties and connections are added as they are met); compared by
    identity, so that a row can be looked up by the connection that produced it.
    """

    properties: set[str] = field(default_factory=set)
    connections: list[Connection] = field(default_factory=list)
    everything: bool = False  # every stored property, with the twin's labels (a `TwinRecord`)
    text: bool = False  # the name and description, for search


@dataclass(eq=False)
class Connection:
    """The twins reached from a twin over one step: filtered, sorted, one page of them, and optionally their count."""

    step: Step
    node: Projection
    where: Filter | None = None
    order: tuple[Sort, ...] = ()
    window: Window = Window(0, 50)
    edge_properties: dict[str, Schema | None] = field(default_factory=dict)
    total: bool = False


# ------------------------------------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class ListRead:
    """A page of twins of a class (subclasses included)."""

    cls: str
    node: Projection
    window: Window
    where: Filter | None = None
    order: tuple[Sort, ...] = ()
    total: bool = False


@dataclass(frozen=True)
class TwinRead:
    """One twin by uid."""

    uid: str
    node: Projection


@dataclass(frozen=True)
class SearchRead:
    """Full-text search over names and descriptions; a twin found only through a field the caller may not read is
    left out."""

    text: str
    node: Projection
    limit: int = 20
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TwinsRead:
    """Twins by uid (those outside the scope left out), for a set of uids another read found."""

    uids: tuple[str, ...]
    node: Projection


@dataclass(frozen=True)
class ImpactRead:
    """What depends on a twin: dependency links backwards and supports links forwards, level by level."""

    uid: str
    max_depth: int = 3


@dataclass(frozen=True)
class PathRead:
    """One shortest path between two twins, over some relationship types (all when empty)."""

    source: str
    target: str
    node: Projection
    types: tuple[str, ...] = ()
    max_depth: int = 6
    directed: bool = True


@dataclass(frozen=True)
class AggregateRead:
    """Grouped metrics over the twins of a class."""

    cls: str
    metrics: tuple[tuple[Metric, str | None], ...]
    group_by: tuple[str, ...] = ()
    where: Filter | None = None
    limit: int | None = None
    clamps: tuple[tuple[str, float, float], ...] = ()  # (field, lower, upper): its values clamped before SUM and AVG


ReadPlan: TypeAlias = ListRead | TwinRead | TwinsRead | SearchRead | ImpactRead | PathRead | AggregateRead

# --------------------------------------------------------------------------------------------------------- rows


@dataclass(slots=True)
class NodeRow:
    """One twin as a plan returned it: uid, class, the projected (decoded) properties, its connections' pages."""

    uid: str
    cls: str
    values: dict[str, Any]
    connections: dict[Connection, ConnectionRows]
    labels: tuple[str, ...] = ()  # only for a projection of `everything`
    text: tuple[Any, Any] | None = None  # name and description, for search


@dataclass(slots=True)
class EdgeRow:
    """One item of a connection: the twin reached and the relationship's (decoded) properties."""

    node: NodeRow
    edge: dict[str, Any]


@dataclass(slots=True)
class ConnectionRows:
    """A connection's page (one row more than its window when there is a next page) and its count, if asked."""

    items: list[EdgeRow]
    total: int | None


@dataclass(frozen=True)
class ListRows:
    """A list read's page (one row more than its window when there is a next page) and the total, if asked."""

    items: list[NodeRow]
    total: int | None


@dataclass(frozen=True)
class SearchRow:
    """A search hit and its score."""

    node: NodeRow
    score: float


@dataclass(frozen=True)
class PathRows:
    """A shortest path: its relationship types and the twins along it, in order."""

    types: list[str]
    nodes: list[NodeRow]
