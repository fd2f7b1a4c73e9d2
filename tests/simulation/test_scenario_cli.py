"""`twin scenario run/list/show/compare/rerun` against the embedded twin graph and a SQLite results store."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.app import app
from api.settings import get_settings
from governance.audit import AuditLog
from graph.store import GraphStore

runner = CliRunner()


@pytest.fixture
def twin_env(enterprise_store: GraphStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings pointing the CLI at the test graph and a fresh results database."""
    monkeypatch.setenv("TWIN_GRAPH_URL", enterprise_store.url)
    monkeypatch.setenv("TWIN_DATABASE_URL", f"sqlite:///{tmp_path / 'twin.db'}")
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_run_show_list_compare_and_rerun(twin_env: Path, enterprise_store: GraphStore) -> None:
    """A bundled study runs, is listed, shown, exported, charted, compared and re-run with identical numbers."""
    result = runner.invoke(
        app,
        [
            "scenario",
            "run",
            "bundled:demand_surge_pumps",
            "--json",
            "--replications",
            "3",
            "--executor",
            "serial",
            "--csv",
            str(twin_env / "s.csv"),
            "--charts",
            str(twin_env / "charts"),
        ],
    )
    assert result.exit_code == 0, result.output
    study = json.loads(result.output.strip().splitlines()[-1])
    assert study["replications"] == 3 and study["name"] == "demand-surge-pumps"
    demand = next(s for s in study["summaries"] if s["kpi"] == "pump_demand" and s["scenario"] == "pumps +20%")
    assert demand["diff_low"] > 0  # +20 % demand for pumps: more pump orders, with a CI above zero
    rows = list(csv.DictReader((twin_env / "s.csv").open()))
    assert {r["kpi"] for r in rows} >= {"pump_demand", "pump_fill_rate", "throughput"}
    assert (twin_env / "charts" / "scenario_comparison.svg").stat().st_size > 1000
    assert enterprise_store.stats().twins > 0  # the CLI closing its client left the shared server up

    listed = runner.invoke(app, ["scenario", "list", "--json"])
    assert study["study_id"] in listed.output
    shown = runner.invoke(app, ["scenario", "show", study["study_id"]])
    assert shown.exit_code == 0 and study["study_id"] in shown.output and "95 % CI" in shown.output
    rerun = runner.invoke(app, ["scenario", "rerun", study["study_id"], "--executor", "serial", "--json"])
    assert rerun.exit_code == 0, rerun.output
    again = json.loads(rerun.output.strip().splitlines()[-1])
    assert again["summaries"] == study["summaries"]
    compared = runner.invoke(app, ["scenario", "compare", study["study_id"], again["study_id"], "--json"])
    assert [s["summaries"] for s in json.loads(compared.output)] == [study["summaries"], study["summaries"]]
    runs = AuditLog(f"sqlite:///{twin_env / 'twin.db'}").query(operation="scenario.run", limit=10)
    assert [(r.subject.startswith("cli:"), str(r.decision), json.loads(r.detail)["study_id"]) for r in runs] == [
        (True, "allow", study["study_id"]),
        (True, "allow", again["study_id"]),
    ]


def test_bad_spec_and_unknown_study_fail_cleanly(twin_env: Path) -> None:
    """Errors are one clear message and exit code 1, not a traceback."""
    bad = twin_env / "bad.yaml"
    bad.write_text(
        "name: x\nhorizon_days: 30\nkpis: [troughput]\nscenarios:\n  - name: s\n"
        "    interventions:\n      - {kind: supplier_outage, target: {uids: [sup-0]}, start_day: 40}\n"
    )
    result = runner.invoke(app, ["scenario", "run", str(bad)])
    assert result.exit_code == 1
    assert "line 3" in result.output and "troughput" in result.output
    bad.write_text(bad.read_text().replace("troughput", "throughput"))
    result = runner.invoke(app, ["scenario", "run", str(bad)])
    assert result.exit_code == 1 and "line 7" in result.output and "outside the" in result.output
    missing = runner.invoke(app, ["scenario", "show", "nope"])
    assert missing.exit_code == 1 and "no stored study" in missing.output
    listed = runner.invoke(app, ["scenario", "list", "--bundled"])
    assert "bundled:supplier_outage_30d" in listed.output
