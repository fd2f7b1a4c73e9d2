"""The read engine: renders a read plan (graph/plan.py) as ONE Cypher query with the caller's scope inside, runs it,
and returns typed rows. The only place read queries over twins are written.

* Nested connections of a list read are fetched for the whole page at once: one OPTIONAL MATCH per relationship,
  grouped back per parent, sorted and paged (`_Query.batched`). Elsewhere (one twin, search, impact, path) and for
  connections filtered by relationship existence they become `CALL { WITH parent MATCH ... ORDER BY ... SKIP ... LIMIT
  ... RETURN collect(...) }` subqueries (`_Query.calls`). Either way a read nested three levels deep costs one round
  trip, not one per parent (no N+1).
* The scope's row predicate (`ReadScope.render(var)`) is applied to EVERY twin variable: the root, nested connection
  twins, and the twins a relationship filter (`Related`) looks at, so neither rows nor their existence leak.
* A field the scope hides (for the class or any of its subclasses) cannot be filtered, sorted, grouped, aggregated or
  searched on: the engine refuses with FieldNotReadable before anything runs. Masking values is the policy's job on
  the way out (governance/policy.py `Policy.mask`).
* Rows come back as lists rather than maps: the graph serialises and the client parses them markedly faster.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graph.backends import CypherBackend
from graph.cypher import ident
from graph.errors import FieldNotReadable, QueryError
from graph.model import AggregateRow, ImpactHit, ReadScope
from graph.plan import (
    AggregateRead,
    AllOf,
    AnyOf,
    Compare,
    Connection,
    ConnectionRows,
    EdgeRow,
    Filter,
    ImpactRead,
    ListRead,
    ListRows,
    NodeRow,
    Not,
    PathRead,
    PathRows,
    Projection,
    Related,
    SearchRead,
    SearchRow,
    Sort,
    Step,
    TwinRead,
    TwinsRead,
)
from graph.values import decode, encode, stored_as_json
from ontology.errors import UnknownTerm, quoted
from ontology.model import Ontology
from ontology.schema import Schema

MAX_DEPTH = 10
RENDERS_KEPT = 512  # page renderings remembered per engine (the API reuses a plan per document and role)
_COMPARE = {"eq": "=", "ne": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_METRICS = ("count", "sum", "avg", "min", "max")
_WORD = re.compile(r"\w+")
TEXT_FIELDS = ("name", "description")


def search_terms(text: str) -> list[str]:
    """The words of a search text as the full-text index is asked for them (letters and digits only, each a prefix);
    the one normalisation every search uses. QueryError when no word is left."""
    terms = [w for w in ("".join(ch for ch in word if ch.isalnum()) for word in text.split()) if w]
    if not terms:
        raise QueryError("search text has no words to look for")
    return terms


def visible_words(text: str) -> list[str]:
    """The words of `text` as the full-text index keeps them (lower case, split at anything but letters and digits),
    which a search term matches by prefix."""
    return _WORD.findall(text.lower())


class ReadEngine:
    """Renders plans to Cypher for one backend and ontology, runs them, and returns typed rows."""

    def __init__(
        self,
        backend: CypherBackend,
        ontology: Ontology,
        names_under: Callable[[str], frozenset[str]],
        impact: Callable[[str, int, ReadScope], list[ImpactHit]],
    ) -> None:
        self.backend = backend
        self.ontology = ontology
        self.names_under = names_under
        self._impact = impact
        self._schemas: dict[str, dict[str, Schema | None]] = {}
        self._json_schemas: dict[str, dict[str, Schema]] = {}
        self._renders: OrderedDict[tuple[int, int], tuple[ListRead, ReadScope, _Query, str, bool]] = OrderedDict()
        self._renders_lock = threading.Lock()

    # ------------------------------------------------------------------ reads

    def page(self, plan: ListRead, scope: ReadScope, timeout_ms: int | None = None) -> ListRows:
        """A page of twins of `plan.cls`, with their connections, in one round trip."""
        q, cypher, scanned = self._rendered_page(plan, scope)
        rows = q.run(cypher, timeout_ms)
        if scanned:
            items, total = rows[0] if rows else ([], 0)
            return ListRows([q.row(plan.node, item) for item in items], total if plan.total else None)
        items, total = rows[0] if rows else ([], 0 if plan.total else None)
        return ListRows([q.row(plan.node, item) for item in items], total)

    def _rendered_page(self, plan: ListRead, scope: ReadScope) -> tuple[_Query, str, bool]:
        """The query of a page read, its rendering state (parameters, how rows read back) and whether it is a scan;
        remembered for the same plan and scope objects (the API reuses both for a document and a role), since a
        rendering depends on nothing else."""
        key = (id(plan), id(scope))
        with self._renders_lock:
            found = self._renders.get(key)
            if found is not None and found[0] is plan and found[1] is scope:
                self._renders.move_to_end(key)
                return found[2], found[3], found[4]
        q = _Query(self, scope)
        cypher, scanned = self._render_page(q, plan, scope)
        with self._renders_lock:
            self._renders[key] = (plan, scope, q, cypher, scanned)
            while len(self._renders) > RENDERS_KEPT:
                self._renders.popitem(last=False)
        return q, cypher, scanned

    def _render_page(self, q: _Query, plan: ListRead, scope: ReadScope) -> tuple[str, bool]:
        prelude, joined = self.scope_joins(plan.cls, scope)
        if joined and not plan.node.connections and not q.filters_relations(plan.where):
            return self._scan(q, plan, prelude, joined), True
        v = q.var_of(plan.node)
        label = q.class_label(plan.cls)
        within = self.names_under(plan.cls)
        lines = q.filtered_match(f"({v}:{label})", v, plan.cls, plan.where, [v], within)
        window, order = plan.window, q.order_clause(v, plan.cls, plan.order)
        lines.append(f"WITH {v} {order} SKIP {window.offset} LIMIT {window.limit + 1}")
        if plan.node.connections:  # number the page's rows, fetch their connections for all at once, restore the order
            rows_var, index = q.var("s"), q.var("i")
            lines.append(
                f"WITH collect({v}) AS {rows_var} UNWIND range(0, size({rows_var}) - 1) AS {index} "
                f"WITH {index}, {rows_var}[{index}] AS {v}"
            )
            nested, keys = q.batched(plan.node, [index, v])
            lines += nested
            lines.append(f"WITH {', '.join(keys)} ORDER BY {index}")
        lines.append(f"WITH collect({q.row_expr(plan.node)}) AS items")
        if plan.total:
            t = q.var("t")
            counted = q.filtered_match(f"({t}:{label})", t, plan.cls, plan.where, [t], within)
            lines.append(f"CALL {{ {' '.join(counted)} RETURN count({t}) AS total }} RETURN items, total")
        else:
            lines.append("RETURN items, null")
        return " ".join(lines), False

    def _scan(self, q: _Query, plan: ListRead, prelude: str, joined: str) -> str:
        """A list read under join-form row rules (`ReadScope.joins`): the rules' anchor twins are collected once and
        joined, an order of magnitude cheaper than a variable-length pattern per scanned twin."""
        q.bind(plan.node, "n")
        label = q.class_label(plan.cls)
        expr = q.where_expr("n", plan.cls, plan.where, _FilterState()) if plan.where is not None else "true"
        scan = q.scope.render_scan("n", self.names_under(plan.cls))
        condition = " AND ".join(c for c in (expr, scan) if c != "true") or "true"
        window = plan.window
        return (
            f"{prelude}MATCH (n:{label}) WHERE {condition} {joined}WITH n {q.order_clause('n', plan.cls, plan.order)} "
            f"WITH collect(n) AS matched RETURN [m IN matched[{window.offset}..{window.offset + window.limit + 1}] | "
            f"{q.row_expr(plan.node, 'm')}], size(matched)"
        )

    def twin(self, plan: TwinRead, scope: ReadScope, timeout_ms: int | None = None) -> NodeRow | None:
        """One twin by uid; None when absent or outside the scope."""
        q = _Query(self, scope)
        v = q.var_of(plan.node)
        cypher = (
            f"MATCH ({v}:Twin {{uid: {q.param(plan.uid)}}}) WHERE {scope.render(v)} "
            f"{' '.join(q.calls(plan.node))} RETURN {q.row_expr(plan.node)}"
        )
        rows = q.run(cypher, timeout_ms)
        return q.row(plan.node, rows[0][0]) if rows else None

    def search(self, plan: SearchRead, scope: ReadScope, timeout_ms: int | None = None) -> list[SearchRow]:
        """Full-text hits, best first; a twin matched only through a field the scope hides is left out."""
        terms = search_terms(plan.text)
        if not 1 <= plan.limit <= 1000:
            raise QueryError(f"limit must be between 1 and 1000, got {plan.limit}")
        q = _Query(self, scope)
        plan.node.text = True
        v = q.var_of(plan.node)
        class_filter = ""
        if plan.classes:
            class_filter = " AND (" + " OR ".join(f"{v}:{q.class_label(n)}" for n in plan.classes) + ")"
        text_param = q.param(" ".join(f"{w}*" for w in terms))
        cypher = (
            f"{self.backend.dialect.fulltext_query().replace('$text', text_param)} "
            # re-bound through the uid index: FalkorDB cannot evaluate pattern predicates on a procedure's node
            f"WITH node.uid AS hit, score MATCH ({v}:Twin {{uid: hit}}) WHERE {scope.render(v)}{class_filter} "
            f"WITH {v}, score ORDER BY score DESC LIMIT {plan.limit * 3} {' '.join(q.calls(plan.node))} "
            f"RETURN score, {q.row_expr(plan.node)}"
        )
        lowered = [t.lower() for t in terms]
        hits: list[SearchRow] = []
        for score, values in q.run(cypher, timeout_ms):
            row = q.row(plan.node, values)
            hidden = scope.hidden_for(self.labels(row.cls))
            if hidden & set(TEXT_FIELDS):
                name, description = row.text or (None, None)
                visible = visible_words(
                    " ".join(
                        str(val)
                        for f, val in (("name", name), ("description", description))
                        if f not in hidden and val is not None
                    )
                )
                if not all(any(word.startswith(term) for word in visible) for term in lowered):
                    continue  # the index matched a word prefix only in a field the caller may not read
            hits.append(SearchRow(row, float(score)))
            if len(hits) == plan.limit:
                break
        return hits

    def twins(self, plan: TwinsRead, scope: ReadScope, timeout_ms: int | None = None) -> dict[str, NodeRow]:
        """uid -> row of the twins among `plan.uids` inside the scope, in one round trip."""
        if not plan.uids:
            return {}
        q = _Query(self, scope)
        v = q.var_of(plan.node)
        uids = q.param(list(plan.uids))
        rows = q.run(
            f"UNWIND {uids} AS u MATCH ({v}:Twin {{uid: u}}) WHERE {scope.render(v)} "
            f"{' '.join(q.calls(plan.node))} RETURN u, {q.row_expr(plan.node)}",
            timeout_ms,
        )
        return {u: q.row(plan.node, values) for u, values in rows}

    def impact(self, plan: ImpactRead, scope: ReadScope) -> list[ImpactHit]:
        """What depends on `plan.uid`, level by level (the scope applied at every step)."""
        return self._impact(plan.uid, plan.max_depth, scope)

    def path(self, plan: PathRead, scope: ReadScope, timeout_ms: int | None = None) -> PathRows | None:
        """One shortest path; None when none exists or it passes a twin outside the scope."""
        if not 1 <= plan.max_depth <= MAX_DEPTH:
            raise QueryError(f"`maxDepth` must be between 1 and {MAX_DEPTH}, got {plan.max_depth}")
        known = self.ontology.relationship_types()
        for rel_type in plan.types:
            if rel_type not in known:
                raise QueryError(f"unknown relationship type {quoted(rel_type)}")
        q = _Query(self, scope)
        v = q.var_of(plan.node)
        base = self.backend.dialect.shortest_path("|".join(ident(t) for t in plan.types), plan.max_depth, plan.directed)
        base = base.replace("$source", q.param(plan.source)).replace("$target", q.param(plan.target))
        i, u = q.var("i"), q.var("u")
        # each twin is matched again by uid: a row rule's graph pattern cannot be evaluated on a list element
        cypher = base.replace(
            "RETURN p",
            f"WITH [r IN relationships(p) | type(r)] AS types, [x IN nodes(p) | x.uid] AS ns "
            f"UNWIND range(0, size(ns) - 1) AS {i} WITH types, {i}, ns[{i}] AS {u} "
            f"MATCH ({v}:Twin {{uid: {u}}}) WHERE {scope.render(v)} "
            f"{' '.join(q.calls(plan.node))} WITH types, {i}, {q.row_expr(plan.node)} AS m ORDER BY {i} "
            "RETURN types, collect(m)",
        )
        rows = q.run(cypher, timeout_ms)
        if not rows:
            return None
        found_types, node_values = rows[0]
        nodes = [q.row(plan.node, values) for values in node_values]
        if len(nodes) != len(found_types) + 1:
            return None  # the path passes a twin outside the caller's scope
        return PathRows(list(found_types), nodes)

    def aggregate(self, plan: AggregateRead, scope: ReadScope, timeout_ms: int | None = None) -> list[AggregateRow]:
        """Grouped count/sum/avg/min/max over twins of `plan.cls`; hidden fields may be neither grouped, aggregated
        nor filtered on. Rows keep the order of groups (or the first metric, largest first, without groups)."""
        q = _Query(self, scope)
        cls = plan.cls
        label = q.class_label(cls)
        v = "n"
        keys, values = [], []
        clamps = {name: (lo, hi) for name, lo, hi in plan.clamps}
        for i, name in enumerate(plan.group_by):
            q.check_field(cls, name, "grouped by")
            keys.append(f"{v}.{ident(name)} AS g{i}")
        for i, (metric, measured) in enumerate(plan.metrics):
            if metric not in _METRICS:
                raise QueryError(f"unknown aggregate {metric!r}; use one of {', '.join(_METRICS)}")
            if measured is None:
                if metric != "count":
                    raise QueryError(f"aggregate {metric.upper()} needs a field")
                values.append(f"count({v}) AS m{i}")
                continue
            q.check_field(cls, measured, "aggregated")
            values.append(f"{metric}({_clamped(f'{v}.{ident(measured)}', clamps.get(measured), metric)}) AS m{i}")
        if not values:
            raise QueryError("an aggregate needs at least one metric")
        prelude, joined = self.scope_joins(cls, scope)
        within = self.names_under(cls)
        if joined and (plan.where is None or not q.filters_relations(plan.where)):
            expr = q.where_expr(v, cls, plan.where, _FilterState()) if plan.where is not None else "true"
            condition = " AND ".join(c for c in (expr, scope.render_scan(v, within)) if c != "true") or "true"
            lines = [f"{prelude}MATCH ({v}:{label}) WHERE {condition} {joined}"]
        else:
            lines = q.filtered_match(f"({v}:{label})", v, cls, plan.where, [v], within)
        order = ", ".join([f"g{i}" for i in range(len(keys))] or ["m0 DESC"])
        limit = f" LIMIT {plan.limit}" if plan.limit is not None else ""
        lines.append(f"RETURN {', '.join(keys + values)} ORDER BY {order}{limit}")
        names = [f"{metric}_{measured}" if measured else metric for metric, measured in plan.metrics]
        return [
            AggregateRow(
                group=dict(zip(plan.group_by, row[: len(keys)], strict=True)),
                values=dict(zip(names, row[len(keys) :], strict=True)),
                metrics=tuple(row[len(keys) :]),
            )
            for row in q.run(" ".join(lines), timeout_ms)
        ]

    # ------------------------------------------------------------------ shared with the store's scans

    def scope_joins(self, cls: str, scope: ReadScope) -> tuple[str, str]:
        """Cypher for the scope's join-form row rules that can touch twins of `cls`: a prelude that collects each
        rule's anchor twins, and the MATCH/WITH filter to put after a scan's MATCH of `n` ('' when none)."""
        relevant = set(self.ontology.labels(cls)) | self.names_under(cls)
        joins = [j for j in scope.joins if relevant & set(j.labels)]
        if not joins:
            return "", ""
        prelude, joined, carried = "", "", list[str]()
        for i, join in enumerate(joins):
            members = f"scope_members_{i}"
            prelude += (
                f"OPTIONAL MATCH {join.anchor} "
                f"WITH {', '.join([*carried, f'collect(DISTINCT scope_member) AS {members}'])} "
            )
            carried.append(members)
        own = set(self.ontology.labels(cls))
        for i, join in enumerate(joins):
            still = ", ".join([*carried[i + 1 :], "n"])  # the member lists later joins need, and the twin
            if own & set(join.labels):  # every twin of `cls` falls under the rule: a plain join
                joined += (
                    f"MATCH (n)-[:{ident(join.via)}]->(scope_via_{i}) "
                    f"WHERE scope_via_{i} IN scope_members_{i} WITH DISTINCT {still} "
                )
                continue
            guard = " OR ".join(f"n:{ident(label)}" for label in join.labels)  # only some do: keep the others
            joined += (
                f"OPTIONAL MATCH (n)-[:{ident(join.via)}]->(scope_via_{i}) "
                f"WITH {', '.join(carried[i:])}, n, collect(scope_via_{i}) AS scope_vias_{i} "
                f"WHERE NOT ({guard}) OR any(x IN scope_vias_{i} WHERE x IN scope_members_{i}) "
                f"WITH {still} "
            )
        return prelude, joined

    def labels(self, cls: str) -> tuple[str, ...]:
        """The labels of a twin of class `cls` (the class first); just the name for a class the ontology lacks."""
        try:
            return self.ontology.labels(cls)
        except UnknownTerm:
            return (cls,)

    def json_schemas(self, cls: str) -> dict[str, Schema]:
        """The properties of twins of `cls` whose values are stored as JSON text (`decode` reads them back)."""
        found = self._json_schemas.get(cls)
        if found is None:
            found = self._json_schemas[cls] = {
                name: schema
                for name, schema in self.schemas(cls).items()
                if schema is not None and stored_as_json(schema)
            }
        return found

    def schemas(self, cls: str) -> dict[str, Schema | None]:
        """Property name -> how its values are stored, for twins of `cls` (empty for a class the ontology lacks)."""
        found = self._schemas.get(cls)
        if found is None:
            try:
                found = {name: prop.schema for name, prop in self.ontology.properties(cls).items()}
            except UnknownTerm:
                found = {}
            self._schemas[cls] = found
        return found


# ----------------------------------------------------------------------------------------------- one query


@dataclass(frozen=True)
class _RowReader:
    """The positions of a projection's columns in each returned twin list (worked out once per rendered query)."""

    width: int
    uid: int
    cls: int
    properties: tuple[tuple[str, int], ...]
    connections: tuple[tuple[Connection, int, int | None, tuple[tuple[str, Schema | None], ...]], ...]
    text: int | None
    labels: int | None
    everything: int | None


@dataclass
class _FilterState:
    calls: list[str] = field(default_factory=list)
    binds: list[str] = field(default_factory=list)


class _Query:
    """The variables, parameters and columns of one query being rendered, and how its rows read back."""

    def __init__(self, engine: ReadEngine, scope: ReadScope) -> None:
        self.engine = engine
        self.ontology = engine.ontology
        self.scope = scope
        self.params: dict[str, Any] = dict(scope.params)
        self._ids = itertools.count()
        self._vars: dict[int, str] = {}
        self._keys: dict[int, tuple[str, str]] = {}
        self._columns: dict[int, list[str]] = {}
        self._readers: dict[int, _RowReader] = {}
        self._hidden: dict[str | None, frozenset[str]] = {}

    # ------------------------------------------------------------------ naming

    def var(self, prefix: str) -> str:
        """A fresh Cypher variable."""
        return f"{prefix}{next(self._ids)}"

    def param(self, value: Any) -> str:
        """A fresh parameter holding `value`."""
        name = f"p{next(self._ids)}"
        self.params[name] = value
        return "$" + name

    def bind(self, proj: Projection, var: str) -> None:
        """Bind the twins of `proj` to the variable `var` (a scan under join-form row rules names its twin `n`)."""
        self._vars[id(proj)] = var

    def var_of(self, proj: Projection) -> str:
        """The variable the twins of `proj` are bound to."""
        found = self._vars.get(id(proj))
        if found is None:
            found = self._vars[id(proj)] = self.var("v" if not self._vars else "m")
        return found

    def keys_of(self, conn: Connection) -> tuple[str, str]:
        """The variables a connection's page and its count are bound to."""
        found = self._keys.get(id(conn))
        if found is None:
            found = self._keys[id(conn)] = (self.var("c"), self.var("t"))
        return found

    def class_label(self, cls: str) -> str:
        """The label of class `cls`; QueryError for a class the ontology lacks."""
        try:
            return ident(self.ontology.get(cls).name)
        except UnknownTerm as exc:
            raise QueryError(str(exc)) from None

    # ------------------------------------------------------------------ the scope's hidden fields

    def hidden(self, cls: str | None) -> frozenset[str]:
        """Fields hidden on any twin of `cls` (or a subclass) the scope lets through: a filter on the class reaches its
        subclasses too. A class the scope does not let the caller read adds nothing, since none of its twins can
        appear."""
        if not self.scope.hidden:
            return frozenset()
        found = self._hidden.get(cls)
        if found is None:
            if cls is None:
                found = frozenset().union(*self.scope.hidden.values())
            else:
                readable = self.scope.readable_classes
                result: set[str] = set()
                for name in (
                    self.ontology.get(cls).name,
                    *(self.ontology.classes[sub].name for sub in self.ontology.descendants(cls)),
                ):
                    if readable is None or name in readable:
                        result |= self.scope.hidden_for(self.ontology.labels(name))
                found = frozenset(result)
            self._hidden[cls] = found
        return found

    def check_field(self, cls: str | None, name: str, use: str) -> None:
        """FieldNotReadable when the scope hides `name` on twins of `cls`; QueryError when they have no such field."""
        if name not in ("uid", "_class") and cls is not None and name not in self.engine.schemas(cls):
            raise QueryError(f"{cls} has no property {quoted(name)}")
        if name in self.hidden(cls):
            raise FieldNotReadable(f"field {quoted(name)} of {cls or 'a twin'} may not be {use} by this caller")

    # ------------------------------------------------------------------ filters

    def filtered_match(
        self,
        pattern: str,
        var: str,
        cls: str | None,
        where: Filter | None,
        carried: Sequence[str],
        within: frozenset[str] | None = None,
    ) -> list[str]:
        """MATCH `pattern` WHERE scope(var) AND filters; relationship filters become counting subqueries."""
        state = _FilterState()
        expr = self.where_expr(var, cls, where, state) if where is not None else "true"
        scope = self.scope.render(var, within)  # within: the classes a class-labelled MATCH can meet
        if not state.calls:  # cheap filters first: AND short-circuits
            conditions = [c for c in (expr, scope) if c != "true"] or ["true"]
            return [f"MATCH {pattern} WHERE {' AND '.join(conditions)}"]
        return [
            f"MATCH {pattern} WHERE {scope}",
            *state.calls,
            f"WITH {', '.join([*carried, *state.binds])} WHERE {expr}",
        ]

    def where_expr(self, var: str, cls: str | None, where: Filter, state: _FilterState) -> str:
        """A boolean Cypher expression for a filter over twin `var` of class `cls`."""
        if isinstance(where, Compare):
            return self.compare_expr(var, cls, where)
        if isinstance(where, AllOf):
            parts = [p for p in (self.where_expr(var, cls, item, state) for item in where.items) if p != "true"]
            return " AND ".join(parts) if parts else "true"
        if isinstance(where, AnyOf):
            # each item is a conjunction, and AND binds tighter than OR: one pair of parentheses is enough
            inner = [self.where_expr(var, cls, item, state) for item in where.items]
            return f"({' OR '.join(inner)})" if inner else "false"
        if isinstance(where, Not):
            # `(x) = false` is NOT x in Cypher's three-valued logic (null stays null); FalkorDB parses nested
            # `NOT (...)` in time exponential in its depth, the comparison in linear time
            return f"({self.where_expr(var, cls, where.item, state)}) = false"
        bind = self.existence(var, where, state)
        return f"{bind} > 0" if where.exists else f"{bind} = 0"

    def compare_expr(self, var: str, cls: str | None, cond: Compare) -> str:
        """One condition on a property of twin `var`."""
        if cond.field == "uid":
            ref = f"{var}.uid"
        elif cond.field == "_class":
            ref = f"{var}._class"
        else:
            self.check_field(cls, cond.field, "filtered on")
            ref = f"{var}.{ident(cond.field)}"
        op = cond.op
        if op == "is_null":
            return f"{ref} IS NULL" if cond.value in (None, True) else f"{ref} IS NOT NULL"
        if op == "in":
            if not isinstance(cond.value, (list, tuple)):
                raise QueryError(f"filter {cond.field} in: expected a list, got {type(cond.value).__name__}")
            return f"{ref} IN {self.param([encode(v, cond.schema) for v in cond.value])}"
        if op in ("contains", "starts_with"):
            if not isinstance(cond.value, str):
                raise QueryError(f"filter {cond.field} {op}: expected text, got {type(cond.value).__name__}")
            keyword = "CONTAINS" if op == "contains" else "STARTS WITH"
            return f"toLower({ref}) {keyword} toLower({self.param(cond.value)})"
        if op not in _COMPARE:
            raise QueryError(f"unknown filter operator {quoted(op)}")
        return f"{ref} {_COMPARE[op]} {self.param(encode(cond.value, cond.schema))}"

    def filters_relations(self, where: Filter | None) -> bool:
        """Whether a filter looks at relationships (`Related`), which takes counting subqueries."""
        if isinstance(where, Related):
            return True
        if isinstance(where, (AllOf, AnyOf)):
            return any(self.filters_relations(item) for item in where.items)
        if isinstance(where, Not):
            return self.filters_relations(where.item)
        return False

    def existence(self, var: str, related: Related, state: _FilterState) -> str:
        """Bind the number of visible twins reached over `related.step` (matching its filter) to a fresh variable."""
        other = self.var("x")
        bind = self.var("b")
        match = _pattern(var, None, related.step, other)
        body = self.filtered_match(match, other, related.step.node_class, related.where, [other])
        state.calls.append(f"CALL {{ WITH {var} {' '.join(body)} RETURN count({other}) AS {bind} }}")
        state.binds.append(bind)
        return bind

    def order_clause(self, var: str, cls: str | None, order: Sequence[Sort]) -> str:
        """ORDER BY the requested keys, uid last (stable pages)."""
        keys: list[str] = []
        uid_desc = False
        for item in order:
            if item.field == "uid":
                uid_desc = item.descending
                continue
            self.check_field(cls, item.field, "sorted on")
            keys.append(f"{var}.{ident(item.field)}{' DESC' if item.descending else ''}")
        keys.append(f"{var}.uid{' DESC' if uid_desc else ''}")
        return "ORDER BY " + ", ".join(keys)

    # ------------------------------------------------------------------ connections

    def calls(self, proj: Projection) -> list[str]:
        """The subqueries that fetch the connections under `proj` (after its variable is bound), one per row."""
        return [clause for conn in proj.connections for clause in self.call(proj, conn)]

    def call(self, proj: Projection, conn: Connection) -> list[str]:
        """A subquery fetching one connection under `proj` for the current row (and one counting it, if asked)."""
        parent, node = self.var_of(proj), self.var_of(conn.node)
        key, total_key = self.keys_of(conn)
        edge = self.var("r")
        cls = conn.step.node_class
        pattern = _pattern(parent, edge, conn.step, node)
        body = self.filtered_match(pattern, node, cls, conn.where, [edge, node])
        order = self.order_clause(node, cls, conn.order)
        clauses = [
            f"CALL {{ WITH {parent} {' '.join(body)} "
            f"WITH {edge}, {node} {order} SKIP {conn.window.offset} LIMIT {conn.window.limit + 1} "
            f"{' '.join(self.calls(conn.node))} "
            f"RETURN collect({self.item_expr(conn, node, edge)}) AS {key} }}"
        ]
        if conn.total:
            other = self.var("x")
            count_body = self.filtered_match(_pattern(parent, None, conn.step, other), other, cls, conn.where, [other])
            clauses.append(f"CALL {{ WITH {parent} {' '.join(count_body)} RETURN count({other}) AS {total_key} }}")
        return clauses

    def batched(self, proj: Projection, keys: list[str]) -> tuple[list[str], list[str]]:
        """Clauses fetching the connections under `proj` for every row of the stream at once, and the variables each
        row carries afterwards (`keys`, which must identify the row, plus each connection's).

        A subquery per row makes the graph traverse once per row; here each relationship is traversed once for all
        rows (an OPTIONAL MATCH), then grouped back per row, sorted, paged and, for deeper connections, unwound again
        in page order. Filters go into the grouping's CASE where they can, since a WHERE on the OPTIONAL MATCH turns
        the batched traversal back into one per row in FalkorDB. A connection filtered by relationship existence keeps
        its subquery.
        """
        clauses: list[str] = []
        parent = self.var_of(proj)
        for conn in proj.connections:
            node, cls = self.var_of(conn.node), conn.step.node_class
            key, total_key = self.keys_of(conn)
            totals = [total_key] if conn.total else []
            if self.filters_relations(conn.where):
                clauses += self.call(proj, conn)
                keys = [*keys, *totals, key]
                continue
            expr = self.where_expr(node, cls, conn.where, _FilterState()) if conn.where is not None else "true"
            edge, found, carried = self.var("r"), self.var("a"), ", ".join(keys)
            condition = " AND ".join(c for c in (self.scope.render(node), expr) if c != "true")
            pattern = _pattern(parent, edge, conn.step, node)
            if condition and _has_pattern(condition):  # FalkorDB evaluates a pattern in CASE as a list
                clauses.append(f"OPTIONAL MATCH {pattern} WHERE {condition}")
                keep = f"{node} IS NOT NULL"
            else:
                clauses.append(f"OPTIONAL MATCH {pattern}")
                keep = f"{node} IS NOT NULL" + (f" AND {condition}" if condition else "")
            clauses.append(f"WITH {carried}, {edge}, {node} {self.order_clause(node, cls, conn.order)}")
            clauses.append(f"WITH {carried}, collect(CASE WHEN {keep} THEN [{edge}, {node}] END) AS {found}")
            total = f", size({found}) AS {total_key}" if conn.total else ""
            window = f"{found}[{conn.window.offset}..{conn.window.offset + conn.window.limit + 1}]"
            if not conn.node.connections and not conn.node.text and not conn.node.everything:
                clauses.append(
                    f"WITH {carried}{total}, [q IN {window} | {self.item_expr(conn, 'q[1]', 'q[0]')}] AS {key}"
                )
            else:
                page, index, item = self.var("l"), self.var("i"), self.var("o")
                outer = [*keys, *totals]
                clauses.append(f"WITH {carried}{total}, {window} AS {page}")
                clauses.append(
                    f"UNWIND CASE WHEN size({page}) = 0 THEN [null] ELSE range(0, size({page}) - 1) END AS {index}"
                )
                clauses.append(
                    f"WITH {', '.join(outer)}, {index}, {page}[{index}][0] AS {edge}, {page}[{index}][1] AS {node}"
                )
                inner, inner_keys = self.batched(conn.node, [*outer, index, edge, node])
                clauses += inner
                clauses.append(
                    f"WITH {', '.join(inner_keys)}, CASE WHEN {index} IS NULL THEN null "
                    f"ELSE {self.item_expr(conn, node, edge)} END AS {item} ORDER BY {index}"
                )
                clauses.append(f"WITH {', '.join(outer)}, collect({item}) AS {key}")
            keys = [*keys, *totals, key]
        return clauses, keys

    # ------------------------------------------------------------------ rows

    def item_expr(self, conn: Connection, node: str, edge: str) -> str:
        """The Cypher list one item of a connection is returned as: the twin's list, with the edge's properties."""
        item = self.row_expr(conn.node, node)
        if conn.edge_properties:
            item = f"[{item}, [{', '.join(f'{edge}.{ident(p)}' for p in conn.edge_properties)}]]"
        return item

    def row_expr(self, proj: Projection, ref: str | None = None) -> str:
        """The Cypher list a twin variable (or the expression `ref` for it) is returned as (`row` reads it back)."""
        v = ref or self.var_of(proj)
        columns = {"_u": f"{v}.uid", "_c": f"{v}._class"}
        columns.update((f".{prop}", f"{v}.{ident(prop)}") for prop in sorted(proj.properties))
        for conn in proj.connections:
            key, total_key = self.keys_of(conn)
            columns[key] = key
            if conn.total:
                columns[total_key] = total_key
        if proj.text:
            columns["_text"] = f"[{v}.name, {v}.description]"
        if proj.everything:
            columns["_labels"] = f"labels({v})"
            columns["_all"] = f"properties({v})"
        self._columns[id(proj)] = list(columns)
        return "[" + ", ".join(columns.values()) + "]"

    def row(self, proj: Projection, values: Sequence[Any]) -> NodeRow:
        """The typed row of one returned twin list, with its connections' pages."""
        reader = self._readers.get(id(proj))
        if reader is None:
            reader = self._readers[id(proj)] = self._reader(proj)
        if len(values) != reader.width:
            raise QueryError(f"a returned row has {len(values)} columns where {reader.width} were asked for")
        cls = values[reader.cls]
        if reader.everything is not None:
            everything = values[reader.everything] or {}
            props = {k: v for k, v in everything.items() if k not in ("uid", "_class", "_lifecycle")}
        else:
            props = {name: values[i] for name, i in reader.properties}
        if isinstance(cls, str):
            for name, schema in self.engine.json_schemas(cls).items():  # the only values stored in another form
                if name in props:
                    props[name] = decode(props[name], schema)
        connections: dict[Connection, ConnectionRows] = {}
        for conn, key, total, edge_names in reader.connections:
            items = values[key] or []
            if edge_names:
                rows = [
                    EdgeRow(
                        self.row(conn.node, node),
                        {name: decode(value, schema) for (name, schema), value in zip(edge_names, edge, strict=True)},
                    )
                    for node, edge in items
                ]
            else:
                rows = [EdgeRow(self.row(conn.node, node), {}) for node in items]
            connections[conn] = ConnectionRows(rows, values[total] if total is not None else None)
        text = values[reader.text] if reader.text is not None else None
        labels = (
            tuple(label for label in values[reader.labels] or () if label != "Twin")
            if reader.labels is not None
            else ()
        )
        return NodeRow(values[reader.uid], cls, props, connections, labels, (text[0], text[1]) if text else None)

    def _reader(self, proj: Projection) -> _RowReader:
        """Where each part of a twin's returned list is, for the columns `row_expr` asked for."""
        columns = self._columns[id(proj)]
        index = {column: i for i, column in enumerate(columns)}
        connections = []
        for conn in proj.connections:
            key, total_key = self.keys_of(conn)
            edge_names = tuple(conn.edge_properties.items()) if conn.edge_properties else ()
            connections.append((conn, index[key], index[total_key] if conn.total else None, edge_names))
        return _RowReader(
            width=len(columns),
            uid=index["_u"],
            cls=index["_c"],
            properties=() if proj.everything else tuple((prop, index[f".{prop}"]) for prop in proj.properties),
            connections=tuple(connections),
            text=index.get("_text"),
            labels=index.get("_labels"),
            everything=index.get("_all"),
        )

    # ------------------------------------------------------------------ running

    def run(self, cypher: str, timeout_ms: int | None) -> list[list[Any]]:
        """One round trip to the graph."""
        return self.engine.backend.read(cypher, self.params, timeout_ms=timeout_ms)


def _clamped(value: str, bounds: tuple[float, float] | None, metric: str) -> str:
    """`value` clamped to `bounds` for a SUM or AVG (what a differentially private answer needs: one twin moves it by
    a bounded amount); unchanged otherwise."""
    if bounds is None or metric not in ("sum", "avg"):
        return value
    lo, hi = (float(b) for b in bounds)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise QueryError(f"clamp bounds must be finite with lower < upper, not {bounds!r}")
    return (
        f"CASE WHEN {value} IS NULL THEN NULL WHEN {value} < {lo!r} THEN {lo!r} "
        f"WHEN {value} > {hi!r} THEN {hi!r} ELSE {value} END"
    )


def _has_pattern(condition: str) -> bool:
    """True when a rendered condition holds a graph pattern (a policy row rule such as `(n)-[:worksIn]->(...)`)."""
    return ")-[" in condition or "]-(" in condition or ")<-[" in condition


def _pattern(var: str, edge: str | None, step: Step, other: str) -> str:
    rel = f"[{edge or ''}:{ident(step.rel_type)}]"
    if step.direction == "out":
        return f"({var})-{rel}->({other}:Twin)"
    return f"({var})<-{rel}-({other}:Twin)"
