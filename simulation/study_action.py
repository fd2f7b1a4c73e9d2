"""The `scenario.study` action type: an approved proposal runs a bundled what-if study (simulation/scenarios/) on the
twin as the action's subject sees it, stores it, and attaches its result — the study id and each KPI's mean with its
95 % interval per scenario — to the proposal as its result.

The study is named after the proposal (`<study> (decision <proposal id>)`), so an execution retried after a crash
finds the study it stored instead of running a second one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from governance.audit import AuditLog
from governance.decisions.actions import ActionError, ActionType
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.lineage import LineageStore
from governance.policy import Policy
from graph.store import GraphStore
from simulation.errors import SimulationError

if TYPE_CHECKING:  # the results store imports Mesa: opened only when a study runs
    from simulation.results import ResultsStore

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
MAX_RESULT_CHARS = 8_000


class StudyParameters(BaseModel):
    """Run the bundled study `spec` (a file of simulation/scenarios/) with `replications` replications; with a
    `target`, every intervention of the spec acts on that twin (e.g. the supplier at risk) instead of its query."""

    model_config = ConfigDict(extra="forbid")
    spec: str = Field(pattern=r"^[a-z0-9_]{1,80}\.yaml$")
    replications: int = Field(default=20, ge=2, le=500)
    target: str | None = Field(default=None, min_length=1, max_length=512)  # the twin the interventions act on


def study_name(base: str, proposal_id: str) -> str:
    """The name a proposal's study is stored under (its idempotency key in the results store)."""
    return f"{base} (decision {proposal_id})"


def scenario_study_action(
    store: GraphStore,
    open_results: Callable[[], ResultsStore],
    policy: Policy,
    audit: AuditLog,
    lineage: LineageStore | None = None,
    folder: Path = SCENARIOS,
) -> ActionType:
    """The `scenario.study` action type over the twin and the results store (`open_results()`, opened when a study
    runs)."""

    def run(proposal_id: str, params: Any, actor: Subject) -> str:
        from simulation.scenario import parse_spec
        from simulation.service import run_scenario_study
        from simulation.study import with_replications

        path = folder / params.spec
        if not path.is_file():
            known = ", ".join(sorted(p.name for p in folder.glob("*.yaml")))
            raise ActionError(f"scenario.study: no bundled study {params.spec!r}; known: {known}")
        results = open_results()
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        name = study_name(str(data.get("name") or path.stem), proposal_id)
        stored = next((s for s in results.studies(1000) if s.name == name), None)
        if stored is None:
            data["name"] = name
            if params.target is not None:
                for scenario in data.get("scenarios") or ():
                    for intervention in scenario.get("interventions") or ():
                        if "target" in intervention:
                            intervention["target"] = {"uids": [params.target]}
            try:
                parsed = with_replications(
                    parse_spec(yaml.safe_dump(data, sort_keys=False), str(path)), params.replications
                )
                study_id = run_scenario_study(
                    parsed, store, results, subject=actor, policy=policy, audit=audit, lineage=lineage
                ).study_id
            except PolicyDenied as exc:
                raise ActionError(f"scenario.study: {exc}") from None
            except SimulationError as exc:
                raise ActionError(f"scenario.study: {str(exc)[:300]}") from None
        else:
            study_id = stored.study_id
        summaries = results.get(study_id).summaries
        attached = {
            "study": study_id,
            "name": name,
            "kpis": [
                {"scenario": s.scenario, "kpi": s.kpi, "mean": s.mean, "ciLow": s.ci_low, "ciHigh": s.ci_high}
                for s in summaries
            ],
        }
        return json.dumps(attached, sort_keys=True, default=str)[:MAX_RESULT_CHARS]

    return ActionType(
        "scenario.study",
        StudyParameters,
        "Run a bundled what-if study as the approver's proposer and attach its result to the proposal.",
        effect=run,
    )
