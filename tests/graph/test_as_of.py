"""The whole graph as of a past time: for random (time, query) pairs over a history with updates, deletions,
re-parentings, a class change and an erasure, the as-of answer equals the answer of a graph rebuilt from scratch by
applying the recorded changes up to that time through the ordinary writes (the oracle shares no code with the
replay); the same under the hr role's row rule. Past times outside the record are refused."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from governance.identity import Subject
from governance.policy import Policy, load_policy
from graph.as_of import AsOfOutOfRange
from graph.backends import FalkorBackend, open_backend
from graph.history import CONFIRMED, HistoryEntry, entry_of, twin_history, twin_history_write
from graph.model import Condition, Link, OrderBy, ReadScope, Twin
from graph.reads import TwinReader
from graph.store import GraphStore
from ontology.core import load_core
from ontology.model import Ontology

UNITS = {"u-root": None, "u-eng": "u-root", "u-sales": "u-root", "u-tools": "u-eng", "u-ops": "u-sales"}
ADMIN = Subject("test-admin", frozenset({"admin"}))
HR = Subject("test-hr", frozenset({"hr"}), org_unit="u-eng")


@dataclass
class History:
    """A store with a recorded history and the times between its steps."""

    store: GraphStore
    marks: list[dt.datetime]  # after each step, oldest first
    first: dt.datetime  # just before the first step


def _tick() -> dt.datetime:
    """Now, with the clock moved on a little so that writes before and after get distinct times."""
    time.sleep(0.003)
    now = dt.datetime.now(dt.UTC)
    time.sleep(0.003)
    return now


def _build_history(store: GraphStore) -> list[dt.datetime]:
    """Write a history: creates, updates, re-parentings, a move, deletions, a class change and an erasure."""
    marks: list[dt.datetime] = []
    units = list(UNITS)
    twins = [Twin(uid, "OrgUnit", {"name": f"Unit {uid[2:]}", "costCenter": f"CC-{uid}"}) for uid in UNITS]
    links = [Link("partOf", uid, parent) for uid, parent in UNITS.items() if parent]
    for i in range(14):
        twins.append(
            Twin(
                f"emp-{i:02d}",
                "Employee",
                {
                    "name": f"Person {i:02d}",
                    "employeeId": f"E{i:03d}",
                    "email": f"p{i}@example.test",
                    "phone": f"+49 30 {i:04d}",
                    "salary": 50_000.0 + 1_000 * i,
                    "jobTitle": "Engineer" if i % 2 else "Sales",
                },
            )
        )
        links.append(Link("worksIn", f"emp-{i:02d}", units[1 + i % 4]))
        if i:
            links.append(Link("reportsTo", f"emp-{i:02d}", f"emp-{(i - 1) // 3:02d}"))
    twins += [Twin(f"m-{k}", "Machine", {"name": f"Press {k}", "status": "operational"}) for k in range(4)]
    twins.append(Twin("site-1", "Site", {"name": "Plant Berlin"}))
    links += [Link("locatedAt", f"m-{k}", "site-1") for k in range(4)]
    links += [Link("operates", f"emp-{i:02d}", f"m-{i % 4}") for i in range(0, 14, 2)]
    links += [Link("dependsOn", f"m-{k}", f"m-{k - 1}") for k in range(1, 4)]
    store.upsert_twins(twins)
    store.upsert_links(links)
    marks.append(_tick())
    store.upsert_twins([Twin(f"emp-{i:02d}", "Employee", {"salary": 70_000.0 + i}) for i in range(0, 14, 3)])
    marks.append(_tick())
    store.delete_links([("partOf", "u-tools", "u-eng")])  # re-parenting: the tools team moves under sales
    store.upsert_links([Link("partOf", "u-tools", "u-sales")])
    marks.append(_tick())
    store.delete_links([("worksIn", "emp-06", "u-tools")])  # a move: emp-06 leaves tools for engineering
    store.upsert_links([Link("worksIn", "emp-06", "u-eng")])
    store.upsert_twins([Twin("m-1", "Machine", {"status": "down"})])
    marks.append(_tick())
    store.delete_twins(["emp-05", "m-3"])
    marks.append(_tick())
    # a class change: emp-07 becomes a Contact (Employee-only fields and links go first)
    store.delete_links([("reportsTo", "emp-07", "emp-02")])
    store.upsert_twins(
        [Twin("emp-07", "Contact", {"employeeId": None, "salary": None, "jobTitle": "Consultant", "name": "P. Seven"})]
    )
    marks.append(_tick())
    # an erasure of emp-02's personal values (as governance/erasure.py does: blank in the graph, then in history)
    store.upsert_twins([Twin("emp-02", "Employee", {"email": None, "phone": None})], source="erasure")
    assert store.history is not None
    store.history.erase_values("emp-02", ["email", "phone", "birthDate"])
    marks.append(_tick())
    store.upsert_twins([Twin("emp-20", "Employee", {"name": "Person 20", "employeeId": "E020", "email": "n@x.test"})])
    store.upsert_links([Link("worksIn", "emp-20", "u-tools"), Link("operates", "emp-20", "m-0")])
    store.upsert_links([Link("dependsOn", "m-2", "m-0", {})])
    marks.append(_tick())
    return marks


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """A store on an embedded graph with SQLite history, and its recorded steps."""
    from graph.embedded import stop_embedded

    root: Path = tmp_path_factory.mktemp("asof")
    ontology = load_core()
    store = GraphStore.open(
        f"falkordb+embedded://{root / 'graph'}", ontology, history_url=f"sqlite:///{root / 'history.db'}"
    )
    try:
        first = dt.datetime.now(dt.UTC)
        time.sleep(0.003)
        yield History(store, _build_history(store), first)
    finally:
        store.close()
        stop_embedded(root / "graph")


# ---------------------------------------------------------------------- the oracle: ordinary writes, no replay


def _entries_until(store: GraphStore, when: dt.datetime) -> list[HistoryEntry]:
    assert store.history is not None
    t, w = twin_history, twin_history_write
    confirmed = select(w.c.id).where(w.c.state == CONFIRMED)
    with store.history.engine.connect() as conn:
        rows = conn.execute(select(t).where(t.c.write_id.in_(confirmed)).order_by(t.c.id)).all()
    return [e for e in map(entry_of, rows) if e.at <= when]


def _rebuild(oracle: GraphStore, entries: list[HistoryEntry]) -> None:
    """Apply recorded changes in order with the store's own writes (runs of one kind and op in one call)."""
    oracle.clear()
    state: dict[str, dict[str, Any]] = {}
    run: list[HistoryEntry] = []

    def flush() -> None:
        if not run:
            return
        kind, op = run[0].kind, run[0].op
        if kind == "twin" and op == "delete":
            oracle.delete_twins([e.uid for e in run])
        elif kind == "twin":
            batch = []
            for e in run:
                after = dict(e.after or {})
                old = state.get(e.uid, {})
                batch.append(Twin(e.uid, e.cls or "", {**dict.fromkeys(old), **after}))
                state[e.uid] = after
            oracle.upsert_twins(batch)
        elif op == "delete":
            oracle.delete_links([(e.link_type or "", e.uid, e.target or "") for e in run])
        else:
            oracle.upsert_links([Link(e.link_type or "", e.uid, e.target or "", dict(e.after or {})) for e in run])
        run.clear()

    for entry in entries:
        if run and (run[0].kind, run[0].op == "delete") != (entry.kind, entry.op == "delete"):
            flush()
        run.append(entry)
    flush()


# ---------------------------------------------------------------------- queries, as a caller sees their answers


def _masked(policy: Policy, subject: Subject, records: list[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    shown = [policy.mask(subject, r) for r in records]
    return sorted((m.uid, m.cls, m.properties) for m in shown)


Query = Callable[[TwinReader, ReadScope, Policy, Subject], Any]


def _queries(rng: random.Random) -> list[tuple[str, Query]]:
    uids = [*UNITS, *(f"emp-{i:02d}" for i in (*range(14), 20)), "m-0", "m-1", "m-2", "m-3", "site-1"]

    def persons(r: TwinReader, s: ReadScope, p: Policy, sub: Subject) -> Any:
        page = r.find("Person", order_by=[OrderBy("uid")], limit=100, scope=s)
        return page.total, _masked(p, sub, page.items)

    def engineers(r: TwinReader, s: ReadScope, p: Policy, sub: Subject) -> Any:
        page = r.find("Employee", [Condition("jobTitle", "eq", "Engineer")], [OrderBy("name", True)], scope=s)
        return [t.uid for t in page.items], _masked(p, sub, page.items)

    def one(r: TwinReader, s: ReadScope, p: Policy, sub: Subject) -> Any:
        uid = rng.choice(uids)
        found = r.get(uid, s)
        return uid, None if found is None else _masked(p, sub, [found])

    def around(r: TwinReader, s: ReadScope, p: Policy, sub: Subject) -> Any:
        uid = rng.choice(uids)
        graph = r.neighbours(uid, depth=3, scope=s)
        return uid, _masked(p, sub, graph.nodes), sorted((x.type, x.source, x.target) for x in graph.links)

    def impact(r: TwinReader, s: ReadScope, p: Policy, sub: Subject) -> Any:
        uid = rng.choice(["m-0", "m-1", "m-2", "u-eng", "u-root", "site-1"])
        return uid, sorted((h.twin.uid, h.depth) for h in r.impact(uid, 3, s))

    def aggregate(r: TwinReader, s: ReadScope, p: Policy, sub: Subject) -> Any:
        rows = r.aggregate("Employee", [("count", None)], ["jobTitle"], scope=s)
        return sorted((str(row.group), row.metrics) for row in rows)

    def salaries(r: TwinReader, s: ReadScope, p: Policy, sub: Subject) -> Any:
        if sub is HR:  # hr reads salaries: sum them within its rows
            rows = r.aggregate("Employee", [("sum", "salary"), ("count", None)], scope=s)
        else:
            rows = r.aggregate("Employee", [("sum", "salary"), ("max", "salary")], scope=s)
        return [row.metrics for row in rows]

    def units(r: TwinReader, s: ReadScope, p: Policy, sub: Subject) -> Any:
        page = r.find("OrgUnit", order_by=[OrderBy("uid")], scope=s)
        return _masked(p, sub, page.items)

    def searched(r: TwinReader, s: ReadScope, p: Policy, sub: Subject) -> Any:
        return sorted(h.twin.uid for h in r.search("Person", scope=s, limit=50))

    def path(r: TwinReader, s: ReadScope, p: Policy, sub: Subject) -> Any:
        found = r.shortest_path(rng.choice(uids), "u-root", max_depth=5, directed=False, scope=s)
        return None if found is None else found.length

    return [
        ("persons", persons),
        ("engineers", engineers),
        ("one", one),
        ("around", around),
        ("impact", impact),
        ("aggregate", aggregate),
        ("salaries", salaries),
        ("units", units),
        ("search", searched),
        ("path", path),
    ]


def test_as_of_equals_a_graph_rebuilt_from_history(history: History) -> None:
    store = history.store
    ontology: Ontology = store.ontology
    policy = load_policy(ontology)
    rng = random.Random(18)
    span = (history.marks[-1] - history.first).total_seconds()
    times = [*history.marks, *(history.first + dt.timedelta(seconds=rng.uniform(0, span)) for _ in range(6))]
    times = [t for t in times if t >= store.history.first_time()]  # type: ignore[union-attr]
    pairs = [(rng.choice(times), rng.randrange(10)) for _ in range(50)]
    oracle_backend = open_backend(store.url, graph_name="asof-oracle")
    oracle = GraphStore(oracle_backend, ontology)
    try:
        rebuilt_at: dt.datetime | None = None
        compared = 0
        for when, index in sorted(pairs, key=lambda p: p[0]):
            if rebuilt_at != when:
                _rebuild(oracle, _entries_until(store, when))
                rebuilt_at = when
            past = store.at(when)
            for subject in (ADMIN, HR):
                seed = rng.randrange(1 << 30)
                name, query = _queries(random.Random(seed))[index]
                expected = query(oracle, policy.read_scope(subject), policy, subject)
                got = _queries(random.Random(seed))[index][1](past, policy.read_scope(subject), policy, subject)
                assert got == expected, (name, when, subject.roles)
                compared += 1
        assert compared == 100
    finally:
        oracle_backend.drop_graph()
        oracle_backend.close()


def test_the_past_shows_what_changed_since(history: History) -> None:
    store, marks = history.store, history.marks
    policy = load_policy(store.ontology)
    start, moved, deleted, reclassed, erased = marks[0], marks[2], marks[4], marks[5], marks[6]
    # a deleted twin appears as it was
    assert store.get("emp-05") is None
    emp5 = store.at(start).get("emp-05")
    assert emp5 is not None and emp5.properties["salary"] == 55_000.0
    assert store.at(deleted).get("emp-05") is None
    # re-parenting: tools was under engineering, then under sales
    before = store.at(start).neighbours("u-tools", ["partOf"], "out").links
    after = store.at(moved).neighbours("u-tools", ["partOf"], "out").links
    assert {link.target for link in before} == {"u-eng"} and {link.target for link in after} == {"u-sales"}
    # the class change: an Employee before, a Contact after
    employee = store.at(deleted).get("emp-07")
    contact = store.at(reclassed).get("emp-07")
    assert employee is not None and employee.cls == "Employee" and contact is not None and contact.cls == "Contact"
    assert "salary" in employee.properties and "salary" not in contact.properties
    # erased values stay erased, even at times they were held
    for when in (start, erased):
        twin = store.at(when).get("emp-02")
        assert twin is not None and "email" not in twin.properties and "phone" not in twin.properties
    kept = store.at(start).get("emp-03")
    assert kept is not None and kept.properties["email"] == "p3@example.test"
    # the hr row rule is decided on the graph as it was: emp-06 and emp-10 work in tools, under engineering at first
    hr = policy.read_scope(HR)
    assert store.at(start).get("emp-06", hr) is not None and store.at(marks[1]).get("emp-10", hr) is not None
    # once tools moved under sales, its people leave hr's (engineering) rows; emp-06 then moved into engineering
    assert store.at(moved).get("emp-10", hr) is None and store.at(moved).get("emp-06", hr) is None
    assert store.at(marks[3]).get("emp-06", hr) is not None


def test_a_graph_is_built_once_per_history_point_and_rebuilt_after_an_erasure(history: History) -> None:
    store, marks = history.store, history.marks
    travel = store.time_travel
    store.at(marks[1])
    builds = travel.builds
    halfway = marks[1] + dt.timedelta(milliseconds=1)  # no write in between (see _tick): the same graph
    assert store.at(halfway) is store.at(marks[1]) and travel.builds == builds
    assert store.history is not None
    store.history.erase_values("emp-09", ["email"])  # an erasure changes every point: graphs are built again
    twin = store.at(marks[1]).get("emp-09")
    assert travel.builds == builds + 1 and twin is not None and "email" not in twin.properties


def test_diff_lists_what_changed_between_two_times(history: History) -> None:
    store, marks = history.store, history.marks
    found = {(d.kind, d.op, d.uid, d.link_type, d.target): d for d in store.diff(marks[0], marks[4])}
    assert found[("twin", "delete", "emp-05", None, None)].before is not None
    assert found[("twin", "update", "m-1", None, None)].fields == ("status",)
    assert ("link", "delete", "u-tools", "partOf", "u-eng") in found
    assert ("link", "create", "u-tools", "partOf", "u-sales") in found
    assert ("link", "delete", "emp-05", "worksIn", "u-sales") in found
    reclassed = {d.uid: d for d in store.diff(marks[4], marks[5]) if d.kind == "twin"}
    assert "_class" in reclassed["emp-07"].fields and reclassed["emp-07"].cls == "Contact"
    assert store.diff(marks[1], marks[1] + dt.timedelta(microseconds=1)) == []


def test_times_outside_the_record_are_refused(history: History) -> None:
    store = history.store
    with pytest.raises(AsOfOutOfRange, match="before the first recorded change"):
        store.at(history.first - dt.timedelta(days=1))
    with pytest.raises(AsOfOutOfRange, match="in the future"):
        store.at(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    with pytest.raises(AsOfOutOfRange, match="must be before"):
        store.diff(history.marks[3], history.marks[1])


def test_scratch_graphs_are_deleted_before_the_log_is_compacted(history: History) -> None:
    store = history.store
    backend = store.backend
    assert isinstance(backend, FalkorBackend)
    store.at(history.marks[2])
    assert any("@asof/" in name for name in backend.graph_names())
    store.compact_log()  # as an erasure does: the past graphs may hold values erased since
    assert not any("@asof/" in name for name in backend.graph_names())
    assert store.at(history.marks[2]).get("emp-00") is not None  # built again when read again
