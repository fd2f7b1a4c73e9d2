"""Reads of the twin graph — lookups, filtered pages, traversals, impact, paths, aggregates, search — all scoped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graph.backends import CypherBackend
from graph.cypher import ident, looks_like_write
from graph.engine import ReadEngine
from graph.errors import QueryError, ReadOnlyViolation
from graph.lifecycle import PROPERTY as LIFECYCLE
from graph.lifecycle import stored_state
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
from graph.plan import (
    AggregateRead,
    AllOf,
    AnyOf,
    Compare,
    Filter,
    ImpactRead,
    ListRead,
    ListRows,
    NodeRow,
    PathRead,
    PathRows,
    Projection,
    Related,
    SearchRead,
    SearchRow,
    Sort,
    Step,
    StepDirection,
    TwinRead,
    TwinsRead,
    Window,
)
from graph.values import decode
from ontology.errors import UnknownTerm, quoted
from ontology.model import Ontology

NODE = "{n}.uid, labels({n}), properties({n})"
MAX_PAGE = 1000
MAX_DEPTH = 10


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
        self.engine = ReadEngine(backend, ontology, self.names_under, self.impact)

    def _read(self, cypher: str, params: dict[str, Any]) -> list[list[Any]]:
        return self.backend.read(cypher, params, timeout_ms=self.timeout_ms)

    def record(self, uid: str, labels: Sequence[str], props: dict[str, Any]) -> TwinRecord:
        """A TwinRecord from a stored node, with values decoded by the ontology's schemas."""
        props = dict(props)
        props.pop("uid", None)
        cls = props.pop("_class", None) or next((label for label in labels if label != "Twin"), "Twin")
        lifecycle = stored_state(props.pop(LIFECYCLE, None))
        try:
            defs = self.ontology.properties(cls)
            ordered = self.ontology.labels(cls)  # the class first, then its ancestors (backends return any order)
        except UnknownTerm:
            defs, ordered = {}, tuple(label for label in labels if label != "Twin")
        decoded = {k: decode(v, defs[k].schema if k in defs else None) for k, v in props.items()}
        return TwinRecord(uid=uid, cls=cls, labels=ordered, properties=decoded, lifecycle=lifecycle)

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

    def visibility(
        self, uids: Sequence[str], scope: ReadScope, timeout_ms: int | None = None
    ) -> dict[str, tuple[str, bool]]:
        """uid -> (class, inside `scope`) for the twins among `uids` that exist, in one round trip (a writer must learn
        whether a twin exists only when it is one they may see)."""
        rows = self.backend.read(
            "MATCH (n:Twin) WHERE n.uid IN $uids RETURN n.uid AS uid, n._class AS cls, false AS visible "
            f"UNION ALL MATCH (n:Twin) WHERE n.uid IN $uids AND {scope.render('n')} "
            "RETURN n.uid AS uid, n._class AS cls, true AS visible",
            {"uids": sorted(set(uids)), **scope.params},
            timeout_ms=timeout_ms,
        )
        found: dict[str, tuple[str, bool]] = {}
        for uid, cls, visible in rows:
            seen = found.get(uid)
            found[uid] = (cls, visible or (seen[1] if seen else False))
        return found

    def linked_outside(self, uids: Sequence[str], scope: ReadScope, timeout_ms: int | None = None) -> list[str]:
        """The twins among `uids` linked to a twin outside `scope` (deleting them would remove those links)."""
        outside = scope.render("m")
        if not uids or outside == "true":
            return []
        rows = self.backend.read(
            f"MATCH (n:Twin) WHERE n.uid IN $uids MATCH (n)--(m:Twin) WHERE NOT ({outside}) RETURN DISTINCT n.uid",
            {"uids": list(uids), **scope.params},
            timeout_ms=timeout_ms,
        )
        return sorted(uid for (uid,) in rows)

    def twins_of(self, classes: Sequence[str], scope: ReadScope = UNRESTRICTED) -> list[TwinRecord]:
        """Every twin carrying one of these class labels (subclasses included) inside `scope`, in one round trip,
        unpaged (for a study that reads a whole part of the twin); a class the graph does not hold finds nothing."""
        if not classes:
            return []
        label_test = " OR ".join(f"n:{ident(cls)}" for cls in classes)
        rows = self._read(
            f"MATCH (n:Twin) WHERE ({label_test}) AND {scope.render('n')} RETURN {NODE.format(n='n')}",
            dict(scope.params),
        )
        return [self.record(*row) for row in rows]

    def states_holding(self, wanted: Sequence[tuple[str, str | None]]) -> list[tuple[str, str, dict[str, Any]]]:
        """Every twin that carries the class label of one of `wanted`'s (class, property) pairs and holds that
        property (any twin of the class when the property is None), in one round trip, unpaged, as stored: (uid,
        class, stored properties without uid and class; values not decoded). A migration reads the twins it changes
        and no others, and rewrites the stored states it read."""
        if not wanted:
            return []
        tests = [
            f"(n:{ident(cls)})" if prop is None else f"(n:{ident(cls)} AND n.{ident(prop)} IS NOT NULL)"
            for cls, prop in dict.fromkeys(wanted)
        ]
        rows = self._read(f"MATCH (n:Twin) WHERE {' OR '.join(tests)} RETURN n.uid, n._class, properties(n)", {})
        found: list[tuple[str, str, dict[str, Any]]] = []
        for uid, cls, props in rows:
            stored = dict(props)
            stored.pop("uid", None)
            stored.pop("_class", None)
            found.append((uid, cls, stored))
        return found

    def links_from(self, uids: Sequence[str]) -> list[LinkRecord]:
        """The outgoing links of these twins (unscoped: for checks of what the store holds), in one round trip."""
        rows = self._read(
            "UNWIND $uids AS u MATCH (a:Twin {uid: u})-[r]->(b:Twin) RETURN type(r), a.uid, b.uid, properties(r)",
            {"uids": list(uids)},
        )
        return [LinkRecord(rel, source, target, dict(props or {})) for rel, source, target, props in rows]

    def links_of(
        self, types: Sequence[str], scope: ReadScope = UNRESTRICTED
    ) -> tuple[list[LinkRecord], dict[str, str]]:
        """Every link of these types between twins inside `scope`, in one round trip, unpaged; with the class of each
        twin at their ends."""
        rows = self._read(
            f"MATCH (a:Twin)-[r]->(b:Twin) WHERE type(r) IN $types AND {scope.render('a')} AND {scope.render('b')} "
            "RETURN type(r), a.uid, b.uid, properties(r), a._class, b._class",
            {"types": list(types), **scope.params},
        )
        links, classes = [], {}
        for rel, source, target, props, source_cls, target_cls in rows:
            links.append(LinkRecord(rel, source, target, dict(props or {})))
            classes[source], classes[target] = source_cls or "Twin", target_cls or "Twin"
        return links, classes

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
        self._class_label(cls)
        order = tuple(Sort(key.field, key.descending) for key in order_by)
        plan = ListRead(cls, Projection(everything=True), Window(offset, limit), self._filter(cls, where), order, True)
        rows = self.read_list(plan, scope, self.timeout_ms)
        return Page(
            items=[self._record_of(row) for row in rows.items[:limit]],
            total=rows.total or 0,
            offset=offset,
            limit=limit,
        )

    def names_under(self, cls: str) -> frozenset[str]:
        """The class names a scan of `cls` can meet: the class and its subclasses."""
        if cls not in self._under:
            cls_id = self.ontology.get(cls).id
            self._under[cls] = frozenset(
                self.ontology.classes[c].name for c in {cls_id, *self.ontology.descendants(cls_id)}
            )
        return self._under[cls]

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
        found = self.read_path(
            PathRead(source, target, Projection(everything=True), tuple(types), max_depth, directed),
            scope,
            self.timeout_ms,
        )
        if found is None:
            return None
        return PathResult(nodes=[self._record_of(row) for row in found.nodes], types=found.types)

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
        self._class_label(cls)
        plan = AggregateRead(cls, tuple(metrics), tuple(group_by), self._filter(cls, where))
        return self.read_aggregate(plan, scope, self.timeout_ms)

    def search(
        self, text: str, classes: Sequence[str] = (), limit: int = 20, scope: ReadScope = UNRESTRICTED
    ) -> list[SearchHit]:
        """Full-text search over names and descriptions; a hit found only through a hidden field is dropped."""
        plan = SearchRead(text, Projection(everything=True), limit, tuple(classes))
        hits = self.read_search(plan, scope, self.timeout_ms)
        return [SearchHit(self._record_of(hit.node), hit.score) for hit in hits]

    # ------------------------------------------------------------------ read plans (graph/plan.py, graph/engine.py)

    def read_list(self, plan: ListRead, scope: ReadScope, timeout_ms: int | None = None) -> ListRows:
        """A page of twins with nested connections, in one round trip."""
        return self.engine.page(plan, scope, timeout_ms)

    def read_twin(self, plan: TwinRead, scope: ReadScope, timeout_ms: int | None = None) -> NodeRow | None:
        """One twin with nested connections; None when absent or outside the scope."""
        return self.engine.twin(plan, scope, timeout_ms)

    def read_twins(self, plan: TwinsRead, scope: ReadScope, timeout_ms: int | None = None) -> dict[str, NodeRow]:
        """Twins by uid with nested connections, in one round trip."""
        return self.engine.twins(plan, scope, timeout_ms)

    def read_search(self, plan: SearchRead, scope: ReadScope, timeout_ms: int | None = None) -> list[SearchRow]:
        """Full-text hits with nested connections, in one round trip."""
        return self.engine.search(plan, scope, timeout_ms)

    def read_impact(self, plan: ImpactRead, scope: ReadScope) -> list[ImpactHit]:
        """What depends on a twin, one round trip per level."""
        return self.engine.impact(plan, scope)

    def read_path(self, plan: PathRead, scope: ReadScope, timeout_ms: int | None = None) -> PathRows | None:
        """One shortest path with nested connections, in one round trip."""
        return self.engine.path(plan, scope, timeout_ms)

    def read_aggregate(
        self, plan: AggregateRead, scope: ReadScope, timeout_ms: int | None = None
    ) -> list[AggregateRow]:
        """Grouped metrics, in one round trip."""
        return self.engine.aggregate(plan, scope, timeout_ms)

    def _filter(self, cls: str, where: Sequence[Condition]) -> Filter | None:
        """The plan filter of a list of conditions (all must hold); an `exists` condition counts visible twins only."""
        schemas = self.engine.schemas(cls)
        parts: list[Filter] = []
        for cond in where:
            if cond.op != "exists":
                value = list(cond.value) if cond.op == "in" and isinstance(cond.value, (set, frozenset)) else cond.value
                parts.append(Compare(cond.field, cond.op, value, schemas.get(cond.field)))
                continue
            if cond.field not in self.ontology.relationship_types():
                raise QueryError(f"unknown relationship {quoted(cond.field)} in an exists filter")
            exists = cond.value in (None, True)
            directions: tuple[StepDirection, ...] = ("out", "in") if cond.direction == "both" else (cond.direction,)
            related = tuple(Related(Step(cond.field, d, None), None, exists) for d in directions)
            parts.append(related[0] if len(related) == 1 else AnyOf(related) if exists else AllOf(related))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def _record_of(self, row: NodeRow) -> TwinRecord:
        """The TwinRecord of a row read with a projection of `everything`."""
        try:
            labels = self.ontology.labels(row.cls)
        except UnknownTerm:
            labels = row.labels
        return TwinRecord(uid=row.uid, cls=row.cls, labels=labels, properties=row.values)

    def query(self, cypher: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        """Run a power user's read-only Cypher; refuses anything that writes (checked here and by the backend)."""
        if looks_like_write(cypher):
            raise ReadOnlyViolation("only read-only Cypher is allowed here (found a clause that writes)")
        return self._read(cypher, params or {})

    def stats(self) -> GraphStats:
        """Counts of twins and links, by class and by type."""
        by_class = dict(self._read("MATCH (n:Twin) RETURN n._class, count(n)", {}))
        by_type = dict(self._read("MATCH ()-[r]->() RETURN type(r), count(r)", {}))
        return GraphStats(twins=sum(by_class.values()), links=sum(by_type.values()), by_class=by_class, by_type=by_type)


def _all_visible(scope: ReadScope, path: str) -> str:
    """Cypher (a WITH clause) that keeps path `path` only when the caller may see every twin on it.

    A row rule may hold a graph pattern, which FalkorDB cannot evaluate on a node taken out of a path or a list;
    the twins of the path are then matched again by uid and counted.
    """
    if scope.predicate is None:
        return f"WITH {path} WHERE all(x IN nodes({path}) WHERE {scope.render('x')}) "
    return (
        f"WITH {path}, [y IN nodes({path}) | y.uid] AS path_uids "
        f"CALL {{ WITH path_uids UNWIND path_uids AS u MATCH (x:Twin {{uid: u}}) WHERE {scope.render('x')} "
        "RETURN count(x) AS path_visible } "
        f"WITH {path}, path_uids, path_visible WHERE path_visible = size(path_uids) "
    )
