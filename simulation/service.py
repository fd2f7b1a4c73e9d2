"""The study services: every edge (CLI, REST, GraphQL, the runtime to come) runs or re-runs a what-if study through
here, so the policy decision, the caller's read scope and the audit record cannot be forgotten."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from governance.audit import AuditEvent, AuditLog, Decision
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.lineage import LineageStore
from governance.policy import Policy
from graph.store import GraphStore
from simulation.experiment_spec import ParsedExperiment
from simulation.results import ResultsStore
from simulation.runner import Executor
from simulation.scenario import DemandSpec, GroupForecast, ParsedSpec, StudyLimits
from simulation.study import (
    CompletedExperiment,
    CompletedStudy,
    DemandSource,
    conduct_experiment,
    conduct_study,
    rerun_experiment,
    rerun_study,
)

OPERATION = "scenario.run"
EXPERIMENT = "scenario.experiment"
"""What an experiment's audit record is called (the policy decides it as `scenario.run`)."""


def run_scenario_study(
    parsed: ParsedSpec,
    store: GraphStore,
    results: ResultsStore,
    *,
    subject: Subject,
    policy: Policy,
    audit: AuditLog,
    lineage: LineageStore | None = None,
    executor: Executor | None = None,
    replications: int | None = None,
    limits: StudyLimits | None = None,
    progress: bool = False,
) -> CompletedStudy:
    """Run a study on the twin as `subject` sees it (the policy's read scope shapes the slice), store it, audit it."""
    variables = {"study": parsed.spec.name, "source": parsed.source, "replications": replications}
    _require(policy, subject, audit, variables)
    scope = policy.read_scope(subject)
    return _audited(
        audit,
        subject,
        policy,
        variables,
        lambda: conduct_study(
            parsed,
            store,
            results,
            executor=executor,
            lineage=lineage,
            replications=replications,
            limits=limits,
            scope=scope,
            progress=progress,
            demand=_demand_source(results, subject=subject, policy=policy, audit=audit),
        ),
    )


def _demand_source(results: ResultsStore, *, subject: Subject, policy: Policy, audit: AuditLog) -> DemandSource:
    """Reads the forecasts a study's `demand:` names from the relational store the results live in, as `subject`."""

    def read(spec: DemandSpec) -> Sequence[GroupForecast]:
        from governance.models import ModelRegistry
        from simulation.forecast.demand import demand_forecasts
        from simulation.forecast.service import ForecastContext
        from simulation.forecast.store import ForecastStore

        ctx = ForecastContext(ForecastStore(results.url), ModelRegistry(results.url, audit, policy), policy, audit)
        return demand_forecasts(spec, ctx, subject=subject)

    return read


def rerun_scenario_study(
    study_id: str,
    results: ResultsStore,
    *,
    subject: Subject,
    policy: Policy,
    audit: AuditLog,
    lineage: LineageStore | None = None,
    executor: Executor | None = None,
) -> CompletedStudy:
    """Run a stored study again on its stored slice and seeds as `subject`, and audit it."""
    variables = {"rerun_of": study_id}
    _require(policy, subject, audit, variables)
    return _audited(audit, subject, policy, variables, lambda: rerun_study(study_id, results, executor, lineage))


def run_experiment_study(
    parsed: ParsedExperiment,
    store: GraphStore,
    results: ResultsStore,
    *,
    subject: Subject,
    policy: Policy,
    audit: AuditLog,
    lineage: LineageStore | None = None,
    executor: Executor | None = None,
    limits: StudyLimits | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CompletedExperiment:
    """Run a grid, sensitivity or optimisation experiment on the twin as `subject` sees it, store it, audit it."""
    variables = {"experiment": parsed.name, "kind": parsed.block.kind, "source": parsed.source}
    _require(policy, subject, audit, variables, EXPERIMENT)
    scope = policy.read_scope(subject)
    return _audited(
        audit,
        subject,
        policy,
        variables,
        lambda: conduct_experiment(
            parsed,
            store,
            results,
            executor=executor,
            lineage=lineage,
            limits=limits,
            scope=scope,
            progress=progress,
        ),
        EXPERIMENT,
    )


def rerun_experiment_study(
    experiment_id: str,
    results: ResultsStore,
    *,
    subject: Subject,
    policy: Policy,
    audit: AuditLog,
    lineage: LineageStore | None = None,
    executor: Executor | None = None,
) -> CompletedExperiment:
    """Run a stored experiment again on its stored slice and seeds as `subject`, and audit it."""
    variables = {"rerun_of": experiment_id}
    _require(policy, subject, audit, variables, EXPERIMENT)
    return _audited(
        audit,
        subject,
        policy,
        variables,
        lambda: rerun_experiment(experiment_id, results, executor, lineage),
        EXPERIMENT,
    )


def _require(
    policy: Policy, subject: Subject, audit: AuditLog, variables: Mapping[str, object], operation: str = OPERATION
) -> None:
    """Refuse (and audit the refusal) unless the subject may run studies."""
    decision = policy.decide(subject, "operation", OPERATION)
    if not decision.allowed:
        audit.append(
            AuditEvent.for_subject(
                subject,
                operation,
                Decision.DENY,
                variables=variables,
                policy_version=policy.version,
                detail=decision.reason,
            )
        )
        raise PolicyDenied(f"{subject.sub} may not run studies: {decision.reason}")


_Done = TypeVar("_Done", CompletedStudy, CompletedExperiment)


def _audited(
    audit: AuditLog,
    subject: Subject,
    policy: Policy,
    variables: Mapping[str, object],
    work: Callable[[], _Done],
    operation: str = OPERATION,
) -> _Done:
    """Do `work` and append its audit record, whether the study (or experiment) completed or failed."""
    try:
        done = work()
    except BaseException as exc:
        audit.append(
            AuditEvent.of_run(
                subject,
                operation,
                policy.version,
                variables,
                None,
                {"status": "failed", "error": f"{type(exc).__name__}: {str(exc)[:300]}"},
            )
        )
        raise
    if isinstance(done, CompletedExperiment):
        best = done.result.best_evaluation
        outcome: dict[str, object] = {
            "status": "completed",
            "experiment_id": done.experiment_id,
            "evaluations": len(done.result.evaluations),
            "runs": done.result.runs,
            "best": best.decision if best else None,
        }
        rows = len(done.result.evaluations)
    else:
        outcome = {"status": "completed", "study_id": done.study_id, "runs": len(done.result.runs)}
        rows = len(done.result.runs)
    audit.append(AuditEvent.of_run(subject, operation, policy.version, variables, rows, outcome))
    return done
