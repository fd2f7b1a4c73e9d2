"""The sample enterprise's demand: one deterministic model of how much of a product customers want on a day.

Expected daily demand = level x trend x weekly season x yearly season; the realised demand adds gamma-Poisson noise
(over-dispersed counts). The sales order lines of the ERP (connectors/sample/enterprise.py) draw their quantities
from it, and `generate_demand_history` writes several years of daily demand per product and sales channel into
`demand.sqlite` (table `daily_demand`) — the long history the forecasts are backtested on, which the one year of
orders in the ERP is too short for. The same seed always gives the same numbers; `level_factor` and `shift_from`
move the level (from a day on), for drift tests.
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

WEEKLY = (1.15, 1.1, 1.05, 1.1, 1.2, 0.3, 0.1)
"""Weekday factors, Monday first (mean 0.857: a weekend-quiet business)."""
CHANNELS = ("direct", "distributor")
DEMAND_TABLE = "daily_demand"


class DemandError(ValueError):
    """The demand history cannot be generated with the given input."""


@dataclass(frozen=True)
class DemandShape:
    """How demand of one product moves: level (units per day), yearly trend, yearly season, noise."""

    level: float
    trend_per_year: float = 0.08
    yearly_amplitude: float = 0.25
    peak_day_of_year: int = 110
    dispersion: float = 8.0  # gamma shape of the noise: smaller = noisier (coefficient of variation 1/sqrt)
    weekly: tuple[float, ...] = WEEKLY

    def expected(self, days: np.ndarray, origin: int, level_factor: np.ndarray | float = 1.0) -> np.ndarray:
        """Expected demand on each day number (days since 1970-01-01); the trend counts from `origin`."""
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        doy = (days.astype("datetime64[D]") - days.astype("datetime64[D]").astype("datetime64[Y]")).astype(int) + 1
        season = 1 + self.yearly_amplitude * np.cos(2 * np.pi * (doy - self.peak_day_of_year) / 365.25)
        trend = 1 + self.trend_per_year * (days - origin) / 365.25
        return self.level * np.asarray(self.weekly)[weekday] * season * trend * level_factor

    def draw(self, expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Realised demand: gamma-Poisson around `expected` (integer units)."""
        mean = np.maximum(expected, 1e-9)
        return rng.poisson(rng.gamma(self.dispersion, mean / self.dispersion))


def demand_rng(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per concern (the sample's convention)."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def line_factor(shape: DemandShape, days: np.ndarray, origin: int) -> np.ndarray:
    """The trend and yearly season of a product line on each day, relative to its level (what an order line's
    quantity follows; the weekly rhythm lives in the order days)."""
    flat = DemandShape(1.0, shape.trend_per_year, shape.yearly_amplitude, shape.peak_day_of_year, weekly=(1.0,) * 7)
    return flat.expected(days, origin)


@dataclass(frozen=True)
class DemandHistory:
    """What `generate_demand_history` wrote."""

    path: Path
    series: int
    days: int
    rows: int
    first_day: date
    last_day: date


def generate_demand_history(
    out_dir: Path,
    products: Sequence[tuple[str, DemandShape]],
    *,
    seed: int = 7,
    years: int = 3,
    as_of: date = date(2025, 6, 30),
    level_factor: float = 1.0,
    shift_from: date | None = None,
) -> DemandHistory:
    """Write `years` of daily demand up to (not including) `as_of` per product and channel into
    `out_dir/demand.sqlite`; from `shift_from` on (or throughout) the level is multiplied by `level_factor`."""
    if not products:
        raise DemandError("the demand history needs at least one product")
    if not 1 <= years <= 20:
        raise DemandError(f"years must be between 1 and 20, got {years}")
    if level_factor <= 0:
        raise DemandError(f"level_factor must be positive, got {level_factor}")
    last = (as_of - date(1970, 1, 1)).days
    first = last - round(365.25 * years)
    days = np.arange(first, last)
    factor: np.ndarray | float = level_factor
    if shift_from is not None:
        factor = np.where(days >= (shift_from - date(1970, 1, 1)).days, level_factor, 1.0)
    rows: list[tuple[str, str, str, str, int]] = []
    stamps = [str(d) for d in days.astype("datetime64[D]")]
    for sku, shape in products:
        for share, channel in zip((0.65, 0.35), CHANNELS, strict=True):
            rng = demand_rng(seed, f"demand:{sku}:{channel}")
            channel_shape = DemandShape(
                shape.level * share,
                shape.trend_per_year,
                shape.yearly_amplitude,
                shape.peak_day_of_year,
                shape.dispersion,
                shape.weekly,
            )
            quantity = channel_shape.draw(channel_shape.expected(days, first, factor), rng)
            key = f"{sku}/{channel}"
            rows += [(key, sku, channel, stamp, int(q)) for stamp, q in zip(stamps, quantity.tolist(), strict=True)]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "demand.sqlite"
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.execute(
            f"CREATE TABLE {DEMAND_TABLE} (series_key TEXT NOT NULL, sku TEXT NOT NULL, channel TEXT NOT NULL, "
            "day TEXT NOT NULL, quantity INTEGER NOT NULL, PRIMARY KEY (series_key, day))"
        )
        con.executemany(f"INSERT INTO {DEMAND_TABLE} VALUES (?, ?, ?, ?, ?)", rows)
        con.commit()
    finally:
        con.close()
    os.replace(tmp, path)
    return DemandHistory(
        path,
        len(products) * len(CHANNELS),
        len(days),
        len(rows),
        date.fromisoformat(stamps[0]),
        date.fromisoformat(stamps[-1]),
    )
