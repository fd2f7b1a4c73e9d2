"""The static GraphQL types of the twin schema: the Twin interface, pages, search/impact/path/aggregate results,
records, scenario results, write inputs and the filter inputs of each scalar."""

from __future__ import annotations

import enum
import types
from collections.abc import Sequence
from typing import Any

import strawberry
from strawberry.scalars import JSON

from api.graphql.scalars import Date, DateTime, Duration, Time


@strawberry.interface(description="Anything in the twin graph.")
class Twin:
    """The interface every generated twin type implements."""

    uid: strawberry.ID
    className: str = strawberry.field(description="The twin's ontology class.")
    labels: list[str] = strawberry.field(description="The class and all its superclasses.")


@strawberry.type(description="Relay-style page information.")
class PageInfo:
    """Where a page sits in the full result."""

    hasNextPage: bool
    hasPreviousPage: bool
    startCursor: str | None
    endCursor: str | None


@strawberry.enum(description="Sort direction.")
class SortDirection(enum.Enum):
    """Ascending or descending."""

    ASC = "ASC"
    DESC = "DESC"


@strawberry.enum(description="Aggregate functions.")
class AggregateFunction(enum.Enum):
    """count/sum/avg/min/max."""

    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"


@strawberry.input(description="One metric of an aggregate: a function and (except for COUNT) a property.")
class AggregateMetric:
    """A requested metric."""

    fn: AggregateFunction
    field: str | None = None


@strawberry.type(description="How a differentially private metric was released: the noise it carries.")
class PrivacyNote:
    """The epsilon a noisy metric spent, its accuracy at 95 % and the mechanism that added the noise."""

    epsilon: float
    accuracy95: float | None = strawberry.field(
        description="|value - exact| is at most this with 95 % probability (null: too few twins to bound it)"
    )
    mechanism: str


@strawberry.type(description="One computed metric.")
class MetricValue:
    """The value of a metric in one group."""

    name: str
    fn: AggregateFunction
    field: str | None
    value: float | None
    privacy: PrivacyNote | None = strawberry.field(
        default=None, description="Set when noise was added (differential privacy); null for an exact value"
    )


@strawberry.type(description="One group of an aggregate.")
class AggregateRow:
    """Group key values and metric results."""

    group: JSON
    metrics: list[MetricValue]


@strawberry.type(description="A full-text search hit.")
class SearchHit:
    """A twin found by text, with its score."""

    score: float
    twin: Twin


@strawberry.type(description="A twin hit when the start twin fails.")
class ImpactHit:
    """Distance and one shortest chain from the failing twin."""

    depth: int
    path: list[strawberry.ID]
    via: list[str]
    twin: Twin


@strawberry.type(description="A path between two twins.")
class PathResult:
    """The twins in order and the relationship types between them."""

    length: int
    types: list[str]
    nodes: list[Twin]


@strawberry.type(description="One recorded change of a twin or its links (values masked by policy).")
class HistoryEntry:
    """A change as recorded by the graph's history."""

    id: int
    uid: strawberry.ID
    kind: str
    op: str
    className: str | None
    linkType: str | None
    target: str | None
    actor: str
    source: str | None
    runId: str | None
    at: DateTime
    before: JSON | None
    after: JSON | None


@strawberry.type(description="How one twin or link differs between two times (values masked by policy).")
class GraphDelta:
    """A twin or link created, updated or deleted between the two times of `diff`."""

    uid: strawberry.ID
    kind: str
    op: str
    className: str | None
    linkType: str | None
    target: str | None
    fields: list[str]
    before: JSON | None
    after: JSON | None


@strawberry.type(
    description="One change of the change feed, with its gap-free sequence number (values masked by policy)."
)
class Change:
    """A committed change of a twin or a link."""

    seq: int
    uid: strawberry.ID
    kind: str
    op: str
    className: str | None
    linkType: str | None
    target: str | None
    actor: str
    source: str | None
    runId: str | None
    at: DateTime
    before: JSON | None
    after: JSON | None


@strawberry.type(description="A page of the change feed: the changes the caller may see, and where to go on from.")
class ChangePage:
    """Changes after a cursor; `cursor` is the sequence number to pass as `after` next (it passes hidden changes
    too), `head` the newest sequence number in the feed."""

    changes: list[Change]
    cursor: int
    head: int


@strawberry.type(description="Where one property value came from (value masked by policy).")
class LineageRecord:
    """A provenance record of the lineage store."""

    twinUid: strawberry.ID
    property: str
    valueDigest: str | None = strawberry.field(
        description="SHA-256 of the value's canonical JSON; null unless the caller may see the value or its hash "
        "(an unsalted digest of a short value gives the value away)."
    )
    value: JSON | None
    erased: bool
    sourceSystem: str
    sourceObject: str
    recordKey: str
    sourceField: str | None
    runId: str
    mappingRule: str | None
    transform: str | None
    recordedAt: DateTime | None


@strawberry.type(description="One record of the tamper-evident audit log.")
class AuditRecord:
    """An audited operation."""

    seq: int
    time: DateTime
    subject: str
    roles: list[str]
    operation: str
    variablesDigest: str
    decision: str
    policyVersion: str
    rowsReturned: int | None
    detail: str
    hash: str


@strawberry.type(description="One KPI of one scenario over the replications, and its difference to baseline.")
class ScenarioSummary:
    """Mean, 95 % confidence interval, P10/P90, paired difference to baseline, probability of a breach."""

    scenario: str
    kpi: str
    n: int
    mean: float
    ciLow: float
    ciHigh: float
    p10: float
    p90: float
    diffMean: float | None
    diffLow: float | None
    diffHigh: float | None
    pBreach: float | None


@strawberry.type(description="A stored what-if study: its spec, seeds and results.")
class ScenarioStudy:
    """A study the results store keeps (re-running it reproduces these numbers)."""

    id: strawberry.ID
    name: str
    createdAt: DateTime
    replications: int
    seed: int
    modelVersion: str
    twinStateTime: DateTime
    executor: str
    wallSeconds: float
    spec: str
    summaries: list[ScenarioSummary]


@strawberry.type(description="A study started through the API (or a stored one): its status and, when done, results.")
class ScenarioRun:
    """Status of a background study; `study` is set once it has completed."""

    id: strawberry.ID
    name: str
    status: str
    startedAt: DateTime | None
    finishedAt: DateTime | None
    error: str | None
    study: ScenarioStudy | None


@strawberry.type(
    description="An experiment (grid, sensitivity, optimisation) started through the API: status and, when done, its "
    "stored id and result (every evaluated decision, the best with its paired CI against baseline, the frontier)."
)
class ExperimentRun:
    """Status of a background experiment; `result` is set once it has completed."""

    id: strawberry.ID
    name: str
    status: str
    startedAt: DateTime | None
    finishedAt: DateTime | None
    error: str | None
    experimentId: str | None
    bestDecision: JSON | None
    result: JSON | None


@strawberry.type(description="A stored experiment: its id, name and kind (read it with experimentRun(id)).")
class ExperimentSummary:
    """One stored experiment, newest first in `experiments`."""

    id: strawberry.ID
    name: str
    kind: str
    createdAt: DateTime
    evaluations: int


@strawberry.type(description="One period of a series' history.")
class SeriesPoint:
    """A period start (ISO date or date-time) and the series' value in it."""

    period: str
    value: float


@strawberry.type(description="One period of a forecast: the expected value and its 80 % prediction band.")
class ForecastPoint:
    """A forecast period with its mean and the band's bounds."""

    period: str
    mean: float
    low: float
    high: float


@strawberry.type(description="A model version of a series in the model registry: champion, challenger or retired.")
class ForecastModel:
    """A registered model version with its backtest metrics (MASE, sMAPE, interval coverage) and approval."""

    versionId: str
    kind: str
    status: str
    trainedAt: str
    trainStart: str
    trainEnd: str
    approved: bool
    metrics: JSON


@strawberry.type(description="An anomaly in a series' history, as the robust rolling detector scores it.")
class SeriesAnomaly:
    """The first anomalous period, the episode's most extreme value and score, and the range that was expected."""

    period: str
    kind: str
    value: float
    score: float
    expectedLow: float
    expectedHigh: float


@strawberry.type(description="The newest stored forecast of a series, with the model version and data that made it.")
class SeriesForecast:
    """History, forecast and band; the model version (registry) and the digest of the input data."""

    series: str
    modelKind: str
    modelVersion: str | None
    codeVersion: str
    inputDigest: str
    createdAt: DateTime
    interval: str
    level: int
    horizon: int
    history: list[SeriesPoint]
    points: list[ForecastPoint]
    warnings: list[str]
    backtests: JSON
    lineage: JSON
    models: list[ForecastModel]
    anomalies: list[SeriesAnomaly]


@strawberry.type(description="What a write did.")
class WriteResult:
    """Counts of a write."""

    created: int
    updated: int
    unchanged: int
    deleted: int


@strawberry.type(description="A twin moved along its lifecycle (planned, active, suspended, retired).")
class TwinTransition:
    """One lifecycle transition."""

    uid: strawberry.ID
    class_name: str
    before: str
    after: str


@strawberry.input(description="A twin to create or update; properties are checked against the class.")
class TwinInput:
    """One twin to upsert."""

    uid: strawberry.ID
    properties: JSON
    className: str = strawberry.field(description="Ontology class name.")


@strawberry.input(description="A relationship to create or update.")
class LinkInput:
    """One link to upsert."""

    type: str
    source: strawberry.ID
    target: strawberry.ID
    properties: JSON | None = None


@strawberry.input(description="A relationship to delete.")
class LinkKeyInput:
    """One link to delete."""

    type: str
    source: strawberry.ID
    target: strawberry.ID


def _filter_input(name: str, annotation: type, ops: Sequence[str], description: str) -> type:
    fields: dict[str, Any] = {}
    body: dict[str, Any] = {"__module__": __name__}
    for op in ops:
        python = "in_" if op == "in" else op
        fields[python] = (list[annotation] if op == "in" else bool if op == "isNull" else annotation) | None  # type: ignore[valid-type]
        body[python] = strawberry.field(name=op, default=strawberry.UNSET)
    body["__annotations__"] = fields
    cls = types.new_class(name, (), {}, lambda ns: ns.update(body))
    return strawberry.input(cls, name=name, description=description)


_ORDERED = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "isNull")
StringFilter = _filter_input(
    "StringFilter",
    str,
    (*_ORDERED, "contains", "startsWith"),
    "Conditions on a text field (contains/startsWith ignore case).",
)
IntFilter = _filter_input("IntFilter", int, _ORDERED, "Conditions on an integer field.")
FloatFilter = _filter_input("FloatFilter", float, _ORDERED, "Conditions on a number field.")
BooleanFilter = _filter_input("BooleanFilter", bool, ("eq", "ne", "isNull"), "Conditions on a boolean field.")
DateFilter = _filter_input("DateFilter", Date, _ORDERED, "Conditions on a date field.")
DateTimeFilter = _filter_input("DateTimeFilter", DateTime, _ORDERED, "Conditions on a date-time field.")
TimeFilter = _filter_input("TimeFilter", Time, _ORDERED, "Conditions on a time field.")
DurationFilter = _filter_input("DurationFilter", Duration, ("eq", "ne", "in", "isNull"), "Conditions on a duration.")
FILTER_TYPES = {
    "String": "StringFilter",
    "ID": "StringFilter",
    "Int": "IntFilter",
    "Float": "FloatFilter",
    "Boolean": "BooleanFilter",
    "Date": "DateFilter",
    "DateTime": "DateTimeFilter",
    "Time": "TimeFilter",
    "Duration": "DurationFilter",
}
STATIC = {
    "Twin": Twin,
    "PageInfo": PageInfo,
    "SortDirection": SortDirection,
    "AggregateFunction": AggregateFunction,
    "AggregateMetric": AggregateMetric,
    "MetricValue": MetricValue,
    "AggregateRow": AggregateRow,
    "SearchHit": SearchHit,
    "ImpactHit": ImpactHit,
    "PathResult": PathResult,
    "HistoryEntry": HistoryEntry,
    "Change": Change,
    "GraphDelta": GraphDelta,
    "ChangePage": ChangePage,
    "LineageRecord": LineageRecord,
    "AuditRecord": AuditRecord,
    "WriteResult": WriteResult,
    "TwinTransition": TwinTransition,
    "TwinInput": TwinInput,
    "ScenarioSummary": ScenarioSummary,
    "ScenarioStudy": ScenarioStudy,
    "ScenarioRun": ScenarioRun,
    "ExperimentRun": ExperimentRun,
    "ExperimentSummary": ExperimentSummary,
    "ForecastModel": ForecastModel,
    "SeriesAnomaly": SeriesAnomaly,
    "SeriesPoint": SeriesPoint,
    "ForecastPoint": ForecastPoint,
    "SeriesForecast": SeriesForecast,
    "LinkInput": LinkInput,
    "LinkKeyInput": LinkKeyInput,
    "StringFilter": StringFilter,
    "IntFilter": IntFilter,
    "FloatFilter": FloatFilter,
    "BooleanFilter": BooleanFilter,
    "DateFilter": DateFilter,
    "DateTimeFilter": DateTimeFilter,
    "TimeFilter": TimeFilter,
    "DurationFilter": DurationFilter,
    "Date": Date,
    "DateTime": DateTime,
    "Time": Time,
    "Duration": Duration,
    "JSON": JSON,
}
