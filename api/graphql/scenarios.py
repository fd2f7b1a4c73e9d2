"""What-if studies over GraphQL: start one in the background, list the stored ones, read a run's status and results;
start an experiment (grid, sensitivity, optimisation) and read its best decision."""

from __future__ import annotations

import math
from typing import Any

import anyio.to_thread

from api.context import RequestContext
from api.errors import BadUserInput, NotFound
from api.graphql.governed import governed
from api.graphql.selection import Selection, list_limit
from api.http.jobs import Job, describe_job_error
from api.http.studies import start_study
from ontology.errors import quoted


def _study_values(record: Any, summaries: list[Any]) -> dict[str, Any]:
    return {
        "id": record.study_id,
        "name": record.name,
        "createdAt": record.created_at,
        "replications": record.replications,
        "seed": record.seed,
        "modelVersion": record.model_version,
        "twinStateTime": record.twin_state_time,
        "executor": record.executor,
        "wallSeconds": record.wall_seconds,
        "spec": record.spec,
        "summaries": [
            {
                "scenario": s.scenario,
                "kpi": s.kpi,
                "n": s.n,
                "mean": s.mean,
                "ciLow": s.ci_low,
                "ciHigh": s.ci_high,
                "p10": s.p10,
                "p90": s.p90,
                "diffMean": s.diff_mean,
                "diffLow": s.diff_low,
                "diffHigh": s.diff_high,
                "pBreach": s.p_breach,
            }
            for s in summaries
        ],
    }


def _run_values(job: Job | None, stored: Any | None) -> dict[str, Any]:
    if job is None:
        if stored is None:
            raise ValueError("a scenario run needs its job or its stored study; got neither")
        return {
            "id": stored.record.study_id,
            "name": stored.record.name,
            "status": "completed",
            "startedAt": stored.record.created_at,
            "finishedAt": stored.record.created_at,
            "error": None,
            "study": _study_values(stored.record, stored.summaries),
        }
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "startedAt": job.started_at.isoformat(),
        "finishedAt": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
        "study": _study_values(stored.record, stored.summaries) if stored is not None else None,
    }


async def scenarios(root: Any, info: Any, first: Any = None) -> list[dict[str, Any]]:
    """Stored studies, newest first, with their summaries."""
    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "scenario.read")
    limit = list_limit(first, 20)
    store = ctx.services.runtime.results

    def load() -> list[tuple[Any, list[Any]]]:  # two queries, whatever the number of studies
        records = store.studies(limit)
        summaries = store.summaries_of([record.study_id for record in records])
        return [(record, summaries[record.study_id]) for record in records]

    studies = await anyio.to_thread.run_sync(load)
    sel = Selection(info)
    ctx.rows += len(studies)
    return [sel.shaped(info.return_type, info.field_nodes, _study_values(*study)) for study in studies]


async def scenario_run(root: Any, info: Any, id: str) -> dict[str, Any]:
    """A background study by run id (status, then results), or a stored study by its id."""
    from simulation.errors import StudyNotFound

    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "scenario.read")
    job = ctx.services.jobs.get_for(id, ctx.subject)
    if job is not None and job.kind != "scenario":
        job = None
    study_id = (job.result or {}).get("studyId") if job is not None else id
    stored = None
    if study_id:
        try:
            stored = await anyio.to_thread.run_sync(lambda: ctx.services.runtime.results.get(study_id))
        except StudyNotFound:
            stored = None
    if job is None and stored is None:
        raise NotFound(f"no scenario run or stored study {quoted(id)}")
    ctx.rows += 1
    return Selection(info).shaped(info.return_type, info.field_nodes, _run_values(job, stored))


async def run_scenario(root: Any, info: Any, spec: str, replications: Any = None) -> dict[str, Any]:
    """Start a study in the background; the returned run's id is what scenarioRun(id) takes."""
    from simulation.errors import SimulationError

    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "scenario.run")
    if replications is not None and not 1 <= replications <= 10_000:
        raise BadUserInput(f"`replications` must be between 1 and 10000, got {replications}")
    try:
        job = await anyio.to_thread.run_sync(  # the spec's YAML is parsed off the event loop
            lambda: start_study(ctx.services, ctx.subject, spec, replications, "serial")
        )
    except SimulationError as exc:
        raise BadUserInput(str(exc)) from None
    ctx.rows += 1
    return Selection(info).shaped(info.return_type, info.field_nodes, _run_values(job, None))


def _experiment_values(job: Job | None, stored: Any | None) -> dict[str, Any]:
    result = _finite(stored.result) if stored is not None else None
    if result is not None:
        result.pop("targets", None)
    best = None
    if result is not None and result.get("best") is not None:
        best = next((e["decision"] for e in result["evaluations"] if e["index"] == result["best"]), None)
    values = {
        "experimentId": stored.experiment_id if stored is not None else None,
        "bestDecision": best,
        "result": result,
    }
    if job is None:
        if stored is None:
            raise ValueError("an experiment run needs its job or its stored experiment; got neither")
        return {
            "id": stored.experiment_id,
            "name": stored.name,
            "status": "completed",
            "startedAt": stored.created_at,
            "finishedAt": stored.created_at,
            "error": None,
            **values,
        }
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "startedAt": job.started_at.isoformat(),
        "finishedAt": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
        **values,
    }


def _finite(value: Any) -> Any:
    """JSON values with NaN and infinities as null (GraphQL's JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


async def run_experiment(root: Any, info: Any, spec: str) -> dict[str, Any]:
    """Check an experiment spec now (errors name the line) and run it in the background as the caller."""
    from simulation.errors import SimulationError
    from simulation.experiment_spec import parse_experiment
    from simulation.runner import executor_named
    from simulation.service import run_experiment_study

    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "scenario.run")
    services, subject = ctx.services, ctx.subject
    runtime = services.runtime

    def start() -> Job:
        parsed = parse_experiment(spec, "<api request>")

        def work() -> dict[str, Any]:
            done = run_experiment_study(
                parsed,
                runtime.store,
                runtime.results,
                subject=subject,
                policy=services.policy,
                audit=runtime.audit,
                lineage=runtime.lineage,
                executor=executor_named("serial"),
            )
            return {"experimentId": done.experiment_id, "evaluations": len(done.result.evaluations)}

        return services.jobs.start("experiment", parsed.name, subject.sub, "scenario.read", work, describe_job_error)

    try:
        job = await anyio.to_thread.run_sync(start)  # the spec's YAML is parsed off the event loop
    except SimulationError as exc:
        raise BadUserInput(str(exc)) from None
    ctx.rows += 1
    return Selection(info).shaped(info.return_type, info.field_nodes, _experiment_values(job, None))


async def experiments(root: Any, info: Any, first: Any = None) -> list[dict[str, Any]]:
    """Stored experiments, newest first: id, name, kind, when, how many decisions were evaluated."""
    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "scenario.read")
    limit = list_limit(first, 20)
    records = await anyio.to_thread.run_sync(lambda: ctx.services.runtime.results.experiments(limit))
    sel = Selection(info)
    ctx.rows += len(records)
    return [
        sel.shaped(
            info.return_type,
            info.field_nodes,
            {
                "id": r.experiment_id,
                "name": r.name,
                "kind": r.kind,
                "createdAt": r.created_at,
                "evaluations": r.evaluations,
            },
        )
        for r in records
    ]


async def experiment_run(root: Any, info: Any, id: str) -> dict[str, Any]:
    """A background experiment by run id (status, then its result), or a stored experiment by its id."""
    from simulation.errors import StudyNotFound

    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "scenario.read")
    job = ctx.services.jobs.get_for(id, ctx.subject)
    if job is not None and job.kind != "experiment":
        job = None
    experiment_id = (job.result or {}).get("experimentId") if job is not None else id
    stored = None
    if experiment_id:
        try:
            stored = await anyio.to_thread.run_sync(lambda: ctx.services.runtime.results.experiment(experiment_id))
        except StudyNotFound:
            stored = None
    if job is None and stored is None:
        raise NotFound(f"no experiment run or stored experiment {quoted(id)}")
    ctx.rows += 1
    return Selection(info).shaped(info.return_type, info.field_nodes, _experiment_values(job, stored))


QUERY_RESOLVERS = {
    "scenarios": governed(scenarios),
    "scenarioRun": governed(scenario_run),
    "experiments": governed(experiments),
    "experimentRun": governed(experiment_run),
}
MUTATION_RESOLVERS = {"runScenario": governed(run_scenario), "runExperiment": governed(run_experiment)}
