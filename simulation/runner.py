"""The experiment runner: baseline and scenarios x N replications with common random numbers, on an executor.

Replication r gets one seed (from `numpy.random.SeedSequence(study_seed).spawn`), and the baseline and every scenario
of replication r run with that same seed; since every agent draws from its own stream keyed by its twin's uid, the
runs differ only where the interventions act, and differences to baseline are paired. Executors: in-process
(`serial`), a local process pool (`local`, the default) and Dask distributed (`dask`, a LocalCluster unless given a
scheduler address).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from simulation.calibration import Calibration, calibrate
from simulation.errors import ExecutorUnavailable
from simulation.kpis import measure
from simulation.model import EnterpriseModel
from simulation.scenario import StudyPlan
from simulation.slice import EnterpriseSlice
from simulation.statistics import KpiSummary, summarise

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

ExecutorName = Literal["serial", "local", "dask"]


@dataclass(frozen=True)
class StudyInput:
    """What every replication needs: the slice and the plan (picklable, sent once per worker)."""

    twin: EnterpriseSlice
    plan: StudyPlan


@dataclass(frozen=True)
class RunResult:
    """One scenario of one replication: per KPI the summary value and the series over steps."""

    scenario: str
    replication: int
    seed: int
    values: dict[str, float]
    series: dict[str, list[float]]
    agents: int
    seconds: float


def replication_seeds(seed: int, replications: int) -> list[int]:
    """One 63-bit seed per replication, spawned from the study seed (the same for baseline and scenarios)."""
    children = np.random.SeedSequence(seed).spawn(replications)
    return [int(child.generate_state(1, np.uint64)[0] >> np.uint64(1)) for child in children]


def _calibration(study: StudyInput, scenario_index: int) -> Calibration:
    """The scenario's calibration (overrides applied), computed once per study object."""
    cache: dict[int, Calibration] = study.__dict__.setdefault("_calibrations", {})
    if scenario_index not in cache:
        scenario = study.plan.scenarios[scenario_index]
        cache[scenario_index] = calibrate(study.twin, study.plan.defaults, scenario.overrides)
    return cache[scenario_index]


def run_replication(study: StudyInput, replication: int, seed: int) -> list[RunResult]:
    """The baseline and every scenario for one replication seed."""
    results = []
    for index, scenario in enumerate(study.plan.scenarios):
        started = time.perf_counter()
        model = EnterpriseModel(_calibration(study, index), scenario, study.plan.steps, study.plan.step_days, seed)
        model.run()
        values, series = {}, {}
        for kpi in study.plan.kpis:
            value, steps = measure(model, kpi)
            values[kpi.key] = value
            series[kpi.key] = [float(x) for x in steps]
        results.append(
            RunResult(
                scenario.name, replication, seed, values, series, model.agent_total, time.perf_counter() - started
            )
        )
    return results


class Executor(Protocol):
    """Runs replications somewhere and yields their results as they finish."""

    name: str

    def map(self, study: StudyInput, tasks: Sequence[tuple[int, int]]) -> Iterator[list[RunResult]]:
        """Results of `run_replication(study, r, seed)` for every (r, seed), in any order."""
        ...


class SerialExecutor:
    """Runs replications one after the other in this process."""

    name = "serial"

    def map(self, study: StudyInput, tasks: Sequence[tuple[int, int]]) -> Iterator[list[RunResult]]:
        """Results in task order."""
        for replication, seed in tasks:
            yield run_replication(study, replication, seed)


_worker_studies: dict[str, StudyInput] = {}


def _pool_task(key: str, payload: bytes, replication: int, seed: int) -> list[RunResult]:
    """Run one replication in a pool worker; the study is unpickled once per worker and kept."""
    study = _worker_studies.get(key)
    if study is None:
        _worker_studies.clear()
        study = _worker_studies[key] = pickle.loads(payload)
    return run_replication(study, replication, seed)


class LocalExecutor:
    """A process pool on this machine (concurrent.futures), kept warm across studies until `close()`."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = get_context("forkserver" if os.name == "posix" else "spawn")
            if os.name == "posix":
                context.set_forkserver_preload(["simulation.runner"])
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self._pool

    def map(self, study: StudyInput, tasks: Sequence[tuple[int, int]]) -> Iterator[list[RunResult]]:
        """Results as workers finish them."""
        payload = pickle.dumps(StudyInput(study.twin, study.plan), protocol=pickle.HIGHEST_PROTOCOL)
        key = hashlib.sha256(payload).hexdigest()
        pool = self._ensure_pool()
        futures = [pool.submit(_pool_task, key, payload, r, s) for r, s in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaskExecutor:
    """Dask distributed: a scheduler at `address`, or a LocalCluster of `workers` processes started on first use; the
    client (and the cluster) stay up across studies — an experiment's batches — until `close()`."""

    name = "dask"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import dask.distributed  # noqa: F401
        except ImportError:
            raise ExecutorUnavailable(
                "the dask executor needs dask[distributed] (pip install 'dask[distributed]')"
            ) from None
        self.address = address
        self.workers = workers or os.cpu_count() or 1
        self._cluster: Any = None
        self._client: Any = None

    def _ensure_client(self) -> Any:
        # Dask is heavy to import: only a study on the Dask executor needs it
        from dask.distributed import Client, LocalCluster

        if self._client is None:
            if self.address is None:
                self._cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=40,
                )
            self._client = Client(self.address or self._cluster)
        return self._client

    def map(self, study: StudyInput, tasks: Sequence[tuple[int, int]]) -> Iterator[list[RunResult]]:
        """Results as the cluster finishes them."""
        from dask.distributed import as_completed as dask_completed

        client = self._ensure_client()
        shared = client.scatter(StudyInput(study.twin, study.plan), broadcast=True)
        futures = [client.submit(run_replication, shared, r, s, pure=False) for r, s in tasks]
        try:
            for future in dask_completed(futures):
                yield future.result()
        finally:
            client.cancel([*futures, shared])

    def close(self) -> None:
        """Close the client and stop the LocalCluster started here."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def executor_named(name: str, workers: int | None = None, address: str | None = None) -> Executor:
    """The executor called `name` (serial, local, dask)."""
    if name == "serial":
        return SerialExecutor()
    if name == "local":
        return LocalExecutor(workers)
    if name == "dask":
        return DaskExecutor(address, workers)
    raise ExecutorUnavailable(f"unknown executor {name!r}; use serial, local or dask")


@dataclass
class StudyResult:
    """All runs of a study and the per-KPI summaries."""

    plan: StudyPlan
    seeds: list[int]
    runs: list[RunResult]
    summaries: list[KpiSummary]
    executor: str
    wall_seconds: float
    agent_steps: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def values(self, scenario: str, kpi: str) -> np.ndarray:
        """The KPI's summary value per replication, in replication order."""
        runs = sorted((r for r in self.runs if r.scenario == scenario), key=lambda r: r.replication)
        return np.asarray([r.values[kpi] for r in runs])

    def series(self, scenario: str, kpi: str) -> np.ndarray:
        """Replications x steps matrix of the KPI's series."""
        runs = sorted((r for r in self.runs if r.scenario == scenario), key=lambda r: r.replication)
        return np.asarray([r.series[kpi] for r in runs])

    def summary(self, scenario: str, kpi: str) -> KpiSummary:
        """The summary of one KPI of one scenario."""
        return next(s for s in self.summaries if s.scenario == scenario and s.kpi == kpi)


def summarise_runs(plan: StudyPlan, runs: list[RunResult]) -> list[KpiSummary]:
    """Per scenario and KPI: mean, CI, P10/P90, paired difference to baseline, breach probability."""
    by: dict[tuple[str, str], dict[int, float]] = {}
    for run in runs:
        for kpi_key, value in run.values.items():
            by.setdefault((run.scenario, kpi_key), {})[run.replication] = value
    summaries = []
    for kpi in plan.kpis:
        base = by.get(("baseline", kpi.key), {})
        reps = sorted(base)
        base_values = np.asarray([base[r] for r in reps])
        for scenario in plan.scenarios:
            values = np.asarray([by[(scenario.name, kpi.key)][r] for r in reps])
            summaries.append(
                summarise(
                    scenario.name,
                    kpi.key,
                    values,
                    None if scenario.name == "baseline" else base_values,
                    kpi.threshold_below,
                    kpi.threshold_above,
                )
            )
    return summaries


def run_study(
    twin: EnterpriseSlice,
    plan: StudyPlan,
    executor: Executor | None = None,
    seeds: list[int] | None = None,
    progress: Callable[[int, int], None] | bool = False,
) -> StudyResult:
    """Run the baseline and every scenario for every replication and summarise (progress bar when asked)."""
    executor = executor or LocalExecutor()
    seeds = seeds if seeds is not None else replication_seeds(plan.seed, plan.replications)
    study = StudyInput(twin, plan)
    tasks = list(enumerate(seeds))
    started = time.perf_counter()
    runs: list[RunResult] = []
    bar = _progress_bar(plan, len(tasks)) if progress is True else None
    try:
        for done, batch in enumerate(executor.map(study, tasks), start=1):
            runs.extend(batch)
            if bar is not None:
                bar[0].update(bar[1], completed=done)
            elif callable(progress):
                progress(done, len(tasks))
    finally:
        if bar is not None:
            bar[0].stop()
    runs.sort(key=lambda r: (r.replication, [s.name for s in plan.scenarios].index(r.scenario)))
    wall = time.perf_counter() - started
    agent_steps = sum(r.agents for r in runs) * plan.steps
    return StudyResult(plan, seeds, runs, summarise_runs(plan, runs), executor.name, wall, agent_steps)


def _progress_bar(plan: StudyPlan, total: int) -> tuple[Progress, TaskID]:
    # only a study run from a terminal shows a bar; the worker processes that import this module never need rich
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn(f"[bold]{plan.name}[/bold] replications"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    )
    bar.start()
    return bar, bar.add_task("replications", total=total)
