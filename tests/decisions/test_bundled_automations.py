"""The sample enterprise's bundled automations as `twin demo` installs them: they load against the core ontology and
the default policy, and over the demo's synced sample each one does what it says — a material under its reorder
point gets an ERP purchase order proposal; a machine running hot a maintenance proposal; a supplier marked at risk
runs the supplier-outage study automatically and alerts the executive with its result; a KPI under target raises an
alert."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.cli.demo_run import SAMPLE_AUTOMATIONS, install_sample_automations, run_demo
from api.runtime import Runtime
from connectors.telemetry import Reading, TelemetryStore
from governance.identity import Subject
from graph.embedded import stop_embedded
from graph.model import Twin
from tests.decisions.conftest import settings_for

EXECUTIVE = Subject(sub="eve", roles=frozenset({"executive"}))


@pytest.fixture
def demo_twin(tmp_path: Path) -> Iterator[Runtime]:
    data_dir = tmp_path / "demo"
    runtime = Runtime(settings=settings_for(data_dir))
    try:
        result = run_demo(runtime, "tiny")
        assert result.automations and (data_dir / "automations.yaml").read_text() == SAMPLE_AUTOMATIONS.read_text()
        yield runtime
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")


def test_an_existing_automations_file_is_kept(tmp_path: Path) -> None:
    (tmp_path / "automations.yaml").write_text("automations: {}\n")
    assert install_sample_automations(tmp_path) is False
    assert (tmp_path / "automations.yaml").read_text() == "automations: {}\n"


def test_the_bundled_automations_run_over_the_demo(demo_twin: Runtime) -> None:
    runtime = demo_twin
    material, supplier = runtime.store.query(
        "MATCH (s:Supplier)-[:supplies]->(m:Material) RETURN m.uid, s.uid ORDER BY m.uid LIMIT 1"
    )[0]
    machine = runtime.store.query("MATCH (m:Machine) RETURN m.uid ORDER BY m.uid LIMIT 1")[0][0]
    telemetry = TelemetryStore(runtime.settings.resolved_database_url)
    with telemetry.engine.begin() as conn:
        now = datetime.now(UTC)
        telemetry.append(
            conn, [Reading(machine, "temperature_c", (now - timedelta(minutes=2)).isoformat(), 97.5)], "test"
        )
    decisions = runtime.decision_runtime(holder="demo-test")
    assert decisions is not None
    decisions.start()
    decisions.stop()  # driven step by step (its first turn may have run the machine schedule already)
    assert sorted(r.name for r in decisions.registry.current.automations) == [
        "kpi-breach",
        "machine-maintenance",
        "reorder-materials",
        "supplier-at-risk",
    ]
    runtime.store.upsert_twins(
        [
            Twin(material, "Material", {"stockLevel": 1.0}),
            Twin(supplier, "Supplier", {"reliability": 0.2}),
            Twin("kpi:otd", "KPI", {"name": "On-time delivery", "value": 0.81, "target": 0.95}),
        ],
        actor="test",
        source="test",
    )
    decisions.step()  # evaluates the change feed and the machine schedule; the study is approved automatically
    decisions.step()  # executes it
    assert decisions.status.errors == []
    service, operator = runtime.decisions, runtime.operator()
    proposals = {p.automation: p for p in service.list_proposals(operator)}
    assert proposals["reorder-materials"].action_type == "erp.purchase_order"
    assert proposals["reorder-materials"].parameters["material"] == material
    assert proposals["machine-maintenance"].parameters == {"uid": machine, "properties": {"status": "maintenance"}}
    study = proposals["supplier-at-risk"]
    assert study.state == "executed", study.result
    assert study.approved_by == ("automation:supplier-at-risk",)
    attached = json.loads(study.result or "{}")
    assert attached["name"] == f"supplier-outage-30d (decision {study.id})" and attached["kpis"]

    # the executive sees the alerts: the supplier at risk (with the study's proposal beside it) and the KPI breach
    alerts = {a.automation: a for a in service.list_alerts(EXECUTIVE)}
    assert alerts["supplier-at-risk"].severity == "critical" and alerts["supplier-at-risk"].twin_uid == supplier
    assert alerts["kpi-breach"].message == "KPI under target: On-time delivery (0.81 < 0.95)"
    assert alerts["machine-maintenance"].evidence.telemetry["temperature"]["max"] == 97.5
    assert [p.automation for p in service.list_proposals(EXECUTIVE) if p.state == "executed"] == ["supplier-at-risk"]
