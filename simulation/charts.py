"""Charts people read: each KPI over time with 95 % confidence bands per scenario, and a scenario comparison."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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
