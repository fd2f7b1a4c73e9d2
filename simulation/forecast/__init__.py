"""Prediction on twin data: series definitions (series.py), forecasts with backtests and calibrated intervals
(forecasting.py, backtest.py), stored forecasts (store.py), the forecast service (service.py) and online anomaly
detection on telemetry streams (anomaly.py)."""
