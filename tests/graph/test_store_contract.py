"""The GraphStore contract: the same tests against every configured backend.

Embedded FalkorDB always; a FalkorDB server started by the tests on 127.0.0.1; Neo4j when NEO4J_URI is set
(with NEO4J_USER / NEO4J_PASSWORD).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.embedded import start_tcp_server, stop_embedded
from graph.errors import BatchRejected, FieldNotReadable, QueryError, ReadOnlyViolation
from graph.model import Condition, Link, OrderBy, ReadScope, Twin
from graph.store import GraphStore
from tests.graph.contract_ontology import contract_ontology

BACKENDS = ["falkordb-embedded", "falkordb-server", "neo4j"]


@pytest.fixture(scope="module", params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A graph URL per configured backend; servers started here are stopped here."""
    kind = request.param
    if kind == "falkordb-embedded":
        data_dir = tmp_path_factory.mktemp("embedded")
        yield f"falkordb+embedded://{data_dir}"
        stop_embedded(data_dir)
    elif kind == "falkordb-server":
        data_dir = tmp_path_factory.mktemp("server")
        server = start_tcp_server(data_dir)
        try:
            yield server.url
        finally:
            server.stop()
    else:
        uri = os.environ.get("NEO4J_URI")
        if not uri:
            pytest.skip("Neo4j contract run needs NEO4J_URI (and NEO4J_USER/NEO4J_PASSWORD); see README")
        yield uri


@pytest.fixture
def store(backend_url: str, tmp_path: Path) -> Iterator[GraphStore]:
    """An empty store on the backend, with history in a fresh SQLite file."""
    graph_store = GraphStore.open(
        backend_url,
        contract_ontology(),
        history_url=f"sqlite:///{tmp_path / 'history.db'}",
        user=os.environ.get("NEO4J_USER"),
        password=os.environ.get("NEO4J_PASSWORD"),
    )
    graph_store.clear()
    yield graph_store
    graph_store.close()


def small_enterprise(store: GraphStore) -> None:
    """Units, employees, machines, a supplier chain — enough for traversal tests."""
    store.upsert_twins(
        [
            Twin("u-plant", "Unit", {"name": "Plant"}),
            Twin("u-line", "Unit", {"name": "Line 1"}),
            Twin("e-ceo", "Employee", {"name": "Grace Hopper", "employeeId": "E1", "salary": 300.0, "age": 60}),
            Twin(
                "e-ann",
                "Employee",
                {"name": "Ann Smith", "employeeId": "E2", "salary": 100.0, "age": 30, "email": "ann@example.test"},
            ),
            Twin("e-bob", "Employee", {"name": "Bob Jones", "employeeId": "E3", "salary": 120.0, "age": 45}),
            Twin(
                "m-lathe",
                "Machine",
                {"name": "Lathe", "status": "up", "capacity": 10.0, "description": "turning centre"},
            ),
            Twin("m-mill", "Machine", {"name": "Mill", "status": "down", "capacity": 5.0}),
            Twin("s-acme", "Supplier", {"name": "Acme Steel"}),
            Twin("mat-steel", "Material", {"name": "Steel bar"}),
            Twin("p-turn", "Process", {"name": "Turning"}),
            Twin("p-pack", "Process", {"name": "Packing"}),
        ]
    )
    store.upsert_links(
        [
            Link("partOf", "u-line", "u-plant"),
            Link("worksIn", "e-ann", "u-line"),
            Link("worksIn", "e-bob", "u-plant"),
            Link("reportsTo", "e-ann", "e-bob"),
            Link("reportsTo", "e-bob", "e-ceo"),
            Link("operates", "e-ann", "m-lathe"),
            Link("supplies", "s-acme", "mat-steel", {"leadTimeDays": 12}),
            Link("consumes", "p-turn", "mat-steel"),
            Link("requires", "p-turn", "m-lathe"),
            Link("dependsOn", "m-mill", "m-lathe"),
        ]
    )


# ---------------------------------------------------------------------- writes


def test_labels_are_class_and_every_superclass(store: GraphStore) -> None:
    small_enterprise(store)
    ann = store.get("e-ann")
    assert ann is not None
    assert ann.cls == "Employee"
    assert ann.labels == ("Employee", "Person", "Entity")
    rows = store.query("MATCH (n:Person:Entity:Twin {uid: 'e-ann'}) RETURN count(n)")
    assert rows == [[1]]


def test_upsert_is_idempotent_and_updates_only_changes(store: GraphStore) -> None:
    small_enterprise(store)
    again = store.upsert_twins([Twin("e-ann", "Employee", {"name": "Ann Smith", "employeeId": "E2"})])
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)
    changed = store.upsert_twins([Twin("e-ann", "Employee", {"age": 31, "email": None})])
    assert changed.updated == 1
    ann = store.get("e-ann")
    assert ann is not None
    assert ann.properties["age"] == 31
    assert "email" not in ann.properties  # None removes a property
    assert ann.properties["name"] == "Ann Smith"  # untouched properties stay
    links = store.upsert_links([Link("worksIn", "e-ann", "u-line")])
    assert (links.created, links.unchanged) == (0, 1)
    assert store.stats().twins == 11
    assert store.stats().links == 10


def test_a_batch_of_old_and_new_links_creates_and_records_only_the_new(store: GraphStore) -> None:
    small_enterprise(store)
    batch = [
        Link("operates", "e-ann", "m-lathe"),
        Link("operates", "e-bob", "m-lathe"),
        Link("operates", "e-bob", "m-mill"),
        Link("operates", "e-ann", "m-lathe"),
    ]
    summary = store.upsert_links(batch)
    assert (summary.created, summary.unchanged) == (2, 1)
    assert sorted(store.query("MATCH (a)-[:operates]->(b) RETURN a.uid, b.uid")) == [
        ["e-ann", "m-lathe"],
        ["e-bob", "m-lathe"],
        ["e-bob", "m-mill"],
    ]
    created = [
        (e.uid, e.target)
        for e in store.history_of("m-lathe") + store.history_of("m-mill")
        if e.kind == "link" and e.link_type == "operates" and e.op == "create"
    ]
    assert sorted(created) == [("e-ann", "m-lathe"), ("e-bob", "m-lathe"), ("e-bob", "m-mill")]
    again = store.upsert_links(batch)  # every link of the batch exists now
    assert (again.created, again.unchanged) == (0, 3)
    assert store.stats().links == 12


def test_rewriting_a_double_with_more_digits_than_the_backend_returns_changes_nothing(store: GraphStore) -> None:
    third = Twin("m-third", "Machine", {"name": "Third", "capacity": 1 / 3})
    assert store.upsert_twins([third]).created == 1
    for _ in range(2):
        again = store.upsert_twins([third])
        assert (again.updated, again.unchanged) == (0, 1)
    assert [e.op for e in store.history_of("m-third")] == ["create"]
    assert abs(store.get("m-third").properties["capacity"] - 1 / 3) < 1e-14
    assert store.upsert_twins([Twin("m-third", "Machine", {"capacity": 2 / 3})]).updated == 1  # a real change


def test_an_existing_twin_cannot_lose_a_required_property(store: GraphStore) -> None:
    small_enterprise(store)
    store.upsert_twins([Twin("p-guest", "Person", {"name": "Guest"})])
    with pytest.raises(BatchRejected) as removed:
        store.upsert_twins([Twin("e-ann", "Employee", {"employeeId": None})])  # None removes a stored value
    assert [(v.rule, v.path.rsplit(".", 1)[-1]) for v in removed.value.violations] == [("required", "employeeId")]
    with pytest.raises(BatchRejected) as promoted:
        store.upsert_twins([Twin("p-guest", "Employee", {"name": "Guest"})])  # an Employee needs an employeeId
    assert [v.rule for v in promoted.value.violations] == ["required"]
    assert store.get("e-ann").properties["employeeId"] == "E2" and store.get("p-guest").cls == "Person"
    assert store.upsert_twins([Twin("e-ann", "Employee", {"age": 32})]).updated == 1  # the stored id still counts
    assert store.upsert_twins([Twin("p-guest", "Employee", {"employeeId": "E9"})]).updated == 1


def test_an_overlong_uid_is_refused_and_a_link_named_twice_is_deleted_once(store: GraphStore) -> None:
    small_enterprise(store)
    with pytest.raises(BatchRejected) as rejected:
        store.upsert_twins([Twin("u-" + "x" * 600, "Unit", {"name": "Long"}), Twin("u-ok", "Unit", {"name": "Ok"})])
    assert [(v.rule, v.path) for v in rejected.value.violations] == [("uid", "twins[0].uid")]
    assert store.get("u-ok") is None  # nothing of the refused batch
    twice = store.delete_links([("worksIn", "e-ann", "u-line"), ("worksIn", "e-ann", "u-line")])
    assert twice.deleted == 1
    assert [e.op for e in store.history_of("u-line") if e.link_type == "worksIn" and e.uid == "e-ann"] == [
        "create",
        "delete",
    ]


def test_typed_values_round_trip(store: GraphStore) -> None:
    store.upsert_twins(
        [
            Twin(
                "m1",
                "Machine",
                {
                    "spec": {"rpm": 3000, "vendor": "DMG"},
                    "status": "up",
                    "installed": dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.UTC),
                },
            ),
            Twin("p1", "Person", {"born": dt.date(1990, 2, 3)}),
        ]
    )
    machine = store.get("m1")
    person = store.get("p1")
    assert machine is not None and person is not None
    assert machine.properties["spec"] == {"rpm": 3000, "vendor": "DMG"}
    assert machine.properties["installed"] == "2024-05-01T08:30:00+00:00"
    assert person.properties["born"] == "1990-02-03"


def test_class_change_relabels(store: GraphStore) -> None:
    store.upsert_twins([Twin("x", "Person", {"name": "X"})])
    store.upsert_twins([Twin("x", "Employee", {"employeeId": "E9"})])
    record = store.get("x")
    assert record is not None and record.labels == ("Employee", "Person", "Entity")
    assert store.find("Employee").total == 1
    with pytest.raises(BatchRejected) as caught:  # employeeId would be left on a Person, unclassified
        store.upsert_twins([Twin("x", "Person", {})])
    assert [(v.path, v.rule) for v in caught.value.violations] == [("twins(x).employeeId", "stranded")]
    assert store.find("Employee").total == 1
    store.upsert_twins([Twin("x", "Person", {"employeeId": None})])  # removed in the same write: allowed
    assert store.get("x").properties == {"name": "X"}  # type: ignore[union-attr]
    assert store.find("Employee").total == 0
    assert store.find("Person").total == 1


@pytest.mark.parametrize(
    ("twins", "rule"),
    [
        ([Twin("a", "Spaceship", {})], "unknown-class"),
        ([Twin("a", "Machine", {"capacity": "lots"})], "type"),
        ([Twin("a", "Machine", {"status": "exploded"})], "type"),
        ([Twin("a", "Machine", {"colour": "red"})], "unknown-property"),
        ([Twin("a", "Employee", {"name": "no id"})], "required"),
        ([Twin("a", "Machine", {}), Twin("a", "Unit", {})], "duplicate-uid"),
        ([Twin("", "Machine", {})], "uid"),
    ],
)
def test_rejected_twin_batches_write_nothing(store: GraphStore, twins: list[Twin], rule: str) -> None:
    small_enterprise(store)
    before = store.stats()
    good = Twin("fresh", "Unit", {"name": "would be fine alone"})
    with pytest.raises(BatchRejected) as caught:
        store.upsert_twins([good, *twins])
    assert rule in {v.rule for v in caught.value.violations}
    assert store.stats() == before
    assert store.get("fresh") is None


def test_every_offending_item_is_listed(store: GraphStore) -> None:
    with pytest.raises(BatchRejected) as caught:
        store.upsert_twins([Twin("a", "Machine", {"capacity": "x"}), Twin("b", "Nope", {}), Twin("c", "Unit", {})])
    paths = [v.path for v in caught.value.violations]
    assert any("twins[0](a).capacity" in p for p in paths)
    assert any("twins[1](b)" in p for p in paths)
    assert len(caught.value.violations) == 2


@pytest.mark.parametrize(
    ("link", "rule"),
    [
        (Link("worksIn", "e-ann", "m-lathe"), "range"),
        (Link("worksIn", "m-lathe", "u-line"), "domain"),
        (Link("teleports", "e-ann", "u-line"), "unknown-relationship"),
        (Link("worksIn", "e-ann", "nobody"), "missing-endpoint"),
        (Link("worksIn", "e-ann", "u-plant"), "multiplicity"),  # Ann already works in u-line; max 1
        (Link("hasSkill", "e-ann", "u-line", {"level": "high"}), "range"),
        (Link("supplies", "s-acme", "mat-steel", {"leadTimeDays": "soon"}), "type"),
    ],
)
def test_rejected_link_batches_write_nothing(store: GraphStore, link: Link, rule: str) -> None:
    small_enterprise(store)
    before = store.stats()
    with pytest.raises(BatchRejected) as caught:
        store.upsert_links([Link("operates", "e-bob", "m-mill"), link])
    assert rule in {v.rule for v in caught.value.violations}
    assert store.stats() == before


def test_multiplicity_counts_links_within_the_batch(store: GraphStore) -> None:
    small_enterprise(store)
    with pytest.raises(BatchRejected) as caught:
        store.upsert_links([Link("reportsTo", "e-ceo", "e-ann"), Link("reportsTo", "e-ceo", "e-bob")])
    assert [v.rule for v in caught.value.violations] == ["multiplicity"]


def test_uid_uniqueness_is_enforced_by_the_backend(store: GraphStore) -> None:
    store.upsert_twins([Twin("dup", "Unit", {})])
    with pytest.raises(QueryError):
        store.backend.write("CREATE (:Twin:Unit {uid: 'dup', _class: 'Unit'})")
    assert store.find("Unit").total == 1


def test_delete_twin_removes_its_links_and_is_recorded(store: GraphStore) -> None:
    small_enterprise(store)
    result = store.delete_twins(["m-lathe", "not-there"])
    assert result.deleted == 1
    assert store.get("m-lathe") is None
    assert store.stats().links == 10 - 3  # operates, requires, dependsOn touched the lathe
    ops = [(h.kind, h.op) for h in store.history_of("m-lathe")]
    assert ("twin", "delete") in ops and ("link", "delete") in ops


def test_delete_links(store: GraphStore) -> None:
    small_enterprise(store)
    assert store.delete_links([("worksIn", "e-ann", "u-line"), ("worksIn", "e-ann", "u-plant")]).deleted == 1
    assert store.stats().links == 9
    store.upsert_links([Link("worksIn", "e-ann", "u-plant")])  # now allowed: multiplicity freed
    assert store.stats().links == 10


def test_concurrent_upserts_of_the_same_twins_neither_duplicate_nor_lose(backend_url: str, store: GraphStore) -> None:
    uids = [f"c{i}" for i in range(300)]
    errors: list[BaseException] = []

    def writer(tag: str) -> None:
        own = GraphStore.open(
            backend_url,
            contract_ontology(),
            user=os.environ.get("NEO4J_USER"),
            password=os.environ.get("NEO4J_PASSWORD"),
        )
        try:
            for start in range(0, len(uids), 50):
                own.upsert_twins([Twin(u, "Machine", {"name": f"{tag}-{u}"}) for u in uids[start : start + 50]])
                own.upsert_links([Link("dependsOn", uids[i], uids[i - 1]) for i in range(max(start, 1), start + 50)])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.query("MATCH (n:Twin) RETURN count(n), count(DISTINCT n.uid)") == [[300, 300]]
    assert store.query("MATCH ()-[r:dependsOn]->() RETURN count(r)") == [[299]]
    names = {r.properties["name"].split("-")[0] for r in store.find("Machine", limit=1000).items}
    assert names <= {"a", "b", "c"}


# ---------------------------------------------------------------------- reads


def test_find_includes_subclasses_filters_sorts_and_pages(store: GraphStore) -> None:
    small_enterprise(store)
    assert store.find("Person").total == 3
    page = store.find("Employee", [Condition("age", "gte", 30)], [OrderBy("age", descending=True)], limit=2)
    assert page.total == 3
    assert [t.uid for t in page.items] == ["e-ceo", "e-bob"]
    rest = store.find("Employee", [Condition("age", "gte", 30)], [OrderBy("age", descending=True)], limit=2, offset=2)
    assert [t.uid for t in rest.items] == ["e-ann"] and rest.total == 3
    beyond = store.find("Employee", limit=2, offset=10)
    assert beyond.items == [] and beyond.total == 3
    assert {t.uid for t in store.find("Entity", [Condition("name", "contains", "MILL")]).items} == {"m-mill"}
    assert {t.uid for t in store.find("Machine", [Condition("status", "in", ["down"])]).items} == {"m-mill"}
    assert {t.uid for t in store.find("Employee", [Condition("name", "starts_with", "bob")]).items} == {"e-bob"}
    assert {t.uid for t in store.find("Employee", [Condition("email", "is_null", False)]).items} == {"e-ann"}
    assert {t.uid for t in store.find("Employee", [Condition("reportsTo", "exists", False)]).items} == {"e-ceo"}
    assert {t.uid for t in store.find("Employee", [Condition("reportsTo", "exists", True, "in")]).items} == {
        "e-bob",
        "e-ceo",
    }
    assert store.find("Employee", [Condition("salary", "lt", 110.5), Condition("age", "ne", 30)]).total == 0


def test_find_refuses_unknown_fields_classes_and_bad_pages(store: GraphStore) -> None:
    with pytest.raises(QueryError, match="no property 'wingspan'"):
        store.find("Machine", [Condition("wingspan", "eq", 1)])
    with pytest.raises(QueryError, match="unknown class"):
        store.find("Spaceship")
    with pytest.raises(QueryError, match="limit"):
        store.find("Machine", limit=5000)
    with pytest.raises(QueryError, match="expected a list"):
        store.find("Machine", [Condition("status", "in", "up")])


def test_neighbours_by_type_direction_and_depth(store: GraphStore) -> None:
    small_enterprise(store)
    one = store.neighbours("e-ann", depth=1)
    assert {n.uid for n in one.nodes} == {"e-ann", "u-line", "e-bob", "m-lathe"}
    up = store.neighbours("e-ann", types=["reportsTo"], direction="out", depth=3)
    assert {n.uid for n in up.nodes} == {"e-ann", "e-bob", "e-ceo"}
    assert {(link.source, link.target) for link in up.links} == {("e-ann", "e-bob"), ("e-bob", "e-ceo")}
    down = store.neighbours("e-ceo", types=["reportsTo"], direction="in", depth=1)
    assert {n.uid for n in down.nodes} == {"e-ceo", "e-bob"}
    alone = store.neighbours("s-acme", types=["worksIn"])
    assert [n.uid for n in alone.nodes] == ["s-acme"] and alone.links == []
    with pytest.raises(QueryError):
        store.neighbours("e-ann", types=["teleports"])


def test_impact_follows_dependencies_and_supports_with_paths(store: GraphStore) -> None:
    small_enterprise(store)
    hits = {h.twin.uid: h for h in store.impact("s-acme", max_depth=3)}
    assert set(hits) == {"mat-steel", "p-turn"}
    assert hits["p-turn"].path == ("s-acme", "mat-steel", "p-turn")
    assert hits["p-turn"].via == ("supplies", "consumes")
    assert hits["p-turn"].depth == 2
    lathe = {h.twin.uid: h.depth for h in store.impact("m-lathe")}
    assert lathe == {"p-turn": 1, "m-mill": 1}
    assert {h.twin.uid for h in store.impact("s-acme", max_depth=1)} == {"mat-steel"}
    assert store.impact("nobody") == []


def test_shortest_path(store: GraphStore) -> None:
    small_enterprise(store)
    path = store.shortest_path("e-ann", "e-ceo", types=["reportsTo"])
    assert path is not None
    assert [n.uid for n in path.nodes] == ["e-ann", "e-bob", "e-ceo"] and path.types == ["reportsTo", "reportsTo"]
    assert store.shortest_path("e-ceo", "e-ann", types=["reportsTo"]) is None  # directed
    back = store.shortest_path("e-ceo", "e-ann", types=["reportsTo"], directed=False)
    assert back is not None and back.length == 2
    assert store.shortest_path("e-ann", "e-ceo", types=["reportsTo"], max_depth=1) is None


def test_grouped_aggregates(store: GraphStore) -> None:
    small_enterprise(store)
    rows = store.aggregate("Employee", [("count", None), ("sum", "salary"), ("avg", "age"), ("max", "age")])
    assert len(rows) == 1
    assert rows[0].values == {"count": 3, "sum_salary": 520.0, "avg_age": 45.0, "max_age": 60}
    by_status = store.aggregate("Machine", [("count", None), ("min", "capacity")], group_by=["status"])
    assert {r.group["status"]: (r.values["count"], r.values["min_capacity"]) for r in by_status} == {
        "down": (1, 5.0),
        "up": (1, 10.0),
    }
    with pytest.raises(QueryError):
        store.aggregate("Machine", [("median", "capacity")])


def test_full_text_search(store: GraphStore) -> None:
    small_enterprise(store)
    found = _eventually(lambda: [h.twin.uid for h in store.search("lathe")])
    assert found == ["m-lathe"]
    assert [h.twin.uid for h in store.search("turning")][:2] != []  # description and process name both match
    assert {h.twin.uid for h in store.search("turning", classes=["Process"])} == {"p-turn"}
    with pytest.raises(QueryError):
        store.search("   ")


def test_read_only_cypher_refuses_writes(store: GraphStore) -> None:
    small_enterprise(store)
    assert store.query("MATCH (n:Machine) RETURN n.uid ORDER BY n.uid") == [["m-lathe"], ["m-mill"]]
    for cypher in (
        "MATCH (n) DETACH DELETE n",
        "CREATE (n:Twin {uid: 'x'})",
        "MATCH (n) SET n.name = 'x'",
        "merge (n:Twin {uid: 'y'})",
    ):
        with pytest.raises(ReadOnlyViolation):
            store.query(cypher)
    assert store.query("MATCH (n) WHERE n.name = 'CREATE me' RETURN count(n)") == [[0]]
    with pytest.raises(ReadOnlyViolation):  # the backend refuses on its own, too
        store.backend.read("CREATE (n:Twin {uid: 'sneaky'})")
    assert store.get("sneaky") is None
    assert store.stats().twins == 11


# ---------------------------------------------------------------------- scoped reads


def test_scope_predicate_applies_to_every_read(store: GraphStore) -> None:
    small_enterprise(store)
    scope = ReadScope(predicate="NOT {n}:Employee OR {n}.age < $scope_age", params={"scope_age": 50})
    assert store.get("e-ceo", scope) is None
    assert store.get("e-ann", scope) is not None
    assert store.find("Employee", scope=scope).total == 2
    assert "e-ceo" not in {n.uid for n in store.neighbours("e-bob", scope=scope).nodes}
    assert store.shortest_path("e-ann", "e-ceo", types=["reportsTo"], scope=scope) is None
    assert store.aggregate("Employee", [("count", None)], scope=scope)[0].values["count"] == 2
    only_machines = ReadScope(readable_classes=frozenset({"Machine"}))
    assert store.find("Entity", scope=only_machines).total == 2
    assert {h.twin.uid for h in store.impact("m-lathe", scope=only_machines)} == {"m-mill"}


def test_hidden_fields_cannot_be_filtered_sorted_aggregated_or_searched(store: GraphStore) -> None:
    small_enterprise(store)
    scope = ReadScope(hidden={"Employee": frozenset({"salary", "name"})})
    with pytest.raises(FieldNotReadable):
        store.find("Employee", [Condition("salary", "gt", 0)], scope=scope)
    with pytest.raises(FieldNotReadable):
        store.find("Employee", order_by=[OrderBy("salary")], scope=scope)
    with pytest.raises(FieldNotReadable):
        store.aggregate("Employee", [("sum", "salary")], scope=scope)
    with pytest.raises(FieldNotReadable):
        store.aggregate("Employee", [("count", None)], group_by=["salary"], scope=scope)
    assert _eventually(lambda: [h.twin.uid for h in store.search("grace")]) == ["e-ceo"]
    assert store.search("grace", scope=scope) == []  # found only through a hidden field
    assert store.find("Machine", [Condition("capacity", "gt", 1)], scope=scope).total == 2


# ---------------------------------------------------------------------- history


def test_history_and_as_of(store: GraphStore) -> None:
    store.upsert_twins(
        [Twin("h1", "Machine", {"name": "v1", "capacity": 1.0})], actor="alice", source="erp", run_id="run-1"
    )
    t1 = dt.datetime.now(dt.UTC)
    time.sleep(0.02)
    store.upsert_twins([Twin("h1", "Machine", {"name": "v2"})], actor="bob")
    t2 = dt.datetime.now(dt.UTC)
    time.sleep(0.02)
    store.delete_twins(["h1"], actor="carol")
    entries = store.history_of("h1")
    assert [(e.op, e.actor) for e in entries] == [("create", "alice"), ("update", "bob"), ("delete", "carol")]
    assert entries[0].source == "erp" and entries[0].run_id == "run-1"
    assert entries[1].before == {"name": "v1", "capacity": 1.0}
    assert entries[1].after == {"name": "v2", "capacity": 1.0}
    assert store.as_of("h1", t1) == {"name": "v1", "capacity": 1.0, "_class": "Machine"}
    assert store.as_of("h1", t2)["name"] == "v2"  # type: ignore[index]
    assert store.as_of("h1", dt.datetime.now(dt.UTC)) is None
    assert store.as_of("h1", t1 - dt.timedelta(days=1)) is None


def _eventually(probe, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    """Full-text indexes may lag a write by a moment; poll until the probe returns something."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_a_uid_created_between_our_read_and_our_create_is_retried_as_an_update(store: GraphStore) -> None:
    writer = store._writer
    original = writer._fetch_twins
    raced = []

    def fetch_then_lose_the_race(uids: list[str]):  # type: ignore[no-untyped-def]
        found = original(uids)
        if not raced:  # another writer creates the twin right after our read
            raced.append(True)
            store.backend.write("CREATE (:Twin:Machine:Entity {uid: 'race', _class: 'Machine', name: 'theirs'})")
        return found

    writer._fetch_twins = fetch_then_lose_the_race  # type: ignore[method-assign]
    try:
        summary = store.upsert_twins([Twin("race", "Machine", {"name": "ours"})])
    finally:
        writer._fetch_twins = original  # type: ignore[method-assign]
    assert summary.updated == 1 and summary.created == 0
    assert store.query("MATCH (n:Twin {uid: 'race'}) RETURN count(n), n.name") == [[1, "ours"]]


def other_writer(store: GraphStore, tmp_path: Path) -> GraphStore:
    """A second store on the same graph, as another process would hold it."""
    return GraphStore.open(
        store.url,
        store.ontology,
        history_url=f"sqlite:///{tmp_path / 'other.db'}",
        user=os.environ.get("NEO4J_USER"),
        password=os.environ.get("NEO4J_PASSWORD"),
    )


def test_a_class_changed_by_another_writer_is_checked_again_before_linking(store: GraphStore, tmp_path: Path) -> None:
    small_enterprise(store)  # this store now remembers m-mill as a Machine
    with other_writer(store, tmp_path) as other:
        other.upsert_twins([Twin("m-mill", "Unit", {"name": "Mill hall", "status": None, "capacity": None})])
    with pytest.raises(BatchRejected) as caught:
        store.upsert_links([Link("operates", "e-bob", "m-mill"), Link("operates", "e-bob", "m-lathe")])
    assert [v.rule for v in caught.value.violations] == ["range"]
    assert "m-mill" in caught.value.violations[0].path
    assert store.neighbours("e-bob", ["operates"], direction="out").links == []  # nothing written
    store.upsert_links([Link("worksIn", "e-ann", "u-line"), Link("partOf", "m-mill", "u-plant")])
    assert [n.uid for n in store.neighbours("m-mill", ["partOf"], direction="out").nodes] == ["m-mill", "u-plant"]


def test_a_twin_deleted_by_another_writer_is_a_missing_endpoint(store: GraphStore, tmp_path: Path) -> None:
    small_enterprise(store)
    with other_writer(store, tmp_path) as other:
        other.delete_twins(["m-mill"])
    with pytest.raises(BatchRejected) as caught:
        store.upsert_links([Link("operates", "e-bob", "m-mill")])
    assert [v.rule for v in caught.value.violations] == ["missing-endpoint"]


def test_a_link_created_between_our_read_and_our_write_is_not_duplicated(store: GraphStore) -> None:
    small_enterprise(store)
    writer = store._writer
    original = writer._existing_links
    raced = []

    def read_then_lose_the_race(batch):  # type: ignore[no-untyped-def]
        found = original(batch)
        if not raced:  # another writer links Bob to the mill right after our read
            raced.append(True)
            store.backend.write("MATCH (a:Twin {uid: 'e-bob'}), (b:Twin {uid: 'm-mill'}) CREATE (a)-[:operates]->(b)")
        return found

    writer._existing_links = read_then_lose_the_race  # type: ignore[method-assign]
    try:
        summary = store.upsert_links([Link("operates", "e-bob", "m-mill"), Link("operates", "e-ceo", "m-mill")])
    finally:
        writer._existing_links = original  # type: ignore[method-assign]
    assert (summary.created, summary.unchanged) == (1, 1)  # theirs is left alone, ours is created
    assert store.query("MATCH (:Twin {uid: 'e-bob'})-[e:operates]->(:Twin {uid: 'm-mill'}) RETURN count(e)") == [[1]]
    assert [h.op for h in store.history_of("e-bob") if h.link_type == "operates" and h.target == "m-mill"] == []
    assert [h.op for h in store.history_of("e-ceo") if h.link_type == "operates"] == ["create"]
    assert store.query("MATCH (:Twin {uid: 'e-ceo'})-[e:operates]->(:Twin {uid: 'm-mill'}) RETURN count(e)") == [[1]]


def test_a_link_another_writer_created_meanwhile_gets_our_properties(store: GraphStore) -> None:
    small_enterprise(store)
    store.upsert_twins([Twin("mat-iron", "Material", {"name": "Iron"})])
    writer = store._writer
    original = writer._existing_links

    def read_then_lose_the_race(batch):  # type: ignore[no-untyped-def]
        found = original(batch)
        writer._existing_links = original  # type: ignore[method-assign]
        store.backend.write(
            "MATCH (a:Twin {uid: 's-acme'}), (b:Twin {uid: 'mat-iron'}) CREATE (a)-[:supplies {leadTimeDays: 5}]->(b)"
        )
        return found

    writer._existing_links = read_then_lose_the_race  # type: ignore[method-assign]
    summary = store.upsert_links([Link("supplies", "s-acme", "mat-iron", {"leadTimeDays": 12})])
    assert (summary.created, summary.updated) == (0, 1)
    assert store.query(
        "MATCH (:Twin {uid: 's-acme'})-[e:supplies]->(:Twin {uid: 'mat-iron'}) RETURN count(e), max(e.leadTimeDays)"
    ) == [[1, 12]]
    changes = [h for h in store.history_of("s-acme") if h.target == "mat-iron"]
    assert [(h.op, h.before, h.after) for h in changes] == [("update", {"leadTimeDays": 5}, {"leadTimeDays": 12})]


def test_history_keeps_nothing_of_a_write_the_graph_refused(store: GraphStore) -> None:
    small_enterprise(store)
    backend = store.backend
    original = backend.write

    def refuse_links(cypher, params=None):  # type: ignore[no-untyped-def]
        if "CREATE (a)-[e:operates]" in cypher or "CREATE (n:Twin:Machine" in cypher:
            raise QueryError("the graph refused the write")
        return original(cypher, params)

    backend.write = refuse_links  # type: ignore[method-assign]
    try:
        with pytest.raises(QueryError):
            store.upsert_links([Link("operates", "e-bob", "m-mill")])
        with pytest.raises(QueryError):
            store.upsert_twins([Twin("m-drill", "Machine", {"name": "Drill"})])
    finally:
        backend.write = original  # type: ignore[method-assign]
    assert [h.op for h in store.history_of("e-bob") if h.link_type == "operates"] == []
    assert store.history_of("m-drill") == []
    store.upsert_links([Link("operates", "e-bob", "m-mill")])
    assert [h.op for h in store.history_of("e-bob") if h.link_type == "operates"] == ["create"]


def test_type_errors_and_missing_required_properties_are_reported_together(store: GraphStore) -> None:
    with pytest.raises(BatchRejected) as caught:
        store.upsert_twins([Twin("x1", "Machine", {"capacity": "big"}), Twin("x2", "Employee", {"name": "No Id"})])
    assert {v.rule for v in caught.value.violations} == {"type", "required"}
