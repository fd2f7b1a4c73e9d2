"""A study's life: read the slice, resolve the spec, run, store the results and record the run in lineage.

The live graph is only read (the slice loader and target queries use read-only entry points). `rerun_study` runs a
stored study again from its stored spec, slice and seeds, which reproduces its numbers exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import yaml
from pydantic import TypeAdapter

from governance.lineage import DatasetRef, LineageStore, RunKind, RunStatus
from graph.model import UNRESTRICTED, ReadScope
from graph.store import GraphStore
from graph.urls import url_without_credentials
from ontology.safe_yaml import load_yaml
from simulation.calibration import calibrate
from simulation.experiment import ExperimentResult, Memo, memo_from_json, memo_to_json, run_experiment
from simulation.experiment_spec import ParsedExperiment, parse_experiment
from simulation.forecast.errors import ForecastError
from simulation.model import MODEL_VERSION
from simulation.results import ResultsStore, StoredStudy
from simulation.runner import Executor, StudyResult, run_study
from simulation.scenario import (
    DemandSpec,
    GroupForecast,
    ParsedSpec,
    StudyLimits,
    StudyPlan,
    check_limits,
    parse_spec,
    plan_study,
    slice_roots,
)
from simulation.slice import EnterpriseSlice, load_slice, slice_digest

_R = TypeVar("_R")
DemandSource = Callable[[DemandSpec], Sequence[GroupForecast]]
"""Reads the stored forecasts a study's `demand:` names, as its caller may (simulation/forecast/demand.py)."""
_PLAN = TypeAdapter(StudyPlan)
_EXPERIMENT = TypeAdapter(ExperimentResult)


@dataclass(frozen=True)
class CompletedStudy:
    """A study that ran: its stored id, its results and the slice it ran on."""

    study_id: str
    result: StudyResult
    twin: EnterpriseSlice


def conduct_study(
    parsed: ParsedSpec,
    store: GraphStore,
    results: ResultsStore,
    *,
    executor: Executor | None = None,
    lineage: LineageStore | None = None,
    replications: int | None = None,
    limits: StudyLimits | None = None,
    scope: ReadScope = UNRESTRICTED,
    progress: bool = False,
    demand: DemandSource | None = None,
) -> CompletedStudy:
    """Run a study on the live twin (read-only), store it and record it as a scenario run in lineage; a spec with
    `demand:` reads its forecasts through `demand` (the forecasts and model versions used are in the stored plan
    and among the lineage run's inputs)."""
    if replications is not None:
        parsed = with_replications(parsed, replications)
    twin = load_slice(store, slice_roots(parsed, store, scope), scope)
    check_limits(parsed, twin.agent_count, limits or StudyLimits())
    groups = _demand(parsed, demand)
    plan = plan_study(parsed, twin, store, scope, demand=groups)

    def work(run_id: str | None) -> tuple[str, StudyResult]:
        result = run_study(twin, plan, executor, progress=progress)
        return _save(results, parsed, twin, result, run_id), result

    study_id, result = _recorded(
        lineage,
        parsed.spec.name,
        work,
        inputs=[DatasetRef(url_without_credentials(store.url), "twin-graph"), *_forecast_inputs(plan, results)],
        outputs=[DatasetRef(url_without_credentials(results.url), "sim_study")],
        counts=lambda done: {
            "replications": len(done.seeds),
            "scenarios": len(plan.scenarios) - 1,
            "runs": len(done.runs),
            "agent_steps": done.agent_steps,
            "twins_read": len(twin.classes),
        },
    )
    return CompletedStudy(study_id, result, twin)


def _demand(parsed: ParsedSpec, demand: DemandSource | None) -> list[GroupForecast] | None:
    """The stored forecasts a spec's `demand:` names (None without one); SpecError at its line when they cannot be
    read."""
    spec = parsed.spec.demand
    if spec is None:
        return None
    if demand is None:
        raise parsed.fail(
            ("demand",),
            "the stored forecasts of `demand:` were not read (studies run by the study service read them; "
            "experiments do not take forecast demand yet)",
        )
    try:
        return list(demand(spec))
    except ForecastError as exc:
        raise parsed.fail(("demand", "forecast" if spec.forecast else "model_version"), str(exc)) from None


def _forecast_inputs(plan: StudyPlan, results: ResultsStore) -> list[DatasetRef]:
    """The stored forecasts and model versions a study's demand came from, as lineage inputs."""
    if plan.demand is None:
        return []
    where = url_without_credentials(results.url)
    refs = []
    for used in plan.demand.forecasts:
        if used.product is not None:
            refs += [
                DatasetRef(where, f"forecast_run/{used.forecast_id}"),
                DatasetRef(where, f"model_version/{used.model_version}"),
            ]
    return refs


def rerun_study(
    study_id: str, results: ResultsStore, executor: Executor | None = None, lineage: LineageStore | None = None
) -> CompletedStudy:
    """Run a stored study again on its stored slice and seeds (same numbers), storing it as a new study."""
    stored: StoredStudy = results.get(study_id)
    parsed = parse_spec(stored.record.spec, stored.record.source)
    slice_json, plan_json = results.inputs(study_id)
    twin = EnterpriseSlice.from_json(slice_json)
    plan = _PLAN.validate_json(plan_json)

    def work(run_id: str | None) -> tuple[str, StudyResult]:
        result = run_study(twin, plan, executor, seeds=stored.record.seeds)
        return _save(results, parsed, twin, result, run_id), result

    new_id, result = _recorded(
        lineage,
        parsed.spec.name,
        work,
        inputs=[DatasetRef(url_without_credentials(results.url), f"sim_study/{study_id}")],
        outputs=[],
        counts=lambda done: {"runs": len(done.runs)},
    )
    return CompletedStudy(new_id, result, twin)


@dataclass(frozen=True)
class CompletedExperiment:
    """An experiment that ran: its stored id, its result and the slice it ran on."""

    experiment_id: str
    result: ExperimentResult
    twin: EnterpriseSlice


def conduct_experiment(
    parsed: ParsedExperiment,
    store: GraphStore,
    results: ResultsStore,
    *,
    executor: Executor | None = None,
    lineage: LineageStore | None = None,
    limits: StudyLimits | None = None,
    scope: ReadScope = UNRESTRICTED,
    progress: Callable[[int, int], None] | None = None,
) -> CompletedExperiment:
    """Run an experiment on the live twin (read-only, within the caller's scope), store it and record it in lineage;
    nothing is stored unless every decision could be planned and evaluated and a feasible one was found."""
    study = parsed.study
    twin = load_slice(store, slice_roots(study, store, scope), scope)
    limits = limits or StudyLimits()
    check_limits(study, twin.agent_count, limits)
    evaluations = parsed.block.budget if parsed.block.kind == "optimize" else len(parsed.grid())
    work_size = (evaluations + 1) * study.spec.replications * study.spec.steps * twin.agent_count
    if work_size > limits.max_agent_steps:
        raise parsed.fail(
            ("experiment", "budget"),
            f"the experiment is too big: {evaluations + 1} evaluations x {study.spec.replications} replications x "
            f"{study.spec.steps} steps x {twin.agent_count} agents = {work_size:,} agent-steps, over the limit of "
            f"{limits.max_agent_steps:,}",
        )
    memo: Memo = {}
    plan = plan_study(study, twin, store, scope, memo)

    def work(run_id: str | None) -> tuple[str, ExperimentResult]:
        result = run_experiment(parsed, twin, plan, executor, progress, memo)
        return _save_experiment(results, parsed, twin, result, memo, run_id), result

    experiment_id, result = _recorded(
        lineage,
        parsed.name,
        work,
        inputs=[DatasetRef(url_without_credentials(store.url), "twin-graph")],
        outputs=[DatasetRef(url_without_credentials(results.url), "sim_experiment")],
        counts=lambda done: {"evaluations": len(done.evaluations), "runs": done.runs, "twins_read": len(twin.classes)},
    )
    return CompletedExperiment(experiment_id, result, twin)


def rerun_experiment(
    experiment_id: str, results: ResultsStore, executor: Executor | None = None, lineage: LineageStore | None = None
) -> CompletedExperiment:
    """Run a stored experiment again on its stored slice, targets and seeds (the same evaluations and best decision)."""
    stored = results.experiment(experiment_id)
    parsed = parse_experiment(stored.spec, stored.source)
    twin = EnterpriseSlice.from_json(results.experiment_slice(experiment_id))
    memo = memo_from_json(stored.result["targets"])
    plan = plan_study(parsed.study, twin, None, memo=memo)

    def work(run_id: str | None) -> tuple[str, ExperimentResult]:
        result = run_experiment(parsed, twin, plan, executor, None, memo, stored.seeds)
        return _save_experiment(results, parsed, twin, result, memo, run_id), result

    new_id, result = _recorded(
        lineage,
        parsed.name,
        work,
        inputs=[DatasetRef(url_without_credentials(results.url), f"sim_experiment/{experiment_id}")],
        outputs=[],
        counts=lambda done: {"evaluations": len(done.evaluations), "runs": done.runs},
    )
    return CompletedExperiment(new_id, result, twin)


def experiment_result(stored: dict[str, object]) -> ExperimentResult:
    """The ExperimentResult of a stored experiment's result JSON."""
    return _EXPERIMENT.validate_python({k: v for k, v in stored.items() if k != "targets"})


def _save_experiment(
    results: ResultsStore,
    parsed: ParsedExperiment,
    twin: EnterpriseSlice,
    result: ExperimentResult,
    memo: Memo,
    run_id: str | None,
) -> str:
    slice_json = twin.to_json()
    return results.save_experiment(
        name=parsed.name,
        kind=parsed.block.kind,
        spec=parsed.text,
        source=parsed.source,
        model_version=MODEL_VERSION,
        twin_state_time=twin.read_at,
        slice_json=slice_json,
        slice_digest=slice_digest(slice_json),
        seeds=result.seeds,
        executor=result.executor,
        wall_seconds=result.wall_seconds,
        evaluations=len(result.evaluations),
        result={**_EXPERIMENT.dump_python(result, mode="json"), "targets": memo_to_json(memo)},
        run_id=run_id,
    )


def _recorded(
    lineage: LineageStore | None,
    name: str,
    work: Callable[[str | None], tuple[str, _R]],
    *,
    inputs: list[DatasetRef],
    outputs: list[DatasetRef],
    counts: Callable[[_R], dict[str, int]],
) -> tuple[str, _R]:
    """Do `work` (given its lineage run id) as a scenario run in lineage, finished as completed or failed."""
    run = lineage.start_run(RunKind.SCENARIO, name, inputs=inputs, outputs=outputs) if lineage is not None else None
    try:
        study_id, result = work(run.run_id if run else None)
    except BaseException as exc:
        if lineage is not None and run is not None:
            lineage.finish_run(run.run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    if lineage is not None and run is not None:
        lineage.finish_run(run.run_id, RunStatus.COMPLETED, counts=counts(result))
    return study_id, result


def _save(
    results: ResultsStore, parsed: ParsedSpec, twin: EnterpriseSlice, result: StudyResult, run_id: str | None
) -> str:
    plan = result.plan
    calibration = calibrate(twin, plan.defaults).source_counts()
    slice_json = twin.to_json()  # serialised once: stored and digested
    return results.save(
        name=plan.name,
        spec=parsed.text,
        source=parsed.source,
        model_version=MODEL_VERSION,
        twin_state_time=twin.read_at,
        slice_json=slice_json,
        plan_json=_PLAN.dump_json(plan).decode(),
        slice_digest=slice_digest(slice_json),
        seed=plan.seed,
        seeds=result.seeds,
        executor=result.executor,
        wall_seconds=result.wall_seconds,
        agent_steps=result.agent_steps,
        calibration=calibration,
        runs=result.runs,
        summaries=result.summaries,
        run_id=run_id,
    )


def with_replications(parsed: ParsedSpec, replications: int) -> ParsedSpec:
    """The spec with `replications` replaced, checked again (so the stored spec says what ran, and a bad count is
    refused as the spec's own field would be)."""
    data = load_yaml(parsed.text, parsed.source)
    data["replications"] = replications
    return parse_spec(yaml.safe_dump(data, sort_keys=False), parsed.source)
