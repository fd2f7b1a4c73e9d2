"""Series definitions: declarative KPI and demand series (YAML, like scenarios), validated with line numbers against
the ontology, and read into regular time series with lineage (what they were read from, a digest of the data).

A file holds `series:`, a list of definitions. Each names its frequency (H, D, W, M; weeks start on Monday), its
season length (default 24, 7, 52, 12 by frequency), its default horizon, and where its values come `from`:

- `twins`: twins of a class bucketed by a date property, counting them or summing a numeric property, or summing a
  numeric property of one of their links grouped by the link's target (sales orders -> `orders` -> products,
  `quantity`); read through the caller's read scope;
- `records`: rows of a table in a relational source (the connectors' systems, or the sample's demand history),
  bucketed by a time column, summed/counted/averaged, optionally grouped by a key column (one series per key);
- `telemetry`: readings of one metric of an asset (or of every asset of a class) from the telemetry store.

`retrain: {every: 7d}` (or `{cron: "0 3 * * 1"}`, UTC) has the runtime of `twin run`/`twin serve` retrain the
series' models on that schedule (simulation/forecast/retraining.py).

Every series says which twin classes it is about (`about`; for `twins` the class and the link's target class), so
that a reader who may not read those classes is refused its forecasts. Periods without any row count as 0 for sums
and counts; for means they are interpolated (with a warning).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import column, create_engine, select, table
from sqlalchemy.exc import SQLAlchemyError

from connectors.schedule import Schedule, ScheduleError, parse_schedule
from graph.model import UNRESTRICTED, ReadScope
from graph.store import GraphStore
from ontology.model import Ontology
from ontology.safe_yaml import compose_yaml
from ontology.schema import FLOAT_KINDS, INTEGER_RANGES
from ontology.yaml_lines import line_map, line_of
from simulation.forecast.errors import SeriesDataError, SeriesSpecError, UnknownSeries

Freq = Literal["H", "D", "W", "M"]
SEASON_LENGTH: dict[str, int] = {"H": 24, "D": 7, "W": 52, "M": 12}
PERIOD_CODES = {"H": "h", "D": "D", "W": "W-SUN", "M": "M"}
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$"
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
_STRICT = ConfigDict(extra="forbid", populate_by_name=True)
_NUMERIC = FLOAT_KINDS | set(INTEGER_RANGES)
Aggregate = Literal["sum", "count", "mean", "min", "max"]


class TwinsSource(BaseModel):
    """Twins of a class per period: counted, a property summed, or a link property summed per link target."""

    model_config = _STRICT
    cls: str = Field(alias="class")
    time: str
    value: str | None = None
    link: str | None = None
    aggregate: Aggregate = "sum"

    @model_validator(mode="after")
    def _link_needs_value(self) -> TwinsSource:
        if self.link is not None and self.value is None:
            raise ValueError("a `link:` series sums a property of the link: name it with `value:`")
        return self


class RecordsSource(BaseModel):
    """Rows of a relational table per period (`{data_dir}` in the URL is the twin's data directory)."""

    model_config = _STRICT
    url: str = Field(min_length=1)
    table: str = Field(pattern=_IDENT)
    time: str = Field(pattern=_IDENT)
    value: str | None = Field(None, pattern=_IDENT)
    group_by: str | None = Field(None, pattern=_IDENT)
    aggregate: Aggregate = "sum"


class TelemetrySource(BaseModel):
    """Readings of one metric of one asset (`asset: uid`) or of every asset of the series' class."""

    model_config = _STRICT
    metric: str = Field(min_length=1, max_length=128)
    asset: str | None = None
    aggregate: Aggregate = "mean"


class SeriesFrom(BaseModel):
    """Exactly one source."""

    model_config = _STRICT
    twins: TwinsSource | None = None
    records: RecordsSource | None = None
    telemetry: TelemetrySource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SeriesFrom:
        given = [k for k in ("twins", "records", "telemetry") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one source (twins, records or telemetry), got {given or 'none'}")
        return self

    @property
    def kind(self) -> str:
        """twins | records | telemetry."""
        return "twins" if self.twins else "records" if self.records else "telemetry"


class SeriesDef(BaseModel):
    """One series (or, with a group key, one series per key: `NAME/KEY`)."""

    model_config = _STRICT
    name: str = Field(pattern=_NAME)
    description: str = ""
    about: str | None = None
    freq: Freq = "W"
    season_length: int | None = Field(None, ge=1, le=366)
    horizon: int = Field(12, ge=1, le=520)
    source: SeriesFrom = Field(alias="from")
    retrain: Any = None  # {every: 7d} | {cron: "0 3 * * 1"} | off: when the runtime retrains it (retraining.py)

    @property
    def season(self) -> int:
        """The season length in periods (the frequency's default unless given)."""
        return self.season_length or SEASON_LENGTH[self.freq]

    @property
    def retrain_schedule(self) -> Schedule | None:
        """When the runtime retrains this series' models (None: only on an approved retrain alert or by hand)."""
        if self.retrain is None:
            return None
        schedule = parse_schedule(self.retrain, "series", f"series {self.name}: retrain")
        if schedule.kind == "continuous":
            raise ScheduleError(f"series {self.name}: retrain: cannot be continuous; give {{every: 7d}} or a cron")
        return None if schedule.kind == "off" else schedule


class SeriesFile(BaseModel):
    """A file of series definitions."""

    model_config = _STRICT
    series: list[SeriesDef] = Field(min_length=1)


@dataclass(frozen=True)
class SeriesSet:
    """Validated definitions with the file they came from and the line of each."""

    definitions: dict[str, SeriesDef]
    source: str
    lines: dict[str, int]
    classes: dict[str, tuple[str, ...]]  # series -> the twin classes it reads

    def get(self, name: str) -> SeriesDef:
        """A definition by name (a grouped series' `NAME/KEY` finds NAME); UnknownSeries otherwise."""
        base = name.split("/", 1)[0]
        if base not in self.definitions:
            known = ", ".join(sorted(self.definitions)) or "none"
            raise UnknownSeries(f"no series {name[:120]!r} in {self.source} (defined: {known})")
        return self.definitions[base]


@dataclass(frozen=True)
class SeriesLineage:
    """Where a series' values came from: source kind and place, twins and runs read, and the data's digest."""

    kind: str
    source: str
    rows: int
    twins: int = 0
    twins_digest: str | None = None
    twin_sample: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    read_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The lineage as JSON-ready values."""
        return {
            "kind": self.kind,
            "source": self.source,
            "rows": self.rows,
            "twins": self.twins,
            "twins_digest": self.twins_digest,
            "twin_sample": list(self.twin_sample),
            "runs": list(self.runs),
            "classes": list(self.classes),
            "read_at": self.read_at,
        }


@dataclass(frozen=True)
class SeriesData:
    """One regular series: period starts (ISO dates), values, its definition's settings, lineage and warnings."""

    name: str
    freq: str
    season_length: int
    horizon: int
    periods: tuple[str, ...]
    values: np.ndarray
    lineage: SeriesLineage
    warnings: tuple[str, ...] = ()
    digest: str = field(default="")

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", data_digest(self.periods, self.values))


def data_digest(periods: Sequence[str], values: np.ndarray) -> str:
    """sha256 over the periods and values (the input digest a forecast and a model version carry)."""
    h = hashlib.sha256()
    h.update("\n".join(periods).encode())
    h.update(np.ascontiguousarray(np.asarray(values, dtype=np.float64)).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ parsing


def parse_series(text: str, ontology: Ontology, source: str = "<series>") -> SeriesSet:
    """Validated series definitions from YAML text; SeriesSpecError lists every problem with its line, naming
    unknown classes and properties."""
    try:
        node = compose_yaml(text, source)
        data = None if node is None else yaml.SafeLoader("").construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise SeriesSpecError([f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}"], source) from None
    if not isinstance(data, dict) or node is None:
        raise SeriesSpecError(["line 1: a series file is a mapping with `series:`, a list of definitions"], source)
    lines = line_map(node)
    try:
        spec = SeriesFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            line = line_of(lines, loc)
            where = ".".join(str(p) for p in loc) or "(top)"
            problems.append(f"line {line}: {where}: {error['msg']}" if line else f"{where}: {error['msg']}")
        raise SeriesSpecError(problems, source) from None
    found: list[str] = []
    definitions: dict[str, SeriesDef] = {}
    series_lines: dict[str, int] = {}
    classes: dict[str, tuple[str, ...]] = {}
    for i, definition in enumerate(spec.series):
        path: tuple[str | int, ...] = ("series", i)

        def problem(sub: tuple[str | int, ...], message: str, path: tuple[str | int, ...] = path) -> None:
            line = line_of(lines, (*path, *sub))
            found.append(f"line {line}: {'.'.join(str(p) for p in (*path, *sub))}: {message}")

        if definition.name in definitions:
            problem(("name",), f"series {definition.name!r} is defined twice")
        definitions[definition.name] = definition
        series_lines[definition.name] = line_of(lines, path) or 0
        classes[definition.name] = _check(definition, ontology, problem)
    if found:
        raise SeriesSpecError(found, source)
    return SeriesSet(definitions, source, series_lines, classes)


def read_series(path: Path, ontology: Ontology) -> SeriesSet:
    """Validated series definitions from a YAML file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SeriesSpecError([f"cannot read the file: {exc.strerror}"], str(path)) from None
    return parse_series(text, ontology, str(path))


def _class_problem(ontology: Ontology, name: str) -> str | None:
    if name in ontology:
        return None
    near = [c.name for c in ontology.classes.values() if c.name.lower() == name.lower()]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"unknown class {name[:80]!r}{hint}"


def _check(definition: SeriesDef, ontology: Ontology, problem: Any) -> tuple[str, ...]:
    """Problems of one definition against the ontology (reported through `problem`); the classes it reads."""
    classes: list[str] = []
    if definition.about is not None:
        bad = _class_problem(ontology, definition.about)
        if bad:
            problem(("about",), bad)
        else:
            classes.append(definition.about)
    src = definition.source
    if src.twins is not None:
        twins = src.twins
        base: tuple[str | int, ...] = ("from", "twins")
        bad = _class_problem(ontology, twins.cls)
        if bad:
            problem((*base, "class"), bad)
            return tuple(classes)
        classes.append(twins.cls)
        props = ontology.properties(twins.cls)
        time_prop = props.get(twins.time)
        if time_prop is None:
            problem((*base, "time"), f"unknown property {twins.time[:80]!r} of class {twins.cls}")
        elif time_prop.schema.kind not in ("date", "dateTime"):
            problem((*base, "time"), f"{twins.cls}.{twins.time} is a {time_prop.schema.kind}, not a date or dateTime")
        if twins.link is not None:
            rel = ontology.relationships(twins.cls).get(twins.link)
            if rel is None:
                problem((*base, "link"), f"unknown relationship {twins.link[:80]!r} of class {twins.cls}")
            else:
                if rel.target is not None:
                    classes.append(ontology.get(rel.target).name)
                link_prop = rel.property(twins.value or "")
                if link_prop is None:
                    problem((*base, "value"), f"unknown property {str(twins.value)[:80]!r} of link {twins.link}")
                elif link_prop.schema.kind not in _NUMERIC:
                    problem((*base, "value"), f"{twins.link}.{twins.value} is a {link_prop.schema.kind}, not a number")
        elif twins.value is not None:
            value_prop = props.get(twins.value)
            if value_prop is None:
                problem((*base, "value"), f"unknown property {twins.value[:80]!r} of class {twins.cls}")
            elif value_prop.schema.kind not in _NUMERIC:
                problem((*base, "value"), f"{twins.cls}.{twins.value} is a {value_prop.schema.kind}, not a number")
    elif definition.about is None:
        problem(("about",), f"a `{src.kind}` series names the class it is about (`about: Product`, `about: Machine`)")
    try:
        _ = definition.retrain_schedule  # checked here, so that a bad schedule is refused with its line
    except ScheduleError as exc:
        problem(("retrain",), str(exc).removeprefix(f"series {definition.name}: retrain: "))
    if src.records is not None and src.records.value is None and src.records.aggregate != "count":
        problem(("from", "records", "value"), "name the value column, or use `aggregate: count`")
    return tuple(dict.fromkeys(classes))


# ------------------------------------------------------------------------------------------------ reading
@dataclass
class SeriesReader:
    """Reads defined series into regular time series (twins through `scope`; records and telemetry by URL)."""

    store: GraphStore | None = None
    database_url: str | None = None
    data_dir: Path | None = None
    scope: ReadScope = UNRESTRICTED

    def read(self, series: SeriesSet, name: str) -> list[SeriesData]:
        """The series `name` (every group of a grouped definition, or the one group `NAME/KEY`)."""
        definition = series.get(name)
        src = definition.source
        if src.twins is not None:
            raw = self._twins(definition, src.twins, series.classes[definition.name])
        elif src.records is not None:
            raw = self._records(definition, src.records)
        else:
            assert src.telemetry is not None
            raw = self._telemetry(definition, src.telemetry)
        frame, lineage = raw
        found = _regular(definition, frame, lineage)
        if "/" in name:
            found = [s for s in found if s.name == name]
            if not found:
                raise UnknownSeries(f"series {name[:120]!r} has no values (no such group)")
        if not found:
            raise SeriesDataError(f"series {definition.name!r} has no values in {lineage.source}")
        return found

    def _twins(
        self, definition: SeriesDef, src: TwinsSource, classes: tuple[str, ...]
    ) -> tuple[pd.DataFrame, SeriesLineage]:
        if self.store is None:
            raise SeriesDataError(f"series {definition.name!r} reads twins: open the twin graph first")
        twins = self.store.twins_of([src.cls], self.scope)
        times = {t.uid: t.properties.get(src.time) for t in twins}
        rows: list[tuple[Any, Any, Any]] = []
        if src.link is not None:
            links, _ = self.store.links_of([src.link], self.scope)
            for link in links:
                if link.source in times:
                    rows.append((times[link.source], link.properties.get(src.value or ""), link.target))
        else:
            for t in twins:
                rows.append((times[t.uid], 1.0 if src.value is None else t.properties.get(src.value), None))
        uids = sorted(times)
        digest = hashlib.sha256("\n".join(uids).encode()).hexdigest()
        lineage = SeriesLineage(
            "twins",
            f"twin graph: {src.cls}" + (f" -{src.link}->" if src.link else ""),
            len(rows),
            len(uids),
            digest,
            tuple(uids[:20]),
            _history_runs(self.store, uids[:500]),
            classes,
            _now(),
        )
        frame = pd.DataFrame(rows, columns=["time", "value", "group"])
        return _aggregate_input(frame, src.aggregate if src.value is not None else "sum"), lineage

    def _records(self, definition: SeriesDef, src: RecordsSource) -> tuple[pd.DataFrame, SeriesLineage]:
        url = src.url.replace("{data_dir}", str(self.data_dir or "."))
        cols: list[Any] = [column(src.time).label("time")]
        cols.append(column(src.value).label("value") if src.value else column(src.time).label("value"))
        if src.group_by:
            cols.append(column(src.group_by).label("group"))
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(*cols).select_from(table(src.table))).all()
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            raise SeriesDataError(f"series {definition.name!r}: cannot read {src.table!r}: {reason}") from None
        finally:
            engine.dispose()
        frame = pd.DataFrame(
            [(r[0], 1.0 if src.value is None else r[1], r[2] if src.group_by else None) for r in rows],
            columns=["time", "value", "group"],
        )
        safe = engine.url.render_as_string(hide_password=True)
        lineage = SeriesLineage(
            "records", f"{safe} table {src.table}", len(rows), classes=(definition.about or "",), read_at=_now()
        )
        return _aggregate_input(frame, "count" if src.value is None else src.aggregate), lineage

    def _telemetry(self, definition: SeriesDef, src: TelemetrySource) -> tuple[pd.DataFrame, SeriesLineage]:
        from connectors.telemetry import telemetry_table as t  # the telemetry time series' table

        if self.database_url is None:
            raise SeriesDataError(f"series {definition.name!r} reads telemetry: no database URL")
        query = select(t.c.asset_uid, t.c.ts, t.c.value, t.c.run_id).where(t.c.metric == src.metric)
        if src.asset is not None:
            query = query.where(t.c.asset_uid == src.asset)
        visible: set[str] | None = None
        if self.store is not None and self.scope is not UNRESTRICTED:
            visible = {r.uid for r in self.store.twins_of([definition.about or "Asset"], self.scope)}
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = [r for r in conn.execute(query) if visible is None or r[0] in visible]
        finally:
            engine.dispose()
        uids = sorted({r[0] for r in rows})
        frame = pd.DataFrame(
            [(r[1], r[2], None if src.asset else r[0]) for r in rows], columns=["time", "value", "group"]
        )
        lineage = SeriesLineage(
            "telemetry",
            f"telemetry {src.metric}" + (f" of {src.asset}" if src.asset else ""),
            len(rows),
            len(uids),
            hashlib.sha256("\n".join(uids).encode()).hexdigest(),
            tuple(uids[:20]),
            tuple(sorted({r[3] for r in rows})[:50]),
            (definition.about or "Asset",),
            _now(),
        )
        return _aggregate_input(frame, src.aggregate), lineage


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _history_runs(store: GraphStore, uids: Sequence[str]) -> tuple[str, ...]:
    """The sync runs that wrote (some of) these twins, from their history."""
    history = getattr(store, "history", None)
    if history is None or not uids:
        return ()
    from graph.history import twin_history as h

    with history.engine.connect() as conn:
        runs = conn.execute(select(h.c.run_id).where(h.c.uid.in_(list(uids)), h.c.run_id.is_not(None)).distinct())
        return tuple(sorted(str(r[0]) for r in runs)[:50])


def _aggregate_input(frame: pd.DataFrame, aggregate: str) -> pd.DataFrame:
    frame.attrs["aggregate"] = aggregate
    return frame


def _regular(definition: SeriesDef, frame: pd.DataFrame, lineage: SeriesLineage) -> list[SeriesData]:
    """Bucket rows into regular periods per group; gaps filled (0 for sums and counts, interpolated otherwise)."""
    aggregate = frame.attrs.get("aggregate", "sum")
    if frame.empty:
        return []
    warnings: dict[str, list[str]] = defaultdict(list)
    times = pd.to_datetime(frame["time"], errors="coerce", utc=True, format="mixed")
    bad_time = int(times.isna().sum())
    values = pd.to_numeric(frame["value"], errors="coerce")
    bad_value = int(values.isna().sum()) - int(frame["value"].isna().sum())
    missing_value = int(frame["value"].isna().sum())
    frame = pd.DataFrame({"time": times.dt.tz_localize(None), "value": values, "group": frame["group"]})
    frame = frame.dropna(subset=["time"])
    period = frame["time"].dt.to_period(PERIOD_CODES[definition.freq])
    frame = frame.assign(period=period)
    out = []
    groups = frame.groupby(frame["group"].fillna(""), sort=True) if frame["group"].notna().any() else [("", frame)]
    for key, part in groups:
        name = definition.name if key == "" else f"{definition.name}/{key}"
        notes = warnings[name]
        if bad_time:
            notes.append(f"{bad_time} row(s) without a readable time were left out")
        if bad_value:
            notes.append(f"{bad_value} non-numeric value(s) were left out")
        if missing_value and aggregate != "count":
            notes.append(f"{missing_value} missing value(s) were left out")
        agg = "size" if aggregate == "count" else aggregate
        bucket = part.groupby("period")["value"].agg(agg)
        if bucket.empty:
            continue
        full = pd.period_range(bucket.index.min(), bucket.index.max(), freq=PERIOD_CODES[definition.freq])
        bucket = bucket.reindex(full)
        gaps = int(bucket.isna().sum())
        if gaps:
            if aggregate in ("sum", "count"):
                bucket = bucket.fillna(0.0)
            else:
                bucket = bucket.interpolate(limit_direction="both")
                notes.append(f"{gaps} period(s) without readings were interpolated")
        values_array = bucket.to_numpy(dtype=np.float64)
        if not np.isfinite(values_array).all():
            raise SeriesDataError(f"series {name!r} has no numeric values to forecast")
        periods = tuple(period_start(p, definition.freq) for p in bucket.index)
        out.append(
            SeriesData(
                name,
                definition.freq,
                definition.season,
                definition.horizon,
                periods,
                values_array,
                lineage,
                tuple(notes),
            )
        )
    return out


def period_start(period: pd.Period, freq: str) -> str:
    """A period's start as stored: an ISO date, or an ISO date-time for hourly series."""
    start = period.start_time
    return start.isoformat() if freq == "H" else start.date().isoformat()
