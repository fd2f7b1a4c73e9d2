"""`forecast(series:, horizon:)` over GraphQL: history, forecast and band with the model version and input digest,
refused for a role that may not read the classes the series is about."""

from __future__ import annotations

import numpy as np

from simulation.forecast.forecasting import forecast_series
from simulation.forecast.series import SeriesData, SeriesLineage
from simulation.forecast.store import ForecastStore
from tests.api.conftest import ApiHarness

QUERY = """query F($s: String!, $h: Int) { forecast(series: $s, horizon: $h, historyPoints: 4) {
  series modelKind modelVersion inputDigest interval level horizon
  history { period value } points { period mean low high } warnings } }"""


def _stored(api: ApiHarness, name: str) -> SeriesData:
    rng = np.random.default_rng(1)
    values = 100 + 10 * np.sin(np.arange(60) * 2 * np.pi / 12) + rng.normal(0, 2, 60)
    periods = tuple(f"{2020 + i // 12}-{i % 12 + 1:02d}-01" for i in range(60))
    data = SeriesData(name, "M", 12, 6, periods, values, SeriesLineage("records", "test", 60, classes=("Product",)))
    ForecastStore(api.runtime.settings.resolved_database_url).save(
        data, forecast_series(values, 6, 12), created_by="test", model_version="v-test"
    )
    return data


def test_an_executive_reads_a_forecast_with_history_and_band(api: ApiHarness) -> None:
    data = _stored(api, "api.demand/P-1")
    found = api.data(QUERY, {"s": "api.demand/P-1", "h": 3}, role="executive")["forecast"]
    assert found["series"] == "api.demand/P-1" and found["modelVersion"] == "v-test" and found["level"] == 80
    assert found["inputDigest"] == data.digest and found["horizon"] == 3 and len(found["points"]) == 3
    assert [p["period"] for p in found["history"]] == list(data.periods[-4:])
    assert found["points"][0]["period"] == "2025-01-01"
    assert all(p["low"] <= p["mean"] <= p["high"] for p in found["points"])
    reads = [r for r in api.audit_records() if r.operation == "forecast.read"]
    assert reads and reads[-1].subject == "test-executive"


def test_forecast_reads_follow_the_policy_and_refuse_bad_arguments(api: ApiHarness) -> None:
    _stored(api, "api.demand/P-2")
    status, body = api.gql(QUERY, {"s": "api.demand/P-2"}, role="hr")
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "reads Product twins" in body["errors"][0]["message"]
    status, body = api.gql(QUERY, {"s": "api.demand/P-2"}, role="viewer")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    status, body = api.gql(QUERY, {"s": "no.such/series"}, role="executive")
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    status, body = api.gql(QUERY, {"s": "api.demand/P-2", "h": 99}, role="executive")
    assert "`horizon` must be between 1 and 6" in body["errors"][0]["message"]
