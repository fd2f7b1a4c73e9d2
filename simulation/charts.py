"""Charts people read: each KPI over time with 95 % confidence bands per scenario, a scenario comparison, and for
experiments a tornado chart (sensitivity) and the objective against evaluations (grid, optimisation)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from simulation.experiment import ExperimentResult, SensitivityRow  # noqa: E402
from simulation.runner import RunResult  # noqa: E402
from simulation.statistics import KpiSummary, interval_series  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = ("png", "svg")


def _series(runs: Sequence[RunResult], scenario: str, kpi: str) -> np.ndarray:
    chosen = sorted((r for r in runs if r.scenario == scenario), key=lambda r: r.replication)
    return np.asarray([r.series[kpi] for r in chosen])


def kpi_over_time(
    runs: Sequence[RunResult], kpi: str, out_dir: Path, title: str = "", step_days: int = 1
) -> list[Path]:
    """One chart of `kpi` over the horizon: per scenario the mean and its 95 % band; written as PNG and SVG."""
    scenarios = list(dict.fromkeys(r.scenario for r in runs))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for scenario in scenarios:
        matrix = _series(runs, scenario, kpi)
        if matrix.size == 0:
            continue
        mean, low, high = interval_series(matrix)
        days = np.arange(1, matrix.shape[1] + 1) * step_days
        ax.plot(days, mean, label=scenario, linewidth=1.4)
        ax.fill_between(days, low, high, alpha=0.2)
    ax.set_xlabel("day")
    ax.set_ylabel(kpi.replace("_", " "))
    ax.set_title(title or f"{kpi.replace('_', ' ')} over time (mean, 95 % CI)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, out_dir, f"kpi_{_safe(kpi)}")


def scenario_comparison(summaries: Sequence[KpiSummary], out_dir: Path, title: str = "") -> list[Path]:
    """Per KPI, each scenario's difference to baseline in % with its 95 % interval; PNG and SVG."""
    kpis = list(dict.fromkeys(s.kpi for s in summaries))
    scenarios = [s for s in dict.fromkeys(x.scenario for x in summaries) if s != "baseline"]
    base = {s.kpi: s.mean for s in summaries if s.scenario == "baseline"}
    fig, axes = plt.subplots(1, len(kpis), figsize=(max(4.0, 3.2 * len(kpis)), 4.2), squeeze=False)
    for ax, kpi in zip(axes[0], kpis, strict=True):
        values, errors = [], []
        for scenario in scenarios:
            s = next(x for x in summaries if x.kpi == kpi and x.scenario == scenario)
            scale = 100.0 / abs(base[kpi]) if base.get(kpi) else 1.0
            diff = (s.diff_mean or 0.0) * scale
            half = (
                ((s.diff_high - s.diff_low) / 2 * scale)
                if s.diff_high is not None and s.diff_low is not None and np.isfinite(s.diff_high)
                else 0.0
            )
            values.append(diff)
            errors.append(half)
        colours = ["#c0392b" if v < 0 else "#2e86c1" for v in values]
        ax.barh(range(len(scenarios)), values, xerr=errors, color=colours, capsize=3)
        ax.set_yticks(range(len(scenarios)), scenarios if ax is axes[0][0] else [""] * len(scenarios), fontsize=8)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(kpi.replace("_", " "), fontsize=9)
        ax.set_xlabel("vs baseline (%)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title or "Scenarios against baseline (mean difference, 95 % CI, paired)")
    fig.tight_layout()
    return _save(fig, out_dir, "scenario_comparison")


def study_charts(
    runs: Sequence[RunResult], summaries: Sequence[KpiSummary], out_dir: Path, step_days: int = 1
) -> list[Path]:
    """Every KPI over time plus the comparison chart; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kpi in dict.fromkeys(s.kpi for s in summaries):
        written += kpi_over_time(runs, kpi, out_dir, step_days=step_days)
    if any(s.scenario != "baseline" for s in summaries):
        written += scenario_comparison(summaries, out_dir)
    return written


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        fig.savefig(path, dpi=110, format=fmt)
        paths.append(path)
    plt.close(fig)
    return paths


def tornado(rows: Sequence[SensitivityRow], out_dir: Path, title: str = "") -> list[Path]:
    """A tornado chart of a sensitivity analysis: per variable the objective's change at its low and high value."""
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.8))
    names = [r.variable for r in rows][::-1]
    lows = [r.low_diff for r in rows][::-1]
    highs = [r.high_diff for r in rows][::-1]
    ax.barh(names, lows, color="#2e86c1", label="at its low value")
    ax.barh(names, highs, color="#c0392b", alpha=0.8, label="at its high value")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("objective vs the centre (paired mean difference)")
    ax.set_title(title or "Sensitivity (one at a time)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out_dir, "tornado")


def optimisation_progress(result: ExperimentResult, out_dir: Path, title: str = "") -> list[Path]:
    """The objective of each evaluation in the order it was made (with its 95 % CI) and the best so far."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    evaluations = sorted(result.evaluations, key=lambda e: e.index)
    x = [e.index + 1 for e in evaluations]
    y = [e.mean for e in evaluations]
    err = [(e.ci_high - e.ci_low) / 2 for e in evaluations]
    colours = ["#2e86c1" if e.feasible else "#aaaaaa" for e in evaluations]
    ax.errorbar(x, y, yerr=err, fmt="none", ecolor="#999999", capsize=2)
    ax.scatter(x, y, c=colours, zorder=3, label="evaluation (grey: infeasible)")
    best, running = [], None
    for e in evaluations:
        better = running is None or (e.objective < running if result.sense == "minimize" else e.objective > running)
        if e.feasible and better:
            running = e.objective
        best.append(running if running is not None else np.nan)
    ax.step(x, best, where="post", color="#c0392b", label="best feasible so far")
    ax.axhline(result.baseline.mean, color="black", linestyle="--", linewidth=0.8, label="baseline")
    ax.set_xlabel("evaluation")
    ax.set_ylabel(f"objective ({result.statistic}, {result.sense})")
    ax.set_title(title or f"{result.name}: objective vs evaluations ({result.sampler})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _save(fig, out_dir, "objective_vs_evaluations")


def experiment_charts(result: ExperimentResult, out_dir: Path) -> list[Path]:
    """The tornado chart of a sensitivity analysis, the progress chart of a grid or optimisation; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if result.sensitivity:
        return tornado(result.sensitivity, out_dir, f"{result.name}: sensitivity ({result.sampler})")
    return optimisation_progress(result, out_dir)
