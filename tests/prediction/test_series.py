"""Series definitions: validated with file and line against the ontology, read from source records, twins and
telemetry into regular series with lineage; the sample's demand history has a real season, trend and noise."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from connectors.sample.demand import DemandShape, generate_demand_history
from connectors.sample.enterprise import SampleManifest
from connectors.telemetry import Reading, TelemetryStore
from graph.store import GraphStore
from ontology.model import Ontology
from simulation.forecast.errors import SeriesDataError, SeriesSpecError, UnknownSeries
from simulation.forecast.series import SeriesReader, parse_series, read_series
from simulation.forecast.store import future_periods

BUNDLED = Path(__file__).resolve().parents[2] / "simulation" / "forecast" / "series" / "sample.yaml"


def test_unknown_class_and_property_are_named_with_their_line(ontology: Ontology) -> None:
    text = """series:
  - name: ok.one
    from:
      twins: {class: SalesOrder, time: orderDate, value: amount}
  - name: bad.class
    from:
      twins:
        class: SalesOrdr
        time: orderDate
  - name: bad.property
    from:
      twins:
        class: SalesOrder
        time: orderDay
        value: name
"""
    with pytest.raises(SeriesSpecError) as caught:
        parse_series(text, ontology, "orders.yaml")
    message = str(caught.value)
    assert "orders.yaml" in message
    assert "line 8: series.1.from.twins.class: unknown class 'SalesOrdr'" in message
    assert "line 14: series.2.from.twins.time: unknown property 'orderDay' of class SalesOrder" in message
    assert "line 15: series.2.from.twins.value: SalesOrder.name is a string, not a number" in message
    assert len(caught.value.problems) == 3


def test_structural_problems_are_listed_with_lines(ontology: Ontology) -> None:
    text = """series:
  - name: two.sources
    about: Product
    from:
      records: {url: "sqlite://", table: t, time: day, value: q}
      telemetry: {metric: m}
  - name: bad freq
    freq: Q
    from: {telemetry: {metric: m}}
"""
    with pytest.raises(SeriesSpecError) as caught:
        parse_series(text, ontology, "s.yaml")
    problems = caught.value.problems
    assert any(p.startswith("line 4: series.0.from:") and "exactly one source" in p for p in problems)
    assert any(p.startswith("line 7: series.1.name:") for p in problems)
    assert any(p.startswith("line 8: series.1.freq:") for p in problems)


def test_unknown_link_and_missing_about_are_refused(ontology: Ontology) -> None:
    text = """series:
  - name: bad.link
    from:
      twins: {class: SalesOrder, time: orderDate, link: shipsTo, value: quantity}
  - name: no.about
    from:
      telemetry: {metric: power_kw}
"""
    with pytest.raises(SeriesSpecError) as caught:
        parse_series(text, ontology)
    message = str(caught.value)
    assert "unknown relationship 'shipsTo' of class SalesOrder" in message
    assert "line 5: series.1.about:" in message


def test_bad_yaml_names_its_line(ontology: Ontology) -> None:
    with pytest.raises(SeriesSpecError, match=r"line 3: not valid YAML"):
        parse_series("series:\n  - name: x\n    freq: : W\n", ontology, "broken.yaml")


def test_the_bundled_series_are_valid(ontology: Ontology) -> None:
    series = read_series(BUNDLED, ontology)
    assert {"sample.demand", "sample.ordered_quantity", "sample.order_value", "sample.machine_power"} <= set(
        series.definitions
    )
    assert series.classes["sample.ordered_quantity"] == ("SalesOrder", "Item")
    with pytest.raises(UnknownSeries, match="no series 'nope'"):
        series.get("nope")


def test_demand_records_become_weekly_series_with_lineage(ontology: Ontology, data_dir: Path) -> None:
    series = read_series(BUNDLED, ontology)
    found = SeriesReader(data_dir=data_dir).read(series, "sample.demand")
    assert len(found) == 60  # 30 products x 2 channels
    first = found[0]
    assert first.name.startswith("sample.demand/") and first.freq == "W" and first.season_length == 52
    assert 156 <= len(first.values) <= 158
    assert first.periods[0] < first.periods[-1] and date.fromisoformat(first.periods[0]).weekday() == 0
    assert first.lineage.kind == "records" and "daily_demand" in first.lineage.source
    assert first.lineage.rows == 60 * 1096 and first.lineage.classes == ("Product",)
    assert len(first.digest) == 64
    again = SeriesReader(data_dir=data_dir).read(series, first.name)
    assert [s.name for s in again] == [first.name] and again[0].digest == first.digest


def test_sample_demand_has_weekly_and_yearly_season_trend_and_noise(sample: SampleManifest) -> None:
    con = sqlite3.connect(sample.out_dir / "demand.sqlite")
    rows = con.execute("SELECT day, SUM(quantity) FROM daily_demand GROUP BY day ORDER BY day").fetchall()
    con.close()
    days = np.array([date.fromisoformat(d).toordinal() for d, _ in rows])
    total = np.array([q for _, q in rows], dtype=float)
    weekday = np.array([date.fromordinal(int(d)).weekday() for d in days])
    assert total[weekday < 5].mean() > 3 * total[weekday >= 5].mean()  # weekly season
    con = sqlite3.connect(sample.out_dir / "demand.sqlite")
    pumps = con.execute(
        "SELECT substr(day, 6, 2), AVG(quantity) FROM daily_demand WHERE sku LIKE 'HP-%' GROUP BY substr(day, 6, 2)"
    ).fetchall()
    con.close()
    by_month = {int(m): q for m, q in pumps}
    assert by_month[4] + by_month[5] > 1.5 * (by_month[10] + by_month[11])  # pumps: spring peak, autumn trough
    first_year, last_year = total[:365].sum(), total[-365:].sum()
    # +8 % a year, linear from the start: the last year's middle stands at 1 + 0.08 x 2.5, the first's at 1 + 0.08 x 0.5
    # (seasons cancel over whole years; the noise of 60 series moves the ratio by well under 0.02)
    assert abs(last_year / first_year - (1 + 0.08 * 2.5) / (1 + 0.08 * 0.5)) < 0.02
    weekdays = total[weekday == 2]
    assert weekdays.std() / weekdays.mean() > 0.05  # noise


def test_demand_history_is_deterministic_and_its_level_can_shift(tmp_path: Path) -> None:
    shape = [(f"P-{i}", DemandShape(20.0)) for i in range(10)]  # ten products: the level ratio is measured to ±0.02
    a = generate_demand_history(tmp_path / "a", shape, seed=3, years=2)
    b = generate_demand_history(tmp_path / "b", shape, seed=3, years=2)
    shifted = generate_demand_history(
        tmp_path / "c", shape, seed=3, years=2, level_factor=1.3, shift_from=date(2025, 1, 1)
    )

    def totals(path: Path, since: str) -> tuple[list[tuple[str, int]], float]:
        con = sqlite3.connect(path)
        rows = con.execute("SELECT day, quantity FROM daily_demand ORDER BY series_key, day").fetchall()
        con.close()
        return rows, float(sum(q for d, q in rows if d >= since))

    rows_a, late_a = totals(a.path, "2025-01-01")
    rows_b, _ = totals(b.path, "2025-01-01")
    rows_c, late_c = totals(shifted.path, "2025-01-01")
    assert rows_a == rows_b and a.series == 20 and a.rows == len(rows_a)
    assert [r for r in rows_c if r[0] < "2025-01-01"] == [r for r in rows_a if r[0] < "2025-01-01"]
    assert abs(late_c / late_a - 1.3) < 0.03  # the level moved by the factor asked, from the day asked


def test_twin_series_sum_link_quantities_per_target_with_runs(ontology: Ontology, order_store: GraphStore) -> None:
    series = read_series(BUNDLED, ontology)
    found = SeriesReader(store=order_store).read(series, "sample.ordered_quantity")
    assert {s.name for s in found} == {
        "sample.ordered_quantity/erp:product:HP-1000",
        "sample.ordered_quantity/erp:product:IV-1000",
        "sample.ordered_quantity/erp:product:GB-1000",
    }
    assert sum(float(s.values.sum()) for s in found) == sum(10 + w % 4 + k for w in range(30) for k in range(2))
    lineage = found[0].lineage
    assert lineage.kind == "twins" and lineage.twins == 60 and lineage.runs == ("run-orders-1",)
    assert lineage.classes == ("SalesOrder", "Item") and lineage.twins_digest is not None
    value = SeriesReader(store=order_store).read(series, "sample.order_value")
    assert len(value) == 1 and len(value[0].values) in (30, 31) and value[0].values.max() > 0


def test_telemetry_series_with_gaps_and_bad_readings(ontology: Ontology, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tel.db'}"
    store = TelemetryStore(url)
    readings = [Reading("erp:machine:M1", "power_kw", f"2025-06-01T{h:02d}:10:00+00:00", 10.0 + h) for h in range(12)]
    readings = [r for r in readings if r.ts[11:13] not in ("04", "05")]  # two hours without readings
    with store.engine.begin() as conn:
        store.append(conn, readings, "run-tel-1")
    series = parse_series(
        "series:\n  - name: power\n    about: Machine\n    freq: H\n    from: {telemetry: {metric: power_kw}}\n",
        ontology,
    )
    (found,) = SeriesReader(database_url=url).read(series, "power")
    assert found.name == "power/erp:machine:M1" and len(found.values) == 12
    assert found.periods[:2] == ("2025-06-01T00:00:00", "2025-06-01T01:00:00")
    assert found.values[4] == pytest.approx(14.0) and found.values[5] == pytest.approx(15.0)  # interpolated
    assert any("interpolated" in w for w in found.warnings)
    assert found.lineage.runs == ("run-tel-1",) and found.lineage.twin_sample == ("erp:machine:M1",)


def test_unreadable_records_and_non_numeric_values(ontology: Ontology, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE sales (day TEXT, qty TEXT)")
    con.executemany(
        "INSERT INTO sales VALUES (?, ?)", [("2025-01-06", "4"), ("2025-01-13", "lots"), ("2025-01-20", "6")]
    )
    con.commit()
    con.close()
    text = f"""series:
  - name: sales
    about: Product
    from: {{records: {{url: "sqlite:///{db}", table: sales, time: day, value: qty}}}}
  - name: missing
    about: Product
    from: {{records: {{url: "sqlite:///{db}", table: nosuch, time: day, value: qty}}}}
"""
    series = parse_series(text, ontology)
    (found,) = SeriesReader().read(series, "sales")
    assert list(found.values) == [4.0, 0.0, 6.0]
    assert any("1 non-numeric value(s) were left out" in w for w in found.warnings)
    with pytest.raises(SeriesDataError, match="cannot read 'nosuch'"):
        SeriesReader().read(series, "missing")


def test_future_periods_follow_the_frequency() -> None:
    assert future_periods("2025-06-01T11:00:00", "H", 2) == ["2025-06-01T12:00:00", "2025-06-01T13:00:00"]
    assert future_periods("2025-06-23", "W", 2) == ["2025-06-30", "2025-07-07"]
    assert future_periods("2025-01-01", "M", 2) == ["2025-02-01", "2025-03-01"]
    assert future_periods("2025-06-29", "D", 1) == ["2025-06-30"]
