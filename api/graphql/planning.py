"""Translating a GraphQL selection into a read plan (graph/plan.py), and remembering how to shape the rows it returns.

GraphQL names become ontology names here; arguments are checked (pages, cursors, filter operators and values against
the field's scalar, the nesting and size of a filter) and refused as BadUserInput before anything runs. The scope and
its hidden fields are applied by the engine (graph/engine.py); masks by the policy when the rows are shaped
(api/graphql/shaping.py).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
)

from api.context import RequestContext
from api.errors import BadUserInput, Forbidden
from api.graphql.naming import ClassPlan, PropertyField, RelationField, SchemaPlan
from api.graphql.scalars import STRING_LIKE
from api.graphql.selection import PAGE_MAX, Selection, decode_cursor, plain
from graph.plan import (
    AllOf,
    AnyOf,
    Compare,
    Connection,
    Filter,
    Not,
    Projection,
    Related,
    Sort,
    Step,
    Window,
)
from ontology.errors import quoted
from ontology.schema import Schema

DEFAULT_PAGE = 100
DEFAULT_NESTED_PAGE = 50
MAX_ESTIMATED_TWINS = 1_000_000
_OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "isNull", "contains", "startsWith")
_ORDERED_SCALARS = frozenset({"String", "ID", "Int", "Float", "Date", "DateTime", "Time"})
_PLAN_OPS = {"startsWith": "starts_with"}
C = TypeVar("C")


@dataclass(frozen=True)
class PageArgs:
    """A connection's where/orderBy/first/after, checked and translated."""

    where: Filter | None
    order: tuple[Sort, ...]
    offset: int
    limit: int

    @property
    def window(self) -> Window:
        """The rows this page asks the graph for."""
        return Window(self.offset, self.limit)


# NodeShape: object type name -> [(response key, item)]; items: ("typename",), ("uid",), ("className",), ("labels",),
# ("prop", PropertyField, its GraphQL leaf type), ("conn", Connection, PageArgs, ConnectionShape), ("absent",)
NodeShape = dict[str, list[tuple[str, tuple[Any, ...]]]]
ConnectionShape = list[tuple[str, str, Any]]


def require_readable(ctx: RequestContext, cls: str) -> None:
    """Forbidden when the caller may read neither `cls` nor any of its subclasses."""
    readable = ctx.scope.readable_classes
    if readable is None:
        return
    if not ctx.store.names_under(cls) & readable:
        raise Forbidden(f"denied: {ctx.subject.sub} may not read {cls} twins")


class Planner:
    """Reads one root field's selection into a plan's projections and the shapes its rows are returned in."""

    def __init__(self, info: Any, ctx: RequestContext, schema: SchemaPlan) -> None:
        self.ctx = ctx
        self.schema = schema
        self.ontology = schema.ontology
        self.sel = Selection(info)
        self.estimated = 0
        self._shared: dict[tuple[int, str, str], tuple[Connection, PageArgs]] = {}

    # ------------------------------------------------------------------ the caller's classes

    def require_readable(self, cls: str) -> None:
        """Forbidden when the caller may read neither `cls` nor any of its subclasses."""
        require_readable(self.ctx, cls)

    # ------------------------------------------------------------------ arguments

    def page_args(self, cls: str | None, args: Mapping[str, Any], default_first: int) -> PageArgs:
        """Checked where/orderBy/first/after of a connection over `cls`."""
        first = args.get("first")
        if first is None:
            first = default_first
        if not isinstance(first, int) or isinstance(first, bool) or not 0 <= first <= PAGE_MAX:
            raise BadUserInput(f"`first` must be between 0 and {PAGE_MAX}, got {quoted(first)}")
        after = args.get("after")
        offset = decode_cursor(after) + 1 if after is not None else 0
        where = args.get("where")
        if where is not None and not isinstance(where, Mapping):
            raise BadUserInput("`where` must be an object")
        self.check_filter_shape(where)
        return PageArgs(
            self.where(cls, where) if where else None, self.order(cls, args.get("orderBy") or []), offset, first
        )

    def check_filter_shape(self, where: Any) -> None:
        """Refuse a `where` nested deeper or holding more conditions than the settings allow, before reading it.

        FalkorDB's parser takes time exponential in nested `NOT (...)` (x4 a level: 10 levels ran 20-30 s, beyond
        any query time limit, since a query's TIMEOUT starts after parsing), so the nesting must stay shallow.
        """
        max_depth, max_conditions = self.ctx.max_filter_depth, self.ctx.max_filter_conditions
        deepest, conditions = 0, 0
        pending: list[tuple[Any, int]] = [(where, 0)]
        while pending:
            node, depth = pending.pop()
            if isinstance(node, list):
                pending.extend((item, depth) for item in node)
                continue
            if not isinstance(node, Mapping):
                continue
            for key, value in node.items():
                if value is None:
                    continue
                if key in ("AND", "OR", "NOT") or (isinstance(key, str) and key.endswith("Some")):
                    deepest = max(deepest, depth + 1)
                    if deepest > max_depth:
                        raise BadUserInput(
                            f"`where` nests AND/OR/NOT/...Some more than {max_depth} levels deep; "
                            f"at most {max_depth} are allowed (write the filter flatter)"
                        )
                    pending.append((value, depth + 1))
                else:
                    conditions += len(value) if isinstance(value, Mapping) and value else 1
        if conditions > max_conditions:
            raise BadUserInput(f"`where` holds {conditions} conditions; at most {max_conditions} are allowed")

    def where(self, cls: str | None, where: Any) -> Filter:
        """The filter a where-input over twins of `cls` stands for."""
        if not isinstance(where, Mapping):
            raise BadUserInput(f"a filter must be an object, got {type(where).__name__}")
        plan = self.schema.plan_for(cls)
        parts: list[Filter] = []
        for key, value in where.items():
            if value is None:
                continue
            if key in ("AND", "OR"):
                if not isinstance(value, list):
                    raise BadUserInput(f"`{key}` takes a list of filters")
                items = tuple(self.where(cls, item) for item in value)
                parts.append(AllOf(items) if key == "AND" else AnyOf(items))
            elif key == "NOT":
                parts.append(Not(self.where(cls, value)))
            elif key == "uid":
                parts.append(self.conditions("uid", "uid", value, None, "ID"))
            elif key == "className":
                parts.append(self.conditions("_class", "className", value, None, "String"))
            elif key in plan.properties:
                prop = plan.properties[key]
                if not prop.filterable:
                    raise BadUserInput(
                        f"field {quoted(key)} of {cls} cannot be filtered on (it is a list or JSON value)"
                    )
                parts.append(self.conditions(prop.prop.name, key, value, prop.prop.schema, prop.scalar))
            elif key.endswith("Exists") and key[: -len("Exists")] in plan.relations:
                if not isinstance(value, bool):
                    raise BadUserInput(f"`{key}` takes true or false")
                parts.append(Related(_step(plan.relations[key[: -len("Exists")]]), None, value))
            elif key.endswith("Some") and key[: -len("Some")] in plan.relations:
                relation = plan.relations[key[: -len("Some")]]
                parts.append(Related(_step(relation), self.where(relation.node_class, value), True))
            else:
                raise BadUserInput(f"{cls or 'Twin'} has no filterable field {quoted(key)}")
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def conditions(self, field: str, name: str, condition: Any, schema: Schema | None, scalar: str) -> Filter:
        """Conditions on one property (`{eq: 3, lt: 5}`), all of which must hold."""
        if not isinstance(condition, Mapping):
            raise BadUserInput(f"filter on {quoted(name)} must be an object such as {{eq: ...}}")
        parts: list[Filter] = []
        for op, value in condition.items():
            op = "in" if op == "in_" else op
            if op not in _OPERATORS:
                raise BadUserInput(
                    f"unknown filter operator {quoted(op)} on {quoted(name)}; use {', '.join(_OPERATORS)}"
                )
            if op == "isNull":
                if value is None:
                    continue
                if not isinstance(value, bool):
                    raise BadUserInput(f"`isNull` on {name!r} takes true or false")
                parts.append(Compare(field, "is_null", value))
            elif value is None:
                if op in ("eq", "ne"):
                    parts.append(Compare(field, "is_null", op == "eq"))
            elif op == "in":
                if not isinstance(value, list):
                    raise BadUserInput(f"`in` on {name!r} takes a list")
                parts.append(Compare(field, "in", [self.value(v, name, scalar) for v in value], schema))
            elif op in ("contains", "startsWith"):
                if scalar not in STRING_LIKE or not isinstance(value, str):
                    raise BadUserInput(f"`{op}` works on text fields with a text value, not on {name!r}")
                parts.append(Compare(field, "contains" if op == "contains" else "starts_with", value))
            else:
                if op not in ("eq", "ne") and scalar not in _ORDERED_SCALARS:
                    raise BadUserInput(f"`{op}` does not apply to {scalar} field {name!r}")
                parts.append(Compare(field, op, self.value(value, name, scalar), schema))  # type: ignore[arg-type]
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    @staticmethod
    def value(value: Any, name: str, scalar: str) -> Any:
        """A filter value checked against the field's scalar."""
        ok = {
            "Int": isinstance(value, int) and not isinstance(value, bool),
            "Float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "Boolean": isinstance(value, bool),
        }.get(scalar, isinstance(value, str))
        if not ok:
            raise BadUserInput(f"filter value {quoted(str(value))} does not fit {scalar} field {quoted(name)}")
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            raise BadUserInput(f"filter value on {name!r} must be a finite number")
        return value

    def order(self, cls: str | None, order: Sequence[Any]) -> tuple[Sort, ...]:
        """The sort keys of an orderBy argument (the engine adds uid last)."""
        plan = self.schema.plan_for(cls)
        keys: list[Sort] = []
        for item in order:
            if not isinstance(item, Mapping) or "field" not in item:
                raise BadUserInput("each orderBy item needs a `field`")
            name, direction = item["field"], item.get("direction") or "ASC"
            if direction not in ("ASC", "DESC"):
                raise BadUserInput(f"sort direction must be ASC or DESC, got {quoted(direction)}")
            if name == "uid":
                keys.append(Sort("uid", direction == "DESC"))
                continue
            prop = plan.properties.get(name)
            if prop is None or not prop.filterable:
                raise BadUserInput(f"{cls or 'Twin'} cannot be sorted on {quoted(name)}")
            keys.append(Sort(prop.prop.name, direction == "DESC"))
        return tuple(keys)

    def group_field(self, plan: ClassPlan, name: str, use: str) -> PropertyField:
        """The property a groupBy or metric names; BadUserInput when the class has no such filterable field."""
        prop = plan.properties.get(name)
        if prop is None or not prop.filterable:
            raise BadUserInput(f"{plan.cls} cannot be {use} {quoted(name)}")
        return prop

    # ------------------------------------------------------------------ selections -> projections and shapes

    def node(self, gtype: Any, nodes: Sequence[FieldNode], proj: Projection, parent_rows: int) -> NodeShape:
        """The shape of a twin position and, into `proj`, what the plan must return for it."""
        shape: NodeShape = {}
        for object_type in self.sel.possible(gtype):
            cls = self.schema.by_object.get(object_type.name)
            if cls is None:
                continue
            plan = self.schema.classes[cls]
            items: list[tuple[str, tuple[Any, ...]]] = []
            for key, subs in self.sel.fields(object_type, nodes).items():
                name = subs[0].name.value
                if name == "__typename":
                    items.append((key, ("typename",)))
                elif name in ("uid", "className", "labels"):
                    items.append((key, (name,)))
                elif name in plan.properties:
                    prop = plan.properties[name]
                    proj.properties.add(prop.prop.name)
                    leaf = get_named_type(object_type.fields[name].type) if name in object_type.fields else None
                    items.append((key, ("prop", prop, leaf)))
                elif name in plan.relations:
                    relation = plan.relations[name]
                    conn, page = self.connection_of(proj, relation, self.sel.args(object_type, subs[0]), parent_rows)
                    connection_type = get_named_type(object_type.fields[name].type)
                    items.append(
                        (
                            key,
                            (
                                "conn",
                                conn,
                                page,
                                self.connection(
                                    connection_type, subs, conn, conn.node, parent_rows * max(page.limit, 1), relation
                                ),
                            ),
                        )
                    )
                else:
                    items.append((key, ("absent",)))  # no value this API holds: completed the general way
            shape[object_type.name] = items
        return shape

    def connection_of(
        self, proj: Projection, relation: RelationField, args: dict[str, Any], parent_rows: int
    ) -> tuple[Connection, PageArgs]:
        """The (shared) connection under `proj` for a relationship field with these arguments."""
        identity = (id(proj), relation.name, json.dumps(args, sort_keys=True, default=str))
        existing = self._shared.get(identity)
        if existing is not None:
            return existing
        page = self.page_args(relation.node_class, args, DEFAULT_NESTED_PAGE)
        self.estimated += parent_rows * page.limit
        if self.estimated > MAX_ESTIMATED_TWINS:
            raise BadUserInput(
                f"this query could return up to {self.estimated:,} twins (limit {MAX_ESTIMATED_TWINS:,}); "
                "ask for smaller pages with `first`"
            )
        conn = Connection(
            step=_step(relation), node=Projection(), where=page.where, order=page.order, window=page.window
        )
        proj.connections.append(conn)
        self._shared[identity] = (conn, page)
        return conn, page

    def connection(
        self,
        connection_type: Any,
        nodes: Sequence[FieldNode],
        conn: Connection | None,
        node_proj: Projection,
        rows: int,
        relation: RelationField | None = None,
    ) -> ConnectionShape:
        """The shape of a connection (totalCount, edges, nodes, pageInfo); `conn` and `relation` are None for a root
        list."""
        shape: ConnectionShape = []
        for key, subs in self.sel.fields(connection_type, nodes).items():
            name = subs[0].name.value
            if name == "__typename":
                shape.append((key, "typename", connection_type.name))
            elif name == "totalCount":
                if conn is not None:
                    conn.total = True
                shape.append((key, "totalCount", None))
            elif name == "pageInfo":
                info_type = get_named_type(connection_type.fields["pageInfo"].type)
                shape.append(
                    (key, "pageInfo", [(k, s[0].name.value) for k, s in self.sel.fields(info_type, subs).items()])
                )
            elif name == "nodes":
                node_type = connection_type.fields["nodes"].type
                shape.append((key, "nodes", self.node(node_type, subs, node_proj, rows)))
            elif name == "edges":
                edge_type = get_named_type(connection_type.fields["edges"].type)
                edge_shape: list[tuple[str, str, Any]] = []
                for edge_key, edge_subs in self.sel.fields(edge_type, subs).items():
                    edge_field = edge_subs[0].name.value
                    if edge_field == "__typename":
                        edge_shape.append((edge_key, "typename", edge_type.name))
                    elif edge_field == "cursor":
                        edge_shape.append((edge_key, "cursor", None))
                    elif edge_field == "node":
                        edge_shape.append(
                            (edge_key, "node", self.node(edge_type.fields["node"].type, edge_subs, node_proj, rows))
                        )
                    elif conn is not None and relation is not None and edge_field in relation.edge_props:
                        prop = relation.edge_props[edge_field]
                        conn.edge_properties[prop.prop.name] = prop.prop.schema
                        mode = self.ctx.policy.relationship_field_mode(self.ctx.subject, prop.prop.classification)
                        leaf = get_named_type(edge_type.fields[edge_field].type)
                        edge_shape.append((edge_key, "prop", (prop, mode, relation.rel_type, leaf)))
                shape.append((key, "edges", edge_shape))
        return shape


@dataclass(frozen=True)
class _Compiled:
    """A cached compilation, with what its key names by identity kept alive (an id is never reused meanwhile)."""

    nodes: tuple[FieldNode, ...]
    policy: Any
    value: Any


#: Documents longer than this are compiled for each request instead of remembered: a remembered compilation keeps the
#: document's syntax tree, and through it the whole request text, alive (a request may carry up to 1 MiB).
CACHED_DOCUMENT_CHARS = 16_384


class CompiledPlans:
    """Compiled root-field selections (read plan and response shape) per document, role and policy, reused across
    requests; bounded (least recently used entries go first).

    A selection compiles to the same plan and shape whenever the same document field (the parsed document is cached,
    so its nodes are the same objects), the same values of the variables used under it, the same extra arguments
    (`extra`, e.g. a root list's page), the same roles and org unit and the same policy (object and version) meet:
    the shape holds the policy's modes for relationship properties, so a role change or a reloaded policy compiles
    anew. What varies per request is not cached: the caller's scope and masks are applied when the plan is run and its
    rows shaped, and the request is audited, every time.
    """

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, _Compiled] = OrderedDict()
        self._variables: dict[tuple[int, ...], tuple[tuple[FieldNode, ...], frozenset[str]]] = {}
        self._lock = threading.Lock()

    def compiled(self, info: Any, ctx: RequestContext, extra: Hashable, compile_: Callable[[], C]) -> C:
        """The compilation of `info`'s field for `ctx`'s caller, from the cache or made by `compile_` (whose errors
        are raised and nothing is kept)."""
        nodes = tuple(info.field_nodes)
        if _document_size(nodes) > CACHED_DOCUMENT_CHARS:  # an entry keeps its document alive: large ones are not kept
            return compile_()
        subject, policy = ctx.subject, ctx.policy
        key = (
            tuple(map(id, nodes)),
            self._variables_key(nodes, info),
            extra,
            frozenset(subject.roles),
            subject.org_unit,
            id(policy),
            policy.version,
            ctx.max_filter_depth,
            ctx.max_filter_conditions,
        )
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found.policy is policy and all(map(_same, found.nodes, nodes)):
                self._entries.move_to_end(key)
                self.hits += 1
                return found.value
        value = compile_()
        with self._lock:
            self.misses += 1
            self._entries[key] = _Compiled(nodes, policy, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def _variables_key(self, nodes: tuple[FieldNode, ...], info: Any) -> tuple[tuple[str, str], ...]:
        """The values of the variables the selection under `nodes` uses (not those of the field's own arguments,
        which the caller passes in `extra` when the plan depends on them)."""
        ids = tuple(map(id, nodes))
        known = self._variables.get(ids)
        if known is None or not all(map(_same, known[0], nodes)):
            if len(self._variables) >= self.size:
                self._variables.clear()
            known = self._variables[ids] = (nodes, _variables_under(nodes, info.fragments))
        if not known[1]:
            return ()
        variables = info.variable_values
        values = variables.coerced if hasattr(variables, "coerced") else variables or {}
        return tuple((name, canonical_value(values.get(name))) for name in sorted(known[1]))


def _document_size(nodes: tuple[FieldNode, ...]) -> int:
    """The length of the request text the nodes were parsed from (0 when they carry no location)."""
    loc = nodes[0].loc if nodes else None
    return len(loc.source.body) if loc is not None else 0


def canonical_value(value: Any) -> str:
    """A value (plain arguments or variables) as text equal for equal values, for cache keys."""
    return json.dumps(plain(value), sort_keys=True, default=repr)


def _same(a: object, b: object) -> bool:
    return a is b


def _variables_under(nodes: Sequence[FieldNode], fragments: Mapping[str, Any]) -> frozenset[str]:
    """Names of the variables used anywhere in the selection sets under `nodes` (arguments, directives, fragments)."""
    found: set[str] = set()
    seen: set[str] = set()
    pending: list[SelectionSetNode] = [n.selection_set for n in nodes if n.selection_set is not None]
    while pending:
        for selection in pending.pop().selections:
            for directive in selection.directives or ():
                for argument in directive.arguments or ():
                    _variables_in(argument.value, found)
            if isinstance(selection, FieldNode):
                for argument in selection.arguments or ():
                    _variables_in(argument.value, found)
                if selection.selection_set is not None:
                    pending.append(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in seen:
                    seen.add(name)
                    pending.append(fragment.selection_set)
    return frozenset(found)


def _variables_in(value: ValueNode, found: set[str]) -> None:
    if isinstance(value, VariableNode):
        found.add(value.name.value)
    elif isinstance(value, ListValueNode):
        for item in value.values:
            _variables_in(item, found)
    elif isinstance(value, ObjectValueNode):
        for object_field in value.fields:
            _variables_in(object_field.value, found)


def _step(relation: RelationField) -> Step:
    return Step(relation.rel_type, "out" if relation.direction == "out" else "in", relation.node_class)
