"""Domain exceptions of forecasting and anomaly detection: bad series definitions, unusable data, missing forecasts."""

from __future__ import annotations

from simulation.errors import SimulationError


class ForecastError(SimulationError):
    """Base of every error raised by forecasting and anomaly detection."""


class SeriesSpecError(ForecastError):
    """A series definition is invalid; each problem names the file, the line and the field."""

    def __init__(self, problems: list[str], source: str = "<series>") -> None:
        self.problems = problems
        self.source = source
        listed = "".join(f"\n  - {p}" for p in problems)
        super().__init__(f"{source}: invalid series definition ({len(problems)} problem(s)):{listed}")


class SeriesDataError(ForecastError):
    """A series' data cannot be forecast (no values at all, all missing, unreadable source)."""


class UnknownSeries(ForecastError):
    """No series definition, or no stored forecast, has the given name or id."""


class TelemetryValueError(ForecastError):
    """A telemetry reading is not a finite number."""
