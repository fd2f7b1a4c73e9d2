"""Compiles the selection set of one GraphQL root field into ONE Cypher query, with the caller's policy compiled in.

* Nested relationship connections of a root list are fetched for the whole page at once: one OPTIONAL MATCH per
  relationship, grouped back per parent, sorted and paged (`Compiler.batched`). Elsewhere (one twin, search, impact,
  path) and for connections filtered by relationship existence they become `CALL { WITH parent MATCH ... ORDER BY ...
  SKIP ... LIMIT ... RETURN collect(...) }` subqueries (`Compiler.call`). Either way a query nested three levels deep
  costs one round trip, not one per parent (no N+1).
* The policy's row predicate (`ReadScope.render(var)`) is applied to EVERY node variable: root, nested connection
  nodes, and the twins a relationship filter (`worksInExists`, `worksInSome`) looks at, so neither rows nor their
  existence leak.
* A field the caller may not read (hidden for the class or any of its subclasses) cannot be filtered, sorted,
  grouped or aggregated on: the compiler refuses with a FIELD_NOT_READABLE error before anything runs. Values of such
  fields are masked by `Policy.mask` on the way out, and the response's `extensions.masked` says which.
* Pages are cursor-paged (`first`/`after`) with opaque base64 cursors over offsets; `first` is at most 1,000.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import itertools
import json
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLIncludeDirective,
    GraphQLObjectType,
    GraphQLSkipDirective,
    InlineFragmentNode,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
    is_object_type,
)
from graphql.execution.values import VariableValues, get_argument_values, get_directive_values

from api.completion import Compiled
from api.context import RequestContext
from api.errors import BadUserInput, FieldForbidden, Forbidden, api_error
from api.schema import STRING_LIKE, PropertyField, RelationField, SchemaPlan
from governance.identity import Subject
from governance.policy import Policy
from graph.cypher import ident
from graph.model import TwinRecord
from graph.values import decode, encode
from ontology.errors import quoted
from ontology.schema import Schema

T = TypeVar("T")
PAGE_MAX = 1000
DEFAULT_PAGE = 100
DEFAULT_NESTED_PAGE = 50
MAX_ESTIMATED_TWINS = 1_000_000
SEARCH_DEFAULT = 20
CURSOR_MAX = 2**31  # offsets this API could issue; larger ones would overflow the graph's SKIP arithmetic
_CURSOR_PREFIX = "twin-cursor:"
_OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "isNull", "contains", "startsWith")
_COMPARE = {"eq": "=", "ne": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_WORD = re.compile(r"\w+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ORDERED_SCALARS = frozenset({"String", "ID", "Int", "Float", "Date", "DateTime", "Time"})

# ------------------------------------------------------------------------------------------------- cursors, values


def list_limit(first: Any, default: int) -> int:
    """The `first` of a plain list field (search, history, lineage, audit, scenarios): 1 to PAGE_MAX, else `default`."""
    limit = default if first is None else first
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= PAGE_MAX:
        raise BadUserInput(f"`first` must be between 1 and {PAGE_MAX}, got {quoted(limit)}")
    return limit


def encode_cursor(offset: int) -> str:
    """The opaque cursor of the item at `offset`."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{offset}".encode()).decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The offset a cursor stands for; BadUserInput when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        offset = int(text[len(_CURSOR_PREFIX):])
        if not 0 <= offset < CURSOR_MAX:
            raise ValueError(text)
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput(f"`after` cursor {quoted(cursor)} is not a cursor this API issued") from None
    return offset


def plain(value: Any) -> Any:
    """Argument values as plain dicts, lists and scalars (Strawberry inputs and enums unwrapped, UNSET dropped)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items() if not _unset(v)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not _unset(getattr(value, f.name))}
    return value


def _unset(value: Any) -> bool:
    return type(value).__name__ == "UnsetType"


# ------------------------------------------------------------------------------------------------------ masks


class MaskPlans:
    """Whether the policy masks any of a set of properties of a class for a caller's roles, worked out once.

    `Policy.mask` decides per role, class and field, never per value, so when it masks none of the fields a
    response selects for a class, every twin of that class is returned as stored and the call per twin is skipped.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._plans: weakref.WeakKeyDictionary[Policy, dict[tuple[Any, ...], bool]] = weakref.WeakKeyDictionary()

    def may_mask(self, policy: Policy, subject: Subject, cls: str, labels: tuple[str, ...],
                 props: Mapping[str, Any]) -> bool:
        """False when `policy` shows every one of `props` of a `cls` twin to `subject`."""
        plans = self._plans.setdefault(policy, {})
        key = (policy.version, frozenset(subject.roles), subject.org_unit, cls, frozenset(props))
        plan = plans.get(key)
        if plan is None:
            if len(plans) >= self.size:
                plans.clear()
            probe = policy.mask(subject, TwinRecord("", cls, labels, dict.fromkeys(props, "")))
            plan = plans[key] = bool(probe.masked) or probe.properties.keys() != props.keys()
        return plan


MASK_PLANS = MaskPlans()

# --------------------------------------------------------------------------------------------- selection sets


class Selection:
    """Reads the operation's selection sets: fields per concrete type (fragments, @skip/@include) and arguments."""

    def __init__(self, info: Any) -> None:
        self.schema = info.schema
        self.fragments = info.fragments
        # Strawberry hands resolvers the coerced variables as a plain dict; graphql-core's argument and directive
        # coercion wants its VariableValues (the sources only matter for fragment variables, which are not enabled).
        variables = info.variable_values
        self.variables = (variables if isinstance(variables, VariableValues)
                          else VariableValues(sources={}, coerced=dict(variables or {})))
        self._untyped: dict[tuple[int, ...], dict[str, list[FieldNode]]] = {}

    def fields(self, type_: GraphQLObjectType, nodes: Sequence[FieldNode]) -> dict[str, list[FieldNode]]:
        """Response key -> field nodes selected under `nodes` for an object of `type_` (do not modify it).

        Without fragments the answer is the same for every type, so it is worked out once per selection.
        """
        key = tuple(map(id, nodes))
        cached = self._untyped.get(key)
        if cached is not None:
            return cached
        result: dict[str, list[FieldNode]] = {}
        for node in nodes:
            if node.selection_set is not None:
                self._collect(type_, node.selection_set, result, set())
        if all(isinstance(sel, FieldNode) for node in nodes if node.selection_set is not None
               for sel in node.selection_set.selections):
            self._untyped[key] = result
        return result

    def shaped(self, type_: Any, nodes: Sequence[FieldNode], values: dict[str, Any]) -> dict[str, Any]:
        """`values` (keyed by field name) keyed by response key at every level of object types, as the completed
        result expects; scalar values (JSON included) are left as they are."""
        named = get_named_type(type_)
        result: dict[str, Any] = {}
        for key, sub in self.fields(named, nodes).items():
            name = sub[0].name.value
            value = values.get(name)
            field_type = get_named_type(named.fields[name].type) if name in named.fields else None
            if isinstance(field_type, GraphQLObjectType):
                if isinstance(value, dict):
                    value = self.shaped(field_type, sub, value)
                elif isinstance(value, list):
                    value = [self.shaped(field_type, sub, item) if isinstance(item, dict) else item for item in value]
            result[key] = value
        return result

    def _collect(self, type_: GraphQLObjectType, selection_set: SelectionSetNode,
                 result: dict[str, list[FieldNode]], visited: set[str]) -> None:
        for selection in selection_set.selections:
            if not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                result.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if self._matches(selection.type_condition, type_):
                    self._collect(type_, selection.selection_set, result, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if name in visited or fragment is None:
                    continue
                visited.add(name)
                if self._matches(fragment.type_condition, type_):
                    self._collect(type_, fragment.selection_set, result, visited)

    def _included(self, node: Any) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip and skip.get("if"):
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include is not None and not include.get("if"))

    def _matches(self, condition: Any, type_: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        wanted = self.schema.get_type(condition.name.value)
        if wanted is type_:
            return True
        return bool(wanted is not None and is_abstract_type(wanted) and self.schema.is_sub_type(wanted, type_))

    def args(self, parent: GraphQLObjectType, node: FieldNode) -> dict[str, Any]:
        """The coerced arguments of `node` as plain values."""
        return plain(get_argument_values(parent.fields[node.name.value], node, self.variables))

    def possible(self, type_: Any) -> list[GraphQLObjectType]:
        """The object types a value of `type_` can have."""
        named = get_named_type(type_)
        if is_object_type(named):
            return [named]
        return list(self.schema.get_possible_types(named))

    def flat(self, type_: Any, nodes: Sequence[FieldNode], values: Mapping[str, Any]) -> dict[str, Any]:
        """A result object of a plain type: each selected response key gets the value of its field."""
        named = get_named_type(type_)
        return {key: values.get(sub[0].name.value) for key, sub in self.fields(named, nodes).items()}


# --------------------------------------------------------------------------------------------------- projections


@dataclass
class NodeProjection:
    """What Cypher returns for one node variable: uid, class, the selected properties, nested connections."""

    var: str
    cls: str | None
    props: dict[str, str] = field(default_factory=dict)  # ontology property -> map key
    relations: dict[tuple[str, str], RelationProjection] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # map key -> Cypher expression
    columns: list[str] = field(default_factory=list)  # map key of each value of the returned list (set on render)


@dataclass
class PageArgs:
    """A connection's where/orderBy/first/after, checked."""

    where: dict[str, Any] | None
    order: list[dict[str, Any]]
    offset: int
    limit: int


@dataclass
class RelationProjection:
    """One relationship connection under a node: its subquery, page, node projection and edge properties."""

    key: str
    total_key: str
    relation: RelationField
    page: PageArgs
    node: NodeProjection
    edge_props: dict[str, str] = field(default_factory=dict)
    need_total: bool = False


# NodeShape: object type name -> [(response key, item)]; items: ("uid",), ("className",), ("labels",),
# ("prop", PropertyField, map key), ("conn", RelationProjection | None, ConnectionShape)
NodeShape = dict[str, list[tuple[str, tuple[Any, ...]]]]
ConnectionShape = list[tuple[str, str, Any]]


@dataclass
class _FilterState:
    calls: list[str] = field(default_factory=list)
    binds: list[str] = field(default_factory=list)


class Compiler:
    """Compiles and shapes one root field for one request."""

    def __init__(self, info: Any, ctx: RequestContext, plan: SchemaPlan) -> None:
        self.info = info
        self.ctx = ctx
        self.plan = plan
        self.ontology = plan.ontology
        self.scope = ctx.scope
        self.sel = Selection(info)
        self.params: dict[str, Any] = dict(ctx.scope.params)
        self._ids = itertools.count()
        self._seen: set[str] = set()
        self.estimated = 0

    # ------------------------------------------------------------------ naming

    def var(self, prefix: str) -> str:
        """A fresh Cypher variable."""
        return f"{prefix}{next(self._ids)}"

    def param(self, value: Any) -> str:
        """A fresh parameter holding `value`."""
        name = f"p{next(self._ids)}"
        self.params[name] = value
        return "$" + name

    # ------------------------------------------------------------------ policy checks

    def hidden(self, cls: str | None) -> frozenset[str]:
        """Fields hidden for twins of `cls` or any subclass (a filter on the class reaches its subclasses too)."""
        if cls is None or not self.scope.hidden:
            return frozenset()
        result: set[str] = set(self.scope.hidden_for(self.ontology.labels(cls)))
        for sub in self.ontology.descendants(cls):
            result |= self.scope.hidden_for(self.ontology.labels(sub))
        return frozenset(result)

    def require_readable(self, cls: str) -> None:
        """Forbidden when the caller may read neither `cls` nor any of its subclasses."""
        readable = self.scope.readable_classes
        if readable is None:
            return
        if not self.ctx.store.names_under(cls) & readable:
            raise Forbidden(f"denied: {self.ctx.subject.sub} may not read {cls} twins")

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
        order = args.get("orderBy") or []
        return PageArgs(dict(where) if where else None, list(order), offset, first)

    # ------------------------------------------------------------------ filters

    def filtered_match(self, pattern: str, var: str, cls: str | None, where: Mapping[str, Any] | None,
                       carried: Sequence[str], within: frozenset[str] | None = None) -> list[str]:
        """MATCH `pattern` WHERE scope(var) AND filters; relationship filters become counting subqueries."""
        state = _FilterState()
        expr = self.where_expr(var, cls, where, state) if where else "true"
        conditions = [self.scope.render(var, within)]  # within: the classes a class-labelled MATCH can meet
        if not state.calls:
            if expr != "true":
                conditions.append(expr)
            return [f"MATCH {pattern} WHERE {' AND '.join(conditions)}"]
        return [f"MATCH {pattern} WHERE {' AND '.join(conditions)}", *state.calls,
                f"WITH {', '.join([*carried, *state.binds])} WHERE {expr}"]

    def check_filter_shape(self, where: Any) -> None:
        """Refuse a `where` nested deeper or holding more conditions than the settings allow, before compiling it.

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
                        raise BadUserInput(f"`where` nests AND/OR/NOT/...Some more than {max_depth} levels deep; "
                                           f"at most {max_depth} are allowed (write the filter flatter)")
                    pending.append((value, depth + 1))
                else:
                    conditions += len(value) if isinstance(value, Mapping) and value else 1
        if conditions > max_conditions:
            raise BadUserInput(f"`where` holds {conditions} conditions; at most {max_conditions} are allowed")

    def where_expr(self, var: str, cls: str | None, where: Mapping[str, Any], state: _FilterState) -> str:
        """A boolean Cypher expression for a where-input over node `var` of class `cls`."""
        if not isinstance(where, Mapping):
            raise BadUserInput(f"a filter must be an object, got {type(where).__name__}")
        plan = self.plan.plan_for(cls)
        parts: list[str] = []
        for key, value in where.items():
            if value is None:
                continue
            if key in ("AND", "OR"):
                if not isinstance(value, list):
                    raise BadUserInput(f"`{key}` takes a list of filters")
                # each item is a conjunction, and AND binds tighter than OR: one pair of parentheses is enough
                inner = [self.where_expr(var, cls, item, state) for item in value]
                joined = f" {key} ".join(inner)
                parts.append(f"({joined})" if inner else ("true" if key == "AND" else "false"))
            elif key == "NOT":
                # `(x) = false` is NOT x in Cypher's three-valued logic (null stays null); FalkorDB parses nested
                # `NOT (...)` in time exponential in its depth, the comparison in linear time
                parts.append(f"({self.where_expr(var, cls, value, state)}) = false")
            elif key == "uid":
                parts.append(self.scalar_expr(f"{var}.uid", "uid", value, None, "ID"))
            elif key == "className":
                parts.append(self.scalar_expr(f"{var}._class", "className", value, None, "String"))
            elif key in plan.properties:
                prop = plan.properties[key]
                if not prop.filterable:
                    raise BadUserInput(f"field {quoted(key)} of {cls} cannot be filtered on (it is a list or JSON value)")
                if prop.prop.name in self.hidden(cls):
                    raise FieldForbidden(f"field {quoted(key)} of {cls} may not be filtered on by this caller")
                ref = f"{var}.{ident(prop.prop.name)}"
                parts.append(self.scalar_expr(ref, key, value, prop.prop.schema, prop.scalar))
            elif key.endswith("Exists") and key[: -len("Exists")] in plan.relations:
                if not isinstance(value, bool):
                    raise BadUserInput(f"`{key}` takes true or false")
                bind = self.existence(var, plan.relations[key[: -len("Exists")]], None, state)
                parts.append(f"{bind} > 0" if value else f"{bind} = 0")
            elif key.endswith("Some") and key[: -len("Some")] in plan.relations:
                bind = self.existence(var, plan.relations[key[: -len("Some")]], value, state)
                parts.append(f"{bind} > 0")
            else:
                raise BadUserInput(f"{cls or 'Twin'} has no filterable field {quoted(key)}")
        return " AND ".join(parts) if parts else "true"

    def filters_relations(self, cls: str | None, where: Any) -> bool:
        """Whether a where-input filters on relationships (`…Exists`, `…Some`), which takes counting subqueries."""
        if not isinstance(where, Mapping):
            return False
        relations = self.plan.plan_for(cls).relations
        for key, value in where.items():
            if key in ("AND", "OR") and isinstance(value, list):
                if any(self.filters_relations(cls, item) for item in value):
                    return True
            elif key == "NOT":
                if self.filters_relations(cls, value):
                    return True
            elif (key.endswith("Exists") and key[: -len("Exists")] in relations) or \
                    (key.endswith("Some") and key[: -len("Some")] in relations):
                return True
        return False

    def existence(self, var: str, relation: RelationField, where: Any, state: _FilterState) -> str:
        """Bind the number of visible twins reached over `relation` (matching `where`) to a fresh variable."""
        other = self.var("x")
        bind = self.var("b")
        match = _pattern(var, None, relation, other)
        body = self.filtered_match(match, other, relation.node_class, where, [other])
        state.calls.append(f"CALL {{ WITH {var} {' '.join(body)} RETURN count({other}) AS {bind} }}")
        state.binds.append(bind)
        return bind

    def scalar_expr(self, ref: str, name: str, condition: Any, schema: Schema | None, scalar: str) -> str:
        """Conditions on one property (`{eq: 3, lt: 5}`), ANDed."""
        if not isinstance(condition, Mapping):
            raise BadUserInput(f"filter on {quoted(name)} must be an object such as {{eq: ...}}")
        parts = []
        for op, value in condition.items():
            op = "in" if op == "in_" else op
            if op not in _OPERATORS:
                raise BadUserInput(f"unknown filter operator {quoted(op)} on {quoted(name)}; use {', '.join(_OPERATORS)}")
            if op == "isNull":
                if value is None:
                    continue
                if not isinstance(value, bool):
                    raise BadUserInput(f"`isNull` on {name!r} takes true or false")
                parts.append(f"{ref} IS NULL" if value else f"{ref} IS NOT NULL")
            elif value is None:
                if op in ("eq", "ne"):
                    parts.append(f"{ref} IS NULL" if op == "eq" else f"{ref} IS NOT NULL")
            elif op == "in":
                if not isinstance(value, list):
                    raise BadUserInput(f"`in` on {name!r} takes a list")
                parts.append(f"{ref} IN {self.param([self.value(v, name, schema, scalar) for v in value])}")
            elif op in ("contains", "startsWith"):
                if scalar not in STRING_LIKE or not isinstance(value, str):
                    raise BadUserInput(f"`{op}` works on text fields with a text value, not on {name!r}")
                keyword = "CONTAINS" if op == "contains" else "STARTS WITH"
                parts.append(f"toLower({ref}) {keyword} toLower({self.param(value)})")
            else:
                if op not in ("eq", "ne") and scalar not in _ORDERED_SCALARS:
                    raise BadUserInput(f"`{op}` does not apply to {scalar} field {name!r}")
                parts.append(f"{ref} {_COMPARE[op]} {self.param(self.value(value, name, schema, scalar))}")
        return " AND ".join(parts) if parts else "true"

    @staticmethod
    def value(value: Any, name: str, schema: Schema | None, scalar: str) -> Any:
        """A filter value checked against the field's type and encoded as stored."""
        ok = {
            "Int": isinstance(value, int) and not isinstance(value, bool),
            "Float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "Boolean": isinstance(value, bool),
        }.get(scalar, isinstance(value, str))
        if not ok:
            raise BadUserInput(f"filter value {quoted(str(value))} does not fit {scalar} field {quoted(name)}")
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            raise BadUserInput(f"filter value on {name!r} must be a finite number")
        return encode(value, schema)

    def order_clause(self, var: str, cls: str | None, order: Sequence[Any]) -> str:
        """ORDER BY the requested keys, uid last (stable pages)."""
        plan = self.plan.plan_for(cls)
        keys: list[str] = []
        uid_desc = False
        for item in order:
            if not isinstance(item, Mapping) or "field" not in item:
                raise BadUserInput("each orderBy item needs a `field`")
            name, direction = item["field"], item.get("direction") or "ASC"
            if direction not in ("ASC", "DESC"):
                raise BadUserInput(f"sort direction must be ASC or DESC, got {quoted(direction)}")
            if name == "uid":
                uid_desc = direction == "DESC"
                continue
            prop = plan.properties.get(name)
            if prop is None or not prop.filterable:
                raise BadUserInput(f"{cls or 'Twin'} cannot be sorted on {quoted(name)}")
            if prop.prop.name in self.hidden(cls):
                raise FieldForbidden(f"field {name!r} of {cls} may not be sorted on by this caller")
            keys.append(f"{var}.{ident(prop.prop.name)}{' DESC' if direction == 'DESC' else ''}")
        keys.append(f"{var}.uid{' DESC' if uid_desc else ''}")
        return "ORDER BY " + ", ".join(keys)

    # ------------------------------------------------------------------ selections -> projections

    def node(self, gtype: Any, nodes: Sequence[FieldNode], proj: NodeProjection, parent_rows: int) -> NodeShape:
        """The shape of a twin position and, into `proj`, what Cypher must return for it."""
        shape: NodeShape = {}
        for object_type in self.sel.possible(gtype):
            cls = self.plan.by_object.get(object_type.name)
            if cls is None:
                continue
            plan = self.plan.classes[cls]
            items: list[tuple[str, tuple[Any, ...]]] = []
            for key, subs in self.sel.fields(object_type, nodes).items():
                name = subs[0].name.value
                if name == "__typename":
                    continue
                if name in ("uid", "className", "labels"):
                    items.append((key, (name,)))
                elif name in plan.properties:
                    prop = plan.properties[name]
                    map_key = proj.props.setdefault(prop.prop.name, f"p{len(proj.props)}")
                    items.append((key, ("prop", prop, map_key)))
                elif name in plan.relations:
                    relation = plan.relations[name]
                    args = self.sel.args(object_type, subs[0])
                    rel = self.relation(proj, relation, args, parent_rows)
                    connection_type = get_named_type(object_type.fields[name].type)
                    items.append((key, ("conn", rel, self.connection(connection_type, subs, rel, rel.node,
                                                                       parent_rows * max(rel.page.limit, 1)))))
            shape[object_type.name] = items
        return shape

    def relation(self, proj: NodeProjection, relation: RelationField, args: dict[str, Any],
                 parent_rows: int) -> RelationProjection:
        """The (shared) projection of a relationship connection under `proj` for these arguments."""
        identity = (relation.name, json.dumps(args, sort_keys=True, default=str))
        existing = proj.relations.get(identity)
        if existing is not None:
            return existing
        page = self.page_args(relation.node_class, args, DEFAULT_NESTED_PAGE)
        self.estimated += parent_rows * page.limit
        if self.estimated > MAX_ESTIMATED_TWINS:
            raise BadUserInput(
                f"this query could return up to {self.estimated:,} twins (limit {MAX_ESTIMATED_TWINS:,}); "
                "ask for smaller pages with `first`"
            )
        rel = RelationProjection(
            key=self.var("c"), total_key=self.var("t"), relation=relation, page=page,
            node=NodeProjection(self.var("m"), relation.node_class),
        )
        proj.relations[identity] = rel
        return rel

    def connection(self, connection_type: Any, nodes: Sequence[FieldNode], rel: RelationProjection | None,
                   node_proj: NodeProjection, rows: int) -> ConnectionShape:
        """The shape of a connection (totalCount, edges, nodes, pageInfo)."""
        shape: ConnectionShape = []
        for key, subs in self.sel.fields(connection_type, nodes).items():
            name = subs[0].name.value
            if name == "totalCount":
                if rel is not None:
                    rel.need_total = True
                shape.append((key, "totalCount", None))
            elif name == "pageInfo":
                info_type = get_named_type(connection_type.fields["pageInfo"].type)
                shape.append((key, "pageInfo", [(k, s[0].name.value) for k, s in self.sel.fields(info_type, subs).items()]))
            elif name == "nodes":
                node_type = connection_type.fields["nodes"].type
                shape.append((key, "nodes", self.node(node_type, subs, node_proj, rows)))
            elif name == "edges":
                edge_type = get_named_type(connection_type.fields["edges"].type)
                edge_shape: list[tuple[str, str, Any]] = []
                for edge_key, edge_subs in self.sel.fields(edge_type, subs).items():
                    edge_field = edge_subs[0].name.value
                    if edge_field == "cursor":
                        edge_shape.append((edge_key, "cursor", None))
                    elif edge_field == "node":
                        edge_shape.append((edge_key, "node",
                                           self.node(edge_type.fields["node"].type, edge_subs, node_proj, rows)))
                    elif rel is not None and edge_field in rel.relation.edge_props:
                        prop = rel.relation.edge_props[edge_field]
                        map_key = rel.edge_props.setdefault(prop.prop.name, f"e{len(rel.edge_props)}")
                        mode = self.ctx.policy.relationship_field_mode(self.ctx.subject, prop.prop.classification)
                        edge_shape.append((edge_key, "prop", (prop, map_key, mode, rel.relation.rel_type)))
                shape.append((key, "edges", edge_shape))
        return shape

    # ------------------------------------------------------------------ Cypher rendering

    def calls(self, proj: NodeProjection) -> list[str]:
        """The subqueries that fetch the connections under `proj` (after its variable is bound), one per row."""
        return [clause for rel in proj.relations.values() for clause in self.call(proj, rel)]

    def call(self, proj: NodeProjection, rel: RelationProjection) -> list[str]:
        """A subquery fetching one connection under `proj` for the current row (and one counting it, if asked)."""
        node = rel.node
        edge = self.var("r")
        pattern = _pattern(proj.var, edge, rel.relation, node.var)
        body = self.filtered_match(pattern, node.var, rel.relation.node_class, rel.page.where, [edge, node.var])
        order = self.order_clause(node.var, rel.relation.node_class, rel.page.order)
        clauses = [
            f"CALL {{ WITH {proj.var} {' '.join(body)} "
            f"WITH {edge}, {node.var} {order} SKIP {rel.page.offset} LIMIT {rel.page.limit + 1} "
            f"{' '.join(self.calls(node))} "
            f"RETURN collect({self.item_expr(rel, node.var, edge)}) AS {rel.key} }}"
        ]
        if rel.need_total:
            other = self.var("x")
            count_body = self.filtered_match(_pattern(proj.var, None, rel.relation, other), other,
                                             rel.relation.node_class, rel.page.where, [other])
            clauses.append(f"CALL {{ WITH {proj.var} {' '.join(count_body)} RETURN count({other}) AS {rel.total_key} }}")
        return clauses

    def batched(self, proj: NodeProjection, keys: list[str]) -> tuple[list[str], list[str]]:
        """Clauses fetching the connections under `proj` for every row of the stream at once, and the variables each
        row carries afterwards (`keys`, which must identify the row, plus each connection's).

        A subquery per row makes the graph traverse once per row; here each relationship is traversed once for all
        rows (an OPTIONAL MATCH), then grouped back per row, sorted, paged and, for deeper connections, unwound again
        in page order. Filters go into the grouping's CASE where they can, since a WHERE on the OPTIONAL MATCH turns
        the batched traversal back into one per row in FalkorDB. A connection filtered by relationship existence keeps
        its subquery.
        """
        clauses: list[str] = []
        for rel in proj.relations.values():
            node, cls = rel.node, rel.relation.node_class
            totals = [rel.total_key] if rel.need_total else []
            if self.filters_relations(cls, rel.page.where):
                clauses += self.call(proj, rel)
                keys = [*keys, *totals, rel.key]
                continue
            expr = self.where_expr(node.var, cls, rel.page.where, _FilterState()) if rel.page.where else "true"
            edge, found, carried = self.var("r"), self.var("a"), ", ".join(keys)
            condition = " AND ".join(c for c in (self.scope.render(node.var), expr) if c != "true")
            pattern = _pattern(proj.var, edge, rel.relation, node.var)
            if condition and _has_pattern(condition):  # FalkorDB evaluates a pattern in CASE as a list
                clauses.append(f"OPTIONAL MATCH {pattern} WHERE {condition}")
                keep = f"{node.var} IS NOT NULL"
            else:
                clauses.append(f"OPTIONAL MATCH {pattern}")
                keep = f"{node.var} IS NOT NULL" + (f" AND {condition}" if condition else "")
            clauses.append(f"WITH {carried}, {edge}, {node.var} {self.order_clause(node.var, cls, rel.page.order)}")
            clauses.append(f"WITH {carried}, collect(CASE WHEN {keep} THEN [{edge}, {node.var}] END) AS {found}")
            total = f", size({found}) AS {rel.total_key}" if rel.need_total else ""
            window = f"{found}[{rel.page.offset}..{rel.page.offset + rel.page.limit + 1}]"
            if not node.relations and not node.extra:
                clauses.append(f"WITH {carried}{total}, [q IN {window} | {self.item_expr(rel, 'q[1]', 'q[0]')}] "
                               f"AS {rel.key}")
            else:
                page, index, item = self.var("l"), self.var("i"), self.var("o")
                outer = [*keys, *totals]
                clauses.append(f"WITH {carried}{total}, {window} AS {page}")
                clauses.append(f"UNWIND CASE WHEN size({page}) = 0 THEN [null] ELSE range(0, size({page}) - 1) END "
                               f"AS {index}")
                clauses.append(f"WITH {', '.join(outer)}, {index}, {page}[{index}][0] AS {edge}, "
                               f"{page}[{index}][1] AS {node.var}")
                inner, inner_keys = self.batched(node, [*outer, index, edge, node.var])
                clauses += inner
                clauses.append(f"WITH {', '.join(inner_keys)}, CASE WHEN {index} IS NULL THEN null "
                               f"ELSE {self.item_expr(rel, node.var, edge)} END AS {item} ORDER BY {index}")
                clauses.append(f"WITH {', '.join(outer)}, collect({item}) AS {rel.key}")
            keys = [*keys, *totals, rel.key]
        return clauses, keys

    def item_expr(self, rel: RelationProjection, node: str, edge: str) -> str:
        """The Cypher list one item of a connection is returned as: the node's list, with the edge's properties."""
        item = self.row_expr(rel.node, node)
        if rel.edge_props:
            item = f"[{item}, [{', '.join(f'{edge}.{ident(p)}' for p in rel.edge_props)}]]"
        return item

    def row_expr(self, proj: NodeProjection, ref: str | None = None) -> str:
        """The Cypher list a node variable (or the expression `ref` for it) is returned as (`row` turns it back into a
        map). Lists rather than maps: the graph serialises and the client parses them markedly faster.
        """
        v = ref or proj.var
        columns = {"_u": f"{v}.uid", "_c": f"{v}._class"}
        columns.update((key, f"{v}.{ident(prop)}") for prop, key in proj.props.items())
        for rel in proj.relations.values():
            columns[rel.key] = rel.key
            if rel.need_total:
                columns[rel.total_key] = rel.total_key
        columns.update(proj.extra)
        proj.columns = list(columns)
        return "[" + ", ".join(columns.values()) + "]"

    def row(self, proj: NodeProjection, values: Sequence[Any] | None) -> dict[str, Any] | None:
        """The map of one returned node list, its connections' items as `{n: node map, e: edge map}`."""
        if values is None:
            return None
        out = dict(zip(proj.columns, values, strict=True))
        for rel in proj.relations.values():
            items = out.get(rel.key) or []
            if rel.edge_props:
                edge_keys = list(rel.edge_props.values())
                out[rel.key] = [{"n": self.row(rel.node, node), "e": dict(zip(edge_keys, edge, strict=True))}
                                for node, edge in items]
            else:
                out[rel.key] = [{"n": self.row(rel.node, node)} for node in items]
        return out

    # ------------------------------------------------------------------ shaping results

    def shape_node(self, row: Mapping[str, Any] | None, shape: NodeShape) -> dict[str, Any] | None:
        """The response object of one returned twin, masked by the policy."""
        if row is None:
            return None
        cls = row.get("_c")
        type_name = self.plan.object_type(cls) if isinstance(cls, str) else None
        items = shape.get(type_name) if type_name else None
        if items is None:
            return None
        uid = row["_u"]
        self._seen.add(uid)
        labels = self.ontology.labels(cls)
        props = {item[1].prop.name: decode(row.get(item[2]), item[1].prop.schema) for _, item in items
                 if item[0] == "prop"}
        masked: Mapping[str, str] = {}
        if props and MASK_PLANS.may_mask(self.ctx.policy, self.ctx.subject, cls, labels, props):
            view = self.ctx.policy.mask(self.ctx.subject, TwinRecord(uid, cls, labels, props))
            if view.masked:
                masked = view.masked
                self.ctx.note_masked(cls, view.masked)
                props = view.properties
        out: dict[str, Any] = {"__typename": type_name}
        for key, item in items:
            kind = item[0]
            if kind == "uid":
                out[key] = uid
            elif kind == "className":
                out[key] = cls
            elif kind == "labels":
                out[key] = list(labels)
            elif kind == "prop":
                prop: PropertyField = item[1]
                value = props.get(prop.prop.name)
                if prop.prop.name in masked and not (prop.scalar in STRING_LIKE and not prop.is_list
                                                     and (value is None or isinstance(value, str))):
                    value = None  # a masked value that no longer fits the field's type is left out
                out[key] = value
            else:
                rel = item[1]
                out[key] = self.shape_connection(row.get(rel.key) or [], row.get(rel.total_key), rel.page, item[2])
        return out

    def shape_connection(self, items: Sequence[Mapping[str, Any]], total: int | None, page: PageArgs,
                         shape: ConnectionShape) -> dict[str, Any]:
        """The response object of a connection page (items holds one extra row when there is a next page)."""
        rows = list(items[: page.limit])
        out: dict[str, Any] = {}
        for key, kind, payload in shape:
            if kind == "totalCount":
                out[key] = int(total or 0)
            elif kind == "pageInfo":
                values = {
                    "hasNextPage": len(items) > page.limit,
                    "hasPreviousPage": page.offset > 0,
                    "startCursor": encode_cursor(page.offset) if rows else None,
                    "endCursor": encode_cursor(page.offset + len(rows) - 1) if rows else None,
                }
                out[key] = {k: values.get(name) for k, name in payload}
            elif kind == "nodes":
                out[key] = [n for n in (self.shape_node(r.get("n"), payload) for r in rows) if n is not None]
            else:
                edges = []
                for i, r in enumerate(rows):
                    edge: dict[str, Any] = {}
                    for edge_key, edge_kind, edge_payload in payload:
                        if edge_kind == "cursor":
                            edge[edge_key] = encode_cursor(page.offset + i)
                        elif edge_kind == "node":
                            edge[edge_key] = self.shape_node(r.get("n"), edge_payload)
                            if edge[edge_key] is None:
                                break
                        else:
                            prop, map_key, mode, rel_type = edge_payload
                            value = decode((r.get("e") or {}).get(map_key), prop.prop.schema)
                            if mode != "show" and value is not None:
                                self.ctx.note_masked(rel_type, {prop.prop.name: mode})
                                value = self.ctx.policy.mask_value(value, mode)
                            edge[edge_key] = value
                    else:
                        edges.append(edge)
                out[key] = edges
        return out

    def finish(self) -> None:
        """Count the twins this field returned into the request."""
        self.ctx.rows += len(self._seen)

    # ------------------------------------------------------------------ running

    async def run(self, cypher: str) -> list[list[Any]]:
        """One round trip to the graph (in a worker thread, with the request's time limit, within the caller's
        share of concurrent reads)."""
        backend = self.ctx.store.backend
        params = self.params
        timeout = self.ctx.timeout_ms
        self.ctx.round_trips += 1
        return await self.read(lambda: backend.read(cypher, params, timeout_ms=timeout))

    async def read(self, work: Callable[[], T]) -> T:
        """Run a blocking graph read in a worker thread, within the caller's share of concurrent reads and the
        request's time limit."""
        gate = self.ctx.services.reads if self.ctx.services is not None else None
        if gate is None:
            return await anyio.to_thread.run_sync(work)
        return await gate.run(self.ctx.subject.sub, work, self.ctx.timeout_ms)


def _words(text: str) -> list[str]:
    """The words of `text` as the full-text index keeps them (lower case, split at anything but letters and digits),
    which a search term matches by prefix."""
    return _WORD.findall(text.lower())


def _has_pattern(condition: str) -> bool:
    """True when a rendered condition holds a graph pattern (a policy row rule such as `(n)-[:worksIn]->(...)`)."""
    return ")-[" in condition or "]-(" in condition or ")<-[" in condition


def _pattern(var: str, edge: str | None, relation: RelationField, other: str) -> str:
    rel = f"[{edge or ''}:{ident(relation.rel_type)}]"
    if relation.direction == "out":
        return f"({var})-{rel}->({other}:Twin)"
    return f"({var})<-{rel}-({other}:Twin)"


# ------------------------------------------------------------------------------------------------- root fields


def check_text(value: Any, name: str) -> None:
    """Refuse text no store can hold as given, anywhere in argument `name`: a NUL (the graph and SQLite cut text
    there, so a uid or filter value would match another) or a lone surrogate (not encodable as UTF-8)."""
    if isinstance(value, str):
        problem = ("holds a NUL character" if "\x00" in value
                   else "holds a lone surrogate (not valid Unicode text)" if _SURROGATE.search(value) else None)
        if problem:
            raise BadUserInput(f"argument `{name}` {problem}: {value[:40]!r}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_text(item, f"{name}.{key}")
            check_text(key, f"{name} (a key)")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, f"{name}[{index}]")


def governed(resolver: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a root resolver: domain errors become client errors (policy refusals mark the request denied).

    The result is marked `Compiled`: its nested values are keyed by response key, so it is completed directly.
    """

    async def wrapper(root: Any, info: Any, **args: Any) -> Any:
        ctx: RequestContext = info.context
        ctx.fields.append(info.field_name)
        try:
            for name, value in args.items():
                check_text(plain(value), name)
            return Compiled(await resolver(root, info, **args))
        except Exception as exc:
            error = api_error(exc)
            if isinstance(error, Forbidden):
                ctx.denied = True
            if error is None or error is exc:
                raise
            raise error from exc

    wrapper.__name__ = getattr(resolver, "__name__", "resolver")
    return wrapper


class RootQueries:
    """Resolvers of the compiled root fields; each costs one graph round trip (impact: one per level plus one)."""

    def __init__(self, plan: SchemaPlan) -> None:
        self.plan = plan

    def list_field(self, cls: str) -> Callable[..., Any]:
        """The resolver of the root connection over `cls`."""

        async def resolve(root: Any, info: Any, **args: Any) -> Any:
            c = Compiler(info, info.context, self.plan)
            c.require_readable(cls)
            page = c.page_args(cls, plain(args), DEFAULT_PAGE)
            c.estimated = page.limit
            v = c.var("v")
            proj = NodeProjection(v, cls)
            shape = c.connection(get_named_type(info.return_type), info.field_nodes, None, proj, max(page.limit, 1))
            need_total = any(kind == "totalCount" for _, kind, _ in shape)
            label = ident(self.plan.ontology.get(cls).name)
            within = c.ctx.store.names_under(cls)
            lines = c.filtered_match(f"({v}:{label})", v, cls, page.where, [v], within)
            lines.append(f"WITH {v} {c.order_clause(v, cls, page.order)} SKIP {page.offset} LIMIT {page.limit + 1}")
            if proj.relations:  # number the page's rows, fetch their connections for all at once, restore the order
                rows_var, index = c.var("s"), c.var("i")
                lines.append(f"WITH collect({v}) AS {rows_var} UNWIND range(0, size({rows_var}) - 1) AS {index} "
                             f"WITH {index}, {rows_var}[{index}] AS {v}")
                nested, keys = c.batched(proj, [index, v])
                lines += nested
                lines.append(f"WITH {', '.join(keys)} ORDER BY {index}")
            lines.append(f"WITH collect({c.row_expr(proj)}) AS items")
            if need_total:
                t = c.var("t")
                lines.append(f"CALL {{ {' '.join(c.filtered_match(f'({t}:{label})', t, cls, page.where, [t], within))} "
                             f"RETURN count({t}) AS total }} RETURN items, total")
            else:
                lines.append("RETURN items, 0")
            rows = await c.run(" ".join(lines))
            items, total = rows[0] if rows else ([], 0)
            result = c.shape_connection([{"n": c.row(proj, item)} for item in items], total, page, shape)
            c.finish()
            return result

        resolve.__name__ = f"resolve_{cls}"
        return governed(resolve)

    @property
    def resolvers(self) -> dict[str, Callable[..., Any]]:
        """Root field name -> resolver."""
        result = {name: self.list_field(cls) for name, cls in self.plan.root_lists.items()}
        result.update(twin=governed(self.twin), search=governed(self.search), impact=governed(self.impact),
                      path=governed(self.path), aggregate=governed(self.aggregate))
        return result

    async def twin(self, root: Any, info: Any, uid: str) -> Any:
        """One twin by uid (null when absent or outside the caller's scope)."""
        c = Compiler(info, info.context, self.plan)
        v = c.var("v")
        proj = NodeProjection(v, None)
        shape = c.node(info.return_type, info.field_nodes, proj, 1)
        cypher = (f"MATCH ({v}:Twin {{uid: {c.param(uid)}}}) WHERE {c.scope.render(v)} "
                  f"{' '.join(c.calls(proj))} RETURN {c.row_expr(proj)}")
        rows = await c.run(cypher)
        result = c.shape_node(c.row(proj, rows[0][0]), shape) if rows else None
        c.finish()
        return result

    async def search(self, root: Any, info: Any, text: str, classes: Any = None, first: Any = None) -> Any:
        """Full-text hits; a twin matched only through a field the caller may not read is not returned."""
        c = Compiler(info, info.context, self.plan)
        limit = list_limit(first, SEARCH_DEFAULT)
        terms = [w for w in ("".join(ch for ch in word if ch.isalnum()) for word in text.split()) if w]
        if not terms:
            raise BadUserInput("search text has no words to look for")
        hit_type = get_named_type(info.return_type)
        v = c.var("v")
        proj = NodeProjection(v, None, extra={"_text": f"[{v}.name, {v}.description]"})
        twin_shape: NodeShape = {}
        hit_shape = c.sel.fields(hit_type, info.field_nodes)
        for key, subs in hit_shape.items():
            if subs[0].name.value == "twin":
                twin_shape = c.node(hit_type.fields["twin"].type, subs, proj, limit * 3)
        class_filter = ""
        if classes:
            class_filter = " AND (" + " OR ".join(f"{v}:{ident(self.plan.ontology.get(n).name)}"
                                                  for n in plain(classes)) + ")"
        dialect = info.context.store.backend.dialect
        text_param = c.param(" ".join(f"{w}*" for w in terms))
        cypher = (
            f"{dialect.fulltext_query().replace('$text', text_param)} "
            # re-bound through the uid index: FalkorDB cannot evaluate pattern predicates on a procedure's node
            f"WITH node.uid AS hit, score MATCH ({v}:Twin {{uid: hit}}) WHERE {c.scope.render(v)}{class_filter} "
            f"WITH {v}, score ORDER BY score DESC LIMIT {limit * 3} {' '.join(c.calls(proj))} "
            f"RETURN score, {c.row_expr(proj)}"
        )
        rows = await c.run(cypher)
        lowered = [t.lower() for t in terms]
        hits = []
        for score, values in rows:
            row = c.row(proj, values)
            hidden = c.scope.hidden_for(self.plan.ontology.labels(row["_c"])) if row.get("_c") in self.plan.classes else frozenset()
            if hidden & {"name", "description"}:
                name, description = row.get("_text") or [None, None]
                visible = _words(" ".join(str(val) for f, val in (("name", name), ("description", description))
                                          if f not in hidden and val is not None))
                if not all(any(word.startswith(term) for word in visible) for term in lowered):
                    continue  # the index matched a word prefix only in a field the caller may not read
            twin = c.shape_node(row, twin_shape) if twin_shape else {"__typename": None}
            if twin is None:
                continue
            hits.append({key: (score if subs[0].name.value == "score" else twin) for key, subs in hit_shape.items()})
            if len(hits) == limit:
                break
        c.finish()
        return hits

    async def impact(self, root: Any, info: Any, uid: str, maxDepth: Any = None) -> Any:  # noqa: N803
        """What depends on `uid`, level by level (scope applied at every step), then one projection query."""
        c = Compiler(info, info.context, self.plan)
        depth = 3 if maxDepth is None else maxDepth
        store = info.context.store
        ctx: RequestContext = info.context
        before = store.backend.queries
        hits = await c.read(lambda: store.impact(uid, max_depth=depth, scope=ctx.scope))
        ctx.round_trips += store.backend.queries - before
        hit_type = get_named_type(info.return_type)
        hit_fields = c.sel.fields(hit_type, info.field_nodes)
        v = c.var("v")
        proj = NodeProjection(v, None)
        twin_shape: NodeShape = {}
        for key, subs in hit_fields.items():
            if subs[0].name.value == "twin":
                twin_shape = c.node(hit_type.fields["twin"].type, subs, proj, max(len(hits), 1))
        twins: dict[str, Any] = {}
        if hits and twin_shape:
            uids = c.param([h.twin.uid for h in hits])
            rows = await c.run(f"UNWIND {uids} AS u MATCH ({v}:Twin {{uid: u}}) WHERE {c.scope.render(v)} "
                               f"{' '.join(c.calls(proj))} RETURN u, {c.row_expr(proj)}")
            twins = {u: c.shape_node(c.row(proj, values), twin_shape) for u, values in rows}
        result = []
        for hit in hits:
            if twin_shape and twins.get(hit.twin.uid) is None:
                continue
            values = {"depth": hit.depth, "path": list(hit.path), "via": list(hit.via), "twin": twins.get(hit.twin.uid)}
            result.append({key: values.get(subs[0].name.value) for key, subs in hit_fields.items()})
        c._seen.update(h.twin.uid for h in hits)
        c.finish()
        return result

    async def path(self, root: Any, info: Any, source: str, target: str, types: Any = None, maxDepth: Any = None,  # noqa: N803
                   directed: Any = None) -> Any:
        """One shortest path; null when none exists or it passes a twin the caller may not see."""
        c = Compiler(info, info.context, self.plan)
        depth = 6 if maxDepth is None else maxDepth
        if not 1 <= depth <= 10:
            raise BadUserInput(f"`maxDepth` must be between 1 and 10, got {depth}")
        rel_types = [ident(t) for t in plain(types or [])]
        result_type = get_named_type(info.return_type)
        fields = c.sel.fields(result_type, info.field_nodes)
        v = c.var("v")
        proj = NodeProjection(v, None)
        node_shape: NodeShape = {}
        for key, subs in fields.items():
            if subs[0].name.value == "nodes":
                node_shape = c.node(result_type.fields["nodes"].type, subs, proj, depth + 1)
        dialect = info.context.store.backend.dialect
        base = dialect.shortest_path("|".join(rel_types), depth, directed is not False)
        base = base.replace("$source", c.param(source)).replace("$target", c.param(target))
        i, u = c.var("i"), c.var("u")
        # each node is matched again by uid: a row rule's graph pattern cannot be evaluated on a list element
        cypher = base.replace(
            "RETURN p",
            f"WITH [r IN relationships(p) | type(r)] AS types, [x IN nodes(p) | x.uid] AS ns "
            f"UNWIND range(0, size(ns) - 1) AS {i} WITH types, {i}, ns[{i}] AS {u} "
            f"MATCH ({v}:Twin {{uid: {u}}}) WHERE {c.scope.render(v)} "
            f"{' '.join(c.calls(proj))} WITH types, {i}, {c.row_expr(proj)} AS m ORDER BY {i} "
            "RETURN types, collect(m)",
        )
        rows = await c.run(cypher)
        if not rows:
            return None
        found_types, node_values = rows[0]
        node_rows = [c.row(proj, values) for values in node_values]
        if len(node_rows) != len(found_types) + 1:
            return None  # the path passes a twin outside the caller's scope
        nodes = [c.shape_node(row, node_shape) for row in node_rows] if node_shape else []
        if node_shape and any(n is None for n in nodes):
            return None
        c._seen.update(row["_u"] for row in node_rows)
        c.finish()
        values = {"length": len(found_types), "types": list(found_types), "nodes": nodes}
        return {key: values.get(subs[0].name.value) for key, subs in fields.items()}

    async def aggregate(self, root: Any, info: Any, className: Any, metrics: Any = None,  # noqa: N803
                        groupBy: Any = None, where: Any = None) -> Any:  # noqa: N803
        """Grouped metrics over a class; hidden fields may be neither grouped, aggregated nor filtered on."""
        c = Compiler(info, info.context, self.plan)
        cls = plain(className)
        c.require_readable(cls)
        plan = self.plan.classes[cls]
        hidden = c.hidden(cls)
        v = c.var("v")
        keys, names = [], []
        for i, name in enumerate(plain(groupBy or [])):
            prop = plan.properties.get(name)
            if prop is None or not prop.filterable:
                raise BadUserInput(f"{cls} cannot be grouped by {quoted(name)}")
            if prop.prop.name in hidden:
                raise FieldForbidden(f"field {name!r} of {cls} may not be grouped by by this caller")
            keys.append(f"{v}.{ident(prop.prop.name)} AS g{i}")
            names.append(name)
        wanted = plain(metrics) or [{"fn": "count"}]
        values, described = [], []
        for i, metric in enumerate(wanted):
            fn, name = metric.get("fn"), metric.get("field")
            if name is None:
                if fn != "count":
                    raise BadUserInput(f"aggregate {fn.upper()} needs a field")
                values.append(f"count({v}) AS m{i}")
            else:
                prop = plan.properties.get(name)
                if prop is None or not prop.filterable:
                    raise BadUserInput(f"{cls} has no field {quoted(name)} to aggregate")
                if fn in ("sum", "avg") and prop.scalar not in ("Int", "Float"):
                    raise BadUserInput(f"{fn.upper()} needs a numeric field; {name!r} is {prop.scalar}")
                if prop.prop.name in hidden:
                    raise FieldForbidden(f"field {name!r} of {cls} may not be aggregated by this caller")
                values.append(f"{fn}({v}.{ident(prop.prop.name)}) AS m{i}")
            described.append((f"{fn}_{name}" if name else fn, fn, name))
        label = ident(self.plan.ontology.get(cls).name)
        c.check_filter_shape(where)
        lines = c.filtered_match(f"({v}:{label})", v, cls, where if where else None, [v], c.ctx.store.names_under(cls))
        order = ", ".join([f"g{i}" for i in range(len(keys))] or ["m0 DESC"])
        lines.append(f"RETURN {', '.join(keys + values)} ORDER BY {order} LIMIT {PAGE_MAX * 10}")
        rows = await c.run(" ".join(lines))
        row_type = get_named_type(info.return_type)
        metric_type = get_named_type(row_type.fields["metrics"].type)
        result = []
        for row in rows:
            group = dict(zip(names, row[: len(keys)], strict=True))
            metric_values = []
            for (label_, fn, name), value in zip(described, row[len(keys):], strict=True):
                number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
                metric_values.append({"name": label_, "fn": fn, "field": name, "value": number})
            by_field = {"group": group}
            out: dict[str, Any] = {}
            for key, subs in c.sel.fields(row_type, info.field_nodes).items():
                field_name = subs[0].name.value
                if field_name == "metrics":
                    out[key] = [c.sel.flat(metric_type, subs, m) for m in metric_values]
                else:
                    out[key] = by_field.get(field_name)
            result.append(out)
        info.context.rows += len(rows)
        return result
