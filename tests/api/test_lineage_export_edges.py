"""`twin lineage export` and GET /operations/lineage/export: both edges call the one audited export service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rdflib import Graph
from rdflib.namespace import PROV
from typer.testing import CliRunner

from api.cli.app import app
from api.settings import get_settings
from governance.audit import AuditLog
from governance.lineage import LineageStore, ProvenanceRecord
from tests.api.conftest import ApiHarness


def _record_run(lineage: LineageStore, uid: str, email: str) -> str:
    run = lineage.start_run("connector", "hr-export-test")
    lineage.record(
        [
            ProvenanceRecord.of(
                uid,
                "email",
                email,
                source_system="hr",
                source_object="employees",
                record_key=uid,
                run_id=run.run_id,
                source_field="work_email",
                mapping_rule="hr.yaml#employees.email",
            )
        ]
    )
    lineage.finish_run(run.run_id, counts={"read": 1, "written": 1})
    return run.run_id


def test_rest_export_is_governed_and_omits_values_below_admin(api: ApiHarness) -> None:
    run_id = _record_run(api.runtime.lineage, "emp-03", "person3@example.test")
    url = f"/operations/lineage/export?format=prov-o&run={run_id}"
    compliance = api.client.get(url, headers={"Authorization": f"Bearer {api.token('compliance')}"})
    assert compliance.status_code == 200 and compliance.headers["content-type"].startswith("text/turtle")
    assert compliance.headers["X-Lineage-Values"] == "omitted" and "person3@example.test" not in compliance.text
    graph = Graph().parse(data=compliance.text, format="turtle")
    assert len(list(graph.subjects(PROV.wasGeneratedBy, None))) >= 1
    admin = api.client.get(url, headers={"Authorization": f"Bearer {api.token('admin')}"})
    assert admin.status_code == 200 and "person3@example.test" in admin.text
    ol = api.client.get(
        f"/operations/lineage/export?format=openlineage&run={run_id}",
        headers={"Authorization": f"Bearer {api.token('compliance')}"},
    )
    assert [json.loads(line)["eventType"] for line in ol.text.splitlines()] == ["START", "COMPLETE"]
    assert api.client.get(url, headers={"Authorization": f"Bearer {api.token('viewer')}"}).status_code == 403
    assert api.client.get(url).status_code == 401
    missing = api.client.get(
        "/operations/lineage/export?format=prov-o&run=nope", headers={"Authorization": f"Bearer {api.token('admin')}"}
    )
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert (
        api.client.get(
            f"/operations/lineage/export?format=csv&run={run_id}",
            headers={"Authorization": f"Bearer {api.token('admin')}"},
        ).status_code
        == 422
    )
    exports = [(r.subject, str(r.decision)) for r in api.runtime.audit.query(operation="lineage.export", limit=1000)]
    assert ("test-compliance", "allow") in exports and ("test-viewer", "deny") in exports


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "twin"
    data.mkdir()
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


def test_cli_export_and_show_share_the_lineage_command(data_dir: Path) -> None:
    url = f"sqlite:///{data_dir / 'twin.db'}"
    run_id = _record_run(LineageStore(url), "hr:employee:E1", "łukasz@example.test")
    out = data_dir / "lineage.ttl"
    runner = CliRunner()
    exported = runner.invoke(app, ["lineage", "export", "--format", "prov-o", "--run", run_id, "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    assert "łukasz@example.test" in out.read_text()  # the local operator is admin
    assert [r.operation for r in AuditLog(url).query(limit=10)] == ["lineage.export"]
    shown = runner.invoke(app, ["lineage", "hr:employee:E1", "email", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output.splitlines()[0])["source_field"] == "work_email"
    unknown = runner.invoke(app, ["lineage", "export", "--format", "prov-o", "--run", "nope"])
    assert unknown.exit_code == 1 and "'nope' does not exist" in unknown.output
