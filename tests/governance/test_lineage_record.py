"""Lineage per source record and run (issue 25): the answers of the sample enterprise are those the code before the
change gave (field by field), a store of the old per-property format migrates to the same answers on SQLite and
PostgreSQL, and erasure still blanks and crypto-shreds the values inside the property maps."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, func, inspect, select, text

from governance.lineage import (
    FedValue,
    FedValues,
    LineageBatch,
    LineageStore,
    PropertyLineage,
    RecordLineage,
    lineage_source_table,
)
from governance.personal_seal import PersonalSeal
from graph.migrations.versions import __path__ as versions_path
from graph.personal_values import is_sealed
from graph.relational import dispose_engines, relational_engine
from graph.store_schema import StoreOutdated, _exclusive, _scripts, alembic_config, schema_state, upgrade
from tests.governance.lineage_answers import DIGEST_KEY, answers, open_seal, plain_value, run_names, sync_sample

GOLDEN = Path(__file__).with_name("data") / "lineage_answers_tiny.json.gz"
ANSWER_LISTS = ("records_of_run", "records_of_run_first_5", "where_from", "where_from_property", "where_from_first_3")


def _golden() -> dict[str, Any]:
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as file:
        answers: dict[str, Any] = json.load(file)
    return answers


def _key(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True)


def assert_same_answers(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every answer equal field by field; a list of records compared as a multiset, with the runs in the same order
    (latest first for a twin): the order within one batch is the sync's, not lineage's, concern."""
    assert sorted(got) == sorted(expected)
    for name in ANSWER_LISTS:
        assert sorted(got[name]) == sorted(expected[name]), name
        for key, records in expected[name].items():
            mine = got[name][key]
            assert [r["run"] for r in mine] == [r["run"] for r in records], f"{name}[{key}]: order of runs"
            assert sorted(map(_key, mine)) == sorted(map(_key, records)), f"{name}[{key}]"
    for name in ("runs", "fed_by", "erased_count", "erased_again_count", "matches_after_erasure"):
        assert got[name] == expected[name], name
    for uid, records in expected["after_erasure"].items():
        assert sorted(map(_key, got["after_erasure"][uid])) == sorted(map(_key, records)), uid


def test_the_sample_enterprise_answers_as_before_the_change(tmp_path: Path) -> None:
    """Synced by today's code (one row per source record), every lineage answer equals the one the per-property code
    gave (tests/governance/data/lineage_answers_tiny.json.gz, written by commit 8cd73f2), erasure included."""
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    sync_sample(tmp_path, state_url)
    lineage = LineageStore(state_url, DIGEST_KEY, open_seal(tmp_path))
    with lineage.engine.connect() as conn:
        rows = conn.scalar(select(func.count()).select_from(lineage_source_table))
    got = answers(lineage)
    expected = _golden()
    values = sum(len(records) for records in expected["records_of_run"].values())
    assert rows is not None and values > 3 * rows, "one row per source record, not per property value"
    assert_same_answers(got, expected)
    # what the fixture proves about erasure: the erased twin's values are blanked, the shredded one's personal values
    # unreadable while its other values still read
    erased, shredded = expected["after_erasure"]
    assert all(r["erased"] and not r["has_value"] for r in got["after_erasure"][erased])
    personal = open_seal(tmp_path).personal
    after = got["after_erasure"][shredded]
    assert any(r["property"] in personal for r in after)
    assert all(not r["has_value"] for r in after if r["property"] in personal)
    assert any(r["has_value"] for r in after if r["property"] not in personal)
    assert all(got["matches_after_erasure"]), "digests still prove the erased values"


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh relational store on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        yield str(request.getfixturevalue("postgres_url"))
    dispose_engines()


def _this_revision() -> tuple[str, str]:
    """This change's revision and the one before it (found by its file, whatever the revisions are numbered)."""
    folder = Path(next(iter(versions_path)))
    for script in _scripts().walk_revisions():
        if Path(script.path).parent == folder and script.path.endswith("_lineage_record.py"):
            assert isinstance(script.down_revision, str)
            return script.revision, script.down_revision
    raise AssertionError("no revision file *_lineage_record.py")


def _downgrade_to_the_old_format(engine: Engine) -> None:
    """The store brought back to the revision before lineage per source record (rows expanded per property)."""
    _, before = _this_revision()
    with _exclusive(engine) as connection:
        command.downgrade(alembic_config(engine, connection), before)


def _old_format_answers(engine: Engine, seal: PersonalSeal, runs: dict[str, str]) -> dict[str, Any]:
    """What the code before the change read from `lineage_record` (one row per property value): a run's records in
    id order, a twin's latest first (recording time, then id, descending); sealed values opened as it opened them."""
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(text("SELECT * FROM lineage_record ORDER BY id")).mappings()]

    def plain(row: dict[str, Any]) -> dict[str, Any]:
        stored = row["value"]
        if is_sealed(stored):
            stored = seal.open_text(row["twin_uid"], row["property"], stored)
        record = {
            name: row[name]
            for name in (
                "twin_uid",
                "property",
                "value_digest",
                "source_system",
                "source_object",
                "record_key",
                "source_field",
                "mapping_rule",
                "transform",
            )
        }
        record["value"] = plain_value(json.loads(stored)) if stored is not None else None
        record["has_value"] = stored is not None
        record["erased"] = row["erased_at"] is not None
        record["run"] = runs[row["run_id"]]
        return record

    by_twin: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda row: (row["recorded_at"], row["id"]), reverse=True):
        by_twin.setdefault(row["twin_uid"], []).append(plain(row))
    of_run: dict[str, list[dict[str, Any]]] = {name: [] for name in runs.values()}
    for row in rows:
        of_run[runs[row["run_id"]]].append(plain(row))
    return {"rows": len(rows), "where_from": by_twin, "records_of_run": of_run}


def test_a_store_of_the_old_format_migrates_to_the_same_answers(tmp_path: Path, state_url: str) -> None:
    """The sample enterprise's lineage in the old per-property format (the revision's downgrade expands it), read as
    the old code read it, upgrades to one row per source record that answers exactly the same, in the same order —
    and the same as the old code answered for the sample (the fixture)."""
    sync_sample(tmp_path, state_url)
    seal = open_seal(tmp_path)
    engine = relational_engine(state_url)
    runs = run_names(LineageStore(state_url, DIGEST_KEY, seal))
    with engine.connect() as conn:
        new_rows = conn.scalar(select(func.count()).select_from(lineage_source_table))
    _downgrade_to_the_old_format(engine)
    tables = set(inspect(engine).get_table_names())
    assert "lineage_record" in tables and "lineage_source_record" not in tables
    old = _old_format_answers(engine, seal, runs)
    assert new_rows is not None and old["rows"] > 3 * new_rows
    dispose_engines()
    with pytest.raises(StoreOutdated, match="twin db upgrade"):
        LineageStore(state_url)  # the old format is refused until upgraded

    upgrade(relational_engine(state_url))
    engine = relational_engine(state_url)
    assert schema_state(engine).current and "lineage_record" not in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(lineage_source_table)) == new_rows
    migrated = answers(LineageStore(state_url, DIGEST_KEY, seal))
    assert migrated["where_from"] == old["where_from"], "a twin's lineage, field by field and in order"
    assert migrated["records_of_run"] == old["records_of_run"], "a run's lineage, field by field and in order"
    assert_same_answers(migrated, _golden())


def test_erasure_blanks_values_inside_the_property_maps(sqlite_url: str) -> None:
    """Erasing a twin blanks every value of its source-record rows (digests and sources kept), and nothing of the other
    twins that share a record or a run; values written after the erasure are kept."""
    store = LineageStore(sqlite_url)
    run = store.start_run("connector", "hr")
    batch = LineageBatch(
        run.run_id,
        "hr",
        "employees",
        [
            RecordLineage("emp-1", "E1", [PropertyLineage("email", "a@x.test", "MAIL"), PropertyLineage("age", 41)]),
            RecordLineage("dept-1", "E1", [PropertyLineage("link:employs", {"target": "emp-1"})]),
            RecordLineage("emp-2", "E2", [PropertyLineage("email", "b@x.test", "MAIL")]),
        ],
    )
    assert store.record_lineage(batch) == 4 == len(batch)
    assert store.erase_values("emp-1") == 2
    erased = store.where_from("emp-1")
    assert [(r.property, r.erased, r.has_value, r.value) for r in erased] == [
        ("age", True, False, None),
        ("email", True, False, None),
    ]
    assert store.matches(erased[1], "a@x.test") and erased[1].source_field == "MAIL"
    assert store.where_from("dept-1")[0].value == {"target": "emp-1"}
    assert store.where_from("emp-2")[0].value == "b@x.test"
    with store.engine.connect() as conn:
        stored = conn.scalars(select(lineage_source_table.c.properties)).all()
    assert not any("a@x.test" in text for text in stored), "the value has left the stored map"
    later = store.start_run("connector", "hr")
    store.record_values(FedValues(later.run_id, "hr", "employees", [FedValue("emp-1", "email", "c@x.test", "E1")]))
    assert [(r.value, r.erased) for r in store.where_from("emp-1", "email")] == [("c@x.test", False), (None, True)]
    assert store.erase_values("emp-1") == 1


def test_flat_values_group_into_one_row_per_twin_and_source_record(sqlite_url: str) -> None:
    """Consecutive values of one twin and record make one row; a record feeding two twins makes two."""
    store = LineageStore(sqlite_url)
    run = store.start_run("connector", "crm")
    fed = FedValues(
        run.run_id,
        "crm",
        "accounts",
        [
            FedValue("c-1", "name", "ACME", "A1", "NAME", "crm.yaml#accounts.name", "strip"),
            FedValue("c-1", "city", "Oslo", "A1", "CITY"),
            FedValue("p-9", "link:worksFor", {"target": "c-1"}, "A1"),
            FedValue("c-2", "name", "Zeta", "A2", "NAME"),
        ],
    )
    assert [(r.twin_uid, r.record_key, [p.property for p in r.properties]) for r in fed.batch().records] == [
        ("c-1", "A1", ["name", "city"]),
        ("p-9", "A1", ["link:worksFor"]),
        ("c-2", "A2", ["name"]),
    ]
    assert store.record_values(fed) == 4
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(lineage_source_table)) == 3
    assert [(r.twin_uid, r.property) for r in store.records_of_run(run.run_id)] == [
        ("c-1", "name"),
        ("c-1", "city"),
        ("p-9", "link:worksFor"),
        ("c-2", "name"),
    ]
    assert [r.property for r in store.records_of_run(run.run_id, limit=3)] == ["name", "city", "link:worksFor"]
    (name,) = store.where_from("c-1", "name")
    assert (name.mapping_rule, name.transform, name.source_field) == ("crm.yaml#accounts.name", "strip", "NAME")
    assert store.has_records(run.run_id, "crm", ["A9", "A2"]) and not store.has_records(run.run_id, "crm", ["A9"])
    assert store.has_records(run.run_id, "erp", ["A1"]) is False


def test_a_renamed_property_keeps_its_lineage(tmp_path: Path) -> None:
    """An ontology migration renaming Person.email to workEmail: the lineage of each renamed value answers under the
    new name and still leads to its source record (sealed values sealed again under it; a shredded subject's stays
    unreadable); twins the rename did not touch keep theirs."""
    from graph.embedded import stop_embedded
    from graph.model import Twin
    from graph.ontology_migration import Migrator, parse_migration
    from graph.store import GraphStore
    from tests.graph.test_ontology_migration import MIGRATION, new_ontology, old_ontology

    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = GraphStore.open(f"falkordb+embedded://{tmp_path / 'graph'}", old_ontology(), history_url=url)
    try:
        people = {"emp-1": "ann@x.test", "emp-2": "bob@x.test"}
        store.upsert_twins(
            [Twin(uid, "Contact", {"name": uid, "email": email}) for uid, email in people.items()]
            + [Twin("site-1", "Site", {"name": "Oslo"})]
        )
        seal = open_seal(tmp_path)
        lineage = LineageStore(url, DIGEST_KEY, seal)
        run = lineage.start_run("connector", "hr")
        lineage.record_lineage(
            LineageBatch(
                run.run_id,
                "hr",
                "employees",
                [
                    RecordLineage(uid, f"E{uid[-1]}", [PropertyLineage("name", uid), PropertyLineage("email", email)])
                    for uid, email in people.items()
                ]
                + [RecordLineage("site-1", "S1", [PropertyLineage("email", "desk@x.test", "MAIL")])],
            )
        )
        seal.ring.destroy("emp-2")
        report = Migrator(parse_migration(MIGRATION), old_ontology(), new_ontology()).apply(store)
    finally:
        store.close()
        stop_embedded(tmp_path / "graph")
    assert sorted(report.renamed) == [("emp-1", "email", "workEmail"), ("emp-2", "email", "workEmail")]
    from governance.lineage import PropertyRename

    assert lineage.rename_properties([PropertyRename(*r) for r in report.renamed]) == 2
    assert lineage.where_from("emp-1", "email") == []
    (ann,) = lineage.where_from("emp-1", "workEmail")
    assert (ann.value, ann.source_system, ann.source_object, ann.record_key) == ("ann@x.test", "hr", "employees", "E1")
    assert lineage.matches(ann, "ann@x.test") and ann.run_id == run.run_id
    (bob,) = lineage.where_from("emp-2", "workEmail")
    assert not bob.has_value and bob.record_key == "E2" and lineage.matches(bob, "bob@x.test")
    assert [r.property for r in lineage.where_from("emp-1")] == ["workEmail", "name"]
    assert lineage.where_from("site-1", "email")[0].value == "desk@x.test", "not a Person: not renamed"
    with lineage.engine.connect() as conn:
        stored = " ".join(conn.scalars(select(lineage_source_table.c.properties)))
    assert "ann@x.test" not in stored, "the renamed personal value is still sealed"
    assert lineage.rename_properties([PropertyRename("emp-1", "email", "workEmail")]) == 0
