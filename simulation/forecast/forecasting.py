"""Forecasts with statsforecast: AutoETS, AutoTheta, AutoARIMA, MSTL and the seasonal-naive baseline (always
computed), rolling-origin backtests (MASE, sMAPE, 80 % interval coverage), intervals calibrated by conformal scaling,
and the champion chosen by backtest.

Backtest: the last `windows` x `horizon` periods are forecast window by window, each from the history before it
(refitting every model). MASE scales the mean absolute error by the in-sample seasonal-naive error of the training
part (1-step naive when the training part is shorter than two seasons). Intervals (normalised split-conformal
prediction): each backtest error is divided by the model's own 80 % half-width at that step, and the band of the
forecast is the model's own band scaled by the finite-sample conformal quantile of those ratios — so a model whose own
band is too narrow (MSTL's, AutoETS's on seasonal data) or too wide gets 80 % out of sample, keeping the shape its
own band has over the horizon. The coverage this gives is measured leaving each window out of its own calibration;
with a single window (no out-of-sample check) the model's own band is kept.

Candidates (`default_kinds`): for seasons up to MAX_ARIMA_SEASON periods, AutoETS, AutoTheta and AutoARIMA; for
longer seasons (weekly data with a yearly season), MSTL — STL with a smooth seasonal component (a seasonal window
across years), its seasonally adjusted part forecast by simple exponential smoothing (ETS "ANN": a 13-week
extrapolated trend is a risk the backtest rarely rewards, and the automatic ETS search costs several times as
much with the same accuracy on the sample's demand) — because a seasonal ARIMA or ETS of
52 periods is impractically slow and the non-seasonal ones cannot follow the year. `forecast_batch` forecasts many
series on a process pool (`ForecastPool` keeps one open, with statsforecast imported in each worker).

Documented fallbacks, each with a warning and never an exception mid-batch: a constant series gets the naive
forecast with a zero-width band; a series shorter than two seasons plus the backtest is modelled without season; a
series too short for any backtest (fewer than `MIN_BACKTEST_TRAIN` + horizon periods) gets the naive forecast
without metrics; a model that fails on a window is left out of the series' comparison.
"""

from __future__ import annotations

import math
import os
import warnings as pywarnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulation.forecast.errors import SeriesDataError

MODEL_KINDS: tuple[str, ...] = ("seasonal_naive", "auto_ets", "auto_theta", "auto_arima", "mstl")
"""The candidate models, baseline first; `naive` is the documented fallback."""
MODEL_VERSION = "forecast-2"
"""Version of this module's modelling (backtest scheme, calibration); stored with every model version."""
LEVEL = 80
MIN_BACKTEST_TRAIN = 8
MIN_POOL_SERIES = 16  # fewer series are forecast in this process: starting workers would cost more than it saves
MAX_ARIMA_SEASON = 24  # longer seasons (52 weeks): seasonal ARIMA and ETS are impractically slow; MSTL instead
SHORT_SEASON_KINDS: tuple[str, ...] = ("seasonal_naive", "auto_ets", "auto_theta", "auto_arima")
LONG_SEASON_KINDS: tuple[str, ...] = ("seasonal_naive", "mstl")


def default_kinds(season_length: int) -> tuple[str, ...]:
    """The candidates for a season length: the baseline, AutoETS, AutoTheta and AutoARIMA up to MAX_ARIMA_SEASON
    periods; the baseline and MSTL for longer seasons (weekly data with a yearly season), where a seasonal ARIMA or
    ETS is impractically slow and the non-seasonal AutoETS, AutoTheta and AutoARIMA cannot follow the year (on the
    sample's demand they were no better than seasonal naive, at several times MSTL's cost)."""
    if season_length > MAX_ARIMA_SEASON:
        return LONG_SEASON_KINDS
    return SHORT_SEASON_KINDS


def make_model(kind: str, season_length: int) -> Any:
    """The statsforecast model of a kind for a season length (1 = no season)."""
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, AutoTheta, Naive, SeasonalNaive

    m = max(1, season_length)
    if kind == "seasonal_naive":
        return SeasonalNaive(season_length=m) if m > 1 else Naive()
    if kind == "naive":
        return Naive()
    if kind == "auto_ets":
        return AutoETS(season_length=m if m <= 24 else 1)
    if kind == "auto_theta":
        return AutoTheta(season_length=m)
    if kind == "auto_arima":
        if m > MAX_ARIMA_SEASON:
            return AutoARIMA(season_length=1, approximation=True)
        return AutoARIMA(season_length=m, approximation=True)
    if kind == "mstl":
        if m < 2:
            raise SeriesDataError("MSTL needs a season of at least 2 periods")
        return MSTL(season_length=m, trend_forecaster=AutoETS(model="ANN"))
    raise SeriesDataError(f"unknown model kind {kind[:40]!r} (known: {', '.join(MODEL_KINDS)}, naive)")


def fit_forecast(kind: str, y: np.ndarray, h: int, season_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit `kind` on `y` and forecast `h` periods: mean, lower and upper 80 % bounds."""
    model = make_model(kind, season_length)
    with pywarnings.catch_warnings(), np.errstate(all="ignore"):
        pywarnings.simplefilter("ignore")
        out = model.forecast(y=np.asarray(y, dtype=np.float64), h=h, level=[LEVEL])
    mean = np.asarray(out["mean"], dtype=np.float64)
    lo = np.asarray(out.get(f"lo-{LEVEL}", mean), dtype=np.float64)
    hi = np.asarray(out.get(f"hi-{LEVEL}", mean), dtype=np.float64)
    if not (np.isfinite(mean).all() and np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise FloatingPointError(f"{kind} gave non-finite forecasts")
    return mean, np.minimum(lo, mean), np.maximum(hi, mean)


@dataclass(frozen=True)
class Backtest:
    """One model's rolling-origin backtest on one series."""

    kind: str
    windows: int
    horizon: int
    mase: float
    smape: float
    coverage_model: float  # of the model's own 80 % band
    coverage_conformal: float  # of the conformally scaled band, each window left out of its own calibration
    interval: str  # model | conformal
    scale: float  # the factor applied to the model's half-widths (1 when `model`)

    @property
    def coverage(self) -> float:
        """The out-of-sample coverage of the band this model's forecasts carry."""
        return self.coverage_conformal if self.interval == "conformal" else self.coverage_model

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready metrics (NaN as None)."""
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in {
                "kind": self.kind,
                "windows": self.windows,
                "horizon": self.horizon,
                "mase": self.mase,
                "smape": self.smape,
                "coverage_80": self.coverage,
                "coverage_80_model": self.coverage_model,
                "coverage_80_conformal": self.coverage_conformal,
                "interval": self.interval,
                "scale": self.scale,
            }.items()
        }


@dataclass(frozen=True)
class Forecast:
    """A series' forecast: the champion's kind, the band, every candidate's backtest, and warnings."""

    kind: str
    season_length: int
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    backtests: dict[str, Backtest]
    warnings: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def champion(self) -> Backtest | None:
        """The chosen model's backtest (None for a fallback without one)."""
        return self.backtests.get(self.kind)


def mase_scale(train: np.ndarray, season_length: int) -> float:
    """The in-sample mean absolute error of the seasonal-naive (or naive) forecast of `train`."""
    m = season_length if len(train) > 2 * season_length else 1
    diffs = np.abs(train[m:] - train[:-m])
    scale = float(diffs.mean()) if len(diffs) else 0.0
    if scale == 0.0 and m > 1:
        diffs = np.abs(np.diff(train))
        scale = float(diffs.mean()) if len(diffs) else 0.0
    return scale


def smape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Symmetric mean absolute percentage error in % (0 where both are 0)."""
    denominator = np.abs(actual) + np.abs(predicted)
    ratio = np.where(denominator > 0, 2 * np.abs(actual - predicted) / np.where(denominator > 0, denominator, 1), 0.0)
    return float(100 * ratio.mean())


def _conformal_quantile(scores: np.ndarray, level: float = LEVEL / 100) -> float:
    """The finite-sample conformal quantile of the scores."""
    n = len(scores)
    if n == 0:
        return 1.0
    rank = min(n, math.ceil((n + 1) * level))
    return float(np.sort(scores)[rank - 1])


def backtest(
    y: np.ndarray,
    horizon: int,
    season_length: int,
    kinds: Sequence[str] = MODEL_KINDS,
    windows: int = 3,
    fit: Callable[[str, np.ndarray, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = fit_forecast,
) -> tuple[dict[str, Backtest], list[str]]:
    """Rolling-origin backtests of each kind on `y` (the last `windows` x `horizon` periods); failures as warnings."""
    n = len(y)
    windows = max(1, min(windows, (n - MIN_BACKTEST_TRAIN) // horizon))
    notes: list[str] = []
    origins = [n - (windows - w) * horizon for w in range(windows)]
    results: dict[str, Backtest] = {}
    for kind in kinds:
        errors, halves, scaled, covered, smapes = [], [], [], [], []
        try:
            for origin in origins:
                train, test = y[:origin], y[origin : origin + horizon]
                mean, lo, hi = fit(kind, train, horizon, season_length)
                error = np.abs(test - mean)
                half = (hi - lo) / 2
                scale = mase_scale(train, season_length)
                errors.append(error)
                halves.append(half)
                scaled.append(float(error.mean() / scale) if scale > 0 else math.nan)
                covered.append(((test >= lo) & (test <= hi)).astype(float))
                smapes.append(smape(test, mean))
        except Exception as exc:  # a model that cannot fit this series is left out of its comparison
            notes.append(f"{kind} failed on this series and was left out: {type(exc).__name__}: {str(exc)[:120]}")
            continue
        own = float(np.concatenate(covered).mean())
        score_windows = [
            np.where(h > 0, e / np.where(h > 0, h, 1), np.where(e > 0, np.inf, 0.0))
            for e, h in zip(errors, halves, strict=True)
        ]
        if windows > 1:
            loo = []
            for w in range(windows):
                rest = np.concatenate([s for i, s in enumerate(score_windows) if i != w])
                loo.append((score_windows[w] <= _conformal_quantile(rest)).astype(float))
            conformal_cov = float(np.concatenate(loo).mean())
        else:
            conformal_cov = math.nan
        factor = _conformal_quantile(np.concatenate(score_windows))
        use_conformal = windows > 1 and math.isfinite(factor) and factor > 0
        finite = [s for s in scaled if not math.isnan(s)]
        results[kind] = Backtest(
            kind,
            windows,
            horizon,
            float(np.mean(finite)) if finite else math.nan,
            float(np.mean(smapes)),
            own,
            conformal_cov,
            "conformal" if use_conformal else "model",
            factor if use_conformal else 1.0,
        )
    return results, notes


def choose_champion(backtests: dict[str, Backtest]) -> str | None:
    """The kind with the lowest backtest MASE (sMAPE breaks ties; NaN MASE ranks by sMAPE after the others)."""
    if not backtests:
        return None
    return min(
        backtests.values(),
        key=lambda b: (math.isnan(b.mase), b.mase if not math.isnan(b.mase) else 0.0, b.smape),
    ).kind


def forecast_series(
    y: np.ndarray,
    horizon: int,
    season_length: int,
    *,
    kinds: Sequence[str] | None = None,
    windows: int = 3,
    kind: str | None = None,
) -> Forecast:
    """Backtest every candidate, pick the champion (or use `kind`), fit it on all of `y` and forecast `horizon`
    periods with a calibrated 80 % band; documented fallbacks instead of errors for unusable history."""
    y = np.asarray(y, dtype=np.float64)
    if horizon < 1:
        raise SeriesDataError(f"the horizon must be at least 1 period, got {horizon}")
    if len(y) == 0 or not np.isfinite(y).all():
        raise SeriesDataError("a series to forecast needs finite values (missing values are filled when it is read)")
    notes: list[str] = []
    if len(y) < 2 or np.ptp(y) == 0:
        notes.append("constant series (or a single value): naive forecast with a zero-width band")
        flat = np.full(horizon, y[-1])
        return Forecast("naive", 1, flat, flat.copy(), flat.copy(), {}, tuple(notes))
    m = season_length
    if m > 1 and len(y) < 2 * m + horizon:
        notes.append(
            f"too little history for a season of {m} ({len(y)} periods; {2 * m + horizon} needed): "
            "models fitted without season"
        )
        m = 1
    if len(y) < MIN_BACKTEST_TRAIN + horizon:
        notes.append(
            f"too little history to backtest ({len(y)} periods; {MIN_BACKTEST_TRAIN + horizon} needed): "
            "naive forecast, no metrics"
        )
        mean, lo, hi = fit_forecast("naive", y, horizon, 1)
        return Forecast("naive", 1, mean, lo, hi, {}, tuple(notes))
    if kinds is None:
        kinds = default_kinds(m)
    candidates = list(dict.fromkeys(["seasonal_naive", *kinds])) if kind is None else list({kind, "seasonal_naive"})
    backtests, failed = backtest(y, horizon, m, candidates, windows)
    notes += failed
    chosen = kind if kind is not None and kind in backtests else choose_champion(backtests)
    return _final(y, horizon, m, windows, chosen, backtests, notes)


def forecast_as(found: Forecast, y: np.ndarray, horizon: int, kind: str, *, windows: int = 3) -> Forecast:
    """The forecast of `y` by model `kind` (a series' champion) when `found` (the same series' forecast, whose
    backtests it reuses) chose another kind; backtests `kind` only when `found` has not."""
    if kind == found.kind:
        return found
    y = np.asarray(y, dtype=np.float64)
    backtests = dict(found.backtests)
    notes = list(found.warnings)
    if kind not in backtests:
        if found.season_length < 1 or not backtests:  # a fallback without backtests: nothing to compare
            return found
        more, failed = backtest(y, horizon, found.season_length, [kind], windows)
        backtests.update(more)
        notes += failed
    chosen = kind if kind in backtests else found.kind
    return _final(y, horizon, found.season_length, windows, chosen, backtests, notes)


def _final(
    y: np.ndarray,
    horizon: int,
    m: int,
    windows: int,
    chosen: str | None,
    backtests: dict[str, Backtest],
    notes: list[str],
) -> Forecast:
    """Fit the chosen kind on all of `y` and forecast with its calibrated band (naive when every model failed)."""
    if chosen is None:
        notes.append("every model failed: naive forecast, no metrics")
        mean, lo, hi = fit_forecast("naive", y, horizon, 1)
        return Forecast("naive", 1, mean, lo, hi, backtests, tuple(notes))
    try:
        mean, lo, hi = fit_forecast(chosen, y, horizon, m)
    except Exception as exc:  # the champion failed on the full history: the baseline carries the forecast
        notes.append(f"{chosen} failed on the full history ({type(exc).__name__}); seasonal naive used")
        chosen = "seasonal_naive"
        mean, lo, hi = fit_forecast(chosen, y, horizon, m)
    champion = backtests.get(chosen)
    if champion is not None and champion.interval == "conformal":
        half = (hi - lo) / 2 * champion.scale
        lo, hi = mean - half, mean + half
    if (y >= 0).all():  # a series that never went negative (demand, counts) is not forecast below zero
        mean, lo, hi = np.maximum(mean, 0), np.maximum(lo, 0), np.maximum(hi, 0)
    params = {"season_length": m, "horizon": horizon, "windows": windows, "level": LEVEL}
    return Forecast(chosen, m, mean, lo, hi, backtests, tuple(notes), params)


def _forecast_job(job: tuple[np.ndarray, int, int, int]) -> Forecast | str:
    y, horizon, season_length, windows = job
    try:
        return forecast_series(y, horizon, season_length, windows=windows)
    except Exception as exc:  # one bad series never stops the batch
        return f"{type(exc).__name__}: {str(exc)[:200]}"


def _import_models() -> None:
    """A pool worker's start: import statsforecast's models once, before the first series arrives."""
    import statsforecast.models  # noqa: F401


class ForecastPool:
    """A process pool of `workers` forecasting processes, with statsforecast imported in each, kept open across
    batches (a long-running runtime starts it once); a context manager that shuts the pool down."""

    def __init__(self, workers: int | None = None) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = max(1, workers or os.cpu_count() or 1)
        # forkserver: workers start from a clean process, never forked from a threaded one (the API, the runtime)
        self.executor = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("forkserver"), initializer=_import_models
        )

    def warm(self) -> None:
        """Wait until every worker has started and imported the models."""
        list(self.executor.map(_worker_ready, range(self.workers * 2)))

    def map(self, jobs: Sequence[tuple[np.ndarray, int, int, int]]) -> list[Forecast | str]:
        """Forecast the jobs in order, in chunks spread over the workers."""
        chunk = max(1, len(jobs) // (self.workers * 8))
        return list(self.executor.map(_forecast_job, jobs, chunksize=chunk))

    def close(self) -> None:
        """Shut the workers down."""
        self.executor.shutdown()

    def __enter__(self) -> ForecastPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _worker_ready(_: int) -> int:
    return os.getpid()


def forecast_batch(
    series: Sequence[np.ndarray],
    horizon: int,
    season_length: int,
    *,
    windows: int = 3,
    workers: int | None = None,
    pool: ForecastPool | None = None,
) -> list[Forecast | str]:
    """Forecast many series (backtests included) on `pool`, or on a new process pool of `workers` (CPU count by
    default; 1, or fewer than MIN_POOL_SERIES series, runs here); a series that fails gives its error text instead of
    a forecast."""
    jobs = [(np.asarray(y, dtype=np.float64), horizon, season_length, windows) for y in series]
    if pool is not None:
        return pool.map(jobs)
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(jobs) < MIN_POOL_SERIES:
        return [_forecast_job(job) for job in jobs]
    with ForecastPool(workers) as fresh:
        return fresh.map(jobs)
