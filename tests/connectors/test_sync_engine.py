"""The sync engine on the sample enterprise (SQLite sources) and on small hand-made sources: full and incremental
runs, deletions, idempotence, dry runs, quarantine, pending links, lineage and run records."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from connectors.mapping import MappingError, parse_mapping
from connectors.quarantine import QuarantineStore
from connectors.registry import ConnectorRegistry
from connectors.sample.enterprise import SampleManifest, generate_sample, mutate_sample
from connectors.source import SourceError
from connectors.sql_source import SqlSource
from connectors.sync import Connector, SyncEngine
from connectors.sync_state import SyncState
from governance.lineage import LineageStore, RunStatus
from ontology.model import Ontology
from tests.connectors.twin_fixtures import TwinEnv, core, open_twin, snapshot, twin  # noqa: F401

SYSTEMS = ("sample-erp", "sample-hr", "sample-crm")


@pytest.fixture(scope="module")
def tiny_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sample enterprise, generated once; tests copy it before changing it."""
    out = tmp_path_factory.mktemp("sample") / "sample"
    generate_sample(out, "tiny", seed=7)
    return out


@pytest.fixture
def sample(tiny_sample: Path, twin: TwinEnv) -> Path:
    """A private copy of the tiny sample in the twin's data dir (DATA_DIR/sample, as the registry expects)."""
    target = twin.path / "sample"
    shutil.copytree(tiny_sample, target)
    return target


def registry(core: Ontology, twin: TwinEnv) -> ConnectorRegistry:
    return ConnectorRegistry.load(core, data_dir=twin.path)


def sync_all(engine: SyncEngine, reg: ConnectorRegistry, mode: str = "full") -> dict[str, object]:
    return {name: engine.run(reg.connector(name), mode) for name in SYSTEMS}  # type: ignore[arg-type]


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


def test_full_sync_builds_the_sample_enterprise_with_lineage(core: Ontology, twin: TwinEnv, sample: Path) -> None:
    engine = twin.engine()
    reg = registry(core, twin)
    reports = sync_all(engine, reg)
    manifest = SampleManifest.read(sample)
    hr, _crm = sample / "hr.sqlite", sample / "crm.sqlite"
    stats = twin.store.stats()
    assert stats.by_class["Employee"] == manifest.row_counts["hr.employees"]
    (with_manager,) = rows(hr, "SELECT COUNT(*) FROM employees WHERE manager_id IS NOT NULL")[0]
    assert stats.by_type["reportsTo"] == with_manager
    assert stats.by_type["hasSkill"] == manifest.row_counts["hr.employee_skills"]
    # internal CRM contacts merged into their HR employees: one Person twin each
    assert stats.by_class["Contact"] == manifest.row_counts["crm.contacts"] - manifest.identity_overlap
    assert manifest.identity_overlap > 0
    # customers: the CRM account and the ERP customer share the business key and feed one twin
    assert stats.by_class["Customer"] == manifest.row_counts["erp.customers"]
    assert all(r.status == "completed" and r.counts["quarantined"] == 0 for r in reports.values())
    assert SyncState(twin.state_url).pending() == []

    emp_id, first, last, salary, email, manager = rows(
        hr,
        "SELECT employee_id, first_name, last_name, salary, work_email, manager_id FROM employees "
        "WHERE manager_id IS NOT NULL LIMIT 1",
    )[0]
    record = twin.store.require(f"hr:employee:{emp_id}")
    assert record.cls == "Employee"
    assert record.properties["name"] == f"{first} {last}"
    assert record.properties["salary"] == salary
    assert record.properties["email"] == email.strip().lower()
    (boss,) = [n.uid for n in twin.store.neighbours(record.uid, ["reportsTo"], "out").nodes if n.uid != record.uid]
    assert boss == f"hr:employee:{manager}"

    lineage = LineageStore(twin.state_url)
    (prov,) = lineage.where_from(record.uid, "salary")
    assert (prov.source_system, prov.source_object, prov.record_key, prov.source_field) == (
        "hr",
        "employees",
        emp_id,
        "salary",
    )
    assert (prov.mapping_rule, prov.transform, prov.value) == ("sample_hr.yaml#employees.salary", "cast:double", salary)
    assert prov.run_id == reports["sample-hr"].run_id and prov.matches(salary)
    props = {p.property for p in lineage.where_from(record.uid)}
    assert {"name", "salary", "email", "employeeId", "link:reportsTo", "link:worksIn"} <= props
    run = lineage.get_run(reports["sample-hr"].run_id)
    assert run.status is RunStatus.COMPLETED and run.counts["created"] == reports["sample-hr"].counts["created"]
    (state_run,) = SyncState(twin.state_url).runs("sample-hr")
    assert state_run.counts["read"] == manifest.total_rows - sum(
        n for t, n in manifest.row_counts.items() if not t.startswith("hr.")
    )
    assert state_run.timings["graph"] > 0 and state_run.timings["lineage"] > 0


def test_second_run_is_idempotent_and_records_no_new_lineage(core: Ontology, twin: TwinEnv, sample: Path) -> None:
    engine = twin.engine()
    reg = registry(core, twin)
    sync_all(engine, reg)
    before = snapshot(twin.store)
    lineage_before = len(
        LineageStore(twin.state_url).records_of_run(SyncState(twin.state_url).runs("sample-hr")[0].run_id)
    )
    state = SyncState(twin.state_url)
    entries = [
        e
        for entity in reg.mapping("sample-hr").entities
        for e in state.ledger("sample-hr", entity.name, sorted(state.ledger_keys("sample-hr", entity.name))).values()
    ]
    hr_twins = {e.uid for e in entries if not e.uid.startswith("link:")}
    hr_links = {tuple(link[:3]) for e in entries for link in e.payload.get("l", [])}
    for mode in ("full", "incremental"):
        again = engine.run(reg.connector("sample-hr"), mode)  # type: ignore[arg-type]
        assert again.counts["created"] == again.counts["updated"] == again.counts["deleted"] == 0
        # counts are twins and links, not records: every twin and link the connector feeds, once
        if mode == "full":
            assert again.counts["unchanged"] == len(hr_twins) + len(hr_links) != again.counts["read"]
        else:  # the records re-read at the watermark (inclusive): their twins and links
            assert 0 < again.counts["unchanged"] < len(hr_twins) + len(hr_links)
        assert LineageStore(twin.state_url).records_of_run(again.run_id) == []
    assert snapshot(twin.store) == before
    assert lineage_before > 0


def test_incremental_then_full_matches_a_fresh_sync_of_the_changed_sources(
    core: Ontology, twin: TwinEnv, sample: Path, tmp_path: Path
) -> None:
    engine = twin.engine()
    reg = registry(core, twin)
    sync_all(engine, reg)
    summary = mutate_sample(sample, fraction=0.1, seed=3)
    incremental = sync_all(engine, reg, "incremental")
    after_incremental = snapshot(twin.store)
    read = sum(r.counts["read"] for r in incremental.values())  # type: ignore[attr-defined]
    assert 0 < read < SampleManifest.read(sample).total_rows / 2
    assert sum(r.counts["updated"] + r.counts["created"] for r in incremental.values()) > 0  # type: ignore[attr-defined]
    sync_all(engine, reg, "full")
    deleted = sum(t.deleted for t in summary.tables.values())
    # the incremental run already removed what the deleted rows fed
    assert sum(r.counts["deleted"] for r in incremental.values()) >= min(deleted, 1)  # type: ignore[attr-defined]

    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    shutil.copytree(sample, fresh_dir / "sample")
    fresh_store = open_twin(fresh_dir, core)
    try:
        fresh_engine = SyncEngine(fresh_store, f"sqlite:///{fresh_dir / 'state.db'}")
        sync_all(fresh_engine, ConnectorRegistry.load(core, data_dir=fresh_dir))
        fresh = snapshot(fresh_store)
        assert snapshot(twin.store) == fresh
        # the incremental run alone already gave the same twin (joined rows' changes, deletions included), but for
        # the Customer twins ERP `customers` and CRM `customer_accounts` both write: there the last writer wins
        shared = "customer:"
        assert {u: t for u, t in after_incremental[0].items() if not u.startswith(shared)} == {
            u: t for u, t in fresh[0].items() if not u.startswith(shared)
        }
        # links: all of them; their properties too, except `orders` quantities, where two lines of one order for
        # one product write the same link (the last writer wins, and an incremental run writes fewer)
        assert {link[:3] for link in after_incremental[1]} == {link[:3] for link in fresh[1]}
        assert {link for link in after_incremental[1] if link[0] != "orders"} == {
            link for link in fresh[1] if link[0] != "orders"
        }
    finally:
        fresh_store.close()


def test_dry_run_reports_the_diff_and_writes_nothing(core: Ontology, twin: TwinEnv, sample: Path) -> None:
    engine = twin.engine()
    reg = registry(core, twin)
    engine.run(reg.connector("sample-erp"), "full")
    dry = engine.run(reg.connector("sample-hr"), "full", dry_run=True)
    assert dry.dry_run and dry.counts["created"] > 0
    assert dry.entity("employees").examples["create"][0].startswith("hr:employee:")
    assert twin.store.stats().by_class.get("Employee", 0) == 0
    assert SyncState(twin.state_url).runs("sample-hr") == []
    real = engine.run(reg.connector("sample-hr"), "full")
    assert {e.entity: e.created for e in dry.entities} == {e.entity: e.created for e in real.entities}
    before = snapshot(twin.store)
    with sqlite3.connect(sample / "hr.sqlite") as con:
        con.execute(
            "UPDATE employees SET salary = salary + 1, updated_at = '2030-01-01 00:00:00' WHERE employee_id = 'E000002'"
        )
        con.execute("DELETE FROM employee_skills WHERE employee_skill_id = 1")
    dry = engine.run(reg.connector("sample-hr"), "full", dry_run=True)
    assert dry.entity("employees").updated == 1 and dry.entity("employee_skills").deleted == 1
    assert dry.entity("employees").examples["update"] == ["hr:employee:E000002: salary"]
    assert snapshot(twin.store) == before


MAPPING = """\
system: plant
entities:
  - name: machines
    class: Machine
    uid: "plant:machine:{code}"
    key: code
    watermark: updated_at
    properties:
      name: name
      powerKw: {field: power, cast: double}
      status: state
    links:
      - type: locatedAt
        target: "plant:site:{site}"
  - name: sites
    class: Site
    uid: "plant:site:{code}"
    key: code
    watermark: updated_at
    properties:
      name: name
"""


def plant(tmp_path: Path, machines: list[tuple], sites: list[tuple] = ()) -> str:
    url = f"sqlite:///{tmp_path / 'plant.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE machines (id INTEGER PRIMARY KEY, code TEXT, name TEXT, power TEXT, "
                "state TEXT, site TEXT, updated_at TEXT)"
            )
        )
        conn.execute(text("CREATE TABLE sites (id INTEGER PRIMARY KEY, code TEXT, name TEXT, updated_at TEXT)"))
        for row in machines:
            conn.execute(
                text(
                    "INSERT INTO machines (code, name, power, state, site, updated_at) "
                    "VALUES (:c, :n, :p, :s, :site, '2025-01-01 00:00:00')"
                ),
                dict(zip(("c", "n", "p", "s", "site"), row, strict=True)),
            )
        for code, name in sites:
            conn.execute(
                text("INSERT INTO sites (code, name, updated_at) VALUES (:c, :n, '2025-01-01 00:00:00')"),
                {"c": code, "n": name},
            )
    engine.dispose()
    return url


def plant_connector(core: Ontology, url: str, name: str = "plant") -> Connector:
    mapping = parse_mapping(MAPPING, core, "plant.yaml")
    return Connector(
        name, mapping, lambda e: SqlSource(url, table=e.name, key="id", watermark=e.watermark, name=e.name, page_size=3)
    )


def test_bad_rows_are_quarantined_and_the_rest_proceeds(core: Ontology, twin: TwinEnv, tmp_path: Path) -> None:
    url = plant(
        tmp_path,
        [
            ("M1", "Press", "12.5", "operational", None),
            ("M2", "Lathe", "lots", "operational", None),  # wrong type
            (None, "Ghost", "1", "operational", None),  # missing key
            ("M3", "Mill", "3", "broken", None),  # not in the status enum: the graph refuses it
            ("M4", "Saw", "4", "down", None),
            ("M1", "Press copy", "1", "down", None),  # duplicate key
            ("M5", None, "5", "down", None),  # required name missing: the graph refuses it
        ],
    )
    mapping = parse_mapping(MAPPING, core, "p.yaml")
    connector = Connector(
        "plant",
        mapping,
        lambda e: (
            SqlSource(url, table=e.name, key="code", watermark=e.watermark, name=e.name, page_size=3)
            if e.name == "machines"
            else SqlSource(url, table=e.name, key="id", name=e.name)
        ),
    )
    report = twin.engine().run(connector, "full")
    assert report.entity("machines").created == 2
    assert sorted(twin.store.stats().by_class.items()) == [("Machine", 2)]
    assert twin.store.require("plant:machine:M1").properties["name"] == "Press"  # the first occurrence won
    quarantined = {(q.record_key, q.field, q.rule) for q in QuarantineStore(twin.state_url).rows("plant")}
    assert ("M2", "powerKw", "cast:double") in quarantined
    assert ("None", "code", "missing-key") in quarantined
    assert ("M3", "status", "graph:type") in quarantined
    assert ("M1", "code", "duplicate-key") in quarantined
    assert ("M5", "name", "graph:required") in quarantined
    rows_ = {q.record_key: q for q in QuarantineStore(twin.state_url).rows("plant")}
    assert rows_["M2"].raw["power"] == "lots" and len(rows_["M2"].raw_digest) == 64
    assert "'lots' cannot be cast to double" in rows_["M2"].message
    assert report.counts["quarantined"] == 5

    # the source is fixed: the next run takes the row and resolves its quarantine entry
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE machines SET power = '7', updated_at = '2025-02-01 00:00:00' WHERE code = 'M2'"))
    again = twin.engine().run(connector, "incremental")
    assert again.entity("machines").created == 1
    assert twin.store.require("plant:machine:M2").properties["powerKw"] == 7.0
    open_keys = {q.record_key for q in QuarantineStore(twin.state_url).rows("plant")}
    assert "M2" not in open_keys and "M3" in open_keys


def test_links_to_missing_twins_wait_and_are_written_when_the_target_arrives(
    core: Ontology, twin: TwinEnv, tmp_path: Path
) -> None:
    url = plant(tmp_path, [("M1", "Press", "1", "operational", "S1")])
    connector = plant_connector(core, url)
    engine = twin.engine()
    first = engine.run(connector, "full", entities=["machines"])
    assert first.counts["pending_links"] == 1
    (pending,) = SyncState(twin.state_url).pending()
    assert (pending.type, pending.source, pending.target) == ("locatedAt", "plant:machine:M1", "plant:site:S1")
    with create_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO sites (code, name, updated_at) VALUES ('S1', 'Plant 1', '2025-01-02')"))
    second = engine.run(connector, "incremental")
    assert second.counts["pending_links"] == 0 and SyncState(twin.state_url).pending() == []
    assert [
        n.uid
        for n in twin.store.neighbours("plant:machine:M1", ["locatedAt"], "out").nodes
        if n.uid != "plant:machine:M1"
    ] == ["plant:site:S1"]
    assert LineageStore(twin.state_url).where_from("plant:machine:M1", "link:locatedAt")[0].record_key == "1"


def test_a_twin_fed_by_two_connectors_survives_the_deletion_in_one(
    core: Ontology, twin: TwinEnv, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    url_a = plant(tmp_path / "a", [("M1", "Press", "1", "down", None)])
    url_b = plant(tmp_path / "b", [("M1", "Press", "1", "down", None), ("M2", "Saw", "2", "down", None)])
    engine = twin.engine()
    a, b = plant_connector(core, url_a, "plant-a"), plant_connector(core, url_b, "plant-b")
    engine.run(a, "full")
    engine.run(b, "full")
    assert twin.store.stats().by_class == {"Machine": 2}
    with create_engine(url_a).begin() as conn:
        conn.execute(text("DELETE FROM machines"))
    gone = engine.run(a, "full", allow_deletions=1.0)  # an emptied source deletes only when the run is told to
    assert gone.entity("machines").deleted == 0  # nothing was deleted: plant-b still feeds the twin
    assert gone.entity("machines").examples.get("delete", []) == []
    assert twin.store.get("plant:machine:M1") is not None
    with create_engine(url_b).begin() as conn:
        conn.execute(text("DELETE FROM machines WHERE code = 'M1'"))
    engine.run(b, "full")
    assert twin.store.get("plant:machine:M1") is None and twin.store.get("plant:machine:M2") is not None


def test_refused_runs_leave_the_graph_unchanged(core: Ontology, twin: TwinEnv, tmp_path: Path) -> None:
    url = plant(tmp_path, [("M1", "Press", "1", "down", None)])
    engine = twin.engine()
    engine.run(plant_connector(core, url), "full")
    before = snapshot(twin.store)
    with pytest.raises(MappingError, match=r"plant\.yaml:10: powerKW: Machine has no property 'powerKW'"):
        parse_mapping(MAPPING.replace("powerKw:", "powerKW:"), core, "plant.yaml")
    broken = Connector(
        "plant",
        parse_mapping(MAPPING, core, "plant.yaml"),
        lambda e: SqlSource(url, table="no_such_table", key="id", name=e.name),
    )
    with pytest.raises(SourceError, match="no_such_table"):
        engine.run(broken, "full")
    assert snapshot(twin.store) == before
    failed = LineageStore(twin.state_url).runs(name="plant")[0]
    assert failed.status is RunStatus.FAILED and "no_such_table" in (failed.error or "")


def test_sync_state_on_postgresql_gives_the_same_twin_as_on_sqlite(
    core: Ontology, twin: TwinEnv, sample: Path, tmp_path: Path, postgres_url: str
) -> None:
    """Ledger upserts, lineage, pending links and watermarks in PostgreSQL: full, incremental after changes, full
    again; the graph equals that of the same runs with SQLite state, and a rerun changes nothing."""
    reg = registry(core, twin)
    on_postgres = SyncEngine(twin.store, postgres_url)
    first = sync_all(on_postgres, reg)
    hr_run = first["sample-hr"].run_id  # type: ignore[attr-defined]
    assert len(LineageStore(postgres_url).records_of_run(hr_run)) > 0
    assert (
        len(SyncState(postgres_url).ledger_keys("sample-hr", "employees"))
        == SampleManifest.read(sample).row_counts["hr.employees"]
    )
    mutate_sample(sample, fraction=0.1, seed=3)
    sync_all(on_postgres, reg, "incremental")
    sync_all(on_postgres, reg, "full")
    again = sync_all(on_postgres, reg, "full")
    # ERP `customers` and CRM `customer_accounts` both write the same Customer twins ("customer:{number}", no
    # identity rule): where the mutation made their names differ, every full run writes each one over the other
    changing = {e.entity for r in again.values() for e in r.entities if e.created or e.updated or e.deleted}
    assert changing <= {"customers", "customer_accounts"}

    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    shutil.copytree(sample, fresh_dir / "sample")
    fresh_store = open_twin(fresh_dir, core)
    try:
        sync_all(
            SyncEngine(fresh_store, f"sqlite:///{fresh_dir / 'state.db'}"),
            ConnectorRegistry.load(core, data_dir=fresh_dir),
        )
        assert snapshot(twin.store) == snapshot(fresh_store)
    finally:
        fresh_store.close()


def test_a_link_another_record_still_produces_survives_the_deletion_of_its_first_record(
    core: Ontology, twin: TwinEnv, tmp_path: Path
) -> None:
    """A machine row deleted and re-inserted under a new surrogate key: the twin stays (the new record feeds it) and
    so does its link, which the new record produces too; a changed record that stops producing a link another
    record still lists does not remove it either."""
    url = plant(tmp_path, [("M1", "Press", "1", "down", "S1")], [("S1", "Plant 1")])
    engine = twin.engine()
    connector = plant_connector(core, url)

    def located() -> list[list[str]]:
        return twin.store.backend.read("MATCH (:Twin {uid: 'plant:machine:M1'})-[:locatedAt]->(b) RETURN b.uid")

    engine.run(connector, "full")
    assert located() == [["plant:site:S1"]]
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE machines SET id = 7"))  # the same row, deleted and inserted again
    report = engine.run(connector, "full")
    machines = report.entity("machines")  # the twin and its link stay: nothing created or deleted in the graph
    assert (machines.created, machines.deleted, machines.unchanged) == (0, 0, 2)
    assert twin.store.get("plant:machine:M1") is not None
    assert located() == [["plant:site:S1"]]

    with create_engine(url).begin() as conn:  # a second row for the same machine, then the first moves away
        conn.execute(
            text(
                "INSERT INTO machines (id, code, name, power, state, site, updated_at) "
                "VALUES (8, 'M1', 'Press', '1', 'down', 'S1', '2030-01-01 00:00:00')"
            )
        )
    engine.run(connector, "full")
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE machines SET site = NULL, updated_at = '2030-01-02 00:00:00' WHERE id = 7"))
    engine.run(connector, "incremental")
    assert located() == [["plant:site:S1"]]  # record 8 still places the machine there
