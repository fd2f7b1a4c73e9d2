"""The lineage store (runs, property-level provenance, erasure) and its PROV-O and OpenLineage exports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import PROV
from sqlalchemy import event

from governance.canonical import sha256_digest
from governance.errors import LineageError
from governance.lineage import (
    DatasetRef,
    FedProperty,
    FedValue,
    FedValues,
    LineageStore,
    ProvenanceRecord,
    RunKind,
    RunStatus,
)
from governance.provenance_export import LINEAGE, run_iri, source_record_iri, to_openlineage, to_prov_o

T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


def _prov(uid: str, prop: str, value: object, run_id: str, key: str, field: str, **extra: object) -> ProvenanceRecord:
    return ProvenanceRecord.of(
        uid,
        prop,
        value,
        source_system="erp",
        source_object="employees",
        record_key=key,
        run_id=run_id,
        source_field=field,
        mapping_rule=f"Employee.{prop}",
        **extra,
    )


@pytest.fixture
def synced(sqlite_url: str) -> tuple[LineageStore, str, str]:
    """Two connector runs: the second corrects Ann's salary; Bob only appears in the first."""
    store = LineageStore(sqlite_url)
    first = store.start_run("connector", "erp-employees", inputs=[DatasetRef("erp", "employees")], started_at=T0)
    store.record(
        [
            _prov("emp-ann", "salary", 50000, first.run_id, "E1", "SAL", recorded_at=T0 + timedelta(seconds=1)),
            _prov("emp-ann", "name", "Ann Lee", first.run_id, "E1", "NAME", recorded_at=T0 + timedelta(seconds=1)),
            _prov("emp-bob", "salary", 42000, first.run_id, "E2", "SAL", recorded_at=T0 + timedelta(seconds=1)),
        ]
    )
    store.finish_run(first.run_id, counts={"read": 2, "written": 3, "rejected": 0}, ended_at=T0 + timedelta(minutes=1))
    second = store.start_run("connector", "erp-employees", started_at=T0 + timedelta(hours=1))
    store.record(
        [
            _prov(
                "emp-ann",
                "salary",
                52000,
                second.run_id,
                "E1",
                "SAL",
                transform="round(SAL, -3)",
                recorded_at=T0 + timedelta(hours=1, seconds=1),
            )
        ]
    )
    store.finish_run(second.run_id, counts={"read": 1, "written": 1}, ended_at=T0 + timedelta(hours=1, minutes=1))
    return store, first.run_id, second.run_id


def test_runs_start_and_finish(sqlite_url: str) -> None:
    store = LineageStore(sqlite_url)
    run = store.start_run(RunKind.SCENARIO, "supplier-x-fails", inputs=[DatasetRef("enterprise-twin", "twin-graph")])
    assert run.status is RunStatus.RUNNING and run.ended_at is None
    uuid.UUID(run.run_id)
    done = store.finish_run(run.run_id, RunStatus.FAILED, {"replications": 3}, error="model diverged")
    assert (done.status, dict(done.counts), done.error) == (RunStatus.FAILED, {"replications": 3}, "model diverged")
    assert done.ended_at is not None and done.ended_at >= done.started_at
    assert store.get_run(run.run_id) == done
    assert [r.run_id for r in store.runs(kind="scenario")] == [run.run_id]
    assert store.runs(kind="connector") == []
    with pytest.raises(LineageError, match="already finished"):
        store.finish_run(run.run_id)
    with pytest.raises(LineageError, match="does not exist"):
        store.finish_run("no-such-run")
    with pytest.raises(LineageError, match="run kind"):
        store.start_run("cron", "x")
    with pytest.raises(LineageError, match="already exists"):
        store.start_run("connector", "again", run_id=run.run_id)


def test_where_from_latest_first(synced: tuple[LineageStore, str, str]) -> None:
    store, first, second = synced
    salary = store.where_from("emp-ann", "salary")
    assert [(r.value, r.run_id) for r in salary] == [(52000, second), (50000, first)]
    latest = salary[0]
    assert (latest.source_system, latest.source_object, latest.record_key, latest.source_field) == (
        "erp",
        "employees",
        "E1",
        "SAL",
    )
    assert (latest.mapping_rule, latest.transform) == ("Employee.salary", "round(SAL, -3)")
    assert latest.value_digest == sha256_digest(52000) and latest.matches(52000) and not latest.matches(50000)
    assert {r.property for r in store.where_from("emp-ann")} == {"salary", "name"}
    assert store.where_from("emp-nobody") == []


def test_fed_by_source_record(synced: tuple[LineageStore, str, str]) -> None:
    store, _, _ = synced
    assert store.fed_by("erp", "E1") == [FedProperty("emp-ann", "name"), FedProperty("emp-ann", "salary")]
    assert store.fed_by("erp", "E2", source_object="employees") == [("emp-bob", "salary")]
    assert store.fed_by("erp", "E2", source_object="contracts") == []
    assert store.fed_by("crm", "E1") == []


def test_unknown_run_is_refused_and_nothing_stored(sqlite_url: str) -> None:
    store = LineageStore(sqlite_url)
    good = store.start_run("connector", "crm")
    batch = [_prov("c-1", "name", "ACME", good.run_id, "C1", "NAME"), _prov("c-2", "name", "X", "ghost", "C2", "NAME")]
    with pytest.raises(LineageError, match="ghost"):
        store.record(batch)
    assert store.where_from("c-1") == []


def test_a_known_run_is_checked_once_and_an_unknown_one_every_time(sqlite_url: str) -> None:
    """Batches of one run check its existence once (runs are never deleted); an unknown run is refused each time."""
    store = LineageStore(sqlite_url)
    good = store.start_run("connector", "crm")
    fed = FedValues(good.run_id, "crm", "accounts", [FedValue("c-1", "name", "ACME", "C1", "NAME")])
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    store.record_values(fed)
    store.record_values(FedValues(good.run_id, "crm", "accounts", [FedValue("c-2", "name", "Zeta", "C2", "NAME")]))
    assert sum("lineage_run" in sql for sql in statements) == 1
    for _ in range(2):
        with pytest.raises(LineageError, match="ghost"):
            store.record_values(FedValues("ghost", "crm", "accounts", [FedValue("c-3", "name", "X", "C3", "NAME")]))
    assert sum("lineage_run" in sql for sql in statements) == 3
    assert [r.record_key for r in store.where_from("c-2")] == ["C2"] and store.where_from("c-3") == []


def test_erase_values_keeps_digests(synced: tuple[LineageStore, str, str]) -> None:
    store, _, _ = synced
    assert store.erase_values("emp-ann") == 3
    for record in store.where_from("emp-ann"):
        assert record.erased and record.value is None and not record.has_value
        assert len(record.value_digest) == 64
    salaries = store.where_from("emp-ann", "salary")
    assert salaries[0].matches(52000) and salaries[1].matches(50000), "digests still prove the erased values"
    assert store.where_from("emp-bob")[0].value == 42000, "other twins are untouched"
    assert store.erase_values("emp-ann") == 0


def test_digest_only_records(sqlite_url: str) -> None:
    store = LineageStore(sqlite_url)
    run = store.start_run("connector", "hr")
    store.record([_prov("emp-1", "birthDate", "1980-02-29", run.run_id, "H1", "DOB", keep_value=False)])
    stored = store.where_from("emp-1")[0]
    assert not stored.has_value and stored.value is None and not stored.erased and stored.matches("1980-02-29")


def test_null_values_are_kept_distinct_from_absent(sqlite_url: str) -> None:
    store = LineageStore(sqlite_url)
    run = store.start_run("connector", "hr")
    store.record(
        [
            _prov("emp-1", "middleName", None, run.run_id, "H1", "MID"),
            _prov("emp-1", "skills", ["python", "sql"], run.run_id, "H1", "SKILLS"),
        ]
    )
    by_property = {r.property: r for r in store.where_from("emp-1")}
    assert by_property["middleName"].has_value and by_property["middleName"].value is None
    assert by_property["skills"].value == ["python", "sql"]


def test_lineage_on_postgresql(postgres_url: str) -> None:
    store = LineageStore(postgres_url)
    run = store.start_run("connector", "erp")
    records = [_prov(f"emp-{i}", "salary", 1000 + i, run.run_id, f"E{i}", "SAL") for i in range(2500)]
    assert store.record(records) == 2500
    store.finish_run(run.run_id, counts={"written": 2500})
    assert store.where_from("emp-7", "salary")[0].value == 1007
    assert store.fed_by("erp", "E7") == [("emp-7", "salary")]
    assert store.erase_values("emp-7") == 1
    assert store.where_from("emp-7")[0].matches(1007)
    assert len(store.records_of_run(run.run_id)) == 2500


def _graph(store: LineageStore, *run_ids: str) -> Graph:
    records = [r for run_id in run_ids for r in store.records_of_run(run_id)]
    return to_prov_o(records, [store.get_run(run_id) for run_id in run_ids])


def test_prov_o_derivation_chain_reaches_source_record_and_run(synced: tuple[LineageStore, str, str]) -> None:
    store, first, second = synced
    graph = Graph().parse(data=_graph(store, first, second).serialize(format="turtle"), format="turtle")
    rows = list(
        graph.query(
            """
        SELECT ?value ?source ?key ?field ?run ?started ?agent ?plan WHERE {
            ?entity a prov:Entity ; prov:value ?value ; lineage:property "salary" ;
                    prov:specializationOf ?twin ; prov:wasDerivedFrom ?source ; prov:wasGeneratedBy ?run ;
                    prov:qualifiedDerivation [ prov:entity ?source ; prov:hadActivity ?run ;
                                               lineage:sourceField ?field ; lineage:mappingRule ?plan ] .
            ?twin lineage:twinUid "emp-ann" .
            ?source a prov:Entity ; lineage:recordKey ?key .
            ?run a prov:Activity ; prov:used ?source ; prov:startedAtTime ?started ;
                 prov:wasAssociatedWith ?agent ; prov:qualifiedAssociation [ prov:agent ?agent ; prov:hadPlan ?plan ] .
            ?agent a prov:SoftwareAgent .
            ?plan a prov:Plan .
        } ORDER BY ?started
        """,
            initNs={"prov": PROV, "lineage": LINEAGE},
        )
    )
    assert [(r.value.toPython(), str(r.key), str(r.field)) for r in rows] == [
        (50000, "E1", "SAL"),
        (52000, "E1", "SAL"),
    ]
    assert [r.run for r in rows] == [run_iri(first), run_iri(second)]
    assert {r.source for r in rows} == {source_record_iri("erp", "employees", "E1")}
    assert rows[0].started.toPython() == T0
    members = set(graph.objects(None, PROV.hadMember))
    assert source_record_iri("erp", "employees", "E2") in members


def test_prov_o_after_erasure_has_digest_but_no_value(synced: tuple[LineageStore, str, str]) -> None:
    store, first, _ = synced
    store.erase_values("emp-ann")
    graph = _graph(store, first)
    answer = graph.query(
        """
        SELECT ?digest ?value WHERE {
            ?entity lineage:property "name" ; lineage:valueDigest ?digest ; lineage:valueErasedAt ?when .
            OPTIONAL { ?entity prov:value ?value }
        }""",
        initNs={"prov": PROV, "lineage": LINEAGE},
    )
    (row,) = list(answer)
    assert row.value is None and str(row.digest) == "sha256:" + sha256_digest("Ann Lee")
    assert (None, PROV.value, Literal("Ann Lee")) not in graph


def test_openlineage_events_follow_the_spec(synced: tuple[LineageStore, str, str]) -> None:
    store, first, _ = synced
    run = store.get_run(first)
    start, complete = to_openlineage(run, store.records_of_run(first))
    for run_event in (start, complete):
        assert set(run_event) >= {"eventType", "eventTime", "run", "job", "inputs", "outputs", "producer", "schemaURL"}
        assert (
            run_event["schemaURL"].startswith("https://openlineage.io/spec/") and "RunEvent" in run_event["schemaURL"]
        )
        assert run_event["producer"].startswith("https://")
        assert str(uuid.UUID(run_event["run"]["runId"])) == first
        assert run_event["job"] == {
            **run_event["job"],
            "namespace": "enterprise-twin",
            "name": "connector.erp-employees",
        }
        assert datetime.fromisoformat(run_event["eventTime"]).tzinfo is not None
        assert [(d["namespace"], d["name"]) for d in run_event["inputs"]] == [("erp", "employees")]
        assert [(d["namespace"], d["name"]) for d in run_event["outputs"]] == [("enterprise-twin", "twin-graph")]
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert datetime.fromisoformat(start["eventTime"]) == T0
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 3
    lineage = complete["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert lineage["salary"]["inputFields"][0] == {
        **lineage["salary"]["inputFields"][0],
        "namespace": "erp",
        "name": "employees",
        "field": "SAL",
    }
    assert set(lineage) == {"salary", "name"}
    assert complete["job"]["facets"]["jobType"]["jobType"] == "CONNECTOR_SYNC"


def test_openlineage_running_and_failed_scenario(sqlite_url: str) -> None:
    store = LineageStore(sqlite_url)
    run = store.start_run("scenario", "demand-plus-20", run_id="study-42")
    (only_start,) = to_openlineage(run)
    assert only_start["eventType"] == "START"
    assert only_start["outputs"][0]["name"] == "scenario-results/demand-plus-20"
    uuid.UUID(only_start["run"]["runId"])  # a non-UUID run id maps to a stable UUID
    failed = store.finish_run(run.run_id, "failed", error="no agents in slice")
    start, fail = to_openlineage(failed)
    assert fail["eventType"] == "FAIL" and start["run"]["runId"] == fail["run"]["runId"] == only_start["run"]["runId"]
    assert fail["run"]["facets"]["errorMessage"]["message"] == "no agents in slice"
    assert fail["job"]["facets"]["jobType"]["jobType"] == "SCENARIO_RUN"


def test_iris_escape_separators() -> None:
    assert source_record_iri("erp:prod", "hr/emp", "a b") != source_record_iri("erp", "prod:hr/emp", "a b")
    assert isinstance(run_iri("x"), URIRef)
