"""What-if studies as background jobs of the API: the spec checked now, the study run by the job runner (REST
`POST /operations/scenarios` and the GraphQL mutation `runScenario` both start them here)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from api.http.jobs import Job, describe_job_error
from governance.identity import Subject


def start_study(services: Any, subject: Subject, spec: str, replications: int | None, executor: str) -> Job:
    """Parse and check the spec now (errors name the line), then run the study as a background job."""
    from simulation.runner import executor_named
    from simulation.scenario import parse_spec
    from simulation.service import run_scenario_study
    from simulation.study import with_replications

    parsed = parse_spec(spec, "<api request>")  # SimulationError for a bad spec, or a bad replication count
    if replications is not None:
        parsed = with_replications(parsed, replications)
    runtime = services.runtime

    def work() -> dict[str, Any]:
        chosen = executor_named(executor)
        try:
            completed = run_scenario_study(
                parsed,
                runtime.store,
                runtime.results,
                subject=subject,
                policy=services.policy,
                audit=runtime.audit,
                executor=chosen,
                lineage=runtime.lineage,
            )
        finally:
            close = getattr(chosen, "close", None)  # a process pool or a Dask cluster stops with its study
            if close is not None:
                close()
        return {
            "studyId": completed.study_id,
            "executor": completed.result.executor,
            "wallSeconds": completed.result.wall_seconds,
            "summaries": [summary_json(s) for s in completed.result.summaries],
        }

    return services.jobs.start("scenario", parsed.spec.name, subject.sub, "scenario.read", work, describe_job_error)


def summary_json(summary: Any) -> dict[str, Any]:
    """A KPI summary as plain JSON values."""
    return dict(asdict(summary).items())
