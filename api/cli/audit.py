"""`twin audit ...`: verify the tamper-evident audit chain, sign checkpoints, export records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from api.runtime import Runtime
from governance.audit import load_checkpoints
from governance.key_files import ed25519_signing_key

app = typer.Typer(help="Verify and export the audit log.", no_args_is_help=True)
console = Console()


def _checkpoint_key(runtime: Runtime) -> Path:
    return runtime.settings.data_dir / "keys" / "audit-checkpoint.key"


@app.command()
def verify(
    checkpoints: Annotated[Path | None, typer.Option(help="Checkpoints exported earlier (kept off the box).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check the hash chain; name every altered, deleted, inserted or reordered record. Exit 1 on tampering."""
    runtime = Runtime()
    trusted = None
    loaded = None
    if checkpoints is not None:
        loaded = load_checkpoints(checkpoints)
        trusted = ed25519_signing_key(_checkpoint_key(runtime)).public_key()
    result = runtime.audit.verify(checkpoints=loaded, trusted_key=trusted)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "records_checked": result.records_checked,
                    "first_bad_seq": result.first_bad_seq,
                    "tampering": str(result.tampering) if result.tampering else None,
                    "message": result.message,
                    "problems": [
                        {"seq": p.seq, "tampering": str(p.kind), "message": p.message} for p in result.problems
                    ],
                }
            )
        )
    elif result.ok:
        console.print(f"[green]audit chain intact[/green]: {result.records_checked} records, head {result.head_seq}")
    else:
        console.print(f"[red]audit chain broken[/red] in {len(result.problems)} place(s):", highlight=False)
        for problem in result.problems:
            console.print(f"  seq {problem.seq} ({problem.kind}): {problem.message}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def checkpoint(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the checkpoints to this file.")
    ] = None,
) -> None:
    """Sign the current head of the chain with the data directory's Ed25519 key."""
    runtime = Runtime()
    signed = runtime.audit.checkpoint(ed25519_signing_key(_checkpoint_key(runtime)))
    if output is not None:
        runtime.audit.export_checkpoints(output)
    typer.echo(signed.to_json())


@app.command()
def export(
    output: Annotated[Path, typer.Argument(help="File to write (JSON lines).")],
) -> None:
    """Export every audit record as JSON lines."""
    count = Runtime().audit.export(output)
    console.print(f"exported {count} records to {output}")
