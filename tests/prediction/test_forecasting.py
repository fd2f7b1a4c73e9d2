"""Forecasts: the champion on AirPassengers (shipped with statsforecast), backtest metrics against hand-computed
ones, calibrated intervals, and the documented fallbacks for unusable history."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsforecast.utils import AirPassengers

from simulation.forecast.errors import SeriesDataError
from simulation.forecast.forecasting import (
    Backtest,
    backtest,
    choose_champion,
    fit_forecast,
    forecast_series,
    mase_scale,
    smape,
)


def test_air_passengers_champion_holdout_mape_is_at_most_5_percent() -> None:
    y = np.asarray(AirPassengers, dtype=np.float64)
    train, test = y[:-12], y[-12:]
    forecast = forecast_series(train, 12, 12)
    mape = float(np.mean(np.abs(test - forecast.mean) / test))
    assert mape <= 0.05, (forecast.kind, mape)
    naive_mape = float(np.mean(np.abs(test - fit_forecast("seasonal_naive", train, 12, 12)[0]) / test))
    assert mape < naive_mape
    assert set(forecast.backtests) == {"seasonal_naive", "auto_ets", "auto_theta", "auto_arima"}
    assert forecast.kind == choose_champion(forecast.backtests)
    assert forecast.champion is not None and forecast.champion.mase < forecast.backtests["seasonal_naive"].mase
    assert np.all(forecast.lo <= forecast.mean) and np.all(forecast.mean <= forecast.hi)


def test_backtest_metrics_match_a_hand_computation() -> None:
    y = np.arange(1.0, 41.0) % 4 + np.arange(40) * 0.5  # trend plus a season of 4

    def fixed(kind: str, train: np.ndarray, h: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean = np.full(h, train[-1])
        return mean, mean - 1.0, mean + 1.0

    results, notes = backtest(y, 4, 4, ["naive"], windows=2, fit=fixed)
    assert notes == []
    result = results["naive"]
    errors, scaled, smapes, inside = [], [], [], []
    for origin in (32, 36):
        train, test = y[:origin], y[origin : origin + 4]
        e = np.abs(test - train[-1])
        errors.append(e)
        scaled.append(e.mean() / np.mean(np.abs(train[4:] - train[:-4])))
        smapes.append(np.mean(2 * e / (np.abs(test) + abs(train[-1]))) * 100)
        inside.append(e <= 1.0)
    assert result.mase == pytest.approx(np.mean(scaled))
    assert result.smape == pytest.approx(np.mean(smapes))
    assert result.coverage_model == pytest.approx(np.concatenate(inside).mean())
    assert mase_scale(y[:32], 4) == pytest.approx(np.mean(np.abs(y[4:32] - y[:28])))
    assert smape(np.array([0.0, 2.0]), np.array([0.0, 1.0])) == pytest.approx(100 * (0 + 2 / 3) / 2)


def test_too_narrow_bands_are_widened_by_conformal_scaling() -> None:
    rng = np.random.default_rng(3)
    y = 100 + rng.normal(0, 10, 120)

    def overconfident(kind: str, train: np.ndarray, h: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean = np.full(h, train.mean())
        return mean, mean - 1.0, mean + 1.0  # far too narrow for noise of sd 10

    result = backtest(y, 10, 1, ["flat"], windows=4, fit=overconfident)[0]["flat"]
    assert result.coverage_model < 0.3
    assert result.interval == "conformal" and result.scale > 5
    assert 0.65 <= result.coverage_conformal <= 0.95


def test_constant_series_gets_a_flat_naive_forecast_with_a_warning() -> None:
    forecast = forecast_series(np.full(60, 7.0), 5, 12)
    assert forecast.kind == "naive" and list(forecast.mean) == [7.0] * 5 and list(forecast.hi) == [7.0] * 5
    assert "constant series" in forecast.warnings[0] and forecast.backtests == {}


def test_short_history_drops_the_season_then_falls_back_to_naive() -> None:
    rng = np.random.default_rng(1)
    y = 50 + rng.normal(0, 3, 40)
    forecast = forecast_series(y, 6, 52)
    assert forecast.season_length == 1 and "too little history for a season of 52" in forecast.warnings[0]
    assert forecast.champion is not None and not math.isnan(forecast.champion.mase)
    tiny = forecast_series(y[:9], 6, 52)
    assert tiny.kind == "naive" and any("too little history to backtest" in w for w in tiny.warnings)
    assert len(tiny.mean) == 6


def test_missing_values_and_bad_horizons_are_refused_clearly() -> None:
    with pytest.raises(SeriesDataError, match="finite values"):
        forecast_series(np.array([1.0, np.nan, 3.0]), 2, 1)
    with pytest.raises(SeriesDataError, match="horizon must be at least 1"):
        forecast_series(np.arange(30.0), 0, 1)
    with pytest.raises(SeriesDataError, match="unknown model kind"):
        fit_forecast("prophet", np.arange(30.0), 2, 1)


def test_a_failing_model_is_left_out_with_a_warning() -> None:
    def flaky(kind: str, train: np.ndarray, h: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if kind == "broken":
            raise FloatingPointError("diverged")
        mean = np.full(h, train[-1])
        return mean, mean - 1, mean + 1

    results, notes = backtest(np.arange(50.0), 5, 1, ["naive", "broken"], windows=2, fit=flaky)
    assert set(results) == {"naive"} and "broken failed on this series" in notes[0]
    assert isinstance(results["naive"], Backtest) and results["naive"].as_dict()["kind"] == "naive"


def test_non_negative_series_are_not_forecast_below_zero() -> None:
    rng = np.random.default_rng(4)
    y = np.maximum(0, rng.normal(1.0, 3.0, 80)).round()
    forecast = forecast_series(y, 8, 1)
    assert (forecast.lo >= 0).all() and (forecast.mean >= 0).all() and (forecast.hi >= forecast.lo).all()


def _weekly_demand(seed: int, level: float = 30.0) -> np.ndarray:
    """156 weeks of the sample's demand model: a yearly season, a trend and over-dispersed noise."""
    from connectors.sample.demand import DemandShape, demand_rng

    days = np.arange(19_000, 19_000 + 156 * 7)
    shape = DemandShape(level, yearly_amplitude=0.3)
    daily = shape.draw(shape.expected(days, int(days[0])), demand_rng(seed, "weekly"))
    return daily.reshape(156, 7).sum(axis=1).astype(np.float64)


def test_a_yearly_season_of_weekly_data_is_modelled_by_mstl_with_a_conformal_band() -> None:
    y = _weekly_demand(1)
    forecast = forecast_series(y, 13, 52)
    assert set(forecast.backtests) == {"seasonal_naive", "mstl"}
    mstl, naive = forecast.backtests["mstl"], forecast.backtests["seasonal_naive"]
    assert mstl.mase < naive.mase and forecast.kind == "mstl"
    # MSTL's own band is too narrow out of sample; the conformal factor widens it towards 80 %
    assert mstl.interval == "conformal" and mstl.scale > 1
    assert mstl.coverage_model < mstl.coverage_conformal
    own = fit_forecast("mstl", y, 13, 52)
    assert np.allclose(forecast.hi - forecast.lo, (own[2] - own[1]) * mstl.scale)


def test_too_wide_bands_are_narrowed_by_conformal_scaling() -> None:
    rng = np.random.default_rng(8)
    y = 100 + rng.normal(0, 2, 120)

    def timid(kind: str, train: np.ndarray, h: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean = np.full(h, train.mean())
        return mean, mean - 50.0, mean + 50.0  # far too wide for noise of sd 2

    result = backtest(y, 10, 1, ["flat"], windows=4, fit=timid)[0]["flat"]
    assert result.coverage_model == 1.0 and result.interval == "conformal" and result.scale < 0.1
    assert 0.65 <= result.coverage_conformal <= 0.95


def test_the_champions_forecast_reuses_the_backtests_and_batches_match_serial_runs() -> None:
    from simulation.forecast.forecasting import ForecastPool, forecast_as, forecast_batch

    series = [_weekly_demand(seed) for seed in range(3)]
    found = forecast_series(series[0], 13, 52)
    assert found.kind == "mstl"
    as_naive = forecast_as(found, series[0], 13, "seasonal_naive")
    assert as_naive.kind == "seasonal_naive" and as_naive.backtests == found.backtests
    assert np.allclose(as_naive.mean, fit_forecast("seasonal_naive", series[0], 13, 52)[0])
    assert forecast_as(found, series[0], 13, "mstl") is found
    with ForecastPool(2) as pool:
        pooled = forecast_batch(series, 13, 52, pool=pool)
    serial = forecast_batch(series, 13, 52, workers=1)
    for a, b in zip(pooled, serial, strict=True):
        assert isinstance(a, type(b)) and a.kind == b.kind and np.allclose(a.mean, b.mean)  # type: ignore[union-attr]
