"""Validated, idempotent, batched writes of twins and links, with every change recorded in history."""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from graph.backends import CypherBackend
from graph.bulk import EdgeGroup, NodeGroup, collection_paused, edge_groups
from graph.cypher import ident, labels_clause
from graph.errors import BatchRejected, QueryError, TwinNotFound
from graph.history import (
    Change,
    ChangeContext,
    HistoryEntry,
    HistoryStore,
    LoadedTwin,
    PendingChanges,
    as_recorded,
)
from graph.lifecycle import PROPERTY as LIFECYCLE
from graph.lifecycle import LifecycleError, State, Transition, stored_state, transition_problem
from graph.model import Link, Rewrite, Twin, WriteSummary
from graph.values import encode, stored_as_is
from ontology.errors import UnknownTerm, Violation, quoted
from ontology.model import Ontology

CHUNK = 20_000  # rows per Cypher statement
UID_MAX = 512  # characters of a uid (the history, ledger and lineage columns hold this many)
RETRIES = 3  # a concurrent writer may create the same uid between our read and our CREATE
COUNT_FIRST = 1_000  # property-less links of one type from which existence is counted before it is listed
HISTORY_SLICE = 2_000  # changes handed to the history thread at a time while a rewrite works out the rest
CLASS_CACHE = 2_000_000  # twin classes a writer remembers (about 200 MB at most); forgotten all at once when full


class TwinWriter:
    """Writes twins and links after validating the whole batch against the ontology."""

    def __init__(self, backend: CypherBackend, ontology: Ontology, history: HistoryStore | None) -> None:
        self.backend = backend
        self.ontology = ontology
        self.history = history
        self._classes: dict[str, str] = {}  # uid -> class name, as this writer last wrote or read it
        self._reads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="twin-write-reads")
        self._as_is: dict[str, frozenset[str]] = {}  # class id -> properties stored unchanged

    # ------------------------------------------------------------------ twins

    def upsert_twins(self, twins: Sequence[Twin], context: ChangeContext) -> WriteSummary:
        """Create or update twins; a batch with any violation writes nothing and lists every offending item."""
        uids = list(dict.fromkeys(t.uid for t in twins if isinstance(t, Twin) and isinstance(t.uid, str)))
        stored = self._reads.submit(self._fetch_twins, uids)  # read while the batch is checked
        batch, required = self._validated_twins(twins)
        attempt = 1
        while True:
            try:
                existing = stored.result() if attempt == 1 else self._fetch_twins(list(batch))
                return self._write_twins(batch, required, context, existing)
            except QueryError as exc:
                if not _is_uniqueness_conflict(exc) or attempt == RETRIES:
                    raise
                attempt += 1

    def _validated_twins(
        self, twins: Sequence[Twin], new_graph: bool = False
    ) -> tuple[dict[str, tuple[str, dict[str, Any]]], dict[str, list[Violation]]]:
        """The batch merged by uid, and the required-property violations that matter only for new twins (all of
        them, and rejected here, for a graph that does not exist yet)."""
        violations: list[Violation] = []
        required: dict[str, list[Violation]] = defaultdict(list)
        batch: dict[str, tuple[str, dict[str, Any]]] = {}
        for i, twin in enumerate(twins):
            where = f"twins[{i}]"
            if not isinstance(twin, Twin):
                violations.append(Violation(where, "type", f"expected a Twin, got {type(twin).__name__}"))
                continue
            if not isinstance(twin.uid, str) or not twin.uid.strip():
                violations.append(Violation(f"{where}.uid", "uid", f"uid must be non-empty text, got {twin.uid!r}"))
                continue
            if len(twin.uid) > UID_MAX:  # the relational stores (history, ledger, lineage) keep uids this long
                violations.append(
                    Violation(
                        f"{where}.uid",
                        "uid",
                        f"uid is {len(twin.uid)} characters long, at most {UID_MAX} are kept: {twin.uid[:40]!r}...",
                    )
                )
                continue
            try:
                cls = self.ontology.get(twin.cls)
            except UnknownTerm as exc:
                violations.append(Violation(f"{where}({twin.uid})", "unknown-class", str(exc)))
                continue
            for problem in self.ontology.validate(cls.id, twin.properties, path=f"{where}({twin.uid})"):
                (required[twin.uid] if problem.rule == "required" else violations).append(problem)
            previous = batch.get(twin.uid)
            if previous is not None and previous[0] != cls.id:
                violations.append(
                    Violation(
                        f"{where}({twin.uid})",
                        "duplicate-uid",
                        f"uid given twice with classes {previous[0]} and {cls.id}",
                    )
                )
                continue
            merged = twin.properties if previous is None else {**previous[1], **twin.properties}
            batch[twin.uid] = (cls.id, merged)  # the caller's dict, unchanged, unless merged
        for uid, (_cls_id, props) in batch.items():  # a later item of the batch may supply what an earlier lacked
            if uid in required:
                required[uid] = [v for v in required[uid] if props.get(v.path.rsplit(".", 1)[-1]) is None]
        required = {uid: found for uid, found in required.items() if found}
        if violations or (new_graph and required):
            # Report every problem at once: missing required properties count for twins that do not exist yet.
            existing = self._fetch_twins(list(required)) if required and not new_graph else {}
            violations += _unmet(required, batch, existing)
            raise BatchRejected(violations)
        return batch, required

    def _write_twins(
        self,
        batch: dict[str, tuple[str, dict[str, Any]]],
        required: dict[str, list[Violation]],
        context: ChangeContext,
        existing: dict[str, tuple[str, dict[str, Any]]],
    ) -> WriteSummary:
        missing = _unmet(required, batch, existing) + self._stranded(batch, existing)
        if missing:
            raise BatchRejected(missing)
        creates: dict[str, list[dict[str, Any]]] = defaultdict(list)
        updates: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        changes: list[Change] = []
        unchanged = 0
        for uid, (cls_id, props) in batch.items():
            cls = self.ontology.get(cls_id)
            encoded = self._twin_values(cls_id, props)
            old = existing.get(uid)
            if old is None:
                stored = {k: v for k, v in encoded.items() if v is not None}
                creates[cls_id].append({"uid": uid, "_class": cls.name, **stored})
                changes.append(Change(uid, "twin", "create", None, stored, cls=cls.name))
                continue
            old_class, old_props = old
            delta = {k: v for k, v in encoded.items() if not self._same(old_props.get(k), v)}
            if not delta and old_class == cls.name:
                unchanged += 1
                continue
            after = {k: v for k, v in {**old_props, **delta}.items() if v is not None}
            updates[(old_class, cls_id)].append({"uid": uid, "p": {**delta, "_class": cls.name}})
            changes.append(Change(uid, "twin", "update", old_props, after, cls=cls.name))
        with self._recording(changes, context):
            for cls_id, rows in creates.items():
                # rows as lists, one column per property (a missing one is null, which CREATE leaves unset):
                # lists of text and numbers take the fast parameter path
                columns = list(dict.fromkeys(key for row in rows for key in row))
                labels = labels_clause(self.ontology.labels(cls_id))
                assignments = ", ".join(f"{ident(key)}: r[{i}]" for i, key in enumerate(columns))
                for chunk in _chunks(rows):
                    self.backend.write(
                        f"UNWIND $rows AS r CREATE (n{labels} {{{assignments}}})",
                        {"rows": [[row.get(key) for key in columns] for row in chunk]},
                    )
            for (old_class, cls_id), rows in updates.items():
                relabel = self._relabel(old_class, cls_id)
                for chunk in _chunks(rows):
                    self.backend.write(
                        f"UNWIND $rows AS r MATCH (n:Twin {{uid: r.uid}}) {relabel}SET n += r.p", {"rows": chunk}
                    )
        for uid, (cls_id, _) in batch.items():  # written: remember each twin's class for the links that follow
            self._remember(uid, self.ontology.get(cls_id).name)
        created = sum(len(rows) for rows in creates.values())
        return WriteSummary(created=created, updated=len(changes) - created, unchanged=unchanged)

    def _stranded(
        self, batch: dict[str, tuple[str, dict[str, Any]]], existing: dict[str, tuple[str, dict[str, Any]]]
    ) -> list[Violation]:
        """Properties a class change would leave on a twin whose new class does not define them: refused (their
        values would lose the classification that protects them) unless the same write removes them (None)."""
        stranded: list[Violation] = []
        for uid, (cls_id, props) in batch.items():
            old = existing.get(uid)
            if old is None or old[0] == self.ontology.get(cls_id).name:
                continue
            defs = self.ontology.properties(cls_id)
            new_name = self.ontology.get(cls_id).name
            stranded += [
                Violation(
                    f"twins({uid}).{key}",
                    "stranded",
                    f"{new_name} does not define {key!r}, which {uid} holds as a {old[0]}; "
                    "remove it (set it to null) in the same write to change the class",
                )
                for key, value in old[1].items()
                if value is not None and key not in defs and (key not in props or props[key] is not None)
            ]
        return stranded

    def _relabel(self, old_class: str, cls_id: str) -> str:
        new_labels = self.ontology.labels(cls_id)
        try:
            old_labels = self.ontology.labels(old_class)
        except UnknownTerm:
            old_labels = (old_class,)
        removed = [label for label in old_labels if label not in new_labels]
        added = [label for label in new_labels if label not in old_labels]
        clause = ""
        if removed:
            clause += "REMOVE n" + "".join(f":{ident(label)}" for label in removed) + " "
        if added:
            clause += "SET n" + "".join(f":{ident(label)}" for label in added) + " "
        return clause

    def _fetch_twins(self, uids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        for chunk in _chunks(uids):
            for uid, cls, props in self.backend.read(
                "UNWIND $uids AS u MATCH (n:Twin {uid: u}) RETURN n.uid, n._class, properties(n)", {"uids": chunk}
            ):
                props = dict(props)
                props.pop("uid", None)
                props.pop("_class", None)
                found[uid] = (cls, props)
                self._remember(uid, cls)
        return found

    def delete_twins(self, uids: Iterable[str], context: ChangeContext) -> WriteSummary:
        """Delete twins and every relationship touching them; unknown uids are ignored."""
        uids = list(dict.fromkeys(uids))
        existing = self._fetch_twins(uids)
        if not existing:
            return WriteSummary()
        changes: list[Change] = []
        for chunk in _chunks(list(existing) if self.history is not None else []):  # the links' history, if kept
            for source, rel_type, target, props in self.backend.read(
                "UNWIND $uids AS u MATCH (n:Twin {uid: u})-[r]-(m:Twin) "
                "RETURN DISTINCT startNode(r).uid, type(r), endNode(r).uid, properties(r)",
                {"uids": chunk},
            ):
                changes.append(Change(source, "link", "delete", dict(props), None, link_type=rel_type, target=target))
        changes += [Change(uid, "twin", "delete", props, None, cls=cls) for uid, (cls, props) in existing.items()]
        for uid in existing:
            self._classes.pop(uid, None)
        with self._recording(changes, context):
            for chunk in _chunks(list(existing)):
                self.backend.write("UNWIND $uids AS u MATCH (n:Twin {uid: u}) DETACH DELETE n", {"uids": chunk})
        return WriteSummary(deleted=len(existing))

    def transition(self, states: dict[str, State], context: ChangeContext, strict: bool) -> list[Transition]:
        """Move twins to lifecycle states, all or none, with history: TwinNotFound for a missing twin, LifecycleError
        for a transition not allowed (a twin already in its state is skipped unless `strict`)."""
        existing = self._fetch_twins(list(states))
        missing = sorted(set(states) - set(existing))
        if missing:
            raise TwinNotFound(f"no twin with uid {', '.join(map(quoted, missing[:5]))}")
        moves: list[Transition] = []
        changes: list[Change] = []
        refused: dict[str, str] = {}
        for uid, target in states.items():
            cls, props = existing[uid]
            current = stored_state(props.get(LIFECYCLE))
            if current == target and not strict:
                continue
            # a twin whose state was never set takes any first state (a record that creates it planned)
            problem = transition_problem(uid, current, target) if LIFECYCLE in props else None
            if problem is not None:
                refused[uid] = problem
                continue
            moves.append(Transition(uid, cls, current, target))
            changes.append(Change(uid, "twin", "update", props, {**props, LIFECYCLE: target}, cls=cls))
        if refused:
            first = next(iter(refused.values()))
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise LifecycleError(first + more, refused)
        if not moves:
            return []
        with self._recording(changes, context):
            for chunk in _chunks([[m.uid, m.after] for m in moves]):
                self.backend.write(
                    f"UNWIND $rows AS r MATCH (n:Twin {{uid: r[0]}}) SET n.{LIFECYCLE} = r[1]", {"rows": chunk}
                )
        return moves

    def rewrite_twins(self, rewrites: Sequence[Rewrite], context: ChangeContext, validate: bool = True) -> int:
        """Replace the states of existing twins (an ontology migration and its undo) as upserts would, in fewer
        round trips: the new states are validated against this writer's ontology (BatchRejected lists every problem,
        nothing written; `validate=False` for states restored as they were), the stored states read in one query and
        only the properties a rewrite changes (its `before` against its `after`) applied to them, the changes recorded
        in history as one write and written with one UNWIND statement per (old class, new
        class, changed keys) group, values sent as lists. Twins gone from the graph are skipped. Returns the twins
        written."""
        violations: list[Violation] = []
        wanted: dict[str, tuple[str, dict[str, Any]]] = {}
        ids: dict[str, str] = {}  # class name -> id, looked up once per class
        names: dict[str, str] = {}  # class id -> name
        for rewrite in rewrites:
            cls_id = ids.get(rewrite.cls)
            if cls_id is None:
                try:
                    cls = self.ontology.get(rewrite.cls)
                except UnknownTerm as exc:
                    violations.append(Violation(f"twins({rewrite.uid})", "unknown-class", str(exc)))
                    continue
                cls_id = ids[rewrite.cls] = cls.id
                names[cls_id] = cls.name
            if validate:
                violations += self.ontology.validate(cls_id, rewrite.after, path=f"twins({rewrite.uid})")
            # only what the rewrite itself changes is applied to the state read now: a property another writer changed
            # since the rewrite was planned keeps its value, in the graph and in the history row
            before, after = rewrite.before, rewrite.after
            wanted[rewrite.uid] = (
                cls_id,
                {k: after.get(k) for k in {*before, *after} if _differs(before.get(k), after.get(k))},
            )
        if violations:
            raise BatchRejected(violations)
        existing = self._fetch_twins(list(wanted))
        written: list[str] = []
        groups: dict[tuple[str, str, tuple[str, ...]], list[list[Any]]] = defaultdict(list)
        # the history rows are inserted by the recording's thread while the rest of the changes are worked out, and
        # made durable (pending) before the graph is written
        with self._recording([], context, seal=False) as outcome:
            changes: list[Change] = []
            for uid, (cls_id, props) in wanted.items():
                if uid not in existing:
                    continue
                old_class, old_props = existing[uid]
                name = names[cls_id]
                encoded = self._twin_values(cls_id, props)
                delta = {k: v for k, v in encoded.items() if not self._same(old_props.get(k), v)}
                if not delta and old_class == name:
                    continue
                keys = tuple(sorted(delta))
                groups[(old_class, cls_id, keys)].append([uid, name] + [delta[k] for k in keys])
                after = {k: v for k, v in {**old_props, **delta}.items() if v is not None}
                changes.append(Change(uid, "twin", "update", old_props, after, cls=name))
                written.append(uid)
                if len(changes) == HISTORY_SLICE:
                    outcome.add(changes)
                    changes = []
            outcome.add(changes)
            outcome.seal()
            for (old_class, cls_id, keys), rows in groups.items():
                relabel = self._relabel(old_class, cls_id)
                sets = "".join(f", n.{ident(key)} = r[{i}]" for i, key in enumerate(keys, start=2))
                for chunk in _chunks(rows):
                    self.backend.write(
                        f"UNWIND $rows AS r MATCH (n:Twin {{uid: r[0]}}) {relabel}SET n._class = r[1]{sets}",
                        {"rows": chunk},
                    )
        for uid in written:
            self._remember(uid, names[wanted[uid][0]])
        return len(written)

    def _same(self, stored: Any, value: Any) -> bool:
        """Whether writing `value` over the `stored` one (as read back) changes nothing: a double read back from
        FalkorDB has 15 significant digits, so 1/3 written again must not count as a change every time."""
        return stored == value or (stored is not None and stored == self.backend.dialect.as_read(value))

    # ------------------------------------------------------------------ a new graph

    def load_new(
        self, twins: Sequence[Twin], links: Sequence[Link], context: ChangeContext, compact: bool = True
    ) -> WriteSummary | None:
        """Create a graph that does not exist yet from `twins` and `links` in one bulk write, all or nothing, after
        the checks upserts make; None, with nothing written, when the backend cannot or the graph exists.

        `compact`: history keeps one row per twin holding its properties and the links created from it (read back
        as the same changes); otherwise one row per twin and per link."""
        if not self.backend.can_bulk_create():
            return None
        with collection_paused():
            return self._load_new(twins, links, context, compact)

    def _load_new(
        self, twins: Sequence[Twin], links: Sequence[Link], context: ChangeContext, compact: bool
    ) -> WriteSummary | None:
        try:
            batch, _ = self._validated_twins(twins, new_graph=True)
            violations: list[Violation] = []
        except BatchRejected as rejected:  # go on to the links, so that one error lists every problem
            batch, violations = {}, list(rejected.violations)
        classes = (
            {uid: self.ontology.get(cls_id).name for uid, (cls_id, _) in batch.items()}
            if batch
            else self._known_classes(twins)
        )
        link_batch, link_problems = _link_batch(links)
        if violations:  # one error lists every problem: the links' too
            raise BatchRejected(violations + link_problems + self._link_violations(links, classes))
        # history is inserted while the rest is checked, and made durable (pending) before the graph is written
        with self._recording([], context, seal=False) as outcome:
            states: dict[str, dict[str, Any]] | None = {} if compact else None
            nodes, ids = self._node_groups(batch, outcome, states)
            violations = link_problems + self._link_violations(links, classes)
            if not violations:
                violations = self._multiplicity_violations(link_batch, classes, {})
            if violations:
                raise BatchRejected(violations)  # the twins' history is rolled back
            outgoing: dict[str, list[tuple[str, str, dict[str, Any]]]] | None = None if states is None else {}
            edges = self._edge_groups(link_batch, classes, ids, outcome, outgoing)
            if states is not None and outgoing is not None:
                self._record_loaded(states, classes, outgoing, outcome)
            outcome.seal()
            if not self.backend.bulk_create(nodes, edges):
                outcome.keep = False
                return None
        for uid, cls in classes.items():
            self._remember(uid, cls)
        return WriteSummary(created=len(batch) + len(link_batch))

    def _node_groups(
        self,
        batch: dict[str, tuple[str, dict[str, Any]]],
        history: _Outcome,
        states: dict[str, dict[str, Any]] | None = None,
    ) -> tuple[list[NodeGroup], dict[str, int]]:
        """Twins as bulk node groups (one per class), the id each will get; their history goes to `history`, or,
        when `states` is given, their stored properties go there (for compact history rows)."""
        by_class: dict[str, list[str]] = defaultdict(list)
        for uid, (cls_id, _) in batch.items():
            by_class[cls_id].append(uid)
        ids: dict[str, int] = {}
        nodes: list[NodeGroup] = []
        for cls_id, uids in by_class.items():
            rows = []
            changes: list[Change] = []
            name = self.ontology.get(cls_id).name
            for uid in uids:
                stored = {k: v for k, v in self._twin_values(cls_id, batch[uid][1]).items() if v is not None}
                ids[uid] = len(ids)  # the order FalkorDB gives ids in a graph the load creates
                rows.append(stored)
                if states is None:
                    changes.append(Change(uid, "twin", "create", None, stored, name))
                else:
                    states[uid] = stored
            history.add(changes)
            columns = tuple(dict.fromkeys(key for row in rows for key in row))
            nodes.append(
                NodeGroup(
                    ("Twin", *self.ontology.labels(cls_id)),
                    ("uid", "_class", *columns),
                    [[uid, name, *map(row.get, columns)] for uid, row in zip(uids, rows, strict=True)],
                )
            )
        return nodes, ids

    def _edge_groups(
        self,
        batch: dict[tuple[str, str, str], dict[str, Any]],
        classes: dict[str, str],
        ids: dict[str, int],
        history: _Outcome,
        outgoing: dict[str, list[tuple[str, str, dict[str, Any]]]] | None = None,
    ) -> list[EdgeGroup]:
        """Links as bulk edge groups (one per type) between node ids; their history goes to `history` in pieces, or,
        when `outgoing` is given, each goes there under its source (for compact history rows)."""
        by_type: dict[str, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
        changes: list[Change] = []
        for (rel_type, source, target), props in batch.items():
            if props:
                props = {k: v for k, v in self._link_values(classes[source], rel_type, props).items() if v is not None}
            by_type[rel_type].append((source, target, props))
            if outgoing is not None:
                outgoing.setdefault(source, []).append((rel_type, target, props))
                continue
            changes.append(Change(source, "link", "create", None, props, None, rel_type, target))
            if len(changes) == CHUNK:
                history.add(changes)
                changes = []
        history.add(changes)
        return edge_groups(by_type, ids)

    def _record_loaded(
        self,
        states: dict[str, dict[str, Any]],
        classes: dict[str, str],
        outgoing: dict[str, list[tuple[str, str, dict[str, Any]]]],
        history: _Outcome,
    ) -> None:
        """The history of a bulk load as compact rows: one per twin, with the links from it and the twins linking to
        it (handed over in pieces, so the insert overlaps the rest)."""
        incoming: dict[str, list[str]] = defaultdict(list)
        for source, found in outgoing.items():
            for _, target, _ in found:
                incoming[target].append(source)
        loaded: list[LoadedTwin] = []
        for uid, stored in states.items():
            loaded.append(
                LoadedTwin(uid, classes[uid], stored, outgoing.get(uid, ()), list(dict.fromkeys(incoming.get(uid, ()))))
            )
            if len(loaded) == CHUNK // 4:
                history.add_loaded(loaded)
                loaded = []
        history.add_loaded(loaded)

    # ------------------------------------------------------------------ links

    def upsert_links(self, links: Sequence[Link], context: ChangeContext, attempt: int = 1) -> WriteSummary:
        """Create or update links; every link is checked for endpoints, domain, range, properties, multiplicity."""
        batch, violations = _link_batch(links)
        classes = self._endpoint_classes({uid for _, source, target in batch for uid in (source, target)})
        # The graph reads the write needs run while the batch is checked (they are wasted only if it is rejected).
        existing = self._reads.submit(self._existing_links, batch)
        linked = self._reads.submit(self._linked_targets, batch, classes)
        violations += self._link_violations(links, classes)
        if not violations:
            violations += self._multiplicity_violations(batch, classes, linked.result())
        if violations:
            raise BatchRejected(violations)
        summary = self._write_links(batch, classes, context, existing.result())
        if summary is not None:
            return summary
        # An endpoint changed class or vanished after this writer last saw it: the links this call created were
        # taken back; check the batch and write it again from the graph's present state.
        if attempt == RETRIES:
            raise QueryError("the twins these links join kept changing while they were written; nothing was written")
        for _, source, target in batch:
            self._classes.pop(source, None)
            self._classes.pop(target, None)
        return self.upsert_links(links, context, attempt + 1)

    def _link_violations(self, links: Sequence[Link], classes: dict[str, str]) -> list[Violation]:
        """Endpoint, domain, range and property violations of each link, given the class of every known uid."""
        violations: list[Violation] = []
        verdicts: dict[tuple[str, str, str], list[Violation]] = {}  # property-less links: one check per class pair
        for i, link in enumerate(links):
            if not isinstance(link, Link):
                continue
            source_class, target_class = classes.get(link.source), classes.get(link.target)
            if source_class is None or target_class is None:
                missing = [u for u in (link.source, link.target) if u not in classes]
                violations.append(
                    Violation(_where(i, link), "missing-endpoint", f"no twin with uid {', '.join(map(repr, missing))}")
                )
                continue
            if link.properties:
                violations += self.ontology.validate_relationship(
                    link.type, source_class, target_class, link.properties, path=_where(i, link)
                )
                continue
            verdict_key = (link.type, source_class, target_class)
            verdict = verdicts.get(verdict_key)
            if verdict is None:
                verdict = verdicts[verdict_key] = self.ontology.validate_relationship(
                    link.type, source_class, target_class, {}
                )
            if verdict:
                violations += [replace(v, path=_where(i, link)) for v in verdict]
        return violations

    def _endpoint_classes(self, uids: set[str]) -> dict[str, str]:
        """The class of each uid that names a twin: from what this writer has seen, else one read."""
        known = self._classes
        found = {uid: known[uid] for uid in uids if uid in known}
        unknown = [uid for uid in uids if uid not in found]
        for chunk in _chunks(unknown):
            for uid, cls in self.backend.read(
                "UNWIND $uids AS u MATCH (n:Twin {uid: u}) RETURN n.uid, n._class", {"uids": chunk}
            ):
                found[uid] = cls
                self._remember(uid, cls)
        return found

    def _twin_values(self, cls_id: str, props: dict[str, Any]) -> dict[str, Any]:
        """A twin's validated properties as the graph stores them (None kept: it removes a property)."""
        as_is = self._as_is.get(cls_id)
        defs = self.ontology.properties(cls_id)
        if as_is is None:  # properties whose values the graph stores unchanged: no `encode` call for them
            as_is = self._as_is[cls_id] = frozenset(k for k, d in defs.items() if stored_as_is(d.schema))
        return {k: v if k in as_is or v is None else encode(v, defs[k].schema) for k, v in props.items()}

    def _link_values(self, source_class: str, rel_type: str, props: dict[str, Any]) -> dict[str, Any]:
        """A link's validated properties as the graph stores them (None kept: it removes a property)."""
        rel = self.ontology.relationships(source_class)[rel_type]
        return {k: encode(v, rel.property(k).schema) for k, v in props.items()}  # type: ignore[union-attr]

    def _known_classes(self, twins: Sequence[Twin]) -> dict[str, str]:
        """uid -> class name of each twin whose class the ontology knows (to check links next to rejected twins)."""
        found: dict[str, str] = {}
        for twin in twins:
            if isinstance(twin, Twin) and isinstance(twin.uid, str):
                try:
                    found[twin.uid] = self.ontology.get(twin.cls).name
                except UnknownTerm:
                    continue
        return found

    def _remember(self, uid: str, cls: str) -> None:
        if len(self._classes) >= CLASS_CACHE:
            self._classes.clear()
        self._classes[uid] = cls

    def close(self) -> None:
        """Stop the threads that run a batch's reads."""
        self._reads.shutdown(wait=True)

    def forget(self) -> None:
        """Drop what this writer remembers of twin classes (after the graph was cleared or replaced)."""
        self._classes.clear()

    def _existing_links(
        self, batch: dict[tuple[str, str, str], dict[str, Any]]
    ) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The links of the batch that already exist, with their stored properties where the batch gives some (a
        link given without properties cannot change them, so for those only existence is read: {})."""
        groups: dict[tuple[str, bool], list[tuple[str, str, str]]] = defaultdict(list)
        for key, props in batch.items():
            groups[(key[0], bool(props))].append(key)
        existing: dict[tuple[str, str, str], dict[str, Any]] = {}
        for (rel_type, with_props), keys in groups.items():
            returned = "RETURN r[2], properties(e)" if with_props else "RETURN r[2]"
            for chunk in _chunks(keys):
                rows = [[source, target, i] for i, (_, source, target) in enumerate(chunk)]
                if not with_props and len(chunk) >= COUNT_FIRST:
                    # First only how many exist: none (a first load) or all (a re-sync) is the usual answer for a
                    # large batch, and then no row per link has to come back and be parsed.
                    ((found,),) = self.backend.read(
                        _each_link(rel_type) + "RETURN count(DISTINCT r[2])", {"rows": rows}
                    )
                    if found == 0:
                        continue
                    if found == len(chunk):
                        existing.update((key, {}) for key in chunk)
                        continue
                for row in self.backend.read(_each_link(rel_type) + returned, {"rows": rows}):
                    existing[chunk[row[0]]] = dict(row[1]) if with_props else {}
        return existing

    def _linked_targets(
        self, batch: dict[tuple[str, str, str], dict[str, Any]], classes: dict[str, str]
    ) -> dict[tuple[str, str], set[str]]:
        """For each (type, source) of the batch whose relationship has a maximum: the targets linked already."""
        by_type: dict[str, set[str]] = defaultdict(set)
        for rel_type, source, _ in batch:
            cls = classes.get(source)
            rel = self.ontology.relationships(cls).get(rel_type) if cls is not None else None
            if rel is not None and rel.max is not None:
                by_type[rel_type].add(source)
        linked: dict[tuple[str, str], set[str]] = {}
        for rel_type, sources in by_type.items():
            for chunk in _chunks(sorted(sources)):
                for source, targets in self.backend.read(
                    f"UNWIND $uids AS u MATCH (n:Twin {{uid: u}})-[:{ident(rel_type)}]->(m:Twin) "
                    "RETURN u, collect(m.uid)",
                    {"uids": chunk},
                ):
                    linked[(rel_type, source)] = set(targets)
        return linked

    def _multiplicity_violations(
        self,
        batch: dict[tuple[str, str, str], dict[str, Any]],
        classes: dict[str, str],
        linked: dict[tuple[str, str], set[str]],
    ) -> list[Violation]:
        targets: dict[tuple[str, str], set[str]] = defaultdict(set)
        bounded: dict[tuple[str, str], bool] = {}  # (class, type) -> whether the relationship has a maximum
        for rel_type, source, target in batch:
            cls = classes[source]
            limited = bounded.get((cls, rel_type))
            if limited is None:
                rel = self.ontology.relationships(cls).get(rel_type)
                limited = bounded[(cls, rel_type)] = rel is not None and rel.max is not None
            if limited:
                targets[(rel_type, source)].add(target)
        violations = []
        for (rel_type, source), batch_targets in targets.items():
            rel = self.ontology.relationships(classes[source])[rel_type]
            count = len(batch_targets | linked.get((rel_type, source), set()))
            if rel.max is not None and count > rel.max:
                violations += self.ontology.validate_multiplicity(
                    rel_type, classes[source], count, path=f"{source}.{rel_type}"
                )
        return violations

    def _write_links(
        self,
        batch: dict[tuple[str, str, str], dict[str, Any]],
        classes: dict[str, str],
        context: ChangeContext,
        existing: dict[tuple[str, str, str], dict[str, Any]],
    ) -> WriteSummary | None:
        """Write the validated batch (`existing`: its links the graph holds already); None, and nothing written,
        when an endpoint no longer has the class it was checked with."""
        new: dict[tuple[str, str, str], dict[str, Any]] = {}  # key -> properties to create the link with
        updates: dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, Any]]] = {}  # key -> (stored, delta)
        unchanged = 0
        for key, props in batch.items():
            rel_type, source, _ = key
            encoded = self._link_values(classes[source], rel_type, props) if props else {}
            old = existing.get(key)
            if old is None:
                new[key] = {k: v for k, v in encoded.items() if v is not None}
                continue
            delta = {k: v for k, v in encoded.items() if not self._same(old.get(k), v)}
            if delta:
                updates[key] = (old, delta)
            else:
                unchanged += 1
        with self._recording(_link_changes(new, updates), context) as outcome:
            created, raced = self._create_links(new, classes)
            if raced:
                outcome.keep = False  # recorded below, from what happened
            else:
                self._update_links(updates)
        if raced:
            # Not created as checked: another writer created the link first, or an endpoint changed class or vanished.
            landed = self._existing_links(raced)
            if len(landed) < len(raced):
                self._take_back(created)  # exactly the links this call created
                return None
            for key, stored in landed.items():  # another writer's link: ours updates it where they differ
                delta = {k: v for k, v in raced[key].items() if not self._same(stored.get(k), v)}
                if delta:
                    updates[key] = (stored, delta)
                else:
                    unchanged += 1
            with self._recording(_link_changes({key: new[key] for key in created}, updates), context):
                self._update_links(updates)
        return WriteSummary(created=len(created), updated=len(updates), unchanged=unchanged)

    def _create_links(
        self, new: dict[tuple[str, str, str], dict[str, Any]], classes: dict[str, str]
    ) -> tuple[list[tuple[str, str, str]], dict[tuple[str, str, str], dict[str, Any]]]:
        """Create the links; returns those created and those that were not (with their properties).

        The endpoint classes were checked as this writer last saw them: the write checks them again, and leaves a
        link another writer created meanwhile alone (FalkorDB runs one query at a time). It returns the positions
        of the rows it created, so a race is settled row by row.
        """
        by_type: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for key in new:
            by_type[key[0]].append(key)
        created: list[tuple[str, str, str]] = []
        raced: dict[tuple[str, str, str], dict[str, Any]] = {}
        for rel_type, keys in by_type.items():
            typed = ident(rel_type)
            plain = [key for key in keys if not new[key]]  # rows of text and numbers only: the fast parameter path
            with_props = [key for key in keys if new[key]]
            groups = [(chunk, "") for chunk in _chunks(plain)] + [
                (chunk, " SET e = r[5]") for chunk in _chunks(with_props)
            ]
            for chunk, set_props in groups:
                rows = [
                    [s, t, classes[s], classes[t], i, *([new[(rel_type, s, t)]] if set_props else [])]
                    for i, (_, s, t) in enumerate(chunk)
                ]
                done = self.backend.write(
                    "UNWIND $rows AS r MATCH (a:Twin {uid: r[0]}) MATCH (b:Twin {uid: r[1]}) "
                    f"WHERE a._class = r[2] AND b._class = r[3] AND NOT (a)-[:{typed}]->(b) "
                    f"CREATE (a)-[e:{typed}]->(b){set_props} RETURN collect(r[4])",
                    {"rows": rows},
                )[0][0]
                if len(done) == len(chunk):
                    created += chunk
                    continue
                made = set(done)
                for i, key in enumerate(chunk):
                    if i in made:
                        created.append(key)
                    else:
                        raced[key] = new[key]
        return created, raced

    def _update_links(self, updates: dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, Any]]]) -> None:
        """Set the changed properties of existing links."""
        by_type: dict[str, list[list[Any]]] = defaultdict(list)
        for (rel_type, source, target), (_, delta) in updates.items():
            by_type[rel_type].append([source, target, delta])
        for rel_type, rows in by_type.items():
            for chunk in _chunks(rows):
                self.backend.write(_each_link(rel_type) + "SET e += r[2]", {"rows": chunk})

    @contextmanager
    def _recording(self, changes: list[Change], context: ChangeContext, seal: bool = True) -> Iterator[_Outcome]:
        """History of `changes` as the intent of the graph write the block makes: durable (pending) before the block
        writes the graph (at once, or when it calls `seal` on the outcome), confirmed when the block ends normally
        and keeps them, dropped when it sets `keep` to False, and reconciled with the graph when it raises (the
        write may have landed in part)."""
        outcome = _Outcome()
        if self.history is None:
            yield outcome
            return
        pending = outcome.pending = self.history.begin(changes, context)
        try:
            if seal:
                pending.seal()
            yield outcome
        except BaseException:
            with contextlib.suppress(Exception):  # what cannot be settled now is left to the next recovery
                pending.settle(self._landed)
            raise
        if outcome.keep:
            pending.commit()
        else:
            pending.rollback()

    def recover_history(self) -> int:
        """Settle the history of graph writes whose writer died or gave up between recording their intent and
        confirming it: rows whose change the graph holds are confirmed, the others dropped. Returns the rows
        confirmed."""
        if self.history is None:
            return 0
        confirmed = 0
        for write_id in self.history.unsettled():
            confirmed += self.history.settle(write_id, self._landed)[0]
        return confirmed

    def _landed(self, rows: list[HistoryEntry]) -> set[int]:
        """The ids of those history rows whose change the graph holds now (a created twin or link exists, a deleted
        one does not, an update's changed values are stored)."""
        if self.backend.can_bulk_create():  # the graph does not exist (a bulk load was killed before it created it)
            return {row.id for row in rows if row.op == "delete"}
        uids = list(dict.fromkeys(row.uid for row in rows if row.kind == "twin"))
        twins = self._fetch_twins(uids) if uids else {}
        wanted: dict[str, list[list[str]]] = defaultdict(list)
        for row in rows:
            if row.kind == "link" and row.link_type is not None and row.target is not None:
                wanted[row.link_type].append([row.uid, row.target])
        links: dict[tuple[str, str, str], dict[str, Any]] = {}
        for rel_type, pairs in wanted.items():
            for chunk in _chunks(list(map(list, dict.fromkeys(map(tuple, pairs))))):
                for source, target, props in self.backend.read(
                    _each_link(rel_type) + "RETURN r[0], r[1], properties(e)", {"rows": chunk}
                ):
                    links[(rel_type, source, target)] = dict(props)
        landed: set[int] = set()
        for row in rows:
            if row.kind == "twin":
                twin = twins.get(row.uid)
                stored = None if twin is None else twin[1]
                same_class = twin is not None and twin[0] == row.cls
            else:
                stored = links.get((row.link_type or "", row.uid, row.target or ""))
                same_class = True
            if row.op == "delete":
                held = stored is None
            elif row.op == "create":
                held = stored is not None
            else:
                held = stored is not None and same_class and _holds(stored, row.before or {}, row.after or {})
            if held:
                landed.add(row.id)
        return landed

    def _take_back(self, keys: list[tuple[str, str, str]]) -> None:
        """Delete links this batch created before it found the graph changed under it."""
        by_type: dict[str, list[list[str]]] = defaultdict(list)
        for rel_type, source, target in keys:
            by_type[rel_type].append([source, target])
        for rel_type, rows in by_type.items():
            for chunk in _chunks(rows):
                self.backend.write(_each_link(rel_type) + "DELETE e", {"rows": chunk})

    def delete_links(self, links: Iterable[tuple[str, str, str]], context: ChangeContext) -> WriteSummary:
        """Delete links given as (type, source uid, target uid); missing ones are ignored."""
        by_type: dict[str, list[list[str]]] = defaultdict(list)
        for rel_type, source, target in dict.fromkeys(links):  # a link named twice is deleted (and recorded) once
            by_type[rel_type].append([source, target])
        changes: list[Change] = []
        found: dict[str, list[list[str]]] = defaultdict(list)
        for rel_type, rows in by_type.items():  # the links and their properties, recorded before they are deleted
            for chunk in _chunks(rows):
                for source, target, props in self.backend.read(
                    _each_link(rel_type) + "RETURN r[0], r[1], properties(e)", {"rows": chunk}
                ):
                    changes.append(
                        Change(source, "link", "delete", dict(props), None, link_type=rel_type, target=target)
                    )
                    found[rel_type].append([source, target])
        with self._recording(changes, context):
            for rel_type, rows in found.items():
                for chunk in _chunks(list(map(list, dict.fromkeys(map(tuple, rows))))):
                    self.backend.write(_each_link(rel_type) + "DELETE e", {"rows": chunk})
        return WriteSummary(deleted=len(changes))


@dataclass
class _Outcome:
    """Whether the changes of a write block are to be kept in history, and where more of them go."""

    keep: bool = True
    pending: PendingChanges | None = None

    def add(self, changes: list[Change]) -> None:
        """Record more changes of the block's write (kept or dropped with the rest when the block ends)."""
        if self.pending is not None:
            self.pending.add(changes)

    def add_loaded(self, loaded: list[LoadedTwin]) -> None:
        """Record twins a bulk load creates, with their links, as compact rows."""
        if self.pending is not None:
            self.pending.add_loaded(loaded)

    def seal(self) -> None:
        """Make the changes durable as the write's intent; the block calls it before it writes the graph."""
        if self.pending is not None:
            self.pending.seal()


def _link_batch(links: Sequence[Link]) -> tuple[dict[tuple[str, str, str], dict[str, Any]], list[Violation]]:
    """The links merged by (type, source, target), and the items that are not links at all."""
    batch: dict[tuple[str, str, str], dict[str, Any]] = {}
    violations: list[Violation] = []
    for i, link in enumerate(links):
        if not isinstance(link, Link):
            violations.append(Violation(f"links[{i}]", "type", f"expected a Link, got {type(link).__name__}"))
            continue
        key = (link.type, link.source, link.target)
        earlier = batch.get(key)  # the caller's dict is kept as is (nothing here changes it) unless merged
        batch[key] = link.properties if earlier is None else {**earlier, **link.properties}
    return batch, violations


def _unmet(
    required: dict[str, list[Violation]],
    batch: dict[str, tuple[str, dict[str, Any]]],
    existing: dict[str, tuple[str, dict[str, Any]]],
) -> list[Violation]:
    """The required-property violations that hold after the write: all of a new twin's; of an existing twin, those
    its stored properties do not make good (a None in the batch removes a stored value)."""
    unmet: list[Violation] = []
    for uid, found in required.items():
        if uid not in existing:
            unmet += found
            continue
        given = batch[uid][1] if uid in batch else {}
        after = {**existing[uid][1], **given}
        unmet += [v for v in found if after.get(v.path.rsplit(".", 1)[-1]) is None]
    return unmet


def _link_changes(
    created: dict[tuple[str, str, str], dict[str, Any]],
    updated: dict[tuple[str, str, str], tuple[dict[str, Any], dict[str, Any]]],
) -> list[Change]:
    """History entries for links created (with their properties) and updated (stored properties and delta)."""
    changes = [
        Change(source, "link", "create", None, props, link_type=rel_type, target=target)
        for (rel_type, source, target), props in created.items()
    ]
    for (rel_type, source, target), (stored, delta) in updated.items():
        after = {k: v for k, v in {**stored, **delta}.items() if v is not None}
        changes.append(Change(source, "link", "update", stored, after, link_type=rel_type, target=target))
    return changes


def _holds(stored: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether `stored` properties (as read from the graph) carry every value an update changed from `before` to
    `after` (recorded states; a double reads back with fewer digits)."""
    for key in before.keys() | after.keys():
        want = after.get(key)
        if before.get(key) == want:
            continue
        have = stored.get(key)
        if have is None or want is None:
            if have is not want:
                return False
            continue
        have = as_recorded(have)
        if have != want and not (
            isinstance(have, float) and isinstance(want, (int, float)) and math.isclose(have, want, rel_tol=1e-12)
        ):
            return False
    return True


def _each_link(rel_type: str) -> str:
    """Cypher binding `e` to the link of type `rel_type` between the uids of each row `r` ([source, target, ...])."""
    return f"UNWIND $rows AS r MATCH (a:Twin {{uid: r[0]}})-[e:{ident(rel_type)}]->(b:Twin) WHERE b.uid = r[1] "


def _where(i: int, link: Link) -> str:
    """How a violation names the link at index `i` of a batch."""
    return f"links[{i}]({link.source}-[{link.type}]->{link.target})"


def _differs(a: Any, b: Any) -> bool:
    """Whether two decoded values differ (1, 1.0 and True are equal in Python but not as stored values)."""
    return type(a) is not type(b) or a != b


def _chunks(rows: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _is_uniqueness_conflict(exc: QueryError) -> bool:
    """True for the uid uniqueness violation of either backend (FalkorDB or Neo4j wording)."""
    text = str(exc).lower()
    return ("unique" in text and ("constraint" in text or "violat" in text)) or "constraintvalidationfailed" in text
