"""The study services: every edge (CLI, REST, GraphQL, the runtime to come) runs or re-runs a what-if study through
here, so the policy decision, the caller's read scope and the audit record cannot be forgotten.

A finished study whose interventions name their twins (`target: {uids: [...]}`, as the `scenario.study` action's
target does) is announced on the change feed as a `study` event of each of those twins (`announce_study`): the
study's id and name and each scenario's KPIs (mean and 95 % interval), so automations (`trigger: {study: ...}`) can
act on its result and event routes can carry it, through the policy gate of the twin's changes. A finished experiment
is announced the same way (`kind: experiment`: the best decision and the baseline, objective and KPIs)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from governance.audit import AuditEvent, AuditLog, Decision
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.lineage import LineageStore
from governance.policy import Policy
from graph.history import Change, ChangeContext
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
    done = _audited(
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
    announce_study(store, parsed, done, subject)
    return done


MAX_ANNOUNCED_TWINS = 50  # twins one study is announced to at most


def announce_study(store: GraphStore, parsed: ParsedSpec, done: CompletedStudy, subject: Subject) -> int:
    """Append a `study` event to the change feed for each twin the study's interventions name by uid (that exists);
    returns how many were written (none without a history)."""
    kpis: dict[str, dict[str, dict[str, float]]] = {}
    for summary in done.result.summaries:
        values = {
            "mean": round(float(summary.mean), 6),
            "ci_low": round(float(summary.ci_low), 6),
            "ci_high": round(float(summary.ci_high), 6),
        }
        if summary.diff_mean is not None:  # against the baseline, paired by replication
            values["diff_mean"] = round(float(summary.diff_mean), 6)
        kpis.setdefault(summary.scenario, {})[summary.kpi] = values
    event = {
        "kind": "study",
        "study_id": done.study_id,
        "name": parsed.spec.name,
        "study": parsed.spec.name.split(" (decision ", 1)[0],  # a proposal's study is named after its base study
        "scenarios": sorted(kpis),
        "kpis": kpis,
        "runs": len(done.result.runs),
    }
    return _announce(store, parsed, event, subject, f"study:{done.study_id}")


def announce_experiment(
    store: GraphStore, parsed: ParsedExperiment, done: CompletedExperiment, subject: Subject
) -> int:
    """Append a `study` event (`kind: experiment`) to the change feed for each twin the experiment's study names by
    uid: the best decision, its objective and KPIs against the baseline's."""
    result = done.result
    best = result.best_evaluation

    def shown(evaluation: Any) -> dict[str, Any]:
        return {
            "decision": dict(evaluation.decision),
            "objective": round(float(evaluation.objective), 6),
            "ci_low": round(float(evaluation.ci_low), 6),
            "ci_high": round(float(evaluation.ci_high), 6),
            "kpis": {k: round(float(v), 6) for k, v in evaluation.kpis.items()},
            "feasible": bool(evaluation.feasible),
        }

    event = {
        "kind": "experiment",
        "experiment_id": done.experiment_id,
        "study_id": done.experiment_id,
        "name": parsed.name,
        "study": parsed.name,
        "experiment": result.kind,
        "sense": result.sense,
        "best": shown(best) if best is not None else None,
        "baseline": shown(result.baseline),
        "evaluations": len(result.evaluations),
        "runs": result.runs,
    }
    return _announce(store, parsed.study, event, subject, f"experiment:{done.experiment_id}")


def _announce(store: GraphStore, parsed: ParsedSpec, event: dict[str, Any], subject: Subject, source: str) -> int:
    """Append `event` as a `study` change of each twin the spec's interventions name by uid (that exists)."""
    if store.history is None:
        return 0
    named = sorted(
        {
            uid
            for scenario in parsed.spec.scenarios
            for intervention in scenario.interventions
            for uid in (getattr(getattr(intervention, "target", None), "uids", None) or ())
        }
    )[:MAX_ANNOUNCED_TWINS]
    twins = store.get_many(named) if named else {}
    if not twins:
        return 0
    changes = [Change(uid, "study", "create", None, event, cls=twin.cls) for uid, twin in sorted(twins.items())]
    return store.history.record(changes, ChangeContext(actor=subject.sub, source=source[:256]))


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
    done = _audited(
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
    announce_experiment(store, parsed, done, subject)
    return done


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
