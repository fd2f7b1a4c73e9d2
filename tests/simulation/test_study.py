"""Studies end to end: stored with everything needed to reproduce them, recorded in lineage, graph untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from governance.lineage import LineageStore, RunKind, RunStatus
from graph.store import GraphStore
from simulation.charts import study_charts
from simulation.results import ResultsStore
from simulation.runner import DaskExecutor, LocalExecutor, SerialExecutor, replication_seeds, run_study
from simulation.scenario import parse_spec, plan_study
from simulation.slice import load_slice
from simulation.statistics import _t_quantile_expansion, t_quantile
from simulation.study import conduct_study, rerun_study

SPEC = """\
name: small study
horizon_days: 90
replications: 4
seed: 42
kpis:
  - throughput
  - {name: fill_rate, threshold_below: 0.99}
  - {name: throughput, label: line0_throughput, of: {uids: [proc-0]}}
  - lost_sales
scenarios:
  - name: outage
    interventions:
      - kind: supplier_outage
        target: {uids: [sup-0]}
        start_day: 10
        duration_days: 40
  - name: more capacity
    interventions:
      - kind: capacity_change
        target: {class: WorkCenter}
        factor: 1.5
        start_day: 5
        end_day: 80
"""


def _fingerprint(store: GraphStore) -> tuple[object, str]:
    """Graph statistics and a hash of every twin's and link's properties."""
    nodes = store.query("MATCH (n:Twin) RETURN n.uid, properties(n) ORDER BY n.uid")
    links = store.query(
        "MATCH (a:Twin)-[r]->(b:Twin) RETURN a.uid, type(r), b.uid, properties(r) ORDER BY a.uid, type(r), b.uid"
    )
    digest = hashlib.sha256(json.dumps([nodes, links], sort_keys=True, default=str).encode()).hexdigest()
    return store.stats(), digest


def test_study_is_stored_reproducible_recorded_and_leaves_the_graph_alone(
    enterprise_store: GraphStore, results_store: ResultsStore, tmp_path: Path
) -> None:
    """Run -> stored with spec, version, twin time, seeds; rerun -> the same numbers; lineage run; graph unchanged."""
    before = _fingerprint(enterprise_store)
    lineage = LineageStore(results_store.url)
    done = conduct_study(
        parse_spec(SPEC, "study.yaml"), enterprise_store, results_store, executor=SerialExecutor(), lineage=lineage
    )
    assert _fingerprint(enterprise_store) == before

    stored = results_store.get(done.study_id)
    assert stored.record.model_version.startswith("enterprise-ops/")
    assert stored.record.seeds == replication_seeds(42, 4)
    assert stored.record.spec == SPEC and stored.record.twin_state_time
    assert len(stored.runs) == 4 * 3
    outage = stored.summaries[[s.kpi for s in stored.summaries].index("line0_throughput") + 1]
    assert outage.scenario == "outage" and outage.diff_high is not None and outage.diff_high < 0
    fill = next(s for s in stored.summaries if s.kpi == "fill_rate" and s.scenario == "outage")
    assert fill.p_breach is not None and 0 <= fill.p_breach <= 1
    assert all(s.diff_mean is None for s in stored.summaries if s.scenario == "baseline")

    runs = lineage.runs(kind=RunKind.SCENARIO, name="small study")
    assert runs and runs[0].status is RunStatus.COMPLETED and runs[0].counts["runs"] == 12
    assert stored.record.run_id == runs[0].run_id

    again = rerun_study(done.study_id, results_store, SerialExecutor())
    repeated = results_store.get(again.study_id)
    assert [(r.scenario, r.replication, r.values, r.series) for r in repeated.runs] == [
        (r.scenario, r.replication, r.values, r.series) for r in stored.runs
    ]
    assert repeated.summaries == stored.summaries
    assert results_store.summaries_of([done.study_id, again.study_id, "none"]) == {
        done.study_id: stored.summaries,
        again.study_id: stored.summaries,
        "none": [],
    }

    written = study_charts(stored.runs, stored.summaries, tmp_path / "charts")
    names = {p.name for p in written}
    assert {"kpi_throughput.png", "kpi_throughput.svg", "scenario_comparison.png", "scenario_comparison.svg"} <= names
    assert all(p.stat().st_size > 1000 for p in written)


def test_process_pool_and_dask_give_the_serial_numbers(enterprise_store: GraphStore) -> None:
    """The same seeds give the same results on every executor."""
    parsed = parse_spec(SPEC.replace("replications: 4", "replications: 3"), "study.yaml")
    twin = load_slice(enterprise_store)
    plan = plan_study(parsed, twin, enterprise_store)
    serial = run_study(twin, plan, SerialExecutor())
    with LocalExecutor(workers=2) as pool:
        pooled = run_study(twin, plan, pool)
        warm = run_study(twin, plan, pool)
    assert [r.values for r in pooled.runs] == [r.values for r in serial.runs]
    assert [r.series for r in warm.runs] == [r.series for r in serial.runs]
    pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed")
    with DaskExecutor(workers=2) as cluster:
        distributed = run_study(twin, plan, cluster)
    assert [r.values for r in distributed.runs] == [r.values for r in serial.runs]
    assert distributed.summaries == serial.summaries


def test_t_quantiles_match_scipy_and_the_fallback_is_close() -> None:
    """95 % two-sided t quantiles: the known table values, and the fallback agrees."""
    assert t_quantile(0.975, 9) == pytest.approx(2.2622, abs=1e-4)
    assert t_quantile(0.975, 29) == pytest.approx(2.0452, abs=1e-4)
    for df in (1, 2, 3, 5, 10, 29, 100):
        assert _t_quantile_expansion(0.975, df) == pytest.approx(t_quantile(0.975, df), abs=1e-6)


def test_paired_difference_interval_is_narrower_than_the_unpaired_one(enterprise_store: GraphStore) -> None:
    """Common random numbers: the spread of paired differences is far below the spread of the scenario itself."""
    parsed = parse_spec(SPEC.replace("replications: 4", "replications: 6"), "study.yaml")
    twin = load_slice(enterprise_store)
    result = run_study(twin, plan_study(parsed, twin, enterprise_store), SerialExecutor())
    s = result.summary("more capacity", "lost_sales")
    paired = (s.diff_high or 0) - (s.diff_low or 0)
    base = result.values("baseline", "lost_sales")
    scen = result.values("more capacity", "lost_sales")
    assert np.std(scen - base) <= np.std(scen) + 1e-9
    assert paired >= 0
