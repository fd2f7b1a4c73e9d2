"""`twin run`: keep every scheduled connector in sync until stopped (SIGTERM or Ctrl-C finish the running syncs)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.console import Console

from api.runtime import Runtime
from connectors.registry import RegistryError
from connectors.routes import RouteError
from connectors.sync import SyncReport
from connectors.sync_runtime import ConnectorStatus

console = Console()


def run(
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this connector (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print nothing per run.")] = False,
) -> None:
    """Keep every scheduled connector in sync by itself (schedules in connectors.yaml; one runtime per connector)
    and deliver the change feed to every event route (routes.yaml)."""
    # with DATA_DIR/automations.yaml, the automations are evaluated over the feed and approved proposals executed;
    # with DATA_DIR/series.yaml, forecast models are retrained on their `retrain:` schedules and approved alerts
    from governance.decisions.automations import AutomationError
    from simulation.errors import SimulationError

    runtime = Runtime()
    try:
        live = runtime.sync_runtime(only)
        routes = runtime.route_runtime(holder=live.holder)
        decisions = runtime.decision_runtime(holder=live.holder)  # None without DATA_DIR/automations.yaml
        retraining = runtime.retrain_runtime(holder=live.holder)  # None without DATA_DIR/series.yaml
        if decisions is not None:
            decisions.start()
    except (RegistryError, RouteError, AutomationError, SimulationError) as exc:
        runtime.close()
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if not live.schedules and not routes.routes and decisions is None and retraining is None:
        runtime.close()
        console.print(
            "no connector has a schedule and no event route is configured; set `schedule:` in "
            "connectors.yaml or add routes.yaml",
            highlight=False,
        )
        raise typer.Exit(1)

    def report(status: ConnectorStatus, sync: SyncReport | None) -> None:
        if quiet:
            return
        if sync is None:
            console.print(
                f"{status.connector}: failed ({status.failures} in a row), next at "
                f"{status.next_run:%H:%M:%S}: {status.last_error}",
                highlight=False,
                markup=False,
            )
            return
        counts = sync.counts
        console.print(
            f"{status.connector}: {counts.get('read', 0)} read, {counts.get('created', 0)} created, "
            f"{counts.get('updated', 0)} updated, {counts.get('deleted', 0)} deleted, "
            f"{counts.get('quarantined', 0)} quarantined",
            highlight=False,
            markup=False,
        )

    live.on_run = report
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    console.print(
        f"runtime {live.holder}: "
        + ", ".join(f"{n} ({s.describe()})" for n, s in live.schedules.items())
        + "".join(f", route {name} -> {status.endpoint}" for name, status in ((s.route, s) for s in routes.status())),
        highlight=False,
        markup=False,
    )
    live.start()
    routes.start()
    if retraining is not None:
        retraining.start()
    try:
        stopping.wait()
    finally:
        console.print("stopping: finishing running syncs and deliveries, releasing leases", highlight=False)
        live.stop()
        routes.stop()
        if decisions is not None:
            decisions.stop()
        if retraining is not None:
            retraining.stop()
        runtime.close()
