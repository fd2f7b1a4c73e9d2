"""Studies whose demand comes from a forecast (`demand: {forecast: SERIES}`): the champion's stored forecast sets each
product's orders, its 80 % band's bounds run as scenario variants, the study records which forecasts and model
versions it used (stored plan and lineage), a re-run reproduces it, and bad references are refused at their line."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from connectors.sample.demand import DemandShape, generate_demand_history
from governance.audit import AuditLog, Decision
from governance.identity import Subject
from governance.lineage import LineageStore, RunKind
from governance.models import ModelRegistry
from governance.policy import load_policy
from graph.store import GraphStore
from ontology.core import load_core
from simulation.errors import SpecError
from simulation.forecast.series import parse_series
from simulation.forecast.service import ForecastContext, run_forecasts
from simulation.forecast.store import ForecastStore
from simulation.results import ResultsStore
from simulation.runner import SerialExecutor
from simulation.scenario import VARIANT_HIGH, VARIANT_LOW, parse_spec, product_of
from simulation.service import run_scenario_study
from simulation.study import rerun_study

ANALYST = Subject(sub="ana", roles=frozenset({"admin"}))
HR = Subject(sub="hal", roles=frozenset({"hr"}), org_unit="ou:x")
SPEC = """\
name: forecast demand
horizon_days: 56
replications: 4
seed: 3
demand:
  forecast: demand
  product: "{key1}"
  variants: true
kpis:
  - {name: demand, label: prod0_demand, of: {uids: [prod-0]}}
  - {name: demand, label: prod1_demand, of: {uids: [prod-1]}}
scenarios:
  - name: surge
    interventions:
      - {kind: demand_shock, target: {uids: [prod-0]}, factor: 2.0, start_day: 0, end_day: 56}
"""


@pytest.fixture
def forecasts(tmp_path: Path, results_store: ResultsStore) -> ForecastContext:
    """Three years of demand of prod-0 (about 40 a day) and an unknown product, forecast by the service into the
    results' relational store."""
    generate_demand_history(
        tmp_path,
        [("prod-0", DemandShape(40.0, yearly_amplitude=0.3)), ("nope-9", DemandShape(5.0))],
        seed=2,
        years=3,
        as_of=date(2025, 6, 30),
    )
    ontology = load_core()
    policy = load_policy(ontology)
    audit = AuditLog(results_store.url)
    ctx = ForecastContext(
        ForecastStore(results_store.url), ModelRegistry(results_store.url, audit, policy), policy, audit
    )
    series = parse_series(
        f"""series:
  - name: demand
    about: Product
    freq: W
    horizon: 13
    from:
      records: {{url: "sqlite:///{tmp_path}/demand.sqlite", table: daily_demand, time: day, value: quantity,
                 group_by: series_key}}
""",
        ontology,
        "series.yaml",
    )
    outcomes = run_forecasts(series, "demand", ctx, subject=ANALYST)
    assert [o.status for o in outcomes] == ["stored"] * 4
    return ctx


def _expected(ctx: ForecastContext, product: str, key: str, days: int) -> float:
    """The forecast's units of `product` over the first `days` days (both channels), from the stored points."""
    total = 0.0
    for stored in ctx.forecasts.latest_of_groups("demand"):
        if product_of("{key1}", stored.series.split("/", 1)[1]) != product:
            continue
        per_day = np.repeat(np.asarray(stored.points[key]) / 7, 7)
        total += float(per_day[:days].sum())
    return total


def test_a_study_takes_its_demand_from_the_champions_forecast_with_lineage(
    enterprise_store: GraphStore, results_store: ResultsStore, forecasts: ForecastContext
) -> None:
    lineage = LineageStore(results_store.url)
    done = run_scenario_study(
        parse_spec(SPEC, "study.yaml"),
        enterprise_store,
        results_store,
        subject=ANALYST,
        policy=forecasts.policy,
        audit=forecasts.audit,
        lineage=lineage,
        executor=SerialExecutor(),
    )
    stored = results_store.get(done.study_id)
    by = {(s.scenario, s.kpi): s for s in stored.summaries}
    assert {s.scenario for s in stored.summaries} == {"baseline", "surge", VARIANT_LOW, VARIANT_HIGH}

    # the baseline's orders of prod-0 follow the forecast (Poisson around it), not the twin's order history
    point = _expected(forecasts, "prod-0", "mean", 56)
    assert by[("baseline", "prod0_demand")].mean == pytest.approx(point, rel=0.05)
    # prod-1 keeps its historical rate, which prod-0 shares in the twin's order history: about twice the forecast
    assert point < 0.6 * by[("baseline", "prod1_demand")].mean
    low, high = _expected(forecasts, "prod-0", "lo", 56), _expected(forecasts, "prod-0", "hi", 56)
    assert low < point < high
    assert by[(VARIANT_LOW, "prod0_demand")].mean == pytest.approx(low, rel=0.05)
    assert by[(VARIANT_HIGH, "prod0_demand")].mean == pytest.approx(high, rel=0.05)
    # a demand shock acts on top of the forecast; a product without a forecast keeps its historical demand
    assert by[("surge", "prod0_demand")].mean == pytest.approx(2 * point, rel=0.08)
    assert by[("baseline", "prod1_demand")].mean == pytest.approx(by[(VARIANT_HIGH, "prod1_demand")].mean)

    # which forecasts and model versions fed it: in the stored plan and among the lineage run's inputs
    plan = results_store.inputs(done.study_id)[1]
    champions = {
        s: forecasts.registry.champion(s).version_id  # type: ignore[union-attr]
        for s in ("demand/prod-0/direct", "demand/prod-0/distributor")
    }
    for series, version in champions.items():
        assert f'"series":"{series}"' in plan.replace(" ", "") and version in plan
    assert '"product":null' in plan.replace(" ", "")  # nope-9 is no product of the slice: left out, recorded
    run = lineage.runs(kind=RunKind.SCENARIO, name="forecast demand")[0]
    names = {ref.name for ref in run.inputs}
    assert {f"model_version/{v}" for v in champions.values()} <= names
    assert sum(n.startswith("forecast_run/") for n in names) == 2
    reads = [r for r in forecasts.audit.query(operation="forecast.read") if r.subject == "ana"]
    assert reads and reads[-1].decision == Decision.ALLOW and reads[-1].rows_returned == 4

    again = results_store.get(rerun_study(done.study_id, results_store, SerialExecutor()).study_id)
    assert again.summaries == stored.summaries


def test_bad_forecast_references_are_refused_at_the_demand_line(
    enterprise_store: GraphStore, results_store: ResultsStore, forecasts: ForecastContext
) -> None:
    def run(spec: str) -> dict[tuple[str, str], float]:
        done = run_scenario_study(
            parse_spec(spec, "study.yaml"),
            enterprise_store,
            results_store,
            subject=ANALYST,
            policy=forecasts.policy,
            audit=forecasts.audit,
            executor=SerialExecutor(),
        )
        return {(s.scenario, s.kpi): s.mean for s in results_store.get(done.study_id).summaries}

    with pytest.raises(SpecError, match=r"line 6: demand.forecast: no stored forecast of series 'missing'"):
        run(SPEC.replace("forecast: demand", "forecast: missing"))
    with pytest.raises(SpecError, match=r"demand.forecast: the study runs 120 days .* longer than the forecast"):
        run(SPEC.replace("horizon_days: 56", "horizon_days: 120").replace("end_day: 56", "end_day: 120"))
    with pytest.raises(SpecError, match=r"demand.product: no group of 'demand' names a product of the slice"):
        run(SPEC.replace('product: "{key1}"', 'product: "erp:product:{key1}"'))
    with pytest.raises(SpecError, match=r"unknown placeholder\(s\) sku"):
        run(SPEC.replace('product: "{key1}"', 'product: "{sku}"'))
    with pytest.raises(SpecError, match="demand.model_version: no model version 'v-nope'"):
        run(SPEC.replace("forecast: demand", "model_version: v-nope"))
    # a pinned model version feeds only its own series (here one sales channel of prod-0)
    direct = forecasts.registry.champion("demand/prod-0/direct")
    assert direct is not None
    pinned = run(SPEC.replace("forecast: demand", f"model_version: {direct.version_id}"))
    stored = forecasts.forecasts.latest("demand/prod-0/direct")
    expected = float(np.repeat(np.asarray(stored.points["mean"]) / 7, 7)[:56].sum())
    assert pinned[("baseline", "prod0_demand")] == pytest.approx(expected, rel=0.07)
    assert expected < 0.7 * _expected(forecasts, "prod-0", "mean", 56)


def test_reading_forecast_demand_needs_the_series_classes(forecasts: ForecastContext) -> None:
    from governance.errors import PolicyDenied
    from simulation.forecast.demand import demand_forecasts
    from simulation.scenario import DemandSpec

    with pytest.raises(PolicyDenied, match="reads Product twins"):
        demand_forecasts(DemandSpec(forecast="demand"), forecasts, subject=HR)
    denied = [r for r in forecasts.audit.query(decision=Decision.DENY) if r.subject == "hal"]
    assert denied and denied[-1].operation == "forecast.read"
    groups = demand_forecasts(DemandSpec(forecast="demand"), forecasts, subject=ANALYST)
    assert {g.series for g in groups} == {
        "demand/prod-0/direct",
        "demand/prod-0/distributor",
        "demand/nope-9/direct",
        "demand/nope-9/distributor",
    }
    assert all(g.model_version == forecasts.registry.champion(g.series).version_id for g in groups)  # type: ignore[union-attr]
