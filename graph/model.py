"""Typed objects that cross the graph layer's boundary: twins, links, filters, pages, paths, aggregates."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Direction = Literal["out", "in", "both"]
Operator = Literal["eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "starts_with", "exists", "is_null"]
Metric = Literal["count", "sum", "avg", "min", "max"]


@dataclass(frozen=True)
class Twin:
    """A twin to write: stable uid, its ontology class, and typed property values."""

    uid: str
    cls: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Link:
    """A relationship to write: type, source uid, target uid, and its own properties."""

    type: str
    source: str
    target: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TwinRecord:
    """A twin as read back: uid, class name, all labels and decoded properties."""

    uid: str
    cls: str
    labels: tuple[str, ...]
    properties: dict[str, Any]
    lifecycle: str = "active"  # planned | active | suspended | retired (graph/lifecycle.py)


@dataclass(frozen=True)
class LinkRecord:
    """A relationship as read back."""

    type: str
    source: str
    target: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Condition:
    """One filter condition on a twin property (or, with op='exists', on a relationship type)."""

    field: str
    op: Operator
    value: Any = None
    direction: Direction = "out"  # for op='exists': which way the relationship points


@dataclass(frozen=True)
class OrderBy:
    """A sort key."""

    field: str
    descending: bool = False


@dataclass(frozen=True)
class Page:
    """One page of twins plus the total number matching."""

    items: list[TwinRecord]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class Subgraph:
    """Twins and links around a starting twin."""

    nodes: list[TwinRecord]
    links: list[LinkRecord]


@dataclass(frozen=True)
class ImpactHit:
    """A twin affected when the start twin fails, at a distance, with one shortest chain of uids leading to it."""

    twin: TwinRecord
    depth: int
    path: tuple[str, ...]
    via: tuple[str, ...]  # relationship types along the path


@dataclass(frozen=True)
class PathResult:
    """A path: the twins in order and the relationship types between them."""

    nodes: list[TwinRecord]
    types: list[str]

    @property
    def length(self) -> int:
        """Number of relationships in the path."""
        return len(self.types)


@dataclass(frozen=True)
class AggregateRow:
    """One group of an aggregate: the group's key values and the metric results (by name, and in the order asked)."""

    group: dict[str, Any]
    values: dict[str, Any]
    metrics: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SearchHit:
    """A full-text search result with its score."""

    twin: TwinRecord
    score: float


@dataclass(frozen=True)
class WriteSummary:
    """What a write did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    def __add__(self, other: WriteSummary) -> WriteSummary:
        return WriteSummary(
            self.created + other.created,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.deleted + other.deleted,
        )


@dataclass(frozen=True)
class Rewrite:
    """A twin rewritten (an ontology migration): its class and properties before and after (decoded); the writer
    applies what differs between them to the state it reads when it writes."""

    uid: str
    old_cls: str
    cls: str
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass(frozen=True)
class GraphStats:
    """Counts of the twin graph."""

    twins: int
    links: int
    by_class: dict[str, int]
    by_type: dict[str, int]


@dataclass(frozen=True)
class ScopeJoin:
    """A row rule in join form, for scans: twins carrying one of `labels` are visible only when a `via` link leads from
    them to a twin that `anchor` finds (a Cypher pattern that names that twin `scope_member`).

    The same rule stays in the scope's predicate for traversals; scans (find, aggregate) evaluate it as a join,
    which is an order of magnitude cheaper than a variable-length pattern per scanned twin.
    """

    labels: tuple[str, ...]
    via: str
    anchor: str


@dataclass(frozen=True)
class ReadScope:
    """Restrictions a policy puts on reads: a row predicate over `{n}` and fields that may not be touched.

    `predicate` is a Cypher boolean expression in which `{n}` stands for the node variable; `params` are its
    parameters (names must start with `scope_`). `hidden` maps a class name to fields that may not be read, filtered,
    sorted, aggregated or searched on for twins carrying that label.
    """

    predicate: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    hidden: dict[str, frozenset[str]] = field(default_factory=dict)
    readable_classes: frozenset[str] | None = None  # None = all
    joins: tuple[ScopeJoin, ...] = ()
    scan_predicate: str | None = None  # the predicate without the rules `joins` evaluate and without the class check
    # that `readable_classes` makes (used with `joins` only)
    hidden_states: frozenset[str] = frozenset()  # lifecycle states left out (a caller's scope: retired twins)

    def render(self, var: str, within: Collection[str] | None = None) -> str:
        """The predicate for node variable `var`, or 'true' when unrestricted; `within` names every class `var` can
        have, when the caller knows it (a scan of one class): if all are readable, the class check is left out."""
        return self._render(var, self.predicate, within)

    def render_scan(self, var: str, within: Collection[str] | None = None) -> str:
        """The predicate a scan applies next to its `joins` (the whole predicate when there are none)."""
        return self._render(var, self.scan_predicate if self.joins else self.predicate, within)

    def including_retired(self) -> ReadScope:
        """The same scope with twins of every lifecycle state (a read that opts in to retired twins)."""
        return replace(self, hidden_states=frozenset()) if self.hidden_states else self

    def _render(self, var: str, predicate: str | None, within: Collection[str] | None) -> str:
        clauses = []
        if self.hidden_states:  # absent: active (graph/lifecycle.py); states are fixed words, never caller input
            states = ", ".join(f"'{state}'" for state in sorted(self.hidden_states))
            clauses.append(f"NOT coalesce({var}._lifecycle, 'active') IN [{states}]")
        if self.readable_classes is not None:
            if not self.readable_classes:
                return "false"
            if within is None or not self.readable_classes.issuperset(within):
                clauses.append("(" + " OR ".join(f"{var}:`{c}`" for c in sorted(self.readable_classes)) + ")")
        if predicate:
            clauses.append("(" + predicate.replace("{n}", var) + ")")
        return " AND ".join(clauses) if clauses else "true"

    def hidden_for(self, labels: tuple[str, ...] | list[str]) -> frozenset[str]:
        """Fields hidden for a twin carrying `labels`."""
        result: set[str] = set()
        for label in labels:
            result |= self.hidden.get(label, frozenset())
        return frozenset(result)


UNRESTRICTED = ReadScope()
