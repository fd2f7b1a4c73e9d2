"""Benchmark: the enterprise model's speed and a study of 4 scenarios x 30 replications x 365 daily steps.

Usage: python tests/benchmarks/simulation.py [--replications 30] [--workers 2] [--dask] [--optimization-only]
Builds a sample-sized enterprise (~300 people, 30 machines, 10 work centres, 50 products, 100 materials,
20 suppliers) in an embedded twin graph, reads its slice, and prints one JSON line per figure: agent-steps per second
of one replication, the study's wall time on the process pool and in one process, the speed-up, and (with --dask) the
wall time on a Dask LocalCluster; then an optimisation experiment on the same enterprise (replicated evaluations of a
365-day study per second on the process pool) and whether the known-optimum experiment of the tests finds the best
second-shift size (1) or not (0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from graph.embedded import stop_embedded  # noqa: E402
from graph.store import GraphStore  # noqa: E402
from ontology.core import load_core  # noqa: E402
from simulation.calibration import calibrate  # noqa: E402
from simulation.experiment import Memo, run_experiment  # noqa: E402
from simulation.experiment_spec import ParsedExperiment, parse_experiment  # noqa: E402
from simulation.model import EnterpriseModel  # noqa: E402
from simulation.runner import DaskExecutor, LocalExecutor, SerialExecutor, replication_seeds, run_study  # noqa: E402
from simulation.scenario import ScenarioPlan, StudyPlan, parse_spec, plan_study  # noqa: E402
from simulation.slice import EnterpriseSlice, load_slice  # noqa: E402
from tests.simulation.enterprise_graph import build_enterprise, load_enterprise  # noqa: E402
from tests.simulation.test_experiment import SPEC as KNOWN_OPTIMUM  # noqa: E402
from tests.simulation.test_experiment import synthetic  # noqa: E402

STUDY = """\
name: benchmark-4-scenarios
horizon_days: 365
replications: {replications}
seed: 1
kpis: [throughput, fill_rate, lost_sales, backlog, overtime_hours, headcount]
scenarios:
  - name: supplier outage 30d
    interventions:
      - {{kind: supplier_outage, target: {{uids: [sup-0]}}, start_day: 60, duration_days: 30}}
  - name: attrition +15% plant B
    interventions:
      - kind: workforce_change
        target: {{class: Employee, within: {{class: Site, where: [{{field: name, value: Plant B}}]}}}}
        attrition_add: 0.15
  - name: pumps demand +20%
    interventions:
      - {{kind: demand_shock, target: {{class: Product, where: [{{field: sku, op: starts_with, value: HP}}]}},
         factor: 1.2, start_day: 30}}
  - name: second shift
    interventions:
      - {{kind: capacity_change, target: {{class: WorkCenter}}, shifts: 2, start_day: 30}}
"""


EXPERIMENT = """\
name: benchmark-optimisation
horizon_days: 365
replications: {replications}
seed: 2
kpis: [lost_sales, labour_cost, {{name: fill_rate, label: fill}}]
scenarios:
  - name: staffing and shifts
    interventions:
      - kind: workforce_change
        target: {{class: Employee, within: {{class: Site, where: [{{field: name, value: Plant B}}]}}}}
        hires: ${{hires}}
      - {{kind: capacity_change, target: {{class: WorkCenter}}, shifts: ${{shifts}}, start_day: 30}}
experiment:
  kind: optimize
  variables:
    hires: {{low: 0, high: 20, integer: true}}
    shifts: {{values: [1, 2, 3]}}
  objective:
    minimize: {{lost_sales: 150, labour_cost: 1}}
  constraints:
    - {{kpi: fill, below: 0.95, max_probability: 0.2}}
  budget: {budget}
  seed: 3
"""


def optimisation_figures(
    twin: EnterpriseSlice, store_plan: StudyPlan, parsed: ParsedExperiment, memo: Memo, workers: int
) -> None:
    """Replicated evaluations per second of the optimisation on the pool, and the known-optimum check."""
    with LocalExecutor(workers) as pool:
        result = run_experiment(parsed, twin, store_plan, pool, memo=memo)
        emit(
            figure="optimization_evaluations_per_s",
            value=round((len(result.evaluations) + 1) / result.wall_seconds, 3),
            evaluations=len(result.evaluations) + 1,
            replications=len(result.seeds),
            steps=store_plan.steps,
            workers=workers,
            sampler=result.sampler,
            wall_seconds=round(result.wall_seconds, 2),
            load_avg=round(os.getloadavg()[0], 2),
        )
        known = parse_experiment(KNOWN_OPTIMUM.format(kind="optimize", budget=12, constraints=""), "known-optimum")
        small = synthetic()
        found = run_experiment(known, small, plan_study(known.study, small, None), pool)
        best = found.best_evaluation
        emit(
            figure="optimum_found",
            value=int(best is not None and best.decision == {"shift": 9}),
            best=best.decision if best else None,
            known_best={"shift": 9},
            ci=[round(best.ci_low), round(best.ci_high)] if best else None,
            evaluations=len(found.evaluations),
            load_avg=round(os.getloadavg()[0], 2),
        )


def _burn(n: int) -> int:
    """Pure-Python work for measuring how much parallelism the machine offers right now."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def machine_parallelism(workers: int, n: int = 6_000_000) -> float:
    """Speed-up of `workers` processes over one on pure-Python work (what other load leaves us)."""
    from concurrent.futures import ProcessPoolExecutor

    started = time.perf_counter()
    for _ in range(workers):
        _burn(n)
    serial = time.perf_counter() - started
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_burn, [10] * workers))
        started = time.perf_counter()
        list(pool.map(_burn, [n] * workers))
        parallel = time.perf_counter() - started
    return serial / parallel


def emit(**figures: object) -> None:
    """Print one JSON line."""
    print(json.dumps({"benchmark": "simulation", **figures}), flush=True)


def main() -> None:
    """Build the enterprise, time one model, then the study on the pool, in one process and optionally on Dask."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replications", type=int, default=30)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--dask", action="store_true", help="also time the Dask LocalCluster executor")
    parser.add_argument("--optimization-only", action="store_true", help="only the optimisation figures")
    parser.add_argument("--budget", type=int, default=8, help="decisions the optimisation evaluates")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "graph"
        store = GraphStore.open(f"falkordb+embedded://{data_dir}", load_core())
        try:
            layout = build_enterprise(
                people=300,
                work_centers=10,
                lines_per_center=2,
                machines=30,
                products=50,
                materials=100,
                suppliers=20,
                customers=25,
                history_days=180,
                dual_source_share=0.3,
            )
            load_enterprise(store, layout)
            started = time.perf_counter()
            twin = load_slice(store)
            emit(
                figure="slice_load_seconds",
                value=round(time.perf_counter() - started, 3),
                twins=len(twin.classes),
                agents=twin.agent_count,
            )
            parsed = parse_spec(STUDY.format(replications=args.replications), "benchmark")
            plan = plan_study(parsed, twin, store)
            experiment = parse_experiment(
                EXPERIMENT.format(replications=min(args.replications, 10), budget=args.budget), "benchmark"
            )
            memo: Memo = {}
            experiment_plan = plan_study(experiment.study, twin, store, memo=memo)
        finally:
            store.close()
            stop_embedded(data_dir)

    if args.optimization_only:
        optimisation_figures(twin, experiment_plan, experiment, memo, args.workers)
        return
    calibration = calibrate(twin)
    seeds = replication_seeds(0, 5)
    EnterpriseModel(calibration, ScenarioPlan("baseline"), 365, 1, seeds[0]).run()  # warm-up
    started = time.perf_counter()
    agents = 0
    for seed in seeds:
        model = EnterpriseModel(calibration, ScenarioPlan("baseline"), 365, 1, seed).run()
        agents = model.agent_total
    elapsed = time.perf_counter() - started
    emit(
        figure="agent_steps_per_second",
        value=round(agents * 365 * len(seeds) / elapsed),
        agents=agents,
        steps=365,
        seconds_per_replication=round(elapsed / len(seeds), 4),
    )

    runs = len(plan.scenarios) * plan.replications
    serial = run_study(twin, plan, SerialExecutor())
    emit(
        figure="study_wall_seconds",
        executor="serial",
        workers=1,
        value=round(serial.wall_seconds, 2),
        scenarios=len(plan.scenarios) - 1,
        replications=plan.replications,
        steps=plan.steps,
        runs=runs,
        agent_steps=serial.agent_steps,
    )
    with LocalExecutor(args.workers) as pool:
        cold = run_study(twin, plan, pool)
        emit(
            figure="study_wall_seconds",
            executor="local",
            workers=args.workers,
            pool="cold (includes starting the workers)",
            value=round(cold.wall_seconds, 2),
            goal_seconds=60,
        )
        warm = run_study(twin, plan, pool)
        emit(
            figure="study_wall_seconds",
            executor="local",
            workers=args.workers,
            pool="warm",
            value=round(warm.wall_seconds, 2),
            goal_seconds=60,
        )
    assert [r.values for r in serial.runs] == [r.values for r in cold.runs] == [r.values for r in warm.runs], (
        "executors disagree"
    )
    emit(
        figure="process_pool_speedup",
        pool="warm",
        value=round(serial.wall_seconds / warm.wall_seconds, 2),
        workers=args.workers,
        goal=1.7,
        load_average_1min=round(os.getloadavg()[0], 2),
    )
    emit(
        figure="machine_parallel_speedup",
        value=round(machine_parallelism(args.workers), 2),
        workers=args.workers,
        note="pure-Python reference: the most any pool can get on this machine right now",
    )
    emit(
        figure="process_pool_speedup",
        pool="cold",
        value=round(serial.wall_seconds / cold.wall_seconds, 2),
        workers=args.workers,
    )
    if args.dask:
        distributed = run_study(twin, plan, DaskExecutor(workers=args.workers))
        emit(
            figure="study_wall_seconds",
            executor="dask",
            workers=args.workers,
            value=round(distributed.wall_seconds, 2),
            includes="LocalCluster start and stop",
        )
    optimisation_figures(twin, experiment_plan, experiment, memo, args.workers)


if __name__ == "__main__":
    main()
