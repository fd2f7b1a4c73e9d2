"""The lineage export service: runs and their provenance as W3C PROV-O or OpenLineage, governed and audited.

Every edge (the `twin lineage export` command, the REST operation) calls `export_lineage`; the policy decision and
the audit record happen here, so no entry point can forget either. Values, and the digests that could be matched
against guessed values, are exported only to a subject who sees every classification in clear; anyone else allowed
to export gets the structure: which source record, field, mapping rule and run fed which twin property.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from governance.audit import AuditEvent, AuditLog, Decision
from governance.errors import LineageError, PolicyDenied
from governance.identity import Subject
from governance.lineage import LineageStore, ProvenanceRecord, RunRecord
from governance.policy import Policy
from governance.provenance_export import to_openlineage, to_prov_o
from ontology.model import CLASSIFICATIONS

OPERATION = "lineage.export"
MAX_RUNS = 1_000  # runs one export may cover
MAX_RECORDS = 2_000_000  # provenance records one export may hold (PROV-O is built in memory)


class LineageFormat(StrEnum):
    """The export formats: W3C PROV-O as Turtle, or OpenLineage run events as JSON lines."""

    PROV_O = "prov-o"
    OPENLINEAGE = "openlineage"


@dataclass(frozen=True)
class LineageExport:
    """One export: its text, what it covers, and whether values and digests are in it."""

    format: LineageFormat
    text: str
    media_type: str
    run_ids: tuple[str, ...]
    records: int
    values_included: bool


def export_lineage(
    lineage: LineageStore,
    audit: AuditLog,
    policy: Policy,
    subject: Subject,
    fmt: LineageFormat | str,
    run_ids: tuple[str, ...] = (),
    *,
    latest: int = 1,
) -> LineageExport:
    """The named runs (or the `latest` runs) with their provenance, in `fmt`; refused and audited as a denial when
    the subject may not export lineage."""
    decision = policy.decide(subject, "operation", OPERATION)
    variables = {"format": str(fmt), "runs": list(run_ids), "latest": latest}
    if not decision.allowed:
        audit.append(
            AuditEvent.for_subject(
                subject,
                OPERATION,
                Decision.DENY,
                variables=variables,
                policy_version=policy.version,
                detail=decision.reason,
            )
        )
        raise PolicyDenied(f"{subject.sub} may not export lineage: {decision.reason}")
    try:
        chosen_format = LineageFormat(fmt)
    except ValueError:
        raise LineageError(
            f"unknown lineage export format {str(fmt)[:40]!r}; use {' or '.join(f.value for f in LineageFormat)}"
        ) from None
    if not 1 <= latest <= MAX_RUNS or len(run_ids) > MAX_RUNS:
        raise LineageError(f"an export covers 1 to {MAX_RUNS} runs")
    runs = [lineage.get_run(run_id) for run_id in dict.fromkeys(run_ids)] if run_ids else lineage.runs(limit=latest)
    clear = sees_everything_in_clear(policy, subject)
    records = {run.run_id: lineage.records_of_run(run.run_id, limit=MAX_RECORDS + 1) for run in runs}
    total = sum(len(of_run) for of_run in records.values())
    if total > MAX_RECORDS:
        raise LineageError(f"the export would hold more than {MAX_RECORDS:,} provenance records; name fewer runs")
    text, media_type = _render(chosen_format, runs, records, clear)
    audit.append(
        AuditEvent.for_subject(
            subject,
            OPERATION,
            Decision.ALLOW,
            variables=variables,
            policy_version=policy.version,
            rows_returned=total,
            detail="values included" if clear else "structure only",
        )
    )
    return LineageExport(chosen_format, text, media_type, tuple(run.run_id for run in runs), total, clear)


def sees_everything_in_clear(policy: Policy, subject: Subject) -> bool:
    """Whether every classification is shown to `subject` unmasked (only then do values and digests leave)."""
    return all(policy.relationship_field_mode(subject, c) == "show" for c in CLASSIFICATIONS)


def _render(
    fmt: LineageFormat, runs: list[RunRecord], records: dict[str, list[ProvenanceRecord]], clear: bool
) -> tuple[str, str]:
    """The export text and its media type."""
    if fmt is LineageFormat.PROV_O:
        every = [record for run in runs for record in records[run.run_id]]
        graph = to_prov_o(every, runs, include_values=clear, include_digests=clear)
        return graph.serialize(format="turtle"), "text/turtle"
    lines = []
    for run in runs:
        for event in to_openlineage(run, records[run.run_id]):
            lines.append(json.dumps(event, ensure_ascii=False, sort_keys=True))
    return "\n".join(lines) + ("\n" if lines else ""), "application/x-ndjson"
