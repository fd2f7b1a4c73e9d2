"""The GraphQL fields the console's charts read: `experiments` (stored experiments, newest first) and a forecast's
`models` (the registry's champion and challengers with their metrics) and `anomalies` (the robust rolling detector
over the history), and `forecastSeries` (the series a caller may read) — each behind the same policy as the forecast
or study it belongs to."""

from __future__ import annotations

import time

import numpy as np

from governance.identity import Subject
from governance.models import ModelRegistry
from simulation.forecast.forecasting import forecast_series
from simulation.forecast.series import SeriesData, SeriesLineage
from simulation.forecast.store import ForecastStore
from tests.api.conftest import ApiHarness

SPEC = """
name: api-list-experiment
horizon_days: 20
replications: 2
seed: 3
kpis: [throughput]
scenarios:
  - name: outage
    interventions:
      - {kind: supplier_outage, target: {uids: [sup-1]}, start_day: 2, duration_days: ${days}}
experiment:
  kind: grid
  variables:
    days: {values: [1, 5]}
  objective:
    maximize: {throughput: 1}
"""
LIST = "query L($first: Int) { experiments(first: $first) { id name kind createdAt evaluations } }"
FORECAST = """query F($s: String!, $p: Int) { forecast(series: $s, historyPoints: $p) {
  modelVersion history { period } models { versionId kind status approved metrics }
  anomalies { period kind value score expectedLow expectedHigh } } }"""
SPIKE = 70


def test_stored_experiments_are_listed_newest_first_for_those_who_may_read_studies(api: ApiHarness) -> None:
    started = api.data(
        "mutation R($spec: String!) { runExperiment(spec: $spec) { id } }", {"spec": SPEC}, role="executive"
    )["runExperiment"]
    deadline = time.monotonic() + 120
    query = "query E($id: ID!) { experimentRun(id: $id) { status error experimentId } }"
    while True:
        run = api.data(query, {"id": started["id"]}, role="executive")["experimentRun"]
        if run["status"] in ("completed", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert run["status"] == "completed", run["error"]
    (newest,) = api.data(LIST, {"first": 1}, role="architect")["experiments"]
    assert newest == {
        "id": run["experimentId"],
        "name": "api-list-experiment",
        "kind": "grid",
        "createdAt": newest["createdAt"],
        "evaluations": 2,
    }
    everything = api.data(LIST, {}, role="executive")["experiments"]
    assert everything[0]["id"] == run["experimentId"]
    assert [e["createdAt"] for e in everything] == sorted((e["createdAt"] for e in everything), reverse=True)
    status, body = api.gql(LIST, {}, role="viewer")
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    status, body = api.gql(LIST, {"first": 0}, role="executive")
    assert "`first` must be between 1 and" in body["errors"][0]["message"]


def test_a_forecast_carries_its_model_versions_and_the_anomalies_of_its_history(api: ApiHarness) -> None:
    name = "api.chart/P-1"
    rng = np.random.default_rng(4)
    values = 100 + 10 * np.sin(np.arange(96) * 2 * np.pi / 12) + rng.normal(0, 2, 96)
    values[SPIKE] = 400.0  # one month far above anything the detector has seen
    periods = tuple(f"{2017 + i // 12}-{i % 12 + 1:02d}-01" for i in range(96))
    data = SeriesData(name, "M", 12, 6, periods, values, SeriesLineage("records", "test", 96, classes=("Product",)))
    made = forecast_series(values, 6, 12, windows=2)
    url = api.runtime.settings.resolved_database_url
    registry = ModelRegistry(url, api.runtime.audit, api.runtime.policy)
    steward = Subject(sub="steward", roles=frozenset({"data_steward"}))
    version = registry.register(
        steward,
        series=name,
        kind=made.kind,
        params={"season_length": 12},
        train_start=periods[0],
        train_end=periods[-1],
        train_points=96,
        input_digest=data.digest,
        metrics=made.champion.as_dict() if made.champion else {},
        reference=values.tolist(),
    )
    ForecastStore(url).save(data, made, created_by="steward", model_version=version.version_id)

    found = api.data(FORECAST, {"s": name}, role="executive")["forecast"]
    assert found["modelVersion"] == version.version_id
    (model,) = found["models"]
    assert model["versionId"] == version.version_id and model["status"] == "champion" and model["kind"] == made.kind
    assert model["approved"] is False and model["metrics"]["mase"] == made.champion.mase  # type: ignore[union-attr]
    (anomaly,) = found["anomalies"]
    assert anomaly["period"] == periods[SPIKE] and anomaly["kind"] == "spike" and anomaly["value"] == 400.0
    assert anomaly["expectedLow"] < values[SPIKE - 1] < anomaly["expectedHigh"] < 400.0 and anomaly["score"] > 7

    # the anomalies follow the history asked for: a cut after the spike leaves it out
    cut = api.data(FORECAST, {"s": name, "p": 96 - SPIKE - 1}, role="executive")["forecast"]
    assert cut["history"][0]["period"] == periods[SPIKE + 1] and cut["anomalies"] == []
    status, body = api.gql(FORECAST, {"s": name}, role="hr")
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    # the series list names it for a role that may read Product twins, and hides it from one that may not
    listed = "query S($p: String, $n: Int) { forecastSeries(prefix: $p, first: $n) }"
    assert api.data(listed, {"p": "api.chart/"}, role="executive")["forecastSeries"] == [name]
    assert name in api.data(listed, {}, role="executive")["forecastSeries"]
    assert len(api.data(listed, {"n": 1}, role="executive")["forecastSeries"]) == 1
    assert name not in api.data(listed, {}, role="hr")["forecastSeries"]
    status, body = api.gql(listed, {}, role="viewer")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
