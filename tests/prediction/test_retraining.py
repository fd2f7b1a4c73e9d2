"""Retraining by itself: a real retraining runtime (threads, leases in SQLite) retrains a series on its `retrain:`
schedule — a new version when the data changed, none when they did not — and retrains a series whose drift alert
(the retrain proposal) another person approved, marking the alert retrained; self-approval is refused."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

from connectors.leases import LeaseStore
from connectors.sample.demand import DemandShape, generate_demand_history
from governance.audit import AuditLog
from governance.identity import Subject
from governance.models import ApprovalRefused, ModelRegistry
from governance.policy import load_policy
from ontology.model import Ontology
from simulation.forecast.errors import SeriesSpecError
from simulation.forecast.retraining import APPROVED, RetrainRuntime
from simulation.forecast.series import SeriesSet, parse_series
from simulation.forecast.service import ForecastContext, check_drift, run_forecasts
from simulation.forecast.store import ForecastStore

EXEC = Subject(sub="eve", roles=frozenset({"executive"}))
BOSS = Subject(sub="bo", roles=frozenset({"admin"}))
SHAPES = [("P-1", DemandShape(30.0, yearly_amplitude=0.3))]
GROUPS = ("demand/P-1/direct", "demand/P-1/distributor")


def _series(ontology: Ontology, folder: Path, retrain: str) -> SeriesSet:
    return parse_series(
        f"""series:
  - name: demand
    about: Product
    freq: W
    horizon: 13
    retrain: {retrain}
    from:
      records: {{url: "sqlite:///{folder}/demand.sqlite", table: daily_demand, time: day, value: quantity,
                 group_by: series_key}}
""",
        ontology,
        "series.yaml",
    )


@pytest.fixture
def context(tmp_path: Path, ontology: Ontology) -> ForecastContext:
    url = f"sqlite:///{tmp_path / 'twin.db'}"
    policy = load_policy(ontology)
    audit = AuditLog(url)
    return ForecastContext(ForecastStore(url), ModelRegistry(url, audit, policy), policy, audit, database_url=url)


@pytest.fixture
def runtimes(context: ForecastContext) -> Iterator[Callable[[SeriesSet], RetrainRuntime]]:
    started: list[RetrainRuntime] = []

    def start(series: SeriesSet) -> RetrainRuntime:
        assert context.database_url is not None
        runtime = RetrainRuntime(
            series, context, LeaseStore(context.database_url), holder="test-runtime", lease_seconds=3, poll_seconds=0.3
        )
        runtime.start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop(timeout=60)


def _wait(check: Callable[[], bool], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_series_is_retrained_on_its_schedule_when_its_data_changed(
    tmp_path: Path, ontology: Ontology, context: ForecastContext, runtimes: Callable[[SeriesSet], RetrainRuntime]
) -> None:
    generate_demand_history(tmp_path, SHAPES, seed=3, years=3, as_of=date(2025, 1, 6))
    runtime = runtimes(_series(ontology, tmp_path, "{every: 2s}"))
    assert runtime.current("demand").schedule == "every 2 s"
    _wait(lambda: runtime.current("demand").runs >= 1)
    first = {g: context.registry.champion(g) for g in GROUPS}
    assert all(v is not None and v.train_end == "2024-12-30" for v in first.values())

    # four more weeks of demand arrive: the next scheduled run trains new versions on them (challengers)
    generate_demand_history(tmp_path, SHAPES, seed=3, years=3, as_of=date(2025, 2, 3))
    _wait(
        lambda: len(context.registry.challengers(GROUPS[0])) >= 1 and len(context.registry.challengers(GROUPS[1])) >= 1
    )
    status = runtime.current("demand")
    assert status.failures == 0 and status.last_error is None
    for group in GROUPS:
        (challenger,) = context.registry.challengers(group)
        assert challenger.train_end == "2025-01-27" and challenger.params["retrained"] == "schedule"
        assert challenger.trained_by == f"runtime:{runtime.holder}"
        assert context.registry.champion(group) == first[group]  # serving stays with the champion until promoted
        assert context.forecasts.latest(group).model_version == first[group].version_id  # type: ignore[union-attr]

    # the data do not change: later runs register nothing more
    runs = runtime.current("demand").runs
    _wait(lambda: runtime.current("demand").runs >= runs + 2)
    assert [len(context.registry.versions(g)) for g in GROUPS] == [2, 2]
    assert runtime.current("demand").versions == () and runtime.current("demand").last_error is None
    retrains = [r for r in context.audit.query(operation="forecast.run", limit=200) if r.subject.startswith("runtime:")]
    assert len(retrains) >= 3  # (a run that read the history while the test rewrote it failed and was retried)


def test_an_approved_drift_alert_is_retrained_and_self_approval_is_refused(
    tmp_path: Path, ontology: Ontology, context: ForecastContext, runtimes: Callable[[SeriesSet], RetrainRuntime]
) -> None:
    generate_demand_history(tmp_path, SHAPES, seed=5, years=3, as_of=date(2025, 1, 6))
    series = _series(ontology, tmp_path, "off")
    run_forecasts(series, "demand", context, subject=EXEC)
    generate_demand_history(
        tmp_path, SHAPES, seed=5, years=3, as_of=date(2025, 4, 7), level_factor=1.3, shift_from=date(2025, 1, 6)
    )
    reports = check_drift(series, "demand", context, subject=EXEC)
    assert all(r.drifted and r.alert_id for r in reports)
    alert_id = reports[0].alert_id
    assert alert_id is not None
    with pytest.raises(ApprovalRefused, match=r"eve raised alert \w+ and may not approve it \(four eyes\)"):
        context.registry.approve_retrain(EXEC, alert_id)

    runtime = runtimes(series)
    assert set(runtime.schedules) == set() and runtime.current(APPROVED).held
    time.sleep(1.0)  # nothing is approved yet: nothing is retrained
    assert context.registry.challengers(reports[0].series) == []

    approved = context.registry.approve_retrain(BOSS, alert_id)
    assert approved.status == "approved" and approved.detail["approved_by"] == "bo"
    _wait(lambda: context.registry.alert(alert_id).status == "retrained")
    done = context.registry.alert(alert_id)
    (challenger,) = context.registry.challengers(reports[0].series)
    assert done.detail["versions"] == [challenger.version_id]
    assert challenger.params["retrained"] == f"approved alert {alert_id}" and challenger.train_end == "2025-03-31"
    assert context.registry.challengers(reports[1].series) == []  # the other alert was not approved
    with pytest.raises(ApprovalRefused, match="not an open retrain proposal"):
        context.registry.approve_retrain(BOSS, alert_id)
    operations = {r.operation for r in context.audit.query(limit=200)}
    assert {"model.retrain.approve", "model.retrain"} <= operations


def test_a_bad_retrain_schedule_is_refused_with_its_line(ontology: Ontology, tmp_path: Path) -> None:
    with pytest.raises(SeriesSpecError, match=r"line 6: series.0.retrain: .*'soon' is not an interval"):
        _series(ontology, tmp_path, "{every: soon}")
    with pytest.raises(SeriesSpecError, match=r"series.0.retrain: cannot be continuous; give \{every: 7d\} or a cron"):
        _series(ontology, tmp_path, "continuous")


def test_the_twin_runtime_retrains_the_series_of_data_dir_series_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.runtime import Runtime
    from api.settings import get_settings

    monkeypatch.setenv("TWIN_DATABASE_URL", f"sqlite:///{tmp_path / 'twin.db'}")
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        runtime = Runtime()
        assert runtime.retrain_runtime() is None  # no series.yaml: nothing to retrain
        (tmp_path / "series.yaml").write_text(
            (Path(__file__).resolve().parents[2] / "simulation/forecast/series/sample.yaml")
            .read_text()
            .replace("    horizon: 13\n", "    horizon: 13\n    retrain: {cron: '0 3 * * 1'}\n")
        )
        retraining = runtime.retrain_runtime(holder="h1")
        assert retraining is not None and retraining.holder == "h1"
        assert {n: s.describe() for n, s in retraining.schedules.items()} == {"sample.demand": "cron 0 3 * * 1"}
        runtime.close()
    finally:
        get_settings.cache_clear()
