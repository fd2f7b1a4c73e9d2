"""The lineage export service: PROV-O and OpenLineage exports of runs, governed by the policy and audited."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from rdflib import Graph, URIRef
from rdflib.namespace import PROV

from governance.audit import AuditLog
from governance.canonical import sha256_digest
from governance.errors import LineageError, PolicyDenied, RunNotFound
from governance.identity import Subject
from governance.lineage import DatasetRef, LineageStore, ProvenanceRecord
from governance.lineage_export import LineageFormat, export_lineage
from governance.policy import load_policy
from ontology.core import load_core

T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
ADMIN = Subject(sub="ada", roles=frozenset({"admin"}))
COMPLIANCE = Subject(sub="cleo", roles=frozenset({"compliance"}))
VIEWER = Subject(sub="vic", roles=frozenset({"viewer"}))


@pytest.fixture
def recorded(store_url: str) -> tuple[LineageStore, AuditLog, str, str]:
    """Two connector runs over employees, on SQLite and on PostgreSQL."""
    lineage, audit = LineageStore(store_url), AuditLog(store_url)
    run_ids = []
    for hour, salary in ((0, 50000), (1, 52000)):
        run = lineage.start_run(
            "connector", "erp-employees", inputs=[DatasetRef("erp", "employees")], started_at=T0 + timedelta(hours=hour)
        )
        lineage.record(
            [
                ProvenanceRecord.of(
                    "emp-ann",
                    prop,
                    value,
                    source_system="erp",
                    source_object="employees",
                    record_key="E1",
                    run_id=run.run_id,
                    source_field=field,
                    mapping_rule=f"Employee.{prop}",
                    recorded_at=T0 + timedelta(hours=hour, seconds=1),
                )
                for prop, value, field in (("salary", salary, "SAL"), ("email", "ann@example.test", "MAIL"))
            ]
        )
        lineage.finish_run(run.run_id, counts={"read": 1, "written": 2}, ended_at=T0 + timedelta(hours=hour, minutes=1))
        run_ids.append(run.run_id)
    return lineage, audit, run_ids[0], run_ids[1]


def _export(
    recorded: tuple[LineageStore, AuditLog, str, str], subject: Subject, fmt: str, *run_ids: str, latest: int = 1
):
    lineage, audit, _, _ = recorded
    return export_lineage(lineage, audit, load_policy(load_core()), subject, fmt, tuple(run_ids), latest=latest)


def test_prov_o_export_uses_only_prov_o_terms_and_carries_values_for_admin(recorded) -> None:
    _, audit, first, second = recorded
    result = _export(recorded, ADMIN, "prov-o", first, second)
    assert (result.run_ids, result.records, result.values_included) == ((first, second), 4, True)
    graph = Graph().parse(data=result.text, format="turtle")
    prov_terms = {
        term for triple in graph for term in triple if isinstance(term, URIRef) and str(term).startswith(str(PROV))
    }
    assert prov_terms and all(term in PROV for term in prov_terms), prov_terms - {t for t in prov_terms if t in PROV}
    assert {PROV.Activity, PROV.Entity, PROV.wasGeneratedBy, PROV.wasDerivedFrom, PROV.used} <= prov_terms
    values = {v.toPython() for v in graph.objects(None, PROV.value)}
    assert values == {50000, 52000, "ann@example.test"}
    (record,) = [r for r in audit.query(limit=10) if r.operation == "lineage.export"]
    assert (record.subject, str(record.decision), record.rows_returned) == ("ada", "allow", 4)


def test_compliance_gets_the_structure_but_neither_values_nor_digests(recorded) -> None:
    _, _, first, _ = recorded
    result = _export(recorded, COMPLIANCE, "prov-o", first)
    assert not result.values_included
    assert "ann@example.test" not in result.text and sha256_digest("ann@example.test") not in result.text
    assert sha256_digest("ann@example.test")[:32] not in result.text  # not in the value IRIs either
    graph = Graph().parse(data=result.text, format="turtle")
    assert not list(graph.objects(None, PROV.value))
    derived = {str(o) for o in graph.objects(None, PROV.wasDerivedFrom)}
    assert derived == {"urn:enterprise-twin:source:erp:employees:E1"}


def test_openlineage_export_rebuilds_as_spec_models(recorded) -> None:
    _, _, first, second = recorded
    result = _export(recorded, COMPLIANCE, "openlineage", latest=2)
    events = [json.loads(line) for line in result.text.splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE", "START", "COMPLETE"]
    for event in events:  # the library's models validate eventTime, producer, schemaURL and the UUID run id
        rebuilt = RunEvent(
            eventType=RunState(event["eventType"]),
            eventTime=event["eventTime"],
            producer=event["producer"],
            run=Run(runId=event["run"]["runId"]),
            job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
            inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in event["inputs"]],
            outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in event["outputs"]],
        )
        assert rebuilt.schemaURL == event["schemaURL"]
    assert {str(uuid.UUID(e["run"]["runId"])) for e in events} == {first, second}
    fields = events[1]["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert fields["email"]["inputFields"][0]["field"] == "MAIL"


def test_refusals_are_clear_and_denials_audited(recorded) -> None:
    _, audit, _, _ = recorded
    with pytest.raises(PolicyDenied, match="vic may not export lineage"):
        _export(recorded, VIEWER, "prov-o")
    assert [(r.subject, str(r.decision)) for r in audit.query(limit=10) if r.operation == "lineage.export"] == [
        ("vic", "deny")
    ]
    with pytest.raises(LineageError, match="unknown lineage export format 'csv'"):
        _export(recorded, ADMIN, "csv")
    with pytest.raises(RunNotFound, match="no-such-run"):
        _export(recorded, ADMIN, LineageFormat.PROV_O, "no-such-run")
    with pytest.raises(LineageError, match="1 to 1000 runs"):
        _export(recorded, ADMIN, "prov-o", latest=0)
