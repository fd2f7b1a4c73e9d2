"""Reads of the twin graph — lookups, filtered pages, traversals, impact, paths, aggregates, search — all scoped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graph.backends import CypherBackend
from graph.cypher import (
    check_readable,
    compile_conditions,
    compile_order,
    field_schema,
    ident,
    looks_like_write,
)
from graph.errors import QueryError, ReadOnlyViolation
from graph.model import (
    UNRESTRICTED,
    AggregateRow,
    Condition,
    Direction,
    GraphStats,
    ImpactHit,
    LinkRecord,
    Metric,
    OrderBy,
    Page,
    PathResult,
    ReadScope,
    SearchHit,
    Subgraph,
    TwinRecord,
)
from graph.values import decode
from ontology.errors import UnknownTerm, quoted
from ontology.model import Ontology

NODE = "{n}.uid, labels({n}), properties({n})"
MAX_PAGE = 1000
MAX_DEPTH = 10
_METRICS = {"count": "count", "sum": "sum", "avg": "avg", "min": "min", "max": "max"}


class TwinReader:
    """Read side of the twin graph; every method takes a ReadScope that a policy compiled."""

    def __init__(self, backend: CypherBackend, ontology: Ontology, timeout_ms: int | None = 30_000) -> None:
        self.backend = backend
        self.ontology = ontology
        self.timeout_ms = timeout_ms
        types = self.ontology.relationship_types()
        self.dependency_types = sorted(t for t, defs in types.items() if any(d.dependency for _, d in defs))
        self.supports_types = sorted(t for t, defs in types.items() if any(d.supports for _, d in defs))
        self._under: dict[str, frozenset[str]] = {}

    def _read(self, cypher: str, params: dict[str, Any]) -> list[list[Any]]:
        return self.backend.read(cypher, params, timeout_ms=self.timeout_ms)

    def record(self, uid: str, labels: Sequence[str], props: dict[str, Any]) -> TwinRecord:
        """A TwinRecord from a stored node, with values decoded by the ontology's schemas."""
        props = dict(props)
        props.pop("uid", None)
        cls = props.pop("_class", None) or next((label for label in labels if label != "Twin"), "Twin")
        try:
            defs = self.ontology.properties(cls)
            ordered = self.ontology.labels(cls)  # the class first, then its ancestors (backends return any order)
        except UnknownTerm:
            defs, ordered = {}, tuple(label for label in labels if label != "Twin")
        decoded = {k: decode(v, defs[k].schema if k in defs else None) for k, v in props.items()}
        return TwinRecord(uid=uid, cls=cls, labels=ordered, properties=decoded)

    def _class_label(self, cls: str) -> str:
        try:
            return ident(self.ontology.get(cls).name)
        except UnknownTerm as exc:
            raise QueryError(str(exc)) from None

    # ------------------------------------------------------------------ lookups

    def get(self, uid: str, scope: ReadScope = UNRESTRICTED) -> TwinRecord | None:
        """The twin with this uid, or None when absent or outside the caller's scope."""
        rows = self._read(
            f"MATCH (n:Twin {{uid: $uid}}) WHERE {scope.render('n')} RETURN {NODE.format(n='n')}",
            {"uid": uid, **scope.params},
        )
        return self.record(*rows[0]) if rows else None

    def get_many(self, uids: Sequence[str], scope: ReadScope = UNRESTRICTED) -> dict[str, TwinRecord]:
        """Twins by uid in one round trip; absent or out-of-scope ones are left out."""
        rows = self._read(
            f"UNWIND $uids AS u MATCH (n:Twin {{uid: u}}) WHERE {scope.render('n')} RETURN {NODE.format(n='n')}",
            {"uids": list(uids), **scope.params},
        )
        return {row[0]: self.record(*row) for row in rows}

    def find(
        self,
        cls: str,
        where: Sequence[Condition] = (),
        order_by: Sequence[OrderBy] = (),
        limit: int = 100,
        offset: int = 0,
        scope: ReadScope = UNRESTRICTED,
    ) -> Page:
        """A page of twins of `cls` (subclasses included) matching `where`, sorted, with the total count."""
        if not 0 <= limit <= MAX_PAGE:
            raise QueryError(f"limit must be between 0 and {MAX_PAGE}, got {limit}")
        if offset < 0:
            raise QueryError(f"offset must not be negative, got {offset}")
        label = self._class_label(cls)
        clauses, params = compile_conditions(self.ontology, cls, list(where), scope)
        order = compile_order(self.ontology, cls, list(order_by), scope)
        prelude, joined = self._scope_joins(cls, scope)
        within = self.names_under(cls)
        if joined:
            condition = " AND ".join([*clauses, scope.render_scan("n", within)])
            rows = self._read(
                f"{prelude}MATCH (n:{label}) WHERE {condition} {joined}WITH n {order} WITH collect(n) AS matched "
                "RETURN size(matched), [m IN matched[$offset..($offset + $limit)] | [m.uid, labels(m), properties(m)]]",
                {**params, **scope.params, "offset": offset, "limit": limit},
            )
            total, page = rows[0] if rows else (0, [])
            return Page(items=[self.record(*row) for row in page], total=total, offset=offset, limit=limit)
        condition = " AND ".join([*clauses, scope.render("n", within)])  # cheap filters first: AND short-circuits
        rows = self._read(
            f"MATCH (n:{label}) WHERE {condition} WITH count(n) AS total "
            f"MATCH (n:{label}) WHERE {condition} WITH total, n {order} SKIP $offset LIMIT $limit "
            f"RETURN total, {NODE.format(n='n')}",
            {**params, **scope.params, "offset": offset, "limit": limit},
        )
        if rows:
            total = rows[0][0]
        elif offset > 0 or limit == 0:
            total = self._read(f"MATCH (n:{label}) WHERE {condition} RETURN count(n)", {**params, **scope.params})[0][0]
        else:
            total = 0
        return Page(items=[self.record(*row[1:]) for row in rows], total=total, offset=offset, limit=limit)

    def names_under(self, cls: str) -> frozenset[str]:
        """The class names a scan of `cls` can meet: the class and its subclasses."""
        if cls not in self._under:
            cls_id = self.ontology.get(cls).id
            self._under[cls] = frozenset(self.ontology.classes[c].name for c in {cls_id, *self.ontology.descendants(cls_id)})
        return self._under[cls]

    def _scope_joins(self, cls: str, scope: ReadScope) -> tuple[str, str]:
        """Cypher for the scope's join-form row rules that can touch twins of `cls`: a prelude that collects each
        rule's anchor twins, and the MATCH/WITH filter to put after a scan's MATCH of `n` ('' when none)."""
        relevant = set(self.ontology.labels(cls)) | self.names_under(cls)
        joins = [j for j in scope.joins if relevant & set(j.labels)]
        if not joins:
            return "", ""
        prelude, joined, carried = "", "", list[str]()
        for i, join in enumerate(joins):
            members = f"scope_members_{i}"
            prelude += (f"OPTIONAL MATCH {join.anchor} "
                        f"WITH {', '.join([*carried, f'collect(DISTINCT scope_member) AS {members}'])} ")
            carried.append(members)
        own = set(self.ontology.labels(cls))
        for i, join in enumerate(joins):
            still = ", ".join([*carried[i + 1:], "n"])  # the member lists later joins need, and the twin
            if own & set(join.labels):  # every twin of `cls` falls under the rule: a plain join
                joined += (f"MATCH (n)-[:{ident(join.via)}]->(scope_via_{i}) "
                           f"WHERE scope_via_{i} IN scope_members_{i} WITH DISTINCT {still} ")
                continue
            guard = " OR ".join(f"n:{ident(label)}" for label in join.labels)  # only some do: keep the others
            joined += (f"OPTIONAL MATCH (n)-[:{ident(join.via)}]->(scope_via_{i}) "
                       f"WITH {', '.join(carried[i:])}, n, collect(scope_via_{i}) AS scope_vias_{i} "
                       f"WHERE NOT ({guard}) OR any(x IN scope_vias_{i} WHERE x IN scope_members_{i}) "
                       f"WITH {still} ")
        return prelude, joined

    # ------------------------------------------------------------------ traversals

    def neighbours(
        self,
        uid: str,
        types: Sequence[str] = (),
        direction: Direction = "both",
        depth: int = 1,
        limit: int = 500,
        scope: ReadScope = UNRESTRICTED,
    ) -> Subgraph:
        """Twins within `depth` hops of `uid` over `types` (all types when empty), with the links between them."""
        if not 1 <= depth <= MAX_DEPTH:
            raise QueryError(f"depth must be between 1 and {MAX_DEPTH}, got {depth}")
        if not 1 <= limit <= MAX_PAGE:
            raise QueryError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        rel = self._rel_pattern(types, f"*1..{depth}")
        left, right = {"out": ("-", "->"), "in": ("<-", "-"), "both": ("-", "-")}[direction]
        rows = self._read(
            f"MATCH (a:Twin {{uid: $uid}}) WHERE {scope.render('a')} "
            f"MATCH p = (a){left}{rel}{right}(m:Twin) {_all_visible(scope, 'p')}"
            "WITH p LIMIT $limit "
            "RETURN [x IN nodes(p) | [x.uid, labels(x), properties(x)]], "
            "[r IN relationships(p) | [type(r), startNode(r).uid, endNode(r).uid, properties(r)]]",
            {"uid": uid, "limit": limit, **scope.params},
        )
        nodes: dict[str, TwinRecord] = {}
        links: dict[tuple[str, str, str], LinkRecord] = {}
        for path_nodes, path_links in rows:
            for node in path_nodes:
                nodes.setdefault(node[0], self.record(*node))
            for rel_type, source, target, props in path_links:
                links.setdefault((rel_type, source, target), LinkRecord(rel_type, source, target, dict(props)))
        if not nodes:
            start = self.get(uid, scope)
            if start is not None:
                nodes[uid] = start
        return Subgraph(nodes=list(nodes.values()), links=list(links.values()))

    def _rel_pattern(self, types: Sequence[str], length: str = "") -> str:
        known = self.ontology.relationship_types()
        for rel_type in types:
            if rel_type not in known:
                raise QueryError(f"unknown relationship type {quoted(rel_type)}")
        return f"[{':' + '|'.join(ident(t) for t in types) if types else ''}{length}]"

    def impact(self, uid: str, max_depth: int = 3, scope: ReadScope = UNRESTRICTED) -> list[ImpactHit]:
        """Everything that transitively depends on `uid` (dependency edges backwards, supports edges forwards)."""
        if not 1 <= max_depth <= MAX_DEPTH:
            raise QueryError(f"depth must be between 1 and {MAX_DEPTH}, got {max_depth}")
        if self.get(uid, scope) is None:
            return []
        paths: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {uid: ((uid,), ())}
        hits: list[ImpactHit] = []
        frontier = [uid]
        dep = self._rel_pattern(self.dependency_types) if self.dependency_types else None
        sup = self._rel_pattern(self.supports_types) if self.supports_types else None
        branches = []
        if dep:
            branches.append(f"MATCH (x)<-[r{dep[1:-1]}]-(d:Twin)")
        if sup:
            branches.append(f"MATCH (x)-[r{sup[1:-1]}]->(d:Twin)")
        if not branches:
            return []
        for depth in range(1, max_depth + 1):
            query = " UNION ALL ".join(
                f"UNWIND $frontier AS u MATCH (x:Twin {{uid: u}}) {branch} WHERE {scope.render('d')} "
                f"RETURN u AS via, type(r) AS rel, d.uid AS uid, labels(d) AS labels, properties(d) AS props"
                for branch in branches
            )
            rows = self._read(query, {"frontier": frontier, **scope.params})
            next_frontier: list[str] = []
            for via, rel_type, hit_uid, labels, props in sorted(rows, key=lambda r: (r[2], r[0], r[1])):
                if hit_uid in paths:
                    continue
                chain, types = paths[via]
                paths[hit_uid] = (chain + (hit_uid,), types + (rel_type,))
                hits.append(ImpactHit(self.record(hit_uid, labels, props), depth, *paths[hit_uid]))
                next_frontier.append(hit_uid)
            if not next_frontier:
                break
            frontier = next_frontier
        return hits

    def shortest_path(
        self,
        source: str,
        target: str,
        types: Sequence[str] = (),
        max_depth: int = 6,
        directed: bool = True,
        scope: ReadScope = UNRESTRICTED,
    ) -> PathResult | None:
        """One shortest path from `source` to `target` over `types`, within `max_depth` hops, or None."""
        if not 1 <= max_depth <= MAX_DEPTH:
            raise QueryError(f"depth must be between 1 and {MAX_DEPTH}, got {max_depth}")
        rel_types = self._rel_pattern(types)[1:-1].lstrip(":")
        base = self.backend.dialect.shortest_path(rel_types, max_depth, directed)
        query = base.replace(
            "RETURN p",
            f"{_all_visible(scope, 'p')}"
            "RETURN [x IN nodes(p) | [x.uid, labels(x), properties(x)]], [r IN relationships(p) | type(r)]",
        )
        rows = self._read(query, {"source": source, "target": target, **scope.params})
        if not rows:
            return None
        node_rows, rel_types_found = rows[0]
        return PathResult(nodes=[self.record(*n) for n in node_rows], types=list(rel_types_found))

    # ------------------------------------------------------------------ aggregates and search

    def aggregate(
        self,
        cls: str,
        metrics: Sequence[tuple[Metric, str | None]],
        group_by: Sequence[str] = (),
        where: Sequence[Condition] = (),
        scope: ReadScope = UNRESTRICTED,
    ) -> list[AggregateRow]:
        """Grouped count/sum/avg/min/max over twins of `cls` matching `where`."""
        label = self._class_label(cls)
        labels = self.ontology.labels(cls)
        clauses, params = compile_conditions(self.ontology, cls, list(where), scope)
        prelude, joined = self._scope_joins(cls, scope)
        within = self.names_under(cls)
        condition = " AND ".join([*clauses, scope.render_scan("n", within) if joined else scope.render("n", within)])
        keys, values = [], []
        for i, field in enumerate(group_by):
            check_readable(scope, labels, field, "grouped by")
            field_schema(self.ontology, cls, field)
            keys.append(f"n.{ident(field)} AS g{i}")
        for i, (metric, measured) in enumerate(metrics):
            if metric not in _METRICS:
                raise QueryError(f"unknown aggregate {metric!r}; use one of {', '.join(_METRICS)}")
            if measured is None:
                if metric != "count":
                    raise QueryError(f"aggregate {metric} needs a field")
                values.append(f"count(n) AS m{i}")
                continue
            check_readable(scope, labels, measured, "aggregated")
            field_schema(self.ontology, cls, measured)
            values.append(f"{_METRICS[metric]}(n.{ident(measured)}) AS m{i}")
        if not values:
            raise QueryError("an aggregate needs at least one metric")
        rows = self._read(
            f"{prelude}MATCH (n:{label}) WHERE {condition} {joined}RETURN {', '.join(keys + values)} "
            f"ORDER BY {', '.join([f'g{i}' for i in range(len(keys))] or ['m0 DESC'])}",
            {**params, **scope.params},
        )
        names = [f"{metric}_{field}" if field else metric for metric, field in metrics]
        return [
            AggregateRow(
                group=dict(zip(group_by, row[: len(keys)], strict=True)),
                values=dict(zip(names, row[len(keys) :], strict=True)),
            )
            for row in rows
        ]

    def search(
        self, text: str, classes: Sequence[str] = (), limit: int = 20, scope: ReadScope = UNRESTRICTED
    ) -> list[SearchHit]:
        """Full-text search over names and descriptions; a hit found only through a hidden field is dropped."""
        if not text.strip():
            raise QueryError("search text is empty")
        if not 1 <= limit <= MAX_PAGE:
            raise QueryError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        class_filter = ""
        if classes:
            class_filter = " AND (" + " OR ".join(f"node:{self._class_label(c)}" for c in classes) + ")"
        # Re-match each hit by uid: FalkorDB cannot evaluate pattern predicates on nodes yielded by a procedure.
        rows = self._read(
            f"{self.backend.dialect.fulltext_query()} WITH node.uid AS hit, score "
            f"MATCH (node:Twin {{uid: hit}}) WHERE {scope.render('node')}{class_filter} "
            f"RETURN node.uid, labels(node), properties(node), score ORDER BY score DESC LIMIT $limit",
            {"text": _fulltext_terms(text), "limit": limit * 3, **scope.params},
        )
        terms = _fulltext_terms(text).replace("*", "").lower().split()  # the words the index was asked for
        hits = []
        for uid, labels, props, score in rows:
            hidden = scope.hidden_for(labels)
            if hidden & {"name", "description"}:
                visible = " ".join(str(props.get(f, "")) for f in ("name", "description") if f not in hidden).lower()
                visible = "".join(ch for ch in visible if ch.isalnum() or ch.isspace())  # as the index sees it
                if not all(term in visible for term in terms):
                    continue
            hits.append(SearchHit(self.record(uid, labels, props), float(score)))
            if len(hits) == limit:
                break
        return hits

    def query(self, cypher: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        """Run a power user's read-only Cypher; refuses anything that writes (checked here and by the backend)."""
        if looks_like_write(cypher):
            raise ReadOnlyViolation("only read-only Cypher is allowed here (found a clause that writes)")
        return self._read(cypher, params or {})

    def stats(self) -> GraphStats:
        """Counts of twins and links, by class and by type."""
        by_class = {cls: count for cls, count in self._read("MATCH (n:Twin) RETURN n._class, count(n)", {})}
        by_type = {t: count for t, count in self._read("MATCH ()-[r]->() RETURN type(r), count(r)", {})}
        return GraphStats(
            twins=sum(by_class.values()), links=sum(by_type.values()), by_class=by_class, by_type=by_type
        )


def _fulltext_terms(text: str) -> str:
    """Query text for the full-text index: each word as a prefix match, special characters dropped."""
    words = ["".join(ch for ch in word if ch.isalnum()) for word in text.split()]
    return " ".join(f"{w}*" for w in words if w)


def _all_visible(scope: ReadScope, path: str) -> str:
    """Cypher (a WITH clause) that keeps path `path` only when the caller may see every twin on it.

    A row rule may hold a graph pattern, which FalkorDB cannot evaluate on a node taken out of a path or a list;
    the twins of the path are then matched again by uid and counted.
    """
    if scope.predicate is None:
        return f"WITH {path} WHERE all(x IN nodes({path}) WHERE {scope.render('x')}) "
    return (f"WITH {path}, [y IN nodes({path}) | y.uid] AS path_uids "
            f"CALL {{ WITH path_uids UNWIND path_uids AS u MATCH (x:Twin {{uid: u}}) WHERE {scope.render('x')} "
            "RETURN count(x) AS path_visible } "
            f"WITH {path}, path_uids, path_visible WHERE path_visible = size(path_uids) ")
