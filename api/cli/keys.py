"""`twin keys`: the master key and the per-subject data keys it wraps."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console

from api.runtime import Runtime
from governance.audit import AuditEvent
from governance.errors import GovernanceError
from governance.master_key import FileMasterKey, decode_master_key, new_master_key_text

app = typer.Typer(help="The master key and the per-subject data keys it wraps.", no_args_is_help=True)
console = Console()


@app.command("rotate-master")
def rotate_master(
    new_key_env: Annotated[
        str | None,
        typer.Option(
            help="Name of an environment variable holding the new master key (base64 of 32 bytes); required when "
            "the current key comes from TWIN_MASTER_KEY, which you then set to the new key. Default with a key "
            "file: a new random key written to the file."
        ),
    ] = None,
) -> None:
    """Re-wrap every subject's data key under a new master key; sealed values are not touched."""
    runtime = Runtime()
    try:
        ring = runtime.subject_keys
        subject = runtime.operator()
        runtime.policy.require(subject, "operation", "keys.rotate")
        if new_key_env is not None:
            text = os.environ.get(new_key_env)
            if text is None:
                raise typer.BadParameter(f"environment variable {new_key_env} is not set", param_hint="--new-key-env")
            decode_master_key(text, f"environment variable {new_key_env}")
        elif isinstance(ring.provider, FileMasterKey):
            text = new_master_key_text()
        else:
            raise typer.BadParameter(
                "the master key comes from TWIN_MASTER_KEY: name the variable holding the new key",
                param_hint="--new-key-env",
            )
        count = ring.rotate_master(text)
        runtime.audit.append(
            AuditEvent.for_subject(
                subject,
                "keys.rotate-master",
                "allow",
                policy_version=runtime.policy.version,
                rows_returned=count,
                detail=f"re-wrapped {count} subject keys",
            )
        )
    except GovernanceError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    where = "written to " + str(ring.provider.path) if isinstance(ring.provider, FileMasterKey) else "in effect"
    console.print(
        f"re-wrapped {count} subject keys under the new master key ({where})"
        + ("" if isinstance(ring.provider, FileMasterKey) else f"; set TWIN_MASTER_KEY to the value of {new_key_env}"),
        highlight=False,
    )


@app.command("status")
def status() -> None:
    """Check the master key against the key ring and count the subjects holding a data key."""
    runtime = Runtime()
    try:
        ring = runtime.subject_keys
        console.print(f"master key from {ring.provider.name} opens the key ring; {ring.count()} subject keys")
    except GovernanceError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
