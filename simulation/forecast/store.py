"""Stored forecasts: each with its series, history, band, the model version and code version that made it, the
digest of its input data, its lineage, backtests and warnings — so a forecast can always say which model and which
data made it."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Column, Index, Integer, MetaData, RowMapping, String, Table, Text, insert, select

from graph.relational import create_tables, relational_engine
from simulation.forecast.errors import UnknownSeries
from simulation.forecast.forecasting import LEVEL, MODEL_VERSION, Forecast
from simulation.forecast.series import PERIOD_CODES, SeriesData, period_start

metadata = MetaData()

forecast_table = Table(
    "forecast_run",
    metadata,
    Column("forecast_id", String(32), primary_key=True),
    Column("series", String(512), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("model_kind", String(32), nullable=False),
    Column("model_version", String(64), nullable=True),  # the registry's version id (governance/models.py)
    Column("code_version", String(32), nullable=False),
    Column("input_digest", String(64), nullable=False),
    Column("freq", String(4), nullable=False),
    Column("season_length", Integer, nullable=False),
    Column("horizon", Integer, nullable=False),
    Column("level", Integer, nullable=False),
    Column("interval", String(16), nullable=False),
    Column("history", Text, nullable=False),
    Column("forecast", Text, nullable=False),
    Column("backtests", Text, nullable=False),
    Column("lineage", Text, nullable=False),
    Column("warnings", Text, nullable=False),
    Index("ix_forecast_run_series_created", "series", "created_at"),
)


@dataclass(frozen=True)
class StoredForecast:
    """A stored forecast as read back."""

    forecast_id: str
    series: str
    created_at: str
    created_by: str
    model_kind: str
    model_version: str | None
    code_version: str
    input_digest: str
    freq: str
    season_length: int
    horizon: int
    level: int
    interval: str
    history: dict[str, list[Any]]  # periods, values
    points: dict[str, list[Any]]  # periods, mean, lo, hi
    backtests: dict[str, dict[str, Any]]
    lineage: dict[str, Any]
    warnings: list[str]


def future_periods(last: str, freq: str, horizon: int) -> list[str]:
    """The `horizon` period starts after the period starting at `last`."""
    start = pd.Period(pd.Timestamp(last), freq=PERIOD_CODES[freq])
    return [period_start(p, freq) for p in pd.period_range(start + 1, periods=horizon, freq=PERIOD_CODES[freq])]


def _floats(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


class ForecastStore:
    """Forecasts in the relational store at `url` (sqlite:/// or postgresql://)."""

    def __init__(self, url: str) -> None:
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)

    def save(self, data: SeriesData, forecast: Forecast, *, created_by: str, model_version: str | None) -> str:
        """Store a forecast of `data`; returns its id."""
        return self.save_many([(data, forecast, model_version)], created_by=created_by)[0]

    def save_many(self, forecasts: Sequence[tuple[SeriesData, Forecast, str | None]], *, created_by: str) -> list[str]:
        """Store forecasts (each with its series data and model version) in one transaction; their ids in order."""
        rows = [_row(data, forecast, created_by, version) for data, forecast, version in forecasts]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(forecast_table), rows)
        return [row["forecast_id"] for row in rows]

    def latest(self, series: str) -> StoredForecast:
        """The newest forecast of a series; UnknownSeries when there is none."""
        t = forecast_table
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.series == series).order_by(t.c.created_at.desc()).limit(1)).first()
        if row is None:
            raise UnknownSeries(f"no stored forecast of series {series[:120]!r} (run `twin forecast run` first)")
        return _stored(row._mapping)

    def latest_of_groups(self, name: str, *, model_versions: Sequence[str] = ()) -> list[StoredForecast]:
        """The newest forecast of series `name` and of each of its groups (`NAME/KEY`), by series name; with
        `model_versions`, the newest made by one of those versions. One query."""
        t = forecast_table
        query = select(t).where((t.c.series == name) | t.c.series.startswith(f"{name}/", autoescape=True))
        if model_versions:
            query = query.where(t.c.model_version.in_(list(model_versions)))
        newest: dict[str, RowMapping] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query.order_by(t.c.created_at.desc())):
                newest.setdefault(row.series, row._mapping)
        return [_stored(newest[k]) for k in sorted(newest)]

    def get(self, forecast_id: str) -> StoredForecast:
        """A stored forecast by id; UnknownSeries when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(forecast_table).where(forecast_table.c.forecast_id == forecast_id)).first()
        if row is None:
            raise UnknownSeries(f"no stored forecast with id {forecast_id[:40]!r}")
        return _stored(row._mapping)

    def of_series(self, series: str, limit: int = 100) -> list[StoredForecast]:
        """Stored forecasts of a series, newest first."""
        t = forecast_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t).where(t.c.series == series).order_by(t.c.created_at.desc()).limit(limit)
            ).all()
        return [_stored(r._mapping) for r in rows]

    def series_names(self, prefix: str = "") -> list[str]:
        """Names of the series with stored forecasts (starting with `prefix`)."""
        t = forecast_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.series).where(t.c.series.startswith(prefix)).distinct()).all()
        return sorted(str(r[0]) for r in rows)


def _row(data: SeriesData, forecast: Forecast, created_by: str, model_version: str | None) -> dict[str, Any]:
    """The table row of one forecast."""
    champion = forecast.champion
    points = {
        "periods": future_periods(data.periods[-1], data.freq, len(forecast.mean)),
        "mean": _floats(forecast.mean),
        "lo": _floats(forecast.lo),
        "hi": _floats(forecast.hi),
    }
    return {
        "forecast_id": uuid.uuid4().hex[:16],
        "series": data.name,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "created_by": created_by,
        "model_kind": forecast.kind,
        "model_version": model_version,
        "code_version": MODEL_VERSION,
        "input_digest": data.digest,
        "freq": data.freq,
        "season_length": forecast.season_length,
        "horizon": len(forecast.mean),
        "level": LEVEL,
        "interval": champion.interval if champion is not None else "model",
        "history": json.dumps({"periods": list(data.periods), "values": _floats(data.values)}),
        "forecast": json.dumps(points),
        "backtests": json.dumps({k: b.as_dict() for k, b in forecast.backtests.items()}),
        "lineage": json.dumps(data.lineage.as_dict()),
        "warnings": json.dumps([*data.warnings, *forecast.warnings]),
    }


def _stored(row: RowMapping) -> StoredForecast:
    return StoredForecast(
        forecast_id=row["forecast_id"],
        series=row["series"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        model_kind=row["model_kind"],
        model_version=row["model_version"],
        code_version=row["code_version"],
        input_digest=row["input_digest"],
        freq=row["freq"],
        season_length=row["season_length"],
        horizon=row["horizon"],
        level=row["level"],
        interval=row["interval"],
        history=json.loads(row["history"]),
        points=json.loads(row["forecast"]),
        backtests=json.loads(row["backtests"]),
        lineage=json.loads(row["lineage"]),
        warnings=json.loads(row["warnings"]),
    )
