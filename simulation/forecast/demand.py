"""Forecast demand for what-if studies: the stored forecasts a study's `demand:` names, as the caller may read them.

`demand: {forecast: NAME}` takes, for each group of series NAME, the newest forecast made by the group's champion
model version (a group whose champion has made none is refused: run `twin forecast run NAME` first);
`demand: {model_version: ID}` takes the newest forecast made by that version. Reading them is a forecast read: the
policy must allow `forecast.read` and every class the series is about, and the read is audited. The study records
which forecasts, model versions and input digests it used (simulation/scenario.py `DemandPlan`).
"""

from __future__ import annotations

from governance.audit import AuditEvent, Decision
from governance.identity import Subject
from governance.models import UnknownModelVersion
from simulation.forecast.errors import UnknownSeries
from simulation.forecast.service import READ, ForecastContext, require
from simulation.forecast.store import StoredForecast
from simulation.scenario import DemandSpec, GroupForecast


def demand_forecasts(spec: DemandSpec, ctx: ForecastContext, *, subject: Subject) -> list[GroupForecast]:
    """The stored forecasts `spec` names, each made by its group's champion (or the pinned version), as `subject`
    may read them; UnknownSeries naming what to run when there are none."""
    if spec.model_version is not None:
        try:
            version = ctx.registry.get(spec.model_version)
        except UnknownModelVersion as exc:
            raise UnknownSeries(str(exc)) from None
        if spec.forecast is not None and not _of(version.series, spec.forecast):
            raise UnknownSeries(
                f"model version {spec.model_version!r} is of series {version.series!r}, not of {spec.forecast!r}"
            )
        name = version.series
        found = ctx.forecasts.latest_of_groups(name, model_versions=[version.version_id])
        found = [f for f in found if f.series == name]
        if not found:
            raise UnknownSeries(f"model version {spec.model_version!r} has made no stored forecast of {name!r}")
    else:
        assert spec.forecast is not None
        name = spec.forecast
        newest = ctx.forecasts.latest_of_groups(name)
        if not newest:
            raise UnknownSeries(f"no stored forecast of series {name[:120]!r} (run `twin forecast run {name[:120]}`)")
        champions = {f.series: ctx.registry.champion(f.series) for f in newest}
        missing = sorted(s for s, v in champions.items() if v is None)
        if missing:
            raise UnknownSeries(f"series {', '.join(missing[:5])} have no champion model version")
        ids = [v.version_id for v in champions.values() if v is not None]
        found = ctx.forecasts.latest_of_groups(name, model_versions=ids)
        found = [f for f in found if (v := champions.get(f.series)) is not None and f.model_version == v.version_id]
        stale = sorted(set(champions) - {f.series for f in found})
        if stale:
            raise UnknownSeries(
                f"{len(stale)} group(s) of {name!r} have no forecast by their current champion (e.g. {stale[0]!r}): "
                f"run `twin forecast run {name[:120]}`"
            )
    classes = tuple(dict.fromkeys(c for f in found for c in (f.lineage.get("classes") or ())))
    variables = {"series": name, "use": "study demand"}
    require(ctx, subject, READ, classes, variables)
    ctx.audit.append(
        AuditEvent.for_subject(
            subject,
            READ,
            Decision.ALLOW,
            variables=variables,
            policy_version=ctx.policy.version,
            rows_returned=len(found),
        )
    )
    return [_group(f) for f in found]


def _of(series: str, name: str) -> bool:
    return series == name or series.startswith(f"{name}/")


def _group(stored: StoredForecast) -> GroupForecast:
    p = stored.points
    return GroupForecast(
        stored.series,
        stored.forecast_id,
        stored.model_version or "",
        stored.model_kind,
        stored.input_digest,
        stored.created_at,
        stored.freq,
        tuple(p["periods"]),
        tuple(float(v) for v in p["mean"]),
        tuple(float(v) for v in p["lo"]),
        tuple(float(v) for v in p["hi"]),
    )
