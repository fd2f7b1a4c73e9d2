"""Benchmark: forecasts and anomaly detection.

Usage: python tests/benchmarks/prediction.py [--series 1000] [--workers N] [--readings 100000]
Prints one JSON line per figure:
- `series_forecast_per_s`: weekly series of 3 years (156 weeks, the sample's demand model with random levels,
  seasons and noise) fitted, backtested (3 rolling origins x 13 weeks, every candidate, each refitted) and forecast
  per second on a process pool of `--workers` processes, cold: the pool's start (processes, statsforecast's imports)
  is inside the timed part (goal >= 40/s); `cpu_ms_per_series` says how much CPU one series took, which a loaded
  machine does not change as much as the wall-clock rate;
- `series_forecast_per_s_warm`: the same series again on the same pool, already started (what a long-running
  runtime that keeps its pool sees);
- `mase_vs_seasonal_naive` and `interval_coverage_80`: on the sample enterprise's 60 weekly demand series (30
  products x 2 channels), the last 13 weeks held out: the champion is chosen by backtest on the weeks before, and its
  calibrated forecast is scored on the held-out weeks — the mean over series of its MASE divided by the seasonal
  naive forecast's MASE on the same weeks (goal < 1), and the share of held-out weeks inside its 80 % band (goal
  0.75-0.85);
- `anomaly_readings_per_s`: readings scored per second by the anomaly monitor (goal >= 10,000).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connectors.sample.demand import DemandShape, demand_rng  # noqa: E402
from connectors.sample.enterprise import generate_sample, generate_sample_demand  # noqa: E402
from ontology.core import load_core  # noqa: E402
from simulation.forecast.anomaly import AnomalyMonitor, Observation  # noqa: E402
from simulation.forecast.forecasting import (  # noqa: E402
    Forecast,
    ForecastPool,
    fit_forecast,
    forecast_batch,
    mase_scale,
)
from simulation.forecast.series import SeriesReader, read_series  # noqa: E402

BUNDLED = Path(__file__).resolve().parents[2] / "simulation" / "forecast" / "series" / "sample.yaml"


def emit(figure: str, value: object, **extra: object) -> None:
    """Print one figure as a JSON line with the load average."""
    line = {"benchmark": "prediction", "figure": figure, "value": value, "load_avg": os.getloadavg()[0], **extra}
    print(json.dumps(line), flush=True)


def workers_cpu_seconds(pool: ForecastPool) -> float:
    """User + system CPU seconds the pool's worker processes have used so far (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in list(pool.executor._processes):  # noqa: SLF001 - a benchmark reads the pool's worker pids
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def weekly_series(count: int, seed: int = 1) -> list[np.ndarray]:
    """`count` weekly series of 156 weeks from the demand model (levels, peaks, trends and noise drawn)."""
    rng = demand_rng(seed, "benchmark")
    days = np.arange(19_000, 19_000 + 156 * 7)
    out = []
    for i in range(count):
        shape = DemandShape(
            float(rng.uniform(2, 60)),
            float(rng.uniform(-0.05, 0.15)),
            float(rng.uniform(0.05, 0.4)),
            int(rng.integers(1, 366)),
            float(rng.uniform(3, 20)),
        )
        daily = shape.draw(shape.expected(days, int(days[0])), demand_rng(seed, f"series-{i}"))
        out.append(daily.reshape(156, 7).sum(axis=1).astype(np.float64))
    return out


def holdout_scores(workers: int) -> tuple[float, float, int, dict[str, int]]:
    """Champion vs seasonal naive on the sample's demand series, last 13 weeks held out."""
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample"
        generate_sample(sample, "small")
        generate_sample_demand(sample)
        series = read_series(BUNDLED, load_core())
        found = SeriesReader(data_dir=Path(tmp)).read(series, "sample.demand")
    h = 13
    trains = [s.values[:-h] for s in found]
    forecasts = forecast_batch(trains, h, 52, workers=workers)
    ratios: list[float] = []
    inside: list[np.ndarray] = []
    kinds: dict[str, int] = {}
    for data, fc in zip(found, forecasts, strict=True):
        if not isinstance(fc, Forecast):
            continue
        train, test = data.values[:-h], data.values[-h:]
        scale = mase_scale(train, 52)
        naive = fit_forecast("seasonal_naive", train, h, 52)[0]
        champion_mase = np.mean(np.abs(test - fc.mean)) / scale
        naive_mase = np.mean(np.abs(test - naive)) / scale
        ratios.append(champion_mase / naive_mase)
        inside.append((test >= fc.lo) & (test <= fc.hi))
        kinds[fc.kind] = kinds.get(fc.kind, 0) + 1
    return float(np.mean(ratios)), float(np.concatenate(inside).mean()), len(ratios), kinds


def main() -> None:
    """Run each measurement once and print its figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--readings", type=int, default=100_000)
    args = parser.parse_args()

    # anomaly detection: a few machines' streams of three metrics
    rng = np.random.default_rng(3)
    per_stream = args.readings // 12
    readings = [
        Observation(f"erp:machine:M{m}", metric, f"2025-06-30T00:00:{i:06d}", float(v))
        for m in range(4)
        for metric in ("temperature_c", "vibration_mm_s", "power_kw")
        for i, v in enumerate(50 + rng.normal(0, 2, per_stream))
    ]
    monitor = AnomalyMonitor()
    start = time.perf_counter()
    events, _ = monitor.observe(readings)
    seconds = time.perf_counter() - start
    emit("anomaly_readings_per_s", round(len(readings) / seconds), readings=len(readings), false_alarms=len(events))

    ratio, coverage, count, kinds = holdout_scores(args.workers)
    emit("mase_vs_seasonal_naive", round(ratio, 4), series=count, champions=kinds)
    emit("interval_coverage_80", round(coverage, 4), series=count, held_out_weeks=13)

    series = weekly_series(args.series)
    start = time.perf_counter()
    pool = ForecastPool(args.workers)
    cold = forecast_batch(series, 13, 52, pool=pool)
    cold_seconds = time.perf_counter() - start
    start = time.perf_counter()
    warm = forecast_batch(series, 13, 52, pool=pool)
    warm_seconds = time.perf_counter() - start
    cpu = workers_cpu_seconds(pool)  # both passes (the workers come from a fork server: not our children)
    pool.close()
    chosen: dict[str, int] = {}
    for r in cold:
        if isinstance(r, Forecast):
            chosen[r.kind] = chosen.get(r.kind, 0) + 1
    emit(
        "series_forecast_per_s",
        round(len(series) / cold_seconds, 2),
        series=len(series),
        workers=args.workers,
        seconds=round(cold_seconds, 1),
        cpu_ms_per_series=round(1000 * cpu / (2 * len(series)), 1),
        failed=sum(not isinstance(r, Forecast) for r in cold),
        champions=chosen,
    )
    emit(
        "series_forecast_per_s_warm",
        round(len(series) / warm_seconds, 2),
        series=len(series),
        workers=args.workers,
        seconds=round(warm_seconds, 1),
        failed=sum(not isinstance(r, Forecast) for r in warm),
    )


if __name__ == "__main__":
    main()
