"""Experiment and forecast charts in a real browser (Debian's Chromium via Playwright) against the real API server.

An executive runs a sensitivity experiment from the scenario dashboard: its tornado has one bar pair per input, ordered
by the size of the effect, each bar ending at the paired difference the API reports; the objective chart and the
table of evaluated decisions show every evaluation. An optimisation started through the API is reached from the
stored-experiments list: the objective chart's points and best-so-far line follow the API's evaluations, and the
frontier chart's highlighted points are the API's frontier decisions (objective against the constraint's KPI), the
best one marked and the decision the constraint rules out apart. A forecast made by the real forecasting models
(statsforecast, through the forecast service) of a demand history with an injected spike: the band's drawn points are
the API's interval bounds, the spike is marked as the API's anomaly, and champion and challenger carry the registry's
metrics. Each chart's drawn geometry is read from what Chart.js laid out (`data-drawn`) and the canvas is checked to be
painted there.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from governance.identity import Subject
from tests.console.conftest import VIEWPORT, ConsoleServer
from tests.console.test_console import assert_governed_traffic, graphql, screenshot, sign_in

pytest.importorskip("playwright", reason="the playwright package is needed for console tests (pip install playwright)")
from playwright.sync_api import Page, expect  # noqa: E402

SENSITIVITY = """\
name: console-sensitivity
description: Which lever moves throughput most, for the console test.
horizon_days: 40
replications: 2
seed: 7
kpis: [throughput, lost_sales]
scenarios:
  - name: levers
    interventions:
      - {kind: supplier_outage, target: {uids: [sup-0]}, start_day: 5, duration_days: ${days}}
      - {kind: demand_shock, target: {class: Product}, start_day: 0, duration_days: 40, factor: ${demand}}
      - {kind: capacity_change, target: {uids: [wc-1]}, start_day: 0, duration_days: 40, factor: ${capacity}}
experiment:
  kind: sensitivity
  variables:
    days: {low: 1, high: 30, integer: true}
    demand: {low: 0.6, high: 1.6}
    capacity: {low: 0.95, high: 1.0}
  objective:
    maximize: {throughput: 1}
"""
VARIABLES = 3

OPTIMISATION = """\
name: console-optimisation
horizon_days: 30
replications: 2
seed: 5
kpis: [throughput, lost_sales, material_stock]
scenarios:
  - name: outage
    interventions:
      - {kind: supplier_outage, target: {uids: [sup-1]}, start_day: 3, duration_days: ${days}}
experiment:
  kind: optimize
  variables:
    days: {low: 1, high: 20, integer: true}
  objective:
    maximize: {throughput: 1}
  constraints:
    - {kpi: material_stock, at_most: 2000}  # stock held: the shortest outages keep too much
  budget: 5
"""

RUN = "mutation Run($spec: String!) { runExperiment(spec: $spec) { id status } }"
EXPERIMENT = "query E($id: ID!) { experimentRun(id: $id) { id status error experimentId bestDecision result } }"
FORECAST = """query F($s: String!) { forecast(series: $s) {
  series modelKind modelVersion level interval history { period value } points { period mean low high }
  models { versionId kind status approved metrics } anomalies { period kind value } } }"""

FORECAST_RECENT = """query F($s: String!) { forecast(series: $s, historyPoints: 52) {
  history { period } anomalies { period } } }"""
SPIKE_WEEK = "2024-03-04"  # a Monday: weekly periods run Monday to Sunday


def drawn(page: Page, canvas: str) -> dict[str, Any]:
    """What Chart.js laid out on the canvas (labels; per dataset each element's pixels and the value they stand for)."""
    locator = page.locator(canvas)
    expect(locator).to_have_attribute("data-drawn", re.compile(r"^\{"))
    return json.loads(locator.get_attribute("data-drawn") or "{}")


def ink(page: Page, canvas: str, points: list[tuple[float, float]]) -> list[int]:
    """The alpha of the canvas's pixel at each (x, y) in CSS pixels (0: nothing painted there)."""
    return page.evaluate(
        """([sel, points]) => {
            const c = document.querySelector(sel);
            const ratio = c.width / c.clientWidth;
            const ctx = c.getContext('2d');
            return points.map(([x, y]) => ctx.getImageData(Math.round(x * ratio), Math.round(y * ratio), 1, 1).data[3]);
        }""",
        [canvas, points],
    )


def dataset(chart: dict[str, Any], label: str) -> list[dict[str, Any] | None]:
    """The drawn elements of the dataset whose label starts with `label`."""
    found = [d for d in chart["datasets"] if d["label"] == label]
    found = found or [d for d in chart["datasets"] if d["label"].startswith(label)]
    assert len(found) == 1, [d["label"] for d in chart["datasets"]]
    return found[0]["elements"]


def close(a: float, b: float) -> bool:
    """Equal up to the pixel round trip of a chart scale."""
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def finished_experiment(server: ConsoleServer, run_id: str) -> dict[str, Any]:
    """Follow an experiment through the API until it is done."""
    deadline = time.monotonic() + 300
    while True:
        run = graphql(server, "executive", EXPERIMENT, {"id": run_id})["experimentRun"]
        if run["status"] in ("completed", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert run["status"] == "completed", run["error"]
    return run


def test_executive_runs_a_sensitivity_experiment_and_reads_its_tornado(
    console_server: ConsoleServer, page: Page
) -> None:
    sign_in(page, console_server, "executive")
    expect(page.locator("#spec-bundled option", has_text="second-shift-size")).to_have_count(1)  # bundled experiment
    page.fill("#spec-text", SENSITIVITY)
    page.click("#study-start")
    expect(page.locator("#tornado-chart")).to_be_visible(timeout=240_000)
    expect(page).to_have_url(re.compile(r"#/scenarios/experiment/[0-9a-f]{12}$"))
    experiment_id = page.url.rsplit("/", 1)[1]
    result = graphql(console_server, "executive", EXPERIMENT, {"id": experiment_id})["experimentRun"]["result"]
    rows = result["sensitivity"]
    assert len(rows) == VARIABLES
    by_effect = sorted(rows, key=lambda r: -abs(r["swing"]))
    assert abs(by_effect[0]["swing"]) > 0, "no input moved throughput: the test spec must have an effect"

    # the tornado: one row per input, largest effect on top, each bar ending at the API's paired difference
    tornado = drawn(page, "#tornado-canvas")
    assert tornado["labels"] == [r["variable"] for r in by_effect]
    low, high = dataset(tornado, "at its low value"), dataset(tornado, "at its high value")
    assert len(low) == len(high) == VARIABLES
    ends = sorted((b for b in (*low, *high) if b), key=lambda b: b["value"])
    first, last = ends[0], ends[-1]
    zero = first["x"] + (0.0 - first["value"]) * (last["x"] - first["x"]) / (last["value"] - first["value"])
    spans = []
    for row, lo, hi in zip(by_effect, low, high, strict=True):
        assert lo is not None and hi is not None
        assert close(lo["value"], row["low_diff"]) and close(hi["value"], row["high_diff"]), (row, lo, hi)
        # bars start at zero (Chart.js keeps half the zero line's width clear: within a pixel)
        assert abs(lo["base"] - zero) <= 1 and abs(hi["base"] - zero) <= 1, (lo, hi, zero)
        assert lo["y"] == hi["y"]  # the two bars of an input share its row
        spans.append(abs(hi["x"] - lo["x"]))
    assert [b["y"] for b in low] == sorted(b["y"] for b in low)  # rows top to bottom in that order
    assert spans == sorted(spans, reverse=True) and spans[0] > spans[-1]
    painted = [(0.5 * (b["x"] + b["base"]), b["y"]) for b in (*low, *high) if b and abs(b["x"] - b["base"]) >= 4]
    assert painted and all(alpha > 0 for alpha in ink(page, "#tornado-canvas", painted))
    expect(page.locator("#sensitivity-table tbody tr")).to_have_count(VARIABLES)
    assert page.locator("#sensitivity-table tbody tr").evaluate_all("rows => rows.map((r) => r.dataset.variable)") == [
        r["variable"] for r in by_effect
    ]

    # every evaluated decision: the centre and each input at its low and high value, plus the baseline row
    evaluations = result["evaluations"]
    assert len(evaluations) == 1 + 2 * VARIABLES
    objective = dataset(drawn(page, "#objective-canvas"), "objective")
    assert [round(p["value"], 6) for p in objective if p] == [round(e["objective"], 6) for e in evaluations]
    expect(page.locator("#evaluation-table tbody tr")).to_have_count(len(evaluations) + 1)
    screenshot(page, "experiment-sensitivity-executive")
    assert_governed_traffic(page, console_server, "executive")


def test_an_optimisation_is_reached_from_the_stored_experiments(console_server: ConsoleServer, page: Page) -> None:
    started = graphql(console_server, "executive", RUN, {"spec": OPTIMISATION})["runExperiment"]
    run = finished_experiment(console_server, started["id"])
    result = run["result"]
    sign_in(page, console_server, "executive")
    page.click(f"#experiment-list a[data-id='{run['experimentId']}']")
    expect(page.locator("#objective-chart")).to_be_visible(timeout=30_000)
    expect(page.locator("#tornado-chart")).to_have_count(0)  # an optimisation has no sensitivity rows

    chart = drawn(page, "#objective-canvas")
    evaluations = result["evaluations"]
    assert chart["labels"] == [str(i + 1) for i in range(len(evaluations))]
    points = dataset(chart, "objective")
    assert all(close(p["value"], e["objective"]) for p, e in zip(points, evaluations, strict=True) if p)
    best_so_far, best = [], None
    for e in evaluations:
        if e["feasible"] and (best is None or e["objective"] > best):
            best = e["objective"]
        best_so_far.append(best)
    line = [p["value"] if p else None for p in dataset(chart, "best so far")]
    assert all(close(a, b) for a, b in zip(line, best_so_far, strict=True) if b is not None)
    assert close(line[-1], max(e["objective"] for e in evaluations if e["feasible"]))
    assert len({round(e["objective"], 6) for e in evaluations}) > 1, "the outage length must move throughput"
    upper, lower = dataset(chart, "95 % CI upper"), dataset(chart, "95 % CI")
    assert all(
        close(u["value"], e["ci_high"]) and close(lo["value"], e["ci_low"])
        for u, lo, e in zip(upper, lower, evaluations, strict=True)
    )
    baseline = dataset(chart, "baseline")
    assert all(close(p["value"], result["baseline"]["objective"]) for p in baseline if p)

    best_row = page.locator("#evaluation-table tbody tr.best")
    expect(best_row).to_have_count(1)
    expect(best_row).to_have_attribute("data-index", str(result["best"]))
    assert run["bestDecision"] == next(e["decision"] for e in evaluations if e["index"] == result["best"])
    expect(page.locator("#experiment-facts dd[data-fact='best decision']")).to_have_text(
        f"days = {run['bestDecision']['days']}"
    )
    frontier = page.locator("#evaluation-table tbody tr[data-frontier='true']")
    expect(frontier).to_have_count(len([i for i in result["frontier"] if i != result["baseline"]["index"]]))

    # the frontier chart: objective (y) against the constraint's KPI (x), the two axes the API's frontier is taken over
    assert result["frontier_kpis"] == ["throughput", "material_stock"]
    expect(page.locator("#frontier-chart")).to_have_attribute("data-kpi", "material_stock")
    feasible = [e for e in evaluations if e["feasible"]]
    assert 0 < len(feasible) < len(evaluations), "the stock bound must rule out a decision"

    def score(e: dict[str, Any]) -> tuple[float, float]:  # higher is better on both
        return e["kpis"]["throughput"], -e["kpis"]["material_stock"]

    undominated = {
        e["index"]
        for e in feasible
        if not any(
            score(o) != score(e) and all(a >= b for a, b in zip(score(o), score(e), strict=True)) for o in feasible
        )
    }
    assert set(result["frontier"]) == undominated and undominated
    scatter = drawn(page, "#frontier-canvas")
    on_frontier = [p for p in dataset(scatter, "frontier") if p]
    expected = sorted(
        (e["kpis"]["material_stock"], e["objective"]) for e in evaluations if e["index"] in result["frontier"]
    )
    assert len(on_frontier) == len(expected) == len(result["frontier"])
    assert [p["xValue"] for p in on_frontier] == sorted(p["xValue"] for p in on_frontier)  # joined in KPI order
    for p, (kpi, objective) in zip(on_frontier, expected, strict=True):
        assert close(p["xValue"], kpi) and close(p["value"], objective), (p, kpi, objective)
    marked = [p for p in dataset(scatter, "best") if p]
    best_evaluation = next(e for e in evaluations if e["index"] == result["best"])
    assert len(marked) == 1
    assert close(marked[0]["xValue"], best_evaluation["kpis"]["material_stock"])
    assert close(marked[0]["value"], best_evaluation["objective"])
    assert len([p for p in dataset(scatter, "feasible") if p]) == len(feasible)
    assert len([p for p in dataset(scatter, "infeasible") if p]) == len(evaluations) - len(feasible)
    assert all(alpha > 0 for alpha in ink(page, "#frontier-canvas", [(p["x"], p["y"]) for p in on_frontier]))
    screenshot(page, "experiment-optimisation-executive")
    assert_governed_traffic(page, console_server, "executive")


def _demand_forecast(server: ConsoleServer, folder: Path) -> str:
    """Three years of weekly demand with a ten-fold spike in one week, forecast through the forecast service (the
    champion registered), and a challenger registered as the service does when another model wins its backtest."""
    from connectors.sample.demand import DemandShape, generate_demand_history
    from governance.models import ModelRegistry
    from simulation.forecast.series import parse_series
    from simulation.forecast.service import ForecastContext, run_forecasts
    from simulation.forecast.store import ForecastStore

    runtime = server.runtime
    history = generate_demand_history(folder, [("P-1", DemandShape(30.0, yearly_amplitude=0.2))], seed=3, years=3)
    con = sqlite3.connect(history.path)
    try:
        changed = con.execute(
            "UPDATE daily_demand SET quantity = quantity * 10 WHERE series_key = 'P-1/direct' "
            "AND day BETWEEN ? AND date(?, '+6 days')",
            (SPIKE_WEEK, SPIKE_WEEK),
        ).rowcount
        con.commit()
    finally:
        con.close()
    assert changed == 7
    series = parse_series(
        f"""series:
  - name: console.demand
    about: Product
    freq: W
    horizon: 8
    from:
      records: {{url: "sqlite:///{folder}/demand.sqlite", table: daily_demand, time: day, value: quantity,
                 group_by: series_key}}
""",
        runtime.ontology,
        "console-series.yaml",
    )
    url = runtime.settings.resolved_database_url
    context = ForecastContext(
        ForecastStore(url),
        ModelRegistry(url, runtime.audit, runtime.policy),
        runtime.policy,
        runtime.audit,
        database_url=url,
    )
    steward = Subject(sub="steward-tester", roles=frozenset({"data_steward"}))
    outcomes = run_forecasts(series, "console.demand", context, subject=steward, windows=2)
    name = "console.demand/P-1/direct"
    outcome = next(o for o in outcomes if o.series == name)
    assert outcome.status == "stored", outcome.error
    stored = context.forecasts.latest(name)
    champion = context.registry.champion(name)
    assert champion is not None
    other = next(kind for kind in sorted(stored.backtests) if kind != champion.kind)
    context.registry.register(
        steward,
        series=name,
        kind=other,
        params={"season_length": stored.season_length},
        train_start=stored.history["periods"][0],
        train_end=stored.history["periods"][-1],
        train_points=len(stored.history["values"]),
        input_digest=stored.input_digest,
        metrics=stored.backtests[other],
        reference=stored.history["values"],
    )
    return name


def test_a_forecast_chart_draws_the_api_band_and_marks_the_anomaly(
    console_server: ConsoleServer, page: Page, browser: Any, tmp_path: Path
) -> None:
    name = _demand_forecast(console_server, tmp_path)
    api = graphql(console_server, "executive", FORECAST, {"s": name})["forecast"]
    assert [a["period"] for a in api["anomalies"] if a["kind"] == "spike"] == [SPIKE_WEEK]

    sign_in(page, console_server, "executive")
    page.click("nav a[href='#/forecasts']")
    listed = graphql(console_server, "executive", "{ forecastSeries }")["forecastSeries"]
    assert name in listed
    expect(page.locator("#forecast-series-list")).to_have_attribute("data-count", str(len(listed)))
    expect(page.locator(f"#forecast-series-list option[value='{name}']")).to_have_count(1)
    page.fill("#forecast-series", name)
    page.click("#forecast-form button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(f"#/forecasts/{quote(name, safe='')}") + "$"))
    expect(page.locator("#forecast-title")).to_have_text(name, timeout=30_000)
    chart = drawn(page, "#forecast-canvas")
    history, points = api["history"], api["points"]
    assert chart["labels"] == [p["period"] for p in history] + [p["period"] for p in points]

    # the band: one drawn point per forecast period at the API's low and high bounds, nothing over the history
    high, low = dataset(chart, "band high"), dataset(chart, f"{api['level']} % band")
    assert high[: len(history)] == [None] * len(history) and low[: len(history)] == [None] * len(history)
    band = list(zip(high[len(history) :], low[len(history) :], points, strict=True))
    assert len(band) == len(points) == 8
    for top, bottom, point in band:
        assert top is not None and bottom is not None
        assert close(top["value"], point["high"]) and close(bottom["value"], point["low"]), (top, bottom, point)
        assert top["y"] <= bottom["y"]  # high above low on the screen
    inside = []  # between two forecast periods, a quarter of the way down from the band's top
    for (top, bottom, _), (top2, bottom2, _) in zip(band, band[1:], strict=False):
        upper, lower = (top["y"] + top2["y"]) / 2, (bottom["y"] + bottom2["y"]) / 2
        inside.append(((top["x"] + top2["x"]) / 2, upper + 0.25 * (lower - upper)))
    assert all(alpha > 0 for alpha in ink(page, "#forecast-canvas", inside)), "the band is not filled"
    observed = dataset(chart, "history")
    assert [round(p["value"], 6) for p in observed[: len(history)] if p] == [round(p["value"], 6) for p in history]

    # anomalies: a marker exactly at each anomalous period of the API, at the observed value
    markers = dataset(chart, "anomaly")
    marked = {chart["labels"][i]: m for i, m in enumerate(markers) if m is not None}
    assert sorted(marked) == sorted(a["period"] for a in api["anomalies"])
    spike_value = next(p["value"] for p in history if p["period"] == SPIKE_WEEK)
    assert close(marked[SPIKE_WEEK]["value"], spike_value)
    expect(page.locator(f"#anomalies li[data-period='{SPIKE_WEEK}']")).to_have_attribute("data-kind", "spike")

    # champion and challenger with the registry's backtest metrics
    rows = page.locator("#model-versions tbody tr")
    expect(rows).to_have_count(len(api["models"]))
    assert rows.evaluate_all("rows => rows.map((r) => r.dataset.status)") == ["champion", "challenger"]
    for model in api["models"]:
        row = page.locator(f"#model-versions tr[data-version='{model['versionId']}']")
        expect(row.locator("td").nth(1)).to_have_text(model["kind"])
        mase = row.locator("td[data-metric='mase']").inner_text()
        assert float(mase.replace(",", "")) == pytest.approx(model["metrics"]["mase"], rel=1e-3)
    champion = next(m for m in api["models"] if m["status"] == "champion")
    assert champion["versionId"] == api["modelVersion"]
    screenshot(page, "forecast-executive")

    # the last year only: 52 periods of history, and the spike (older than that) no longer marked
    page.select_option("#forecast-history", "52")
    expect(page.locator("#forecast-chart")).to_have_attribute("data-history", "52")
    recent = graphql(console_server, "executive", FORECAST_RECENT, {"s": name})["forecast"]
    chart = drawn(page, "#forecast-canvas")
    assert chart["labels"] == [p["period"] for p in recent["history"]] + [p["period"] for p in points]
    assert SPIKE_WEEK not in {a["period"] for a in recent["anomalies"]}
    marked = [chart["labels"][i] for i, m in enumerate(dataset(chart, "anomaly")) if m is not None]
    assert marked == [a["period"] for a in recent["anomalies"]]
    assert_governed_traffic(page, console_server, "executive")

    # a role that may not read forecasts gets the API's refusal in the view, and no chart
    context = browser.new_context(viewport=VIEWPORT)
    try:
        other = context.new_page()
        other.seen_requests = []  # type: ignore[attr-defined]
        other.on("request", lambda request: other.seen_requests.append(request))  # type: ignore[attr-defined]
        other.set_default_timeout(15_000)
        sign_in(other, console_server, "viewer")
        other.goto(f"{console_server.url}/console/#/forecasts/{quote(name, safe='')}")
        expect(other.locator("#forecast-detail .notice-error")).to_contain_text("may not forecast.read")
        expect(other.locator("#forecast-chart")).to_have_count(0)
        assert_governed_traffic(other, console_server, "viewer")
    finally:
        context.close()
