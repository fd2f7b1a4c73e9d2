"""Benchmark: the enterprise model's speed and a study of 4 scenarios x 30 replications x 365 daily steps.

Usage: python tests/benchmarks/simulation.py [--replications 30] [--workers 2] [--dask]
Builds a sample-sized enterprise (~300 people, 30 machines, 10 work centres, 50 products, 100 materials,
20 suppliers) in an embedded twin graph, reads its slice, and prints one JSON line per figure: agent-steps per second
of one replication, the study's wall time on the process pool and in one process, the speed-up, and (with --dask) the
wall time on a Dask LocalCluster.
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
from simulation.model import EnterpriseModel  # noqa: E402
from simulation.runner import DaskExecutor, LocalExecutor, SerialExecutor, replication_seeds, run_study  # noqa: E402
from simulation.scenario import ScenarioPlan, parse_spec, plan_study  # noqa: E402
from simulation.slice import load_slice  # noqa: E402
from tests.simulation.enterprise_graph import build_enterprise, load_enterprise  # noqa: E402

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
        finally:
            store.close()
            stop_embedded(data_dir)

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


if __name__ == "__main__":
    main()
