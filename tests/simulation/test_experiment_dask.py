"""Experiments on a Dask LocalCluster: the same decisions asked, the same numbers, as on the serial executor.

Every batch of decisions is one study mapped over the same cluster (kept up until the executor is closed), whose
results arrive in any order; the evaluations are keyed by replication, so the seeded sampler is told the same values
and asks for the same next decisions.
"""

from __future__ import annotations

import pytest

from simulation.experiment import run_experiment
from simulation.experiment_spec import parse_experiment
from simulation.runner import DaskExecutor, SerialExecutor
from simulation.scenario import plan_study
from tests.simulation.test_experiment import SPEC, synthetic


def test_an_optimisation_on_a_dask_local_cluster_gives_the_serial_decisions_and_numbers() -> None:
    pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed")
    text = (
        SPEC.format(kind="optimize", budget=4, constraints="")
        .replace("horizon_days: 365", "horizon_days: 120")
        .replace("replications: 10", "replications: 3")
        .replace("batch: 3", "batch: 2")
    )
    parsed = parse_experiment(text, "shift.yaml")
    twin = synthetic()
    plan = plan_study(parsed.study, twin, None)
    serial = run_experiment(parsed, twin, plan, SerialExecutor())
    with DaskExecutor(workers=2) as cluster:  # one LocalCluster for every batch, stopped at the end
        distributed = run_experiment(parsed, twin, plan, cluster)
    assert distributed.executor == "dask" and serial.executor == "serial"
    assert distributed.sampler == serial.sampler == "optuna-tpe"
    assert len(distributed.evaluations) == 4 and distributed.runs == serial.runs == 5 * 3
    assert [e.decision for e in distributed.evaluations] == [e.decision for e in serial.evaluations]
    assert [e.values for e in distributed.evaluations] == [e.values for e in serial.evaluations]
    assert distributed.baseline.values == serial.baseline.values
    assert distributed.best == serial.best and distributed.frontier == serial.frontier
    assert distributed.best_vs_baseline == serial.best_vs_baseline
    assert len({e.objective for e in serial.evaluations}) > 1  # the decisions differ, so the comparison means something
