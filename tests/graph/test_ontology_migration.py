"""Ontology versions and migrations on the sample enterprise: `email` renamed to `workEmail` and a string capacity
cast to decimal; the dry run counts exactly, the run migrates, quarantines the failing casts, every migrated twin
passes the new SHACL shapes, history names the migration, the past keeps the old shape; bad migrations are refused
naming the line, and a failed one leaves the graph as it was."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.embedded import stop_embedded
from graph.model import Link, Twin
from graph.ontology_migration import (
    MigrationError,
    MigrationQuarantine,
    Migrator,
    mapping_references,
    parse_migration,
    shacl_issues,
)
from graph.ontology_versions import OntologyVersionRefused, OntologyVersions, compare, terms_of
from graph.store import GraphStore
from ontology.core import load_core
from ontology.model import Ontology, PropertyDef
from ontology.schema import primitive
from tests.api.conftest import EMPLOYEES, sample_twins

CAPACITIES = {"machine-0": "120", "machine-1": "95.5", "machine-2": "n/a", "machine-3": "1,200"}
MIGRATION = """\
name: work-email-and-capacity
steps:
  - rename_property: {class: Person, from: email, to: workEmail}
  - cast: {class: Machine, property: capacity, to: decimal}
"""


def _with(ontology: Ontology, cls: str, change: object) -> Ontology:
    """`ontology` with class `cls`'s own properties changed by `change(properties)`."""
    classes = [
        dataclasses.replace(c, properties=change(c.properties)) if c.name == cls else c  # type: ignore[operator]
        for c in ontology.classes.values()
    ]
    return Ontology(classes, iri=ontology.iri, version=ontology.version, schemas=ontology.schemas.values())


def old_ontology() -> Ontology:
    """The core with a text `capacity` on machines (as a first model had it)."""
    return _with(load_core(), "Machine", lambda props: (*props, PropertyDef("capacity", primitive("string"))))


def new_ontology() -> Ontology:
    """The next version: Person.email renamed workEmail, Machine.capacity a decimal."""
    renamed = _with(
        old_ontology(),
        "Person",
        lambda props: tuple(dataclasses.replace(p, name="workEmail") if p.name == "email" else p for p in props),
    )
    return _with(
        renamed,
        "Machine",
        lambda props: tuple(
            # xsd:decimal, as the OWL reader takes it (a double)
            dataclasses.replace(p, schema=primitive("double")) if p.name == "capacity" else p
            for p in props
        ),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GraphStore]:
    """The sample enterprise on the old ontology, with history."""
    opened = GraphStore.open(
        f"falkordb+embedded://{tmp_path / 'graph'}", old_ontology(), history_url=f"sqlite:///{tmp_path / 'h.db'}"
    )
    try:
        twins, links = sample_twins()
        twins = [
            Twin(t.uid, t.cls, {**t.properties, "capacity": CAPACITIES[t.uid]}) if t.uid in CAPACITIES else t
            for t in twins
        ]
        opened.upsert_twins(twins)
        opened.upsert_links(links)
        yield opened
    finally:
        opened.close()
        stop_embedded(tmp_path / "graph")


def test_diff_classifies_every_change() -> None:
    diff = compare(terms_of(old_ontology()), terms_of(new_ontology()))
    kinds = {(c.path, c.kind, c.breaking) for c in diff.changes}
    assert ("Person.email", "property-renamed", True) in kinds
    assert ("Machine.capacity", "type-changed", True) in kinds
    assert len(diff.changes) == 2 and not diff.compatible
    added = _with(new_ontology(), "Site", lambda props: (*props, PropertyDef("gate", primitive("string"))))
    assert [(c.path, c.kind, c.breaking) for c in compare(terms_of(new_ontology()), terms_of(added)).changes] == [
        ("Site.gate", "property-added", False)
    ]
    required = _with(
        new_ontology(), "Site", lambda props: (*props, PropertyDef("gate", primitive("string"), required=True))
    )
    assert not compare(terms_of(new_ontology()), terms_of(required)).compatible


def test_dry_run_counts_then_the_run_migrates_and_quarantines(store: GraphStore, tmp_path: Path) -> None:
    migrator = Migrator(parse_migration(MIGRATION), old_ontology(), new_ontology())
    report, _ = migrator.plan(store)
    assert report.by_step == {"rename_property (line 3)": EMPLOYEES, "cast (line 4)": 3}
    assert report.changed == EMPLOYEES + 4  # the machine whose capacity fails loses that value (quarantined)
    assert [(f.uid, f.property, f.value) for f in report.failures] == [("machine-2", "capacity", "n/a")]
    assert store.get("emp-01").properties["email"] == "person1@example.test"  # type: ignore[union-attr]  # dry run
    time.sleep(0.01)
    before = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    quarantine = MigrationQuarantine(f"sqlite:///{tmp_path / 'h.db'}")
    done = migrator.apply(store, quarantine, shacl_issues)
    assert done.applied and done.changed == report.changed and done.shacl_issues == []
    migrated = GraphStore(store.backend, new_ontology(), store.history, schema=False)
    try:
        emp = migrated.get("emp-01")
        assert (
            emp is not None and emp.properties["workEmail"] == "person1@example.test" and "email" not in emp.properties
        )
        assert [migrated.get(f"machine-{k}").properties.get("capacity") for k in range(4)] == [  # type: ignore[union-attr]
            120.0,
            95.5,
            None,
            1200.0,
        ]
        assert quarantine.of("work-email-and-capacity") == [
            {
                "uid": "machine-2",
                "class": "Machine",
                "property": "capacity",
                "value": "n/a",
                "reason": "cast (line 4): 'n/a' is not a number",
            }
        ]
        assert store.history_of("emp-01")[-1].actor == "migration:work-email-and-capacity"
        past = migrated.at(before).get("emp-01")  # the past keeps the old shape
        assert (
            past is not None
            and past.properties["email"] == "person1@example.test"
            and "workEmail" not in past.properties
        )
    finally:
        migrated.release()


def test_bad_migrations_are_refused_naming_the_line(store: GraphStore) -> None:
    with pytest.raises(MigrationError, match=r"line 3: .*Person has no property 'mail' in the old ontology"):
        Migrator(
            parse_migration("name: x\nsteps:\n  - rename_property: {class: Person, from: mail, to: workEmail}\n"),
            old_ontology(),
            new_ontology(),
        )
    with pytest.raises(MigrationError, match=r"line 4: unknown step 'rename'"):
        parse_migration("name: x\nsteps:\n  - drop_property: {class: Machine, property: capacity}\n  - rename: {}\n")
    with pytest.raises(MigrationError, match=r"line 3: cast needs to"):
        parse_migration("name: x\nsteps:\n  - cast: {class: Machine, property: capacity}\n")
    store.upsert_twins(
        [
            Twin("machine-0", "Machine", {"capacity": "lots"}),
            Twin("machine-1", "Machine", {"capacity": "?"}),
            Twin("machine-3", "Machine", {"capacity": "x"}),
        ]
    )
    states = {uid: store.get(uid).properties for uid in ("emp-01", "machine-0")}  # type: ignore[union-attr]
    with pytest.raises(MigrationError, match=r"line 4: the cast of Machine.capacity to decimal fails for every twin"):
        Migrator(parse_migration(MIGRATION), old_ontology(), new_ontology()).apply(store)
    assert {uid: store.get(uid).properties for uid in states} == states  # type: ignore[union-attr]  # nothing applied


def test_a_failed_write_is_undone(store: GraphStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph fails after taking part of a page (the second UNWIND statement of the migration's writes): the
    pages before it and the part that landed are restored, and history records both the landed part and the
    rollback."""
    from graph import ontology_migration as migration

    monkeypatch.setattr(migration, "CHUNK", 10)  # several pages
    backend = store.backend
    original = backend.write
    calls = {"n": 0}

    def failing(cypher: str, params: dict[str, object] | None = None) -> object:
        if "SET n._class = r[1]" in cypher:
            calls["n"] += 1
            if calls["n"] == 3:  # landed, then the graph goes away
                original(cypher, params)
                raise RuntimeError("the graph went away")
        return original(cypher, params)

    monkeypatch.setattr(backend, "write", failing)
    before = {t.uid: (t.cls, t.properties, t.lifecycle) for t in store.twins_of(["Person", "Machine"])}
    states = store.states_of(list(before))
    with pytest.raises(MigrationError, match=r"failed and was undone \((\d+) twins restored\)") as failed:
        Migrator(parse_migration(MIGRATION), old_ontology(), new_ontology()).apply(store)
    assert calls["n"] >= 3
    monkeypatch.setattr(backend, "write", original)
    assert {t.uid: (t.cls, t.properties, t.lifecycle) for t in store.twins_of(["Person", "Machine"])} == before
    assert store.states_of(list(before)) == states  # stored values exactly as they were, labels and all
    restored = int(str(failed.value).split("(")[1].split()[0])
    assert restored >= 10  # the first page at least, and what landed of the failed one
    actors = [e.actor for e in store.history_of("emp-01")]
    assert actors[-2:] == ["migration:work-email-and-capacity", "migration:work-email-and-capacity:rollback"]


def test_a_breaking_version_needs_a_migration(tmp_path: Path) -> None:
    versions = OntologyVersions(f"sqlite:///{tmp_path / 'v.db'}")
    first = versions.activate(old_ontology(), "alice", ["core.ttl"])
    assert first.active and versions.record(old_ontology(), "bob").id == first.id  # same digest, same version
    with pytest.raises(OntologyVersionRefused, match="2 breaking change") as refused:
        versions.activate(new_ontology(), "alice")
    assert {v.path for v in refused.value.violations} == {"Person.email", "Machine.capacity"}
    assert versions.active().id == first.id  # type: ignore[union-attr]
    migration = parse_migration(MIGRATION)
    second = versions.activate(new_ontology(), "alice", migration=migration.name, renames=migration.renames())
    assert second.active and second.breaking and second.renames == {"Person": {"email": "workEmail"}}
    assert [v.id for v in versions.all()] == [first.id, second.id]


def test_connector_mappings_naming_a_renamed_term_are_reported() -> None:
    mappings = sorted(Path("connectors/mappings").glob("sample_*.yaml"))
    found = mapping_references(mappings, parse_migration(MIGRATION), old_ontology())
    assert {(Path(f).name, what) for f, _, what in found} >= {
        ("sample_hr.yaml", "Employee.email is renamed by the migration"),
        ("sample_crm.yaml", "Contact.email is renamed by the migration"),
    }
    assert all(line > 1 for _, line, _ in found)


def test_new_states_are_checked_against_the_new_ontology(store: GraphStore) -> None:
    """A value carried over unchanged under a property whose type the new ontology changed, and a required property
    a step drops, fail validation: those twins stay as they were and are reported."""
    drop_mtbf = "name: x\nsteps:\n  - drop_property: {class: Machine, property: mtbfHours}\n"
    report, planned = Migrator(parse_migration(drop_mtbf), old_ontology(), new_ontology()).plan(store)
    capacity = {f.uid: f.reason for f in report.failures}
    assert set(capacity) == set(CAPACITIES) and not {p.uid for p in planned} & set(CAPACITIES)
    assert all(f.step == "validation" and f.keeps_twin for f in report.failures)
    assert "capacity" in capacity["machine-0"]  # '120' is text, the new ontology wants a number
    drop_name = "name: x\nsteps:\n  - drop_property: {class: Machine, property: name}\n"
    report, planned = Migrator(parse_migration(drop_name), old_ontology(), old_ontology()).plan(store)
    assert planned == [] and report.failures and all("requires 'name'" in f.reason for f in report.failures)


def test_shacl_validation_runs_in_pages_and_finds_every_issue(
    store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the migration, the text capacities break the new shapes (a decimal): every page reports its own."""
    from graph import ontology_migration as migration

    monkeypatch.setattr(migration, "SHACL_PAGE", 2)
    unmigrated = GraphStore(store.backend, new_ontology(), store.history, schema=False)
    try:
        uids = [f"machine-{k}" for k in range(6)]
        issues = shacl_issues(unmigrated, uids)
    finally:
        unmigrated.release()
    assert sorted({issue.split(".")[0] for issue in issues}) == sorted(CAPACITIES)
    assert all(".capacity:" in issue for issue in issues)


def test_a_moved_class_gets_its_new_labels_and_keeps_its_links(store: GraphStore) -> None:
    """move_class rewrites the twin's labels in the same UNWIND statement (its old class label gone, the new one and
    its ancestors there), its links stay, history records the new class as the migration."""
    store.upsert_links([Link("supplies", "sup-1", "material-0")]) if store.get("material-0") else None
    links_before = {(link.type, link.target) for link in store.links_from(["sup-1"])}
    text = (
        "name: suppliers-are-customers\nsteps:\n"
        "  - drop_property: {class: Supplier, property: reliability}\n"
        "  - move_class: {from: Supplier, to: Customer}\n"
    )
    report = Migrator(parse_migration(text), old_ontology(), old_ontology()).apply(store)
    assert report.changed == 1 and report.failures == []
    moved = store.get("sup-1")
    assert moved is not None and moved.cls == "Customer" and moved.labels == ("Customer", "Organization", "Entity")
    assert moved.properties == {"name": "Acme Steel"}
    assert store.twins_of(["Supplier"]) == [] and [t.uid for t in store.twins_of(["Customer"])] == ["sup-1"]
    assert {(link.type, link.target) for link in store.links_from(["sup-1"])} == links_before
    last = store.history_of("sup-1")[-1]
    assert (last.actor, last.cls, last.after) == (
        "migration:suppliers-are-customers",
        "Customer",
        {"name": "Acme Steel"},
    )


def test_rewrite_twins_validates_and_skips_twins_gone(store: GraphStore) -> None:
    """GraphStore.rewrite_twins (the migration's writer) refuses a batch with an invalid state, naming it, and
    writes nothing; a twin deleted meanwhile is skipped; an unchanged twin writes no history."""
    from graph.errors import BatchRejected
    from graph.model import Rewrite

    before = store.get("machine-0")
    assert before is not None
    state = dict(before.properties)
    with pytest.raises(BatchRejected) as refused:
        store.rewrite_twins(
            [
                Rewrite("machine-0", "Machine", "Machine", state, {**state, "mtbfHours": "often"}),
                Rewrite("machine-1", "Machine", "Machine", {}, {"status": "operational"}),  # no name
            ]
        )
    assert {(v.path, v.rule) for v in refused.value.violations} == {
        ("twins(machine-0).mtbfHours", "type"),
        ("twins(machine-1).name", "required"),
    }
    assert store.get("machine-0") == before
    store.delete_twins(["machine-3"])
    entries = len(store.history_of("machine-1"))
    written = store.rewrite_twins(
        [
            Rewrite("machine-0", "Machine", "Machine", state, {**state, "mtbfHours": 42.0}),
            Rewrite("machine-3", "Machine", "Machine", {}, {"name": "Gone"}),
            Rewrite("machine-1", "Machine", "Machine", {}, dict(store.get("machine-1").properties)),  # type: ignore[union-attr]
        ],
        actor="test",
    )
    assert written == 1 and store.get("machine-3") is None
    assert store.get("machine-0").properties["mtbfHours"] == 42.0  # type: ignore[union-attr]
    assert len(store.history_of("machine-1")) == entries and store.history_of("machine-0")[-1].actor == "test"


def test_rewrite_twins_keeps_what_another_writer_changed_since_the_plan(store: GraphStore) -> None:
    """A rewrite applies only what it changes to the state stored when it writes: a property another writer changed
    after the migration's plan read the twin keeps its new value, in the graph and in the migration's history row."""
    from graph.model import Rewrite, Twin

    planned = dict(store.get("machine-0").properties)  # type: ignore[union-attr]
    store.upsert_twins([Twin("machine-0", "Machine", {**planned, "name": "Renamed meanwhile"})], actor="sync")
    store.rewrite_twins(
        [Rewrite("machine-0", "Machine", "Machine", planned, {**planned, "mtbfHours": 42.0})], actor="migration:m"
    )
    now = store.get("machine-0").properties  # type: ignore[union-attr]
    assert now["name"] == "Renamed meanwhile" and now["mtbfHours"] == 42.0
    last = store.history_of("machine-0")[-1]
    assert last.actor == "migration:m"
    assert last.before["name"] == last.after["name"] == "Renamed meanwhile"  # type: ignore[index]
