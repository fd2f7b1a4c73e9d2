"""Prediction on twin data: series definitions (series.py), forecasts with rolling-origin backtests and calibrated
intervals (forecasting.py), stored forecasts (store.py), the forecast service the edges call (service.py) and online
anomaly detection on telemetry streams with events on the change feed (anomaly.py)."""
