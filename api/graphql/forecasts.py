"""Forecasts over GraphQL: `forecast(series:, horizon:)` reads the newest stored forecast of a series through the
forecast service, which refuses a caller who may not read forecasts or any class the series is about. With it come
the series' model versions from the registry (champion, challengers, their backtest metrics) and the anomalies the
robust rolling detector (simulation/forecast/anomaly.py) finds in the history."""

from __future__ import annotations

from typing import Any

import anyio.to_thread

from api.context import RequestContext
from api.errors import BadUserInput, NotFound
from api.graphql.governed import governed
from api.graphql.selection import Selection, list_limit


def _models(versions: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "versionId": v.version_id,
            "kind": v.kind,
            "status": v.status,
            "trainedAt": v.trained_at,
            "trainStart": v.train_start,
            "trainEnd": v.train_end,
            "approved": v.approved_by is not None,
            "metrics": v.metrics,
        }
        for v in versions
    ]


def _anomalies(periods: list[str], values: list[float]) -> list[dict[str, Any]]:
    """Anomalous episodes of the whole history, scored in order by one robust rolling detector."""
    from simulation.forecast.anomaly import StreamDetector

    detector = StreamDetector()
    found = []
    for period, value in zip(periods, values, strict=True):
        event = detector.update(period, float(value))
        if event is not None:
            found.append(
                {
                    "period": event.ts,
                    "kind": event.kind,
                    "value": event.value,
                    "score": event.score,
                    "expectedLow": event.expected_low,
                    "expectedHigh": event.expected_high,
                }
            )
    return found


def _values(stored: Any, versions: list[Any], horizon: int | None, history_points: int | None) -> dict[str, Any]:
    p = stored.points
    count = len(p["mean"]) if horizon is None else horizon
    if not 1 <= count <= len(p["mean"]):
        raise BadUserInput(f"`horizon` must be between 1 and {len(p['mean'])} (the stored forecast's), got {count}")
    periods, values = stored.history["periods"], stored.history["values"]
    anomalies = _anomalies(periods, values)
    if history_points is not None:
        if history_points < 0:
            raise BadUserInput(f"`historyPoints` must be 0 or more, got {history_points}")
        periods, values = periods[len(periods) - history_points :], values[len(values) - history_points :]
    return {
        "series": stored.series,
        "modelKind": stored.model_kind,
        "modelVersion": stored.model_version,
        "codeVersion": stored.code_version,
        "inputDigest": stored.input_digest,
        "createdAt": stored.created_at,
        "interval": stored.interval,
        "level": stored.level,
        "horizon": count,
        "history": [{"period": d, "value": v} for d, v in zip(periods, values, strict=True)],
        "points": [
            {"period": d, "mean": m, "low": lo, "high": hi}
            for d, m, lo, hi in list(zip(p["periods"], p["mean"], p["lo"], p["hi"], strict=True))[:count]
        ],
        "warnings": stored.warnings,
        "backtests": stored.backtests,
        "lineage": stored.lineage,
        "models": _models(versions),
        "anomalies": [a for a in anomalies if not periods or a["period"] >= periods[0]],
    }


async def forecast(root: Any, info: Any, series: str, horizon: Any = None, historyPoints: Any = None) -> dict[str, Any]:
    """The newest stored forecast of `series`, cut to `horizon` periods, as the caller may see it."""
    from governance.models import ModelRegistry
    from simulation.forecast.errors import UnknownSeries
    from simulation.forecast.service import ForecastContext, read_forecast
    from simulation.forecast.store import ForecastStore

    ctx: RequestContext = info.context
    runtime = ctx.services.runtime
    url = runtime.settings.resolved_database_url

    def load() -> tuple[Any, list[Any]]:
        forecasts = ForecastContext(
            ForecastStore(url), ModelRegistry(url, runtime.audit, ctx.policy), ctx.policy, runtime.audit
        )
        stored = read_forecast(series, forecasts, subject=ctx.subject)  # the policy decides here
        return stored, forecasts.registry.versions(series)

    try:
        stored, versions = await anyio.to_thread.run_sync(load)
    except UnknownSeries as exc:
        raise NotFound(str(exc)) from None
    ctx.rows += 1
    return Selection(info).shaped(info.return_type, info.field_nodes, _values(stored, versions, horizon, historyPoints))


async def forecast_series(root: Any, info: Any, prefix: Any = None, first: Any = None) -> list[str]:
    """Names of the series with a stored forecast that the caller may read (every class a series is about)."""
    from simulation.forecast.store import ForecastStore

    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "forecast.read")
    limit = list_limit(first, 100)
    store = ForecastStore(ctx.services.runtime.settings.resolved_database_url)

    def load() -> list[str]:
        names = []
        for name in store.series_names(prefix or ""):
            classes = store.latest(name).lineage.get("classes") or ()
            if all(ctx.policy.decide(ctx.subject, "read", cls).allowed for cls in classes if cls):
                names.append(name)
                if len(names) == limit:
                    break
        return names

    names = await anyio.to_thread.run_sync(load)
    ctx.rows += len(names)
    return names


QUERY_RESOLVERS = {"forecast": governed(forecast), "forecastSeries": governed(forecast_series)}
