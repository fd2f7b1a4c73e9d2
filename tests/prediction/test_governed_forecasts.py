"""The forecast service and the model registry together: forecasts stored with their model version and input
digest, the policy applied to the classes a series is about, champion and challenger with approved promotion (no
self-approval, no unapproved promotion), drift (+30 % demand level) raising a retrain alert, all audited."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from connectors.sample.demand import DemandShape, generate_demand_history
from governance.audit import AuditLog, Decision
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.models import ApprovalRefused, ModelRegistry, PromotionRefused, population_stability_index
from governance.policy import Policy, load_policy
from ontology.model import Ontology
from simulation.forecast.series import SeriesSet, parse_series
from simulation.forecast.service import ForecastContext, check_drift, read_forecast, run_forecasts

ANALYST = Subject(sub="ana", roles=frozenset({"data_steward"}))
EXEC = Subject(sub="eve", roles=frozenset({"executive"}))
HR = Subject(sub="hal", roles=frozenset({"hr"}), org_unit="ou:x")
VIEWER = Subject(sub="vic", roles=frozenset({"viewer"}))
SHAPES = [("P-1", DemandShape(30.0, yearly_amplitude=0.3)), ("P-2", DemandShape(12.0, peak_day_of_year=250))]


def _series(ontology: Ontology, folder: Path) -> SeriesSet:
    text = f"""series:
  - name: demand
    about: Product
    freq: W
    horizon: 13
    from:
      records: {{url: "sqlite:///{folder}/demand.sqlite", table: daily_demand, time: day, value: quantity,
                 group_by: series_key}}
"""
    return parse_series(text, ontology, "test-series.yaml")


@pytest.fixture
def context(tmp_path: Path, ontology: Ontology) -> ForecastContext:
    url = f"sqlite:///{tmp_path / 'twin.db'}"
    policy: Policy = load_policy(ontology)
    audit = AuditLog(url)
    from simulation.forecast.store import ForecastStore

    return ForecastContext(ForecastStore(url), ModelRegistry(url, audit, policy), policy, audit, database_url=url)


def test_forecasts_are_stored_with_model_version_digest_and_lineage(
    tmp_path: Path, ontology: Ontology, context: ForecastContext
) -> None:
    generate_demand_history(tmp_path, SHAPES, seed=11, years=3)
    series = _series(ontology, tmp_path)
    outcomes = run_forecasts(series, "demand", context, subject=ANALYST)
    assert [o.status for o in outcomes] == ["stored"] * 4, [o.error for o in outcomes]
    first = outcomes[0]
    champion = context.registry.champion(first.series)
    assert champion is not None and champion.version_id == first.model_version and champion.kind == first.kind
    assert champion.trained_by == "ana" and champion.status == "champion" and champion.approved_by is None
    stored = read_forecast(first.series, context, subject=EXEC)
    assert stored.model_version == champion.version_id and stored.input_digest == champion.input_digest
    assert len(stored.input_digest) == 64 and stored.lineage["kind"] == "records"
    assert len(stored.points["mean"]) == 13 and stored.points["periods"][0] > stored.history["periods"][-1]
    bands = zip(stored.points["lo"], stored.points["mean"], stored.points["hi"], strict=True)
    assert all(lo <= m <= hi for lo, m, hi in bands)
    assert set(stored.backtests) == {"seasonal_naive", "mstl"}  # a 52-week season: MSTL
    runs = context.audit.query(operation="forecast.run")
    assert runs and runs[-1].decision == Decision.ALLOW and runs[-1].rows_returned == 4
    assert [r.operation for r in context.audit.query(operation="model.register")] == ["model.register"] * 4


def test_a_role_that_cannot_read_the_series_classes_is_refused(
    tmp_path: Path, ontology: Ontology, context: ForecastContext
) -> None:
    generate_demand_history(tmp_path, SHAPES[:1], seed=11, years=3)
    series = _series(ontology, tmp_path)
    with pytest.raises(PolicyDenied, match="reads Product twins"):
        run_forecasts(series, "demand", context, subject=HR)
    run_forecasts(series, "demand/P-1/direct", context, subject=ANALYST)
    with pytest.raises(PolicyDenied, match="reads Product twins"):
        read_forecast("demand/P-1/direct", context, subject=HR)
    with pytest.raises(PolicyDenied, match="forecast.read"):
        read_forecast("demand/P-1/direct", context, subject=VIEWER)
    denied = context.audit.query(decision=Decision.DENY)
    assert {r.subject for r in denied} == {"hal", "vic"}


def test_promotion_needs_an_approval_by_someone_else(tmp_path: Path, context: ForecastContext) -> None:
    registry = context.registry
    common = {
        "series": "s",
        "params": {},
        "train_start": "2024-01-01",
        "train_end": "2025-01-01",
        "train_points": 52,
        "input_digest": "0" * 64,
        "reference": [1.0, 2.0, 3.0],
    }
    first = registry.register(ANALYST, kind="seasonal_naive", metrics={"mase": 1.0}, **common)
    second = registry.register(ANALYST, kind="auto_theta", metrics={"mase": 0.7}, **common)
    assert (first.status, second.status) == ("champion", "challenger")
    with pytest.raises(PromotionRefused, match="not approved"):
        registry.promote(ANALYST, second.version_id)
    with pytest.raises(PolicyDenied, match="may not model.approve"):
        registry.approve(ANALYST, second.version_id)  # a data steward holds no `model.approve`
    executive_trained = registry.register(EXEC, kind="auto_ets", metrics={"mase": 0.8}, **common)
    with pytest.raises(ApprovalRefused, match="eve trained version"):
        registry.approve(EXEC, executive_trained.version_id)
    approved = registry.approve(EXEC, second.version_id)
    assert approved.approved_by == "eve" and approved.approved_at is not None
    promoted = registry.promote(ANALYST, second.version_id)
    assert promoted.status == "champion" and registry.get(first.version_id).status == "retired"
    assert registry.champion("s") == promoted
    ops = [(r.operation, r.decision) for r in context.audit.query(limit=50) if r.operation.startswith("model.")]
    assert ("model.promote", Decision.DENY) in ops and ("model.approve", Decision.DENY) in ops
    assert ("model.promote", Decision.ALLOW) in ops and ("model.approve", Decision.ALLOW) in ops


def test_analyst_self_approval_is_refused_even_with_the_right(context: ForecastContext) -> None:
    boss = Subject(sub="bo", roles=frozenset({"admin"}))
    version = context.registry.register(
        boss,
        series="t",
        kind="auto_ets",
        params={},
        train_start="a",
        train_end="b",
        train_points=3,
        input_digest="1" * 64,
        metrics={},
        reference=[1.0],
    )
    with pytest.raises(ApprovalRefused, match="four eyes"):
        context.registry.approve(boss, version.version_id)


def test_a_30_percent_level_shift_raises_a_retrain_alert(
    tmp_path: Path, ontology: Ontology, context: ForecastContext
) -> None:
    shapes = SHAPES[:1]
    generate_demand_history(tmp_path, shapes, seed=5, years=3, as_of=date(2025, 1, 6))
    series = _series(ontology, tmp_path)
    run_forecasts(series, "demand", context, subject=ANALYST)
    # the same demand goes on for 13 weeks (no drift), then its level rises by 30 % for 13 weeks
    generate_demand_history(tmp_path, shapes, seed=5, years=3, as_of=date(2025, 4, 7))
    calm = check_drift(series, "demand", context, subject=ANALYST)
    assert calm and not any(r.drifted for r in calm), [r.reasons for r in calm]
    generate_demand_history(
        tmp_path, shapes, seed=5, years=3, as_of=date(2025, 4, 7), level_factor=1.3, shift_from=date(2025, 1, 6)
    )
    reports = check_drift(series, "demand", context, subject=ANALYST)
    assert reports and all(r.drifted and r.alert_id for r in reports)
    assert any("accuracy decay" in reason for r in reports for reason in r.reasons)
    alerts = context.registry.alerts("demand/P-1/direct")
    assert len(alerts) == 1 and alerts[0].kind == "retrain" and alerts[0].status == "open"
    again = check_drift(series, "demand", context, subject=ANALYST)
    assert again[0].alert_id == reports[0].alert_id  # one open alert per series
    assert context.audit.query(operation="model.drift")


def test_population_stability_index() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(100, 10, 2000)
    assert population_stability_index(base, rng.normal(100, 10, 500)) < 0.05
    assert population_stability_index(base, rng.normal(130, 10, 500)) > 1.0
