"""`twin scenario optimize`: an experiment on the test enterprise is stored, audited, re-run with the same numbers;
bad specs and twins the caller may not read are refused at their line with nothing stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.app import app
from api.cli.scenario import BUNDLED_EXPERIMENTS
from api.settings import get_settings
from governance.audit import AuditLog
from graph.model import ReadScope
from graph.store import GraphStore
from simulation.errors import SpecError
from simulation.experiment_spec import parse_experiment
from simulation.results import ResultsStore
from simulation.runner import SerialExecutor
from simulation.scenario import plan_study
from simulation.slice import load_slice
from simulation.study import conduct_experiment, experiment_result

runner = CliRunner()

SPEC = """\
name: extra people on line 0
horizon_days: 60
replications: 2
seed: 4
kpis: [lost_sales, labour_cost, {name: fill_rate, label: fill}]
scenarios:
  - name: hires
    interventions:
      - kind: workforce_change
        target: {class: Employee, within: ou-team-0}
        hires: ${people}
      - {kind: supplier_outage, target: {uids: [sup-0]}, start_day: 10, duration_days: ${outage}}
experiment:
  kind: optimize
  variables:
    people: {low: 0, high: 6, integer: true}
    outage: {values: [5, 20]}
  objective:
    minimize: {lost_sales: 100, labour_cost: 1}
  constraints:
    - {kpi: fill, below: 0.5, max_probability: 0.5}
  budget: 4
  batch: 2
"""


@pytest.fixture
def twin_env(enterprise_store: GraphStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings pointing the CLI at the test graph and a fresh results database."""
    monkeypatch.setenv("TWIN_GRAPH_URL", enterprise_store.url)
    monkeypatch.setenv("TWIN_DATABASE_URL", f"sqlite:///{tmp_path / 'twin.db'}")
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_optimize_stores_audits_charts_and_reruns_identically(twin_env: Path) -> None:
    """An optimisation runs from the CLI, is stored with its best decision, audited, charted, and re-run exactly."""
    spec = twin_env / "exp.yaml"
    spec.write_text(SPEC)
    charts = twin_env / "charts"
    result = runner.invoke(
        app, ["scenario", "optimize", str(spec), "--json", "--executor", "serial", "--charts", str(charts)]
    )
    assert result.exit_code == 0, result.output
    done = json.loads(result.output.strip().splitlines()[-1])
    assert done["sampler"] == "optuna-tpe" and len(done["evaluations"]) == 4 and done["runs"] == 5 * 2
    assert done["best_decision"] is not None and set(done["best_decision"]) == {"people", "outage"}
    assert (charts / "objective_vs_evaluations.svg").stat().st_size > 1000
    stored = ResultsStore(f"sqlite:///{twin_env / 'twin.db'}")
    record = stored.experiment(done["experiment_id"])
    assert record.spec == SPEC and record.kind == "optimize" and record.evaluations == 4
    assert experiment_result(record.result).best == done["best"]
    rerun = runner.invoke(
        app, ["scenario", "optimize", "--rerun", done["experiment_id"], "--executor", "serial", "--json"]
    )
    assert rerun.exit_code == 0, rerun.output
    again = json.loads(rerun.output.strip().splitlines()[-1])
    assert again["experiment_id"] != done["experiment_id"]
    assert [e["values"] for e in again["evaluations"]] == [e["values"] for e in done["evaluations"]]
    assert again["best_decision"] == done["best_decision"]
    text = runner.invoke(app, ["scenario", "optimize", "--rerun", done["experiment_id"], "--executor", "serial"])
    assert text.exit_code == 0 and "best:" in text.output and "paired" in text.output
    records = AuditLog(f"sqlite:///{twin_env / 'twin.db'}").query(operation="scenario.experiment", limit=10)
    assert [json.loads(r.detail)["status"] for r in records] == ["completed"] * 3
    assert json.loads(records[0].detail)["experiment_id"] == done["experiment_id"]
    stored.engine.dispose()


def test_bad_experiments_fail_at_their_line_and_store_nothing(twin_env: Path) -> None:
    """Unknown variable, empty bounds, an infeasible constraint: exit 1 naming the line, no experiment stored."""
    spec = twin_env / "bad.yaml"
    for change, expected in (
        (("${outage}", "${outages}"), "line 12: unknown decision variable ${outages}"),
        (("{low: 0, high: 6, integer: true}", "{low: 6, high: 0}"), "line 16: experiment.variables.people: empty"),
        (("below: 0.5, max_probability: 0.5", "below: 1.01, max_probability: 0"), "line 21: experiment.constraints.0"),
    ):
        spec.write_text(SPEC.replace(*change))
        result = runner.invoke(app, ["scenario", "optimize", str(spec), "--executor", "serial"])
        assert result.exit_code == 1, result.output
        assert expected in " ".join(result.output.split()), result.output
    stored = ResultsStore(f"sqlite:///{twin_env / 'twin.db'}")
    assert stored.experiments() == []
    stored.engine.dispose()


def test_an_intervention_naming_twins_the_caller_may_not_read_is_refused_at_its_line(
    enterprise_store: GraphStore, results_store: ResultsStore
) -> None:
    """Suppliers outside the caller's scope: the outage's uid is unknown to them, at its line; nothing stored."""
    scope = ReadScope(
        readable_classes=frozenset(
            {"Employee", "Machine", "WorkCenter", "Process", "Material", "Product", "Customer", "SalesOrder", "OrgUnit"}
        )
    )
    with pytest.raises(SpecError, match=r"line 12: scenarios\.0\.interventions\.1\.target\.uids: unknown twin uid"):
        conduct_experiment(
            parse_experiment(SPEC, "exp.yaml"), enterprise_store, results_store, executor=SerialExecutor(), scope=scope
        )
    assert results_store.experiments() == []


@pytest.mark.parametrize("path", sorted(BUNDLED_EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_bundled_experiments_are_valid_and_resolve_on_the_test_enterprise(
    path: Path, enterprise_store: GraphStore
) -> None:
    """Every bundled experiment parses, and its study resolves its targets on the test enterprise."""
    parsed = parse_experiment(path.read_text(), str(path))
    plan = plan_study(parsed.study, load_slice(enterprise_store), enterprise_store)
    assert parsed.block.kind == "optimize" and plan.steps == 365 and len(parsed.block.variables) >= 1
