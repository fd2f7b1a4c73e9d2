"""`twin forecast ...`: forecast defined series, show stored forecasts with a console chart, backtest models, and
govern the model versions (list, approve, promote, check drift)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.runtime import Runtime
from governance.errors import GovernanceError
from graph.errors import GraphError
from ontology.errors import OntologyError
from simulation.errors import SimulationError

app = typer.Typer(
    help="Forecasts of KPI and demand series: run, show, backtest; model versions: list, approve, promote, drift.",
    no_args_is_help=True,
)
console = Console()
BUNDLED = Path(__file__).resolve().parents[2] / "simulation" / "forecast" / "series" / "sample.yaml"
FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="Series definitions (YAML); the sample's bundled ones by default.")
]


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}", highlight=False, markup=False)
    raise typer.Exit(1) from None


def _context(runtime: Runtime, graph: bool) -> Any:
    from governance.models import ModelRegistry
    from simulation.forecast.service import ForecastContext
    from simulation.forecast.store import ForecastStore

    url = runtime.settings.resolved_database_url
    return ForecastContext(
        ForecastStore(url),
        ModelRegistry(url, runtime.audit, runtime.policy),
        runtime.policy,
        runtime.audit,
        graph=runtime.store if graph else None,
        database_url=url,
        data_dir=runtime.settings.data_dir,
        workers=os.cpu_count() or 1,
    )


def _series(runtime: Runtime, path: Path, name: str) -> tuple[Any, bool]:
    from simulation.forecast.series import read_series

    series = read_series(path, runtime.ontology)
    return series, series.get(name).source.kind == "twins"


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="A series name (NAME, or NAME/KEY for one group).")],
    file: FileOption = BUNDLED,
    horizon: Annotated[int | None, typer.Option(help="Periods ahead (the definition's by default).")] = None,
    windows: Annotated[int, typer.Option(help="Backtest windows (rolling origins).")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Forecast a series with its champion model: backtest every candidate, store the forecast, register models."""
    from simulation.forecast.service import run_forecasts

    runtime = Runtime()
    try:
        series, graph = _series(runtime, file, name)
        outcomes = run_forecasts(
            series, name, _context(runtime, graph), subject=runtime.operator(), horizon=horizon, windows=windows
        )
    except (SimulationError, GraphError, OntologyError, GovernanceError) as exc:
        _fail(exc)
        return
    finally:
        runtime.close()
    if as_json:
        for o in outcomes:
            typer.echo(json.dumps(o.__dict__, default=str))
        return
    table = Table(title=f"forecasts of {name}")
    for column in ("series", "status", "model", "version", "MASE", "sMAPE %", "cov 80", "best", "challenger", "notes"):
        table.add_column(column)
    for o in outcomes:
        m = o.metrics
        table.add_row(
            o.series,
            o.status,
            o.kind or "-",
            o.model_version or "-",
            _number(m.get("mase")),
            _number(m.get("smape"), 1),
            _number(m.get("coverage_80"), 2),
            o.best_kind or "-",
            o.challenger or "-",
            o.error or "; ".join(o.warnings)[:80],
        )
    console.print(table)
    failed = sum(o.status != "stored" for o in outcomes)
    console.print(f"{len(outcomes) - failed} stored, {failed} failed", highlight=False)


def chart(history: list[float], mean: list[float], lo: list[float], hi: list[float], height: int = 12) -> list[str]:
    """A text chart: history (o), forecast (*) and its 80 % band (:), newest on the right."""
    values = [*history, *lo, *hi]
    top, bottom = max(values), min(values)
    span = (top - bottom) or 1.0

    def row(v: float) -> int:
        return min(height - 1, max(0, round((top - v) / span * (height - 1))))

    grid = [[" "] * (len(history) + len(mean)) for _ in range(height)]
    for x, v in enumerate(history):
        grid[row(v)][x] = "o"
    for i, (m, low, high) in enumerate(zip(mean, lo, hi, strict=True)):
        x = len(history) + i
        for y in range(row(high), row(low) + 1):
            grid[y][x] = ":"
        grid[row(m)][x] = "*"
    labels = [f"{top - span * y / (height - 1):>10.4g} |" for y in range(height)]
    return [label + "".join(line) for label, line in zip(labels, grid, strict=True)]


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="A series name (NAME/KEY for a grouped series).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored forecast as JSON.")] = False,
    points: Annotated[int, typer.Option(help="History periods in the chart.")] = 52,
) -> None:
    """The newest stored forecast of a series: model version, input digest, lineage, the band, a console chart."""
    from simulation.forecast.service import read_forecast

    runtime = Runtime()
    try:
        stored = read_forecast(name, _context(runtime, False), subject=runtime.operator())
    except (SimulationError, GovernanceError) as exc:
        _fail(exc)
        return
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps(stored.__dict__, default=str))
        return
    console.print(
        f"forecast {stored.forecast_id} of {stored.series}: {stored.model_kind} (model version "
        f"{stored.model_version}, {stored.code_version}), {stored.interval} 80 % band, input digest "
        f"{stored.input_digest[:16]}…, made {stored.created_at} by {stored.created_by}",
        highlight=False,
        markup=False,
    )
    lineage = stored.lineage
    console.print(
        f"read from {lineage.get('source')} ({lineage.get('rows')} rows; twins {lineage.get('twins')}, "
        f"runs {', '.join(lineage.get('runs') or []) or '-'})",
        highlight=False,
        markup=False,
    )
    for warning in stored.warnings:
        console.print(f"warning: {warning}", highlight=False, markup=False)
    p = stored.points
    for line in chart(stored.history["values"][-points:], p["mean"], p["lo"], p["hi"]):
        typer.echo(line)
    table = Table()
    for column in ("period", "forecast", "80 % low", "80 % high"):
        table.add_column(column, justify="right")
    for period, m, lo, hi in zip(p["periods"], p["mean"], p["lo"], p["hi"], strict=True):
        table.add_row(period, f"{m:,.2f}", f"{lo:,.2f}", f"{hi:,.2f}")
    console.print(table)


@app.command()
def backtest(
    name: Annotated[str, typer.Argument(help="A series name (NAME, or NAME/KEY for one group).")],
    file: FileOption = BUNDLED,
    horizon: Annotated[
        int | None, typer.Option(help="Periods per window (the definition's horizon by default).")
    ] = None,
    windows: Annotated[int, typer.Option(help="Backtest windows (rolling origins).")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Rolling-origin backtests of every candidate model on a series (nothing stored): MASE, sMAPE, coverage."""
    from simulation.forecast.service import backtest_series

    runtime = Runtime()
    try:
        series, graph = _series(runtime, file, name)
        results = backtest_series(
            series, name, _context(runtime, graph), subject=runtime.operator(), horizon=horizon, windows=windows
        )
    except (SimulationError, GraphError, OntologyError, GovernanceError) as exc:
        _fail(exc)
        return
    finally:
        runtime.close()
    if as_json:
        for series_name, found in results.items():
            typer.echo(json.dumps({"series": series_name, **found}, default=str))
        return
    table = Table(title=f"backtests of {name}")
    for column in ("series", "model", "MASE", "sMAPE %", "cov 80", "band", "champion"):
        table.add_column(column)
    for series_name, found in results.items():
        for kind, metrics in found["backtests"].items():
            table.add_row(
                series_name,
                kind,
                _number(metrics.get("mase")),
                _number(metrics.get("smape"), 1),
                _number(metrics.get("coverage_80"), 2),
                metrics.get("interval", "-"),
                "yes" if kind == found["champion"] else "",
            )
    console.print(table)


@app.command()
def models(name: Annotated[str, typer.Argument(help="A series name (NAME/KEY for a grouped series).")]) -> None:
    """The model versions of a series: champion, challengers, retired ones; open retrain alerts."""
    runtime = Runtime()
    try:
        ctx = _context(runtime, False)
        versions = ctx.registry.versions(name)
        alerts = ctx.registry.alerts(name)
        approved = ctx.registry.alerts(name, status="approved")
    finally:
        runtime.close()
    table = Table(title=f"model versions of {name}")
    for column in ("version", "status", "kind", "trained", "by", "approved by", "MASE", "window"):
        table.add_column(column)
    for v in versions:
        table.add_row(
            v.version_id,
            v.status,
            v.kind,
            v.trained_at[:19],
            v.trained_by,
            v.approved_by or "-",
            _number(v.metrics.get("mase")),
            f"{v.train_start} .. {v.train_end}",
        )
    console.print(table)
    for alert in alerts:
        console.print(f"open {alert.kind} alert {alert.alert_id}: {'; '.join(alert.reasons)}", highlight=False)
    for alert in approved:
        console.print(
            f"approved {alert.kind} alert {alert.alert_id}: waiting for the runtime to retrain", highlight=False
        )


@app.command()
def approve(version: Annotated[str, typer.Argument(help="A model version id.")]) -> None:
    """Approve a challenger for promotion as the local operator (refused for the person who trained it)."""
    runtime = Runtime()
    try:
        approved = _context(runtime, False).registry.approve(runtime.operator(), version)
    except GovernanceError as exc:
        _fail(exc)
        return
    finally:
        runtime.close()
    console.print(f"version {approved.version_id} approved by {approved.approved_by}", highlight=False, markup=False)


@app.command()
def promote(version: Annotated[str, typer.Argument(help="A model version id.")]) -> None:
    """Make an approved challenger its series' champion (refused when it is not approved)."""
    runtime = Runtime()
    try:
        promoted = _context(runtime, False).registry.promote(runtime.operator(), version)
    except GovernanceError as exc:
        _fail(exc)
        return
    finally:
        runtime.close()
    console.print(f"version {promoted.version_id} is the champion of {promoted.series}", highlight=False, markup=False)


@app.command()
def drift(
    name: Annotated[str, typer.Argument(help="A series name (NAME, or NAME/KEY for one group).")],
    file: FileOption = BUNDLED,
) -> None:
    """Check each group of a series for input drift and accuracy decay; raises retrain alerts."""
    from simulation.forecast.service import check_drift

    runtime = Runtime()
    try:
        series, graph = _series(runtime, file, name)
        reports = check_drift(series, name, _context(runtime, graph), subject=runtime.operator())
    except (SimulationError, GraphError, OntologyError, GovernanceError) as exc:
        _fail(exc)
        return
    finally:
        runtime.close()
    for r in reports:
        verdict = "; ".join(r.reasons) if r.drifted else "no drift"
        console.print(
            f"{r.series}: PSI {r.psi:.3f}, KS p {r.ks_p_value:.2g}, accuracy ratio {_number(r.accuracy_ratio, 2)}: "
            f"{verdict}" + (f" (alert {r.alert_id})" if r.alert_id else ""),
            highlight=False,
            markup=False,
        )


@app.command()
def retrain(
    name: Annotated[str, typer.Argument(help="A series name (NAME, or NAME/KEY for one group).")],
    file: FileOption = BUNDLED,
    windows: Annotated[int, typer.Option(help="Backtest windows (rolling origins).")] = 3,
) -> None:
    """Retrain a series' models now: each group's best model on the newest data becomes a new version (a
    challenger: promotion still needs another person's approval)."""
    from simulation.forecast.service import run_forecasts

    runtime = Runtime()
    try:
        series, graph = _series(runtime, file, name)
        outcomes = run_forecasts(
            series, name, _context(runtime, graph), subject=runtime.operator(), windows=windows, retrain="by hand"
        )
    except (SimulationError, GraphError, OntologyError, GovernanceError) as exc:
        _fail(exc)
        return
    finally:
        runtime.close()
    for o in outcomes:
        if o.status != "stored":
            line = f"{o.series}: failed: {o.error}"
        elif o.challenger:
            line = f"{o.series}: new version {o.challenger} ({o.best_kind}), a challenger to {o.model_version}"
        else:
            line = f"{o.series}: no new version (nothing new to train on); champion {o.model_version}"
        console.print(line, highlight=False, markup=False)


@app.command("approve-retrain")
def approve_retrain(
    alert: Annotated[str, typer.Argument(help="A retrain alert id (see `twin forecast models`).")],
) -> None:
    """Approve the retraining a drift alert proposes (refused for whoever raised it); the runtime retrains it."""
    runtime = Runtime()
    try:
        approved = _context(runtime, False).registry.approve_retrain(runtime.operator(), alert)
    except GovernanceError as exc:
        _fail(exc)
        return
    finally:
        runtime.close()
    console.print(
        f"retraining of {approved.series} approved ({approved.alert_id}); the runtime of `twin run`/`twin serve` "
        "retrains it when DATA_DIR/series.yaml defines it, or run `twin forecast retrain` now",
        highlight=False,
        markup=False,
    )
