"""The forecast services: every edge (CLI, GraphQL) runs, reads and checks forecasts through here, so the policy
decision (the operation, and reading every class a series is about), the caller's read scope, the model registry and
the audit record cannot be forgotten.

A run reads the series as the caller may see them, backtests every candidate model, and forecasts with the series'
champion model version (the registry's; the first run's best model becomes it). When another model wins the backtest,
it is registered as a challenger, which serves no forecast until someone else approves it and it is promoted. One
series that fails never stops the others: its outcome says why.

A stored forecast of a series about one twin (a group `NAME/KEY` whose key is a twin's uid, as telemetry series per
asset are, or a series read from a single twin) is announced on the change feed as a `forecast` event of that twin
(`announce_forecast`): its mean and band per period and their extremes, so automations can act on a forecast
crossing a threshold (`trigger: {forecast: {class: Material}}`, `condition: "forecast.lowest < twin.reorderPoint"`)
and event routes can carry it, each through the policy gate of the twin's changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from governance.audit import AuditEvent, AuditLog, Decision
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.models import DriftReport, ModelRegistry
from governance.policy import Policy
from graph.history import Change, ChangeContext
from graph.store import GraphStore
from simulation.forecast.errors import ForecastError
from simulation.forecast.forecasting import (
    MODEL_KINDS,
    Forecast,
    ForecastPool,
    forecast_as,
    forecast_batch,
    forecast_series,
    mase_scale,
)
from simulation.forecast.series import SeriesData, SeriesReader, SeriesSet
from simulation.forecast.store import ForecastStore, StoredForecast, future_periods

RUN = "forecast.run"
READ = "forecast.read"


@dataclass(frozen=True)
class ForecastOutcome:
    """What a run did for one series."""

    series: str
    status: str  # stored | failed
    forecast_id: str | None = None
    kind: str | None = None
    model_version: str | None = None
    best_kind: str | None = None
    challenger: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    error: str | None = None


@dataclass
class ForecastContext:
    """What a forecast service call works with: the stores, the policy and audit, where sources live."""

    forecasts: ForecastStore
    registry: ModelRegistry
    policy: Policy
    audit: AuditLog
    graph: GraphStore | None = None
    database_url: str | None = None
    data_dir: Path | None = None
    workers: int = 1  # forecasting processes for a batch (1: in this process)
    pool: ForecastPool | None = None  # a pool kept open across runs (the retraining runtime's)


def _deny(ctx: ForecastContext, subject: Subject, operation: str, variables: Mapping[str, object], why: str) -> None:
    ctx.audit.append(
        AuditEvent.for_subject(
            subject, operation, Decision.DENY, variables=variables, policy_version=ctx.policy.version, detail=why
        )
    )
    raise PolicyDenied(f"{subject.sub} may not {operation} {str(variables.get('series', ''))[:120]}: {why}")


def require(
    ctx: ForecastContext, subject: Subject, operation: str, classes: tuple[str, ...], variables: Mapping[str, object]
) -> None:
    """Refuse (and audit) unless the subject may do `operation` and read every class the series is about."""
    decision = ctx.policy.decide(subject, "operation", operation)
    if not decision.allowed:
        _deny(ctx, subject, operation, variables, decision.reason)
    for cls in classes:
        if cls and not ctx.policy.decide(subject, "read", cls).allowed:
            _deny(ctx, subject, operation, variables, f"the series reads {cls} twins, which the role may not read")


def run_forecasts(
    series: SeriesSet,
    name: str,
    ctx: ForecastContext,
    *,
    subject: Subject,
    horizon: int | None = None,
    windows: int = 3,
    retrain: str | None = None,
) -> list[ForecastOutcome]:
    """Forecast the series `name` (each group of it) as `subject`; store each forecast with its model version.
    With `retrain` (why: `schedule`, `approved alert ID`, ...), each group's best model is registered as a new
    version even when its kind is the champion's (a challenger; the champion when there is none) — unless a version
    of that kind was trained on exactly these data already."""
    definition = series.get(name)
    classes = series.classes[definition.name]
    variables: dict[str, object] = {"series": name, "horizon": horizon, "windows": windows}
    if retrain is not None:
        variables["retrain"] = retrain
    require(ctx, subject, RUN, classes, variables)
    reader = SeriesReader(ctx.graph, ctx.database_url, ctx.data_dir, ctx.policy.read_scope(subject))
    try:
        found = reader.read(series, name)
    except ForecastError as exc:
        _audit_run(ctx, subject, variables, None, {"status": "failed", "error": str(exc)[:300]})
        raise
    h = horizon or definition.horizon
    season = found[0].season_length if found else definition.season
    batch = forecast_batch([d.values for d in found], h, season, windows=windows, workers=ctx.workers, pool=ctx.pool)
    decided = [_one(data, best, ctx, subject, h, windows, retrain) for data, best in zip(found, batch, strict=True)]
    keep = [(d, outcome, used) for d, (outcome, used) in zip(found, decided, strict=True) if used is not None]
    ids = ctx.forecasts.save_many([(d, used, o.model_version) for d, o, used in keep], created_by=subject.sub)
    stored_ids = {o.series: i for (_, o, _), i in zip(keep, ids, strict=True)}
    unannounced: dict[str, str] = {}
    for (data, outcome, used), forecast_id in zip(keep, ids, strict=True):
        try:
            announce_forecast(ctx, data, used, forecast_id, outcome.model_version or "", subject)
        except Exception as exc:  # the forecast is stored all the same; the outcome says it was not announced
            unannounced[outcome.series] = f"not announced on the change feed: {type(exc).__name__}: {str(exc)[:200]}"
    outcomes = [
        replace(
            o,
            forecast_id=stored_ids[o.series],
            warnings=(*o.warnings, unannounced[o.series]) if o.series in unannounced else o.warnings,
        )
        if o.series in stored_ids
        else o
        for o, _ in decided
    ]
    stored = sum(o.status == "stored" for o in outcomes)
    _audit_run(
        ctx,
        subject,
        variables,
        stored,
        {"status": "completed", "series": len(outcomes), "stored": stored, "failed": len(outcomes) - stored},
    )
    return outcomes


def _audit_run(
    ctx: ForecastContext, subject: Subject, variables: Mapping[str, object], rows: int | None, outcome: dict[str, Any]
) -> None:
    ctx.audit.append(AuditEvent.of_run(subject, RUN, ctx.policy.version, variables, rows, outcome))


def _one(
    data: SeriesData,
    best: Forecast | str,
    ctx: ForecastContext,
    subject: Subject,
    horizon: int,
    windows: int,
    retrain: str | None,
) -> tuple[ForecastOutcome, Forecast | None]:
    """Decide one series' model version and forecast (stored by the caller with the others); any failure becomes a
    failed outcome (never an exception mid-batch)."""
    try:
        if isinstance(best, str):
            raise ForecastError(best)
        champion = ctx.registry.champion(data.name)
        challenger = None
        if champion is None:
            champion = _register(ctx, subject, data, best)
            used = best
        else:
            versions = ctx.registry.versions(data.name)
            trained = {(v.kind, v.input_digest) for v in versions if v.status != "retired"}
            known = {v.kind for v in versions if v.status == "challenger"}
            if retrain is not None and best.kind in MODEL_KINDS and (best.kind, data.digest) not in trained:
                challenger = _register(ctx, subject, data, best, retrain).version_id
            elif (
                best.kind != champion.kind
                and best.kind not in known
                and best.kind in MODEL_KINDS
                and _beats(best, champion.metrics)
            ):
                challenger = _register(ctx, subject, data, best).version_id
            used = forecast_as(best, data.values, horizon, champion.kind, windows=windows)
        outcome = ForecastOutcome(
            data.name,
            "stored",
            None,
            used.kind,
            champion.version_id,
            best.kind,
            challenger,
            used.champion.as_dict() if used.champion else {},
            (*data.warnings, *used.warnings),
        )
        return outcome, used
    except Exception as exc:  # one bad series never stops the batch: its outcome carries the reason
        return ForecastOutcome(data.name, "failed", error=f"{type(exc).__name__}: {str(exc)[:300]}"), None


def forecast_twin(data: SeriesData) -> str | None:
    """The twin a series is about: the key of a group `NAME/KEY`, or the one twin an ungrouped series was read from."""
    if "/" in data.name:
        return data.name.split("/", 1)[1]
    if data.lineage.twins == 1 and data.lineage.twin_sample:
        return data.lineage.twin_sample[0]
    return None


def announce_forecast(
    ctx: ForecastContext, data: SeriesData, forecast: Forecast, forecast_id: str, version: str, subject: Subject
) -> bool:
    """Append a `forecast` event of the twin the series is about to the change feed; False when there is no such
    twin (or no feed)."""
    uid = forecast_twin(data)
    if uid is None or ctx.graph is None or ctx.graph.history is None:
        return False
    twin = ctx.graph.get_many([uid]).get(uid)
    if twin is None:
        return False
    mean, low, high = (np.asarray(a, dtype=np.float64) for a in (forecast.mean, forecast.lo, forecast.hi))
    periods = future_periods(data.periods[-1], data.freq, len(mean)) if data.periods else []
    event = {
        "series": data.name,
        "forecast_id": forecast_id,
        "model_version": version,
        "model": forecast.kind,
        "horizon": int(len(mean)),
        "periods": list(periods),
        "mean": [round(float(v), 6) for v in mean],
        "low": [round(float(v), 6) for v in low],
        "high": [round(float(v), 6) for v in high],
        "min": round(float(mean.min()), 6) if len(mean) else None,
        "max": round(float(mean.max()), 6) if len(mean) else None,
        "lowest": round(float(low.min()), 6) if len(low) else None,
        "highest": round(float(high.max()), 6) if len(high) else None,
        "last": round(float(data.values[-1]), 6) if len(data.values) else None,
        "input_digest": data.digest,
    }
    change = Change(uid, "forecast", "create", None, event, cls=twin.cls)
    ctx.graph.history.record([change], ChangeContext(actor=subject.sub, source=f"forecast:{data.name}"[:256]))
    return True


def _beats(best: Forecast, champion_metrics: Mapping[str, Any]) -> bool:
    mase = champion_metrics.get("mase")
    return best.champion is not None and (not isinstance(mase, int | float) or best.champion.mase < mase)


def _register(
    ctx: ForecastContext, subject: Subject, data: SeriesData, forecast: Forecast, retrain: str | None = None
) -> Any:
    metrics = forecast.champion.as_dict() if forecast.champion else {}
    params = dict(forecast.params or {"season_length": forecast.season_length})
    if retrain is not None:
        params["retrained"] = retrain
    return ctx.registry.register(
        subject,
        series=data.name,
        kind=forecast.kind,
        params=params,
        train_start=data.periods[0],
        train_end=data.periods[-1],
        train_points=len(data.values),
        input_digest=data.digest,
        metrics=metrics,
        reference=[float(v) for v in data.values],
    )


def backtest_series(
    series: SeriesSet,
    name: str,
    ctx: ForecastContext,
    *,
    subject: Subject,
    horizon: int | None = None,
    windows: int = 3,
) -> dict[str, dict[str, Any]]:
    """Backtest every candidate on each group of series `name` as `subject` (nothing stored; audited):
    series -> {champion, backtests, warnings} (a group that fails carries its error)."""
    definition = series.get(name)
    variables = {"series": name, "horizon": horizon, "windows": windows, "backtest": True}
    require(ctx, subject, READ, series.classes[definition.name], variables)
    reader = SeriesReader(ctx.graph, ctx.database_url, ctx.data_dir, ctx.policy.read_scope(subject))
    results: dict[str, dict[str, Any]] = {}
    for data in reader.read(series, name):
        try:
            found = forecast_series(data.values, horizon or definition.horizon, data.season_length, windows=windows)
            results[data.name] = {
                "champion": found.kind,
                "backtests": {k: b.as_dict() for k, b in found.backtests.items()},
                "warnings": [*data.warnings, *found.warnings],
            }
        except Exception as exc:  # one bad series never stops the others
            results[data.name] = {"champion": None, "backtests": {}, "error": f"{type(exc).__name__}: {exc}"[:300]}
    ctx.audit.append(
        AuditEvent.for_subject(
            subject,
            READ,
            Decision.ALLOW,
            variables=variables,
            policy_version=ctx.policy.version,
            rows_returned=len(results),
        )
    )
    return results


def read_forecast(name: str, ctx: ForecastContext, *, subject: Subject) -> StoredForecast:
    """The newest stored forecast of series `name` as `subject` (refused when a class it is about is hidden)."""
    found = ctx.forecasts.latest(name)
    classes = tuple(found.lineage.get("classes") or ())
    require(ctx, subject, READ, classes, {"series": name})
    ctx.audit.append(
        AuditEvent.for_subject(
            subject,
            READ,
            Decision.ALLOW,
            variables={"series": name},
            policy_version=ctx.policy.version,
            rows_returned=1,
        )
    )
    return found


def check_drift(series: SeriesSet, name: str, ctx: ForecastContext, *, subject: Subject) -> list[DriftReport]:
    """Check every group of series `name` for drift against its champion: inputs since the champion was trained
    (PSI, KS) and the accuracy of stored forecasts on the values realised since (MASE against the backtest's)."""
    definition = series.get(name)
    require(ctx, subject, RUN, series.classes[definition.name], {"series": name})
    reader = SeriesReader(ctx.graph, ctx.database_url, ctx.data_dir, ctx.policy.read_scope(subject))
    reports = []
    for data in reader.read(series, name):
        champion = ctx.registry.champion(data.name)
        if champion is None:
            continue
        first_recent = next((i for i, p in enumerate(data.periods) if p > champion.train_end), None)
        if first_recent is None:
            continue
        recent, reference = _drift_samples(data.values, first_recent, data.season_length)
        reports.append(
            ctx.registry.check_drift(
                subject,
                data.name,
                recent,
                reference=reference,
                realised_mase=_realised_mase(ctx, data, champion.version_id),
            )
        )
    return reports


def _drift_samples(values: np.ndarray, first_recent: int, season: int) -> tuple[list[float], list[float] | None]:
    """Recent inputs and their reference: for a series with a full season before its training data ends, the
    year-over-year log ratios (so a season is not mistaken for a shift); otherwise the raw values against the
    champion's training sample (None)."""
    if season > 1 and first_recent - season >= max(8, season // 2):  # enough training ratios to compare with
        logs = np.log1p(np.maximum(values, 0))
        ratios = logs[season:] - logs[:-season]
        cut = first_recent - season
        return ratios[cut:].tolist(), ratios[:cut].tolist()
    return [float(v) for v in values[first_recent:]], None


def _realised_mase(ctx: ForecastContext, data: SeriesData, version_id: str) -> float | None:
    """MASE of the newest stored forecast of this version on the values realised since it was made."""
    actual = dict(zip(data.periods, data.values.tolist(), strict=True))
    for stored in ctx.forecasts.of_series(data.name):
        if stored.model_version != version_id:
            continue
        pairs = [
            (actual[p], m) for p, m in zip(stored.points["periods"], stored.points["mean"], strict=True) if p in actual
        ]
        if not pairs:
            continue
        history = np.asarray(stored.history["values"], dtype=np.float64)
        scale = mase_scale(history, stored.season_length)
        if scale <= 0:
            return None
        return float(np.mean([abs(a - m) for a, m in pairs]) / scale)
    return None


def known_series(ctx: ForecastContext, prefix: str = "") -> list[str]:
    """Series with stored forecasts."""
    return ctx.forecasts.series_names(prefix)
