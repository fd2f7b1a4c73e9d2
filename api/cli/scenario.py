"""`twin scenario ...`: run what-if studies from YAML, list, show and compare stored studies, export, chart; run
experiments (grid, sensitivity, optimisation) over decisions with `twin scenario optimize`."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.runtime import Runtime
from governance.errors import GovernanceError
from graph.errors import GraphError
from ontology.errors import OntologyError
from simulation.charts import study_charts
from simulation.errors import SimulationError
from simulation.experiment import ExperimentResult
from simulation.results import StoredStudy
from simulation.runner import executor_named
from simulation.scenario import read_spec
from simulation.service import rerun_scenario_study, run_scenario_study
from simulation.statistics import KpiSummary

app = typer.Typer(
    help="What-if studies on the twin: run scenarios, compare them against baseline.", no_args_is_help=True
)
console = Console()
BUNDLED = Path(__file__).resolve().parents[2] / "simulation" / "scenarios"
BUNDLED_EXPERIMENTS = Path(__file__).resolve().parents[2] / "simulation" / "experiments"


def _fail(exc: Exception) -> None:
    console.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(1) from None


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"


def _summary_table(title: str, summaries: list[KpiSummary]) -> Table:
    table = Table(title=title)
    for name in ("scenario", "KPI", "mean", "95 % CI", "P10", "P90", "vs baseline (95 % CI)", "P(breach)"):
        table.add_column(name, justify="left" if name in ("scenario", "KPI") else "right")
    for s in summaries:
        diff = (
            "-" if s.diff_mean is None else (f"{_number(s.diff_mean)} [{_number(s.diff_low)}, {_number(s.diff_high)}]")
        )
        table.add_row(
            s.scenario,
            s.kpi,
            _number(s.mean),
            f"[{_number(s.ci_low)}, {_number(s.ci_high)}]",
            _number(s.p10),
            _number(s.p90),
            diff,
            _number(s.p_breach, 2),
        )
    return table


def _study_json(study: StoredStudy) -> dict[str, Any]:
    r = study.record
    return {
        "study_id": r.study_id,
        "name": r.name,
        "created_at": r.created_at,
        "model_version": r.model_version,
        "twin_state_time": r.twin_state_time,
        "slice_digest": r.slice_digest,
        "seed": r.seed,
        "replications": r.replications,
        "executor": r.executor,
        "wall_seconds": r.wall_seconds,
        "agent_steps": r.agent_steps,
        "run_id": r.run_id,
        "calibration_sources": r.calibration,
        "summaries": [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(s).items()}
            for s in study.summaries
        ],
    }


def _write_csv(path: Path, summaries: list[KpiSummary], study_id: str) -> None:
    buffer = io.StringIO()
    fields = ["study_id", *asdict(summaries[0]).keys()] if summaries else ["study_id"]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for s in summaries:
        writer.writerow({"study_id": study_id, **asdict(s)})
    path.write_text(buffer.getvalue())


def _outputs(study: StoredStudy, as_json: bool, csv_path: Path | None, charts: Path | None, step_days: int) -> None:
    if as_json:
        typer.echo(json.dumps(_study_json(study), default=str))
    else:
        r = study.record
        console.print(
            f"study [bold]{r.study_id}[/bold] {r.name}: {r.replications} replications, seed {r.seed}, "
            f"{r.executor} executor, {r.wall_seconds:.1f} s, twin read {r.twin_state_time}, "
            f"model {r.model_version}",
            highlight=False,
        )
        console.print(_summary_table(r.name, study.summaries))
    if csv_path is not None:
        _write_csv(csv_path, study.summaries, study.record.study_id)
        if not as_json:
            console.print(f"summaries written to {csv_path}")
    if charts is not None:
        written = study_charts(study.runs, study.summaries, charts, step_days=step_days)
        if not as_json:
            console.print(f"{len(written)} chart files written to {charts}")


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="A study spec (YAML); `bundled:NAME` for a bundled example.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored study as JSON.")] = False,
    replications: Annotated[int | None, typer.Option("--replications", "-n", help="Override the spec's.")] = None,
    executor: Annotated[str, typer.Option(help="local (process pool), dask, or serial.")] = "local",
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: CPU count).")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address (default: a LocalCluster).")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write the summaries as CSV.")] = None,
    charts: Annotated[Path | None, typer.Option(help="Write PNG and SVG charts into this folder.")] = None,
) -> None:
    """Run a study: baseline and scenarios, N replications with common random numbers; store and print it."""
    runtime = Runtime()
    try:
        path = BUNDLED / f"{str(file)[8:]}.yaml" if str(file).startswith("bundled:") else file
        parsed = read_spec(path)
        results = runtime.results
        chosen = executor_named(executor, workers, scheduler)
        try:
            done = run_scenario_study(
                parsed,
                runtime.store,
                results,
                subject=runtime.operator(),
                policy=runtime.policy,
                audit=runtime.audit,
                lineage=runtime.lineage,
                executor=chosen,
                replications=replications,
                progress=not as_json,
            )
        finally:
            close = getattr(chosen, "close", None)
            if close is not None:
                close()
        _outputs(results.get(done.study_id), as_json, csv_path, charts, parsed.spec.step_days)
    except (SimulationError, GraphError, OntologyError, GovernanceError) as exc:
        _fail(exc)
    finally:
        runtime.close()


@app.command("list")
def list_studies(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    bundled: Annotated[bool, typer.Option("--bundled", help="List the bundled example specs instead.")] = False,
) -> None:
    """Stored studies, newest first (or the bundled example specs)."""
    if bundled:
        for path in sorted(BUNDLED.glob("*.yaml")):
            typer.echo(f"bundled:{path.stem}\t{path}")
        return
    runtime = Runtime()
    try:
        studies = runtime.results.studies()
    finally:
        runtime.close()
    if as_json:
        for r in studies:
            typer.echo(
                json.dumps(
                    {
                        "study_id": r.study_id,
                        "name": r.name,
                        "created_at": r.created_at,
                        "replications": r.replications,
                        "model_version": r.model_version,
                    }
                )
            )
        return
    table = Table()
    for name in ("id", "name", "created", "replications", "executor", "seconds"):
        table.add_column(name)
    for r in studies:
        table.add_row(r.study_id, r.name, r.created_at, str(r.replications), r.executor, f"{r.wall_seconds:.1f}")
    console.print(table)


@app.command()
def show(
    study_id: Annotated[str, typer.Argument(help="A stored study id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write the summaries as CSV.")] = None,
    charts: Annotated[Path | None, typer.Option(help="Write PNG and SVG charts into this folder.")] = None,
) -> None:
    """Show a stored study: settings, per KPI mean, CI, P10/P90, difference to baseline, breach probability."""
    runtime = Runtime()
    try:
        _outputs(runtime.results.get(study_id), as_json, csv_path, charts, 1)
    except SimulationError as exc:
        _fail(exc)
    finally:
        runtime.close()


@app.command()
def compare(
    study_ids: Annotated[list[str], typer.Argument(help="Stored study ids.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compare stored studies side by side: each scenario's KPI means and differences to its baseline."""
    runtime = Runtime()
    try:
        studies = [runtime.results.get(i) for i in study_ids]
    except SimulationError as exc:
        _fail(exc)
        return
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps([_study_json(s) for s in studies], default=str))
        return
    rows = [(s.record.study_id, s.record.name, x) for s in studies for x in s.summaries]
    table = Table(title="studies compared")
    for name in ("study", "scenario", "KPI", "mean", "vs baseline", "95 % CI of difference"):
        table.add_column(name)
    for study_id, name, s in rows:
        table.add_row(
            f"{study_id} {name}",
            s.scenario,
            s.kpi,
            _number(s.mean),
            _number(s.diff_mean),
            "-" if s.diff_mean is None else f"[{_number(s.diff_low)}, {_number(s.diff_high)}]",
        )
    console.print(table)


@app.command()
def rerun(
    study_id: Annotated[str, typer.Argument(help="A stored study id.")],
    executor: Annotated[str, typer.Option(help="local, dask or serial.")] = "local",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run a stored study again on its stored slice and seeds; its numbers come out the same."""
    runtime = Runtime()
    try:
        results = runtime.results
        chosen = executor_named(executor)
        try:
            done = rerun_scenario_study(
                study_id,
                results,
                subject=runtime.operator(),
                policy=runtime.policy,
                audit=runtime.audit,
                lineage=runtime.lineage,
                executor=chosen,
            )
        finally:
            close = getattr(chosen, "close", None)
            if close is not None:
                close()
        _outputs(results.get(done.study_id), as_json, None, None, 1)
    except (SimulationError, GovernanceError) as exc:
        _fail(exc)
    finally:
        runtime.close()


def _decision(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "(baseline)"


def _experiment_json(experiment_id: str, result: ExperimentResult) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    best = result.best_evaluation
    return clean(
        {
            "experiment_id": experiment_id,
            **asdict(result),
            "best_decision": best.decision if best else None,
        }
    )


def _print_experiment(experiment_id: str, result: ExperimentResult) -> None:
    console.print(
        f"experiment [bold]{experiment_id}[/bold] {result.name}: {result.kind} ({result.sampler}), "
        f"{len(result.evaluations)} decisions x {len(result.seeds)} replications = {result.runs} runs, "
        f"{result.executor} executor, {result.wall_seconds:.1f} s",
        highlight=False,
    )
    if result.sensitivity:
        table = Table(title=f"sensitivity of the objective ({result.statistic}) around the centre (paired, 95 % CI)")
        for name in ("variable", "low", "at low", "high", "at high", "swing", "S1", "ST"):
            table.add_column(name, justify="left" if name == "variable" else "right")
        for r in result.sensitivity:
            table.add_row(
                r.variable,
                _number(r.low_value),
                f"{_number(r.low_diff)} [{_number(r.low_ci[0])}, {_number(r.low_ci[1])}]",
                _number(r.high_value),
                f"{_number(r.high_diff)} [{_number(r.high_ci[0])}, {_number(r.high_ci[1])}]",
                _number(r.swing),
                _number(r.first_order, 2),
                _number(r.total_order, 2),
            )
        console.print(table)
        return
    table = Table(title=f"decisions, best first ({result.sense} the {result.statistic} objective)")
    for name in ("#", "decision", "objective", "mean (95 % CI)", "feasible", "frontier"):
        table.add_column(name, justify="left" if name == "decision" else "right")
    key = (lambda e: e.objective) if result.sense == "minimize" else (lambda e: -e.objective)
    for e in sorted(result.evaluations, key=lambda e: (not e.feasible, key(e)))[:25]:
        table.add_row(
            str(e.index),
            _decision(e.decision),
            _number(e.objective),
            f"{_number(e.mean)} [{_number(e.ci_low)}, {_number(e.ci_high)}]",
            "yes" if e.feasible else "no",
            "*" if e.index in result.frontier else "",
        )
    console.print(table)
    best = result.best_evaluation
    if best is not None and result.best_vs_baseline is not None:
        c = result.best_vs_baseline
        console.print(
            f"best: [bold]{_decision(best.decision)}[/bold] objective {_number(best.objective)} "
            f"(mean {_number(best.mean)}, 95 % CI [{_number(best.ci_low)}, {_number(best.ci_high)}]); vs baseline "
            f"{_number(c.mean)} [{_number(c.low)}, {_number(c.high)}] paired over the same seeds",
            highlight=False,
        )
    if result.runner_up_vs_best is not None:
        runner = result.runner_up_vs_best
        console.print(
            f"runner-up #{runner.a} vs best: {_number(runner.mean)} [{_number(runner.low)}, {_number(runner.high)}]",
            highlight=False,
        )


@app.command()
def optimize(
    file: Annotated[
        Path | None, typer.Argument(help="An experiment spec (a study with `experiment:`); `bundled:NAME` for one.")
    ] = None,
    rerun_of: Annotated[str | None, typer.Option("--rerun", help="Run a stored experiment again instead.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored experiment as JSON.")] = False,
    executor: Annotated[str, typer.Option(help="local (process pool), dask, or serial.")] = "local",
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: CPU count).")] = None,
    charts: Annotated[Path | None, typer.Option(help="Write PNG and SVG charts into this folder.")] = None,
) -> None:
    """Run an experiment: a grid, a sensitivity analysis or an optimisation over decisions; store and print it."""
    from simulation.charts import experiment_charts
    from simulation.experiment_spec import parse_experiment
    from simulation.service import rerun_experiment_study, run_experiment_study

    if (file is None) == (rerun_of is None):
        _fail(SimulationError("give an experiment spec file or --rerun ID"))
    runtime = Runtime()
    try:
        chosen = executor_named(executor, workers)
        try:
            if rerun_of is not None:
                done = rerun_experiment_study(
                    rerun_of,
                    runtime.results,
                    subject=runtime.operator(),
                    policy=runtime.policy,
                    audit=runtime.audit,
                    lineage=runtime.lineage,
                    executor=chosen,
                )
            else:
                assert file is not None
                if str(file).startswith("bundled:"):
                    file = BUNDLED_EXPERIMENTS / f"{str(file)[8:]}.yaml"
                try:
                    text = file.read_text()
                except OSError as exc:
                    raise SimulationError(f"{file}: cannot read the file: {exc.strerror}") from None
                done = run_experiment_study(
                    parse_experiment(text, str(file)),
                    runtime.store,
                    runtime.results,
                    subject=runtime.operator(),
                    policy=runtime.policy,
                    audit=runtime.audit,
                    lineage=runtime.lineage,
                    executor=chosen,
                )
        finally:
            close = getattr(chosen, "close", None)
            if close is not None:
                close()
        if as_json:
            typer.echo(json.dumps(_experiment_json(done.experiment_id, done.result), default=str))
        else:
            _print_experiment(done.experiment_id, done.result)
        if charts is not None:
            written = experiment_charts(done.result, charts)
            if not as_json:
                console.print(f"{len(written)} chart files written to {charts}")
    except (SimulationError, GraphError, OntologyError, GovernanceError) as exc:
        _fail(exc)
    finally:
        runtime.close()
