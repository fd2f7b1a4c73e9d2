"""`twin erase UID`: remove a person's personal data (right to erasure)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from api.runtime import Runtime
from connectors.identity import IdentityResolver
from connectors.sync_state import SyncState
from governance.erasure import erase_personal_data
from governance.errors import GovernanceError
from graph.errors import GraphError

console = Console()


def erase(uid: Annotated[str, typer.Argument(help="The person's twin uid.")]) -> None:
    """Blank the twin's PII fields in the graph, its history, lineage values, sync ledger and identity match keys,
    compact the graph's append-only log and destroy the subject's data key (every sealed copy, backups included,
    becomes unreadable); the audit chain still verifies."""
    runtime = Runtime()
    url = runtime.settings.resolved_database_url
    try:
        report = erase_personal_data(
            uid,
            store=runtime.store,
            lineage=runtime.lineage,
            audit=runtime.audit,
            policy=runtime.policy,
            subject=runtime.operator(),
            holders=[SyncState(url, runtime.personal_seal), IdentityResolver(url, runtime.personal_seal)],
            keys=runtime.subject_keys,
        )
    except (GovernanceError, GraphError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    console.print(
        f"erased {', '.join(report.fields) or 'no personal fields'} of {uid}; blanked "
        f"{report.history_entries} history entries, {report.lineage_values} lineage values and "
        f"{report.other_copies} ledger/identity copies"
        + ("; the graph's append-only log was rewritten" if report.graph_log_compacted else "")
        + ("; the subject's data key was destroyed" if report.key_destroyed else "")
    )
