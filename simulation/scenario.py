"""Scenario specs: YAML studies (slice, horizon, KPIs, scenarios with interventions), validated with line numbers.

A study file holds the baseline's settings and one or more scenarios; each scenario is a list of interventions
(supplier outage, demand shock, workforce change, capacity change, parameter override, IT outage, cyber incident,
machine failure, staffing, skill shortage, process change) whose targets are twins named
by uid or found by a query (class + filters, optionally `within` a site, unit or work centre). `parse_spec` refuses a
bad file with every problem at its line; `plan_study` resolves the targets against the twin graph and the slice.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graph.errors import GraphError
from graph.model import UNRESTRICTED, Condition, Operator, ReadScope
from graph.store import GraphStore
from ontology.errors import OntologyError
from ontology.safe_yaml import compose_yaml
from ontology.yaml_lines import line_map, line_of
from simulation.calibration import OVERRIDABLE, Defaults, ParameterOverride
from simulation.errors import SpecError
from simulation.slice import EnterpriseSlice

KpiName = Literal[
    "throughput",
    "demand",
    "shipped",
    "fill_rate",
    "service_level",
    "backlog",
    "lost_sales",
    "utilisation",
    "overtime_hours",
    "headcount",
    "availability",
    "material_stock",
    "downtime_hours",
    "labour_utilisation",
    "labour_cost",
    "projects_late",
]
KPI_NAMES: tuple[str, ...] = KpiName.__args__  # type: ignore[attr-defined]

_STRICT = ConfigDict(extra="forbid", populate_by_name=True)


class Filter(BaseModel):
    """One condition of a twin query: field, operator (graph.model.Operator), value."""

    model_config = _STRICT
    field: str
    op: Operator = "eq"
    value: Any = None


class TwinSelector(BaseModel):
    """Twins named by uid, or found by class + filters, optionally only those within a container twin."""

    model_config = _STRICT
    uids: list[str] | None = None
    cls: str | None = Field(None, alias="class")
    where: list[Filter] = []
    within: str | TwinSelector | None = None

    @model_validator(mode="after")
    def _uids_or_class(self) -> TwinSelector:
        if not self.uids and not self.cls:
            raise ValueError("name the twins with `uids:` or find them with `class:` (plus `where:` / `within:`)")
        return self


class SliceSpec(BaseModel):
    """The part of the twin a study loads: around root twins (uids or a query); the whole twin when empty."""

    model_config = _STRICT
    roots: list[str] = []
    query: TwinSelector | None = None


class KpiSpec(BaseModel):
    """A KPI to report, optionally over some twins only, with a threshold whose breach probability is reported."""

    model_config = _STRICT
    name: KpiName
    of: TwinSelector | None = None
    label: str | None = None
    threshold_below: float | None = None
    threshold_above: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def key(self) -> str:
        """The KPI's name in results (its label, else its name)."""
        return self.label or self.name


class _Window(BaseModel):
    """When an intervention applies: from `start_day` for `duration_days` (or up to `end_day`; else to the end)."""

    model_config = _STRICT
    start_day: int = Field(0, ge=0)
    end_day: int | None = None
    duration_days: int | None = Field(None, gt=0)

    def bounds(self, horizon_days: int) -> tuple[int, int]:
        """[start, end) in days."""
        if self.duration_days is not None:
            return self.start_day, self.start_day + self.duration_days
        return self.start_day, self.end_day if self.end_day is not None else horizon_days


class SupplierOutage(_Window):
    """The target suppliers deliver nothing in the window; what falls due is delivered after it."""

    kind: Literal["supplier_outage"]
    target: TwinSelector


class DemandShock(_Window):
    """Demand of the target products (or customers' demand) is multiplied by `factor` in the window."""

    kind: Literal["demand_shock"]
    target: TwinSelector
    factor: float = Field(gt=0)


class WorkforceChange(_Window):
    """Attrition of the target people changes (added or multiplied), and/or `hires` extra people join."""

    kind: Literal["workforce_change"]
    target: TwinSelector
    attrition_add: float = Field(0.0, ge=-1, le=1)
    attrition_factor: float = Field(1.0, ge=0)
    hires: int = Field(0, ge=0)
    hiring_delay_days: float | None = Field(None, ge=0)


class CapacityChange(_Window):
    """Capacity of the target lines (or lines of target work centres, machines, sites) times `factor`/new shifts."""

    kind: Literal["capacity_change"]
    target: TwinSelector
    factor: float | None = Field(None, ge=0)
    shifts: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _factor_or_shifts(self) -> CapacityChange:
        if (self.factor is None) == (self.shifts is None):
            raise ValueError("give exactly one of `factor` or `shifts`")
        return self


class ITOutage(_Window):
    """The target IT systems or applications are down (or degraded) in the window, then recover; everything that
    needs them (dependsOn, hosts, supports, requires, realizes; transitively) stops or slows with them."""

    kind: Literal["it_outage"]
    target: TwinSelector
    degradation: float = Field(1.0, gt=0, le=1)  # share of capacity lost: 1 = down
    recovery_hours: float | None = Field(None, ge=0)  # default: each system's recoveryTimeHours, else the default


class CyberIncident(ITOutage):
    """An IT outage that spreads: each IT system linked to a hit one (either way) is hit too with `spread_probability`
    (drawn per system and replication from its own stream, so scenarios stay paired)."""

    kind: Literal["cyber_incident"]  # type: ignore[assignment]
    spread_probability: float = Field(0.3, ge=0, le=1)


class MachineFailure(_Window):
    """The target machines break down at `start_day` (when `breakdown`), fail more or less often in the window
    (`mtbf_factor`), and/or get preventive maintenance every `preventive_every_days` (planned downtime that lengthens
    the time between failures by `preventive_mtbf_factor`)."""

    kind: Literal["machine_failure"]
    target: TwinSelector
    breakdown: bool = False
    repair_hours: float | None = Field(None, gt=0)  # default: the machine's MTTR (twin, maintenance history, default)
    mtbf_factor: float = Field(1.0, gt=0)
    preventive_every_days: int | None = Field(None, gt=0)
    preventive_hours: float = Field(4.0, ge=0)
    preventive_mtbf_factor: float | None = Field(None, gt=0)  # default: Defaults.preventive_mtbf_factor


class Staffing(_Window):
    """People change: the target people `leave`, are `reassign`ed to other lines or projects, are `train`ed in a
    skill, or `count` people are `hire`d (with `skill`, to work on `to`)."""

    kind: Literal["staffing"]
    action: Literal["leave", "reassign", "train", "hire"]
    target: TwinSelector | None = None
    to: TwinSelector | None = None
    skill: str | None = None
    count: int | None = Field(None, ge=0)
    training_days: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _needs(self) -> Staffing:
        if self.action in ("leave", "reassign", "train") and self.target is None:
            raise ValueError(f"`{self.action}` needs `target:` (the people it applies to)")
        if self.action == "reassign" and self.to is None:
            raise ValueError("`reassign` needs `to:` (the lines or projects the people move to)")
        if self.action == "train" and not self.skill:
            raise ValueError("`train` needs `skill:` (the uid of the skill they gain)")
        if self.action == "hire" and (self.count is None or (self.to is None and not self.skill)):
            raise ValueError("`hire` needs `count:` and `to:` (lines or projects) or `skill:`")
        return self


class SkillShortage(_Window):
    """A `share` of the people holding the target skills is unavailable in the window (drawn per person)."""

    kind: Literal["skill_shortage"]
    target: TwinSelector
    share: float = Field(gt=0, le=1)


class ProcessChange(_Window):
    """A new way of running the target processes: cycle time (absolute or as a factor), yield, and/or routing a
    `route_share` of their products to the lines `route_to` names."""

    kind: Literal["process_change"]
    target: TwinSelector
    cycle_time_hours: float | None = Field(None, gt=0)
    cycle_time_factor: float | None = Field(None, gt=0)
    yield_rate: float | None = Field(None, gt=0, le=1)
    route_to: TwinSelector | None = None
    route_share: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _something(self) -> ProcessChange:
        if self.cycle_time_hours is not None and self.cycle_time_factor is not None:
            raise ValueError("give `cycle_time_hours` or `cycle_time_factor`, not both")
        changes = (self.cycle_time_hours, self.cycle_time_factor, self.yield_rate, self.route_to)
        if all(change is None for change in changes):
            raise ValueError("change something: `cycle_time_hours`, `cycle_time_factor`, `yield_rate`, `route_to`")
        return self


class ParameterOverrideSpec(BaseModel):
    """A fixed value for a model parameter, for the target twins or all of them."""

    model_config = _STRICT
    kind: Literal["parameter_override"]
    parameter: Literal[OVERRIDABLE]  # type: ignore[valid-type]
    value: float
    target: TwinSelector | None = None


Intervention = Annotated[
    SupplierOutage
    | DemandShock
    | WorkforceChange
    | CapacityChange
    | ParameterOverrideSpec
    | ITOutage
    | CyberIncident
    | MachineFailure
    | Staffing
    | SkillShortage
    | ProcessChange,
    Field(discriminator="kind"),
]


class ScenarioDef(BaseModel):
    """A named what-if: interventions applied on top of the baseline."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    description: str = ""
    interventions: list[Intervention] = Field(min_length=1)


class DemandSpec(BaseModel):
    """Where the study's demand comes from: the forecast of a series (its groups' champion model versions, or one
    pinned `model_version`) instead of the customers' historical mean rates. A group's key names its product twin
    through `product` (`{key}` the whole key, `{key1}`, `{key2}`... its parts split at `/`); groups naming the same
    product add up. With `variants`, the 80 % band's bounds (10th and 90th percentiles) run as two more scenarios."""

    model_config = _STRICT
    forecast: str | None = Field(None, min_length=1, max_length=512)
    model_version: str | None = Field(None, min_length=1, max_length=64)
    product: str = Field("{key}", min_length=1, max_length=512)
    variants: bool = False

    @model_validator(mode="after")
    def _series_or_version(self) -> DemandSpec:
        if self.forecast is None and self.model_version is None:
            raise ValueError("name the series (`forecast: NAME`) or a model version (`model_version: ID`)")
        unknown = set(re.findall(r"\{([^{}]*)\}", self.product)) - {"key"} - {f"key{i}" for i in range(1, 10)}
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join(sorted(unknown))} in `product` (use {{key}}, {{key1}}...)"
            )
        return self


class StudySpec(BaseModel):
    """A study: what to load, how long and how often to run, what to measure, which scenarios against baseline."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    description: str = ""
    slice: SliceSpec = SliceSpec()
    horizon_days: int = Field(gt=0)
    step_days: int = Field(1, gt=0)
    replications: int = Field(10, ge=2)
    seed: int = Field(0, ge=0)
    kpis: list[KpiSpec] = Field(min_length=1)
    defaults: dict[str, float] = {}
    demand: DemandSpec | None = None
    scenarios: list[ScenarioDef] = Field(min_length=1)

    @field_validator("defaults")
    @classmethod
    def _known_defaults(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(Defaults.names()))
        if unknown:
            raise ValueError(f"unknown default(s) {', '.join(unknown)}; known: {', '.join(Defaults.names())}")
        return value

    @property
    def steps(self) -> int:
        """Number of model steps."""
        return math.ceil(self.horizon_days / self.step_days)

    def model_defaults(self) -> Defaults:
        """The documented defaults with this study's overrides."""
        base = Defaults()
        values = {k: type(getattr(base, k))(v) for k, v in self.defaults.items()}
        return Defaults(**{**base.__dict__, **values})


@dataclass(frozen=True)
class StudyLimits:
    """How big a study may be: replications, horizon, and total agent-steps over all runs."""

    max_replications: int = 1000
    max_horizon_days: int = 3650
    max_agent_steps: int = 2_000_000_000


@dataclass(frozen=True)
class ParsedSpec:
    """A validated spec with the line of every field, for errors found later (unknown uid, study too big)."""

    spec: StudySpec
    source: str
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    text: str = ""

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of the deepest part of `path` the file has (tags pydantic adds are skipped)."""
        return line_of(self.lines, path)

    def problem(self, path: Sequence[str | int], message: str) -> str:
        """`message` prefixed with the file, line and dotted path."""
        line = self.line_of(path)
        where = ".".join(str(p) for p in path)
        return f"line {line}: {where}: {message}" if line else f"{where}: {message}"

    def fail(self, path: Sequence[str | int], message: str) -> SpecError:
        """A SpecError for one problem at `path`."""
        return SpecError([self.problem(path, message)], self.source)


def parse_spec(text: str, source: str = "<spec>") -> ParsedSpec:
    """A validated study spec from YAML text; SpecError lists every problem with its line."""
    try:
        node = compose_yaml(text, source)
        data = None if node is None else yaml.SafeLoader("").construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise SpecError([f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}"], source) from None
    if not isinstance(data, dict) or node is None:
        raise SpecError(["line 1: a study spec is a mapping (name, horizon_days, kpis, scenarios, ...)"], source)
    lines = line_map(node)
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            line = line_of(lines, loc)
            where = ".".join(str(p) for p in loc) or "(top)"
            message = error["msg"]
            if error["type"] == "literal_error" and "expected" in error.get("ctx", {}):
                message = f"{error.get('input')!r} is not allowed; expected {error['ctx']['expected']}"
            problems.append(f"line {line}: {where}: {message}" if line else f"{where}: {message}")
        raise SpecError(problems, source) from None
    parsed = ParsedSpec(spec, source, lines, text)
    problems = _window_problems(parsed)
    if problems:
        raise SpecError(problems, source)
    return parsed


def read_spec(path: Path) -> ParsedSpec:
    """A validated study spec from a YAML file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError([f"cannot read the file: {exc.strerror}"], str(path)) from None
    return parse_spec(text, str(path))


def _window_problems(parsed: ParsedSpec) -> list[str]:
    """Interventions that start or end outside the horizon, or end before they start."""
    spec = parsed.spec
    problems = []
    for s, scenario in enumerate(spec.scenarios):
        for i, intervention in enumerate(scenario.interventions):
            if not isinstance(intervention, _Window):
                continue
            path: tuple[str | int, ...] = ("scenarios", s, "interventions", i)
            start, end = intervention.bounds(spec.horizon_days)
            if start >= spec.horizon_days:
                problems.append(
                    parsed.problem(
                        (*path, "start_day"), f"starts on day {start}, outside the horizon of {spec.horizon_days} days"
                    )
                )
            elif end > spec.horizon_days:
                field_name = "duration_days" if intervention.duration_days is not None else "end_day"
                problems.append(
                    parsed.problem(
                        (*path, field_name), f"ends on day {end}, after the horizon of {spec.horizon_days} days"
                    )
                )
            elif end <= start:
                problems.append(parsed.problem((*path, "end_day"), f"ends (day {end}) before it starts (day {start})"))
    return problems


def check_limits(parsed: ParsedSpec, agents: int, limits: StudyLimits) -> None:
    """Refuse a study larger than the limits allow (naming the line of what to shrink)."""
    spec = parsed.spec
    reps = spec.replications
    if reps > limits.max_replications:
        raise parsed.fail(("replications",), f"{reps} replications exceed the limit of {limits.max_replications}")
    if spec.horizon_days > limits.max_horizon_days:
        raise parsed.fail(
            ("horizon_days",), f"a horizon of {spec.horizon_days} days exceeds the limit of {limits.max_horizon_days}"
        )
    runs = len(spec.scenarios) + 1 + (2 if spec.demand is not None and spec.demand.variants else 0)
    work = reps * runs * spec.steps * agents
    if work > limits.max_agent_steps:
        raise parsed.fail(
            ("replications",),
            f"the study is too big: {reps} replications x {runs} runs x {spec.steps} steps x "
            f"{agents} agents = {work:,} agent-steps, over the limit of {limits.max_agent_steps:,}",
        )


# ------------------------------------------------------------------------------------------ resolved plans


@dataclass(frozen=True)
class OutagePlan:
    """Suppliers down from step `start` (inclusive) to `end` (exclusive)."""

    suppliers: frozenset[str]
    start: int
    end: int


@dataclass(frozen=True)
class DemandShockPlan:
    """Demand of products (from all customers, or only the given customers) times `factor` in [start, end)."""

    products: frozenset[str]
    customers: frozenset[str] | None
    factor: float
    start: int
    end: int


@dataclass(frozen=True)
class WorkforcePlan:
    """Attrition of people changed in [start, end), `hires` extra people from `start` staffing the same lines."""

    persons: frozenset[str]
    attrition_add: float
    attrition_factor: float
    hires: int
    hiring_delay_days: float | None
    start: int
    end: int


@dataclass(frozen=True)
class CapacityPlan:
    """Capacity of lines times `factor` in [start, end)."""

    processes: frozenset[str]
    factor: float
    start: int
    end: int


@dataclass(frozen=True)
class ITOutagePlan:
    """IT systems down (capacity times 1 - degradation for what needs them) in [start, end) plus their recovery;
    with `spread` > 0 (a cyber incident) linked systems are drawn into it."""

    systems: frozenset[str]
    degradation: float
    recovery_hours: float | None
    spread: float
    start: int
    end: int


@dataclass(frozen=True)
class MachineFailurePlan:
    """Machines: a breakdown at `start` (repair hours or their MTTR), MTBF times a factor, preventive maintenance."""

    assets: frozenset[str]
    breakdown: bool
    repair_hours: float | None
    mtbf_factor: float
    preventive_every: int | None
    preventive_hours: float
    preventive_mtbf_factor: float
    start: int
    end: int


@dataclass(frozen=True)
class StaffingPlan:
    """People leave, move to other lines/projects, learn a skill, or are hired (hires staff `processes`/`projects`)."""

    action: str
    persons: frozenset[str]
    processes: frozenset[str]
    projects: frozenset[str]
    skill: str | None
    count: int
    training_steps: int
    start: int
    end: int


@dataclass(frozen=True)
class SkillShortagePlan:
    """A share of the holders of some skills unavailable in [start, end)."""

    skills: frozenset[str]
    share: float
    start: int
    end: int


@dataclass(frozen=True)
class ProcessChangePlan:
    """Lines run with cycle time times `cycle_factor`, yield `yield_rate`, a share of their products routed to
    `route_to`, in [start, end)."""

    processes: frozenset[str]
    cycle_factor: float
    yield_rate: float | None
    route_to: frozenset[str]
    route_share: float
    start: int
    end: int


@dataclass(frozen=True)
class DemandRatePlan:
    """A product's forecast demand in units per day, one value per model step (the mean over the step's days)."""

    product: str
    per_day: tuple[float, ...]


@dataclass(frozen=True)
class ForecastUsed:
    """Which stored forecast, made by which model version from which data, fed a study's demand."""

    series: str
    forecast_id: str
    model_version: str
    model_kind: str
    input_digest: str
    created_at: str
    product: str | None  # the product twin its key names (None: not in the slice, left out)


@dataclass(frozen=True)
class GroupForecast:
    """A stored forecast of one series group as a study reads it (simulation/forecast/demand.py finds it)."""

    series: str
    forecast_id: str
    model_version: str
    model_kind: str
    input_digest: str
    created_at: str
    freq: str
    periods: tuple[str, ...]
    mean: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]


@dataclass(frozen=True)
class DemandPlan:
    """A study's demand from a forecast: the series, the forecasts used (lineage), day 0's date, notes."""

    series: str
    start: str  # the first forecast period: the study's day 0
    forecasts: tuple[ForecastUsed, ...]
    variants: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScenarioPlan:
    """A scenario resolved against the slice: interventions in steps and uids, parameter overrides."""

    name: str
    outages: tuple[OutagePlan, ...] = ()
    demand_shocks: tuple[DemandShockPlan, ...] = ()
    workforce: tuple[WorkforcePlan, ...] = ()
    capacity: tuple[CapacityPlan, ...] = ()
    overrides: tuple[ParameterOverride, ...] = ()
    it_outages: tuple[ITOutagePlan, ...] = ()
    machine_failures: tuple[MachineFailurePlan, ...] = ()
    staffing: tuple[StaffingPlan, ...] = ()
    skill_shortages: tuple[SkillShortagePlan, ...] = ()
    process_changes: tuple[ProcessChangePlan, ...] = ()
    demand_rates: tuple[DemandRatePlan, ...] = ()  # forecast demand replacing the products' historical rates


@dataclass(frozen=True)
class KpiPlan:
    """A KPI resolved to the lines, products, assets, people and materials it is computed over (None = all)."""

    key: str
    name: str
    processes: frozenset[str] | None = None
    products: frozenset[str] | None = None
    assets: frozenset[str] | None = None
    persons: frozenset[str] | None = None
    materials: frozenset[str] | None = None
    skills: frozenset[str] | None = None
    projects: frozenset[str] | None = None
    threshold_below: float | None = None
    threshold_above: float | None = None


@dataclass(frozen=True)
class StudyPlan:
    """Everything a runner needs: horizon, seeds, KPI and scenario plans (the baseline is the empty scenario)."""

    name: str
    steps: int
    step_days: int
    replications: int
    seed: int
    defaults: Defaults
    kpis: tuple[KpiPlan, ...]
    scenarios: tuple[ScenarioPlan, ...]
    demand: DemandPlan | None = None


class TargetResolver:
    """Finds the twins a selector names, in the graph (uids must exist, queries run read-only) and in the slice."""

    def __init__(
        self,
        store: GraphStore | None,
        twin: EnterpriseSlice,
        parsed: ParsedSpec,
        scope: ReadScope = UNRESTRICTED,
        memo: dict[tuple[tuple[str | int, ...], str], frozenset[str]] | None = None,
    ) -> None:
        self.store = store
        self.twin = twin
        self.parsed = parsed
        self.scope = scope  # the caller's read scope: a spec can name and filter only what the caller may read
        self.memo = memo  # selectors already resolved (an experiment plans the same spec for many decisions)

    def uids(self, selector: TwinSelector, path: tuple[str | int, ...]) -> frozenset[str]:
        """The uids the selector names; SpecError naming the line when one does not exist or the query is bad."""
        if self.memo is None:
            return self._uids(selector, path)
        key = (path, selector.model_dump_json())
        if key not in self.memo:
            self.memo[key] = self._uids(selector, path)
        return self.memo[key]

    def _uids(self, selector: TwinSelector, path: tuple[str | int, ...]) -> frozenset[str]:
        found: set[str] = set()
        if selector.uids:
            missing = [u for u in selector.uids if u not in self.twin.classes]
            if missing and self.store is not None:
                present = set(self.store.get_many(missing, self.scope))
                missing = [u for u in missing if u not in present]
            if missing:
                raise self.parsed.fail((*path, "uids"), f"unknown twin uid(s): {', '.join(map(repr, missing))}")
            found.update(selector.uids)
        if selector.cls:
            found.update(self._query(selector, path))
        if selector.within is not None:
            if isinstance(selector.within, str):
                if selector.within not in self.twin.classes and not self._exists(selector.within):
                    raise self.parsed.fail((*path, "within"), f"unknown twin uid {selector.within!r}")
                containers = {selector.within}
            else:
                containers = set(self.uids(selector.within, (*path, "within")))
                if not containers:
                    raise self.parsed.fail((*path, "within"), "the query finds no twins")
            found = {u for u in found if any(self.twin.within(u, c) for c in containers)}
        return frozenset(found)

    def _exists(self, uid: str) -> bool:
        return self.store is not None and self.store.get(uid, self.scope) is not None

    def _query(self, selector: TwinSelector, path: tuple[str | int, ...]) -> set[str]:
        if self.store is None:
            if selector.where:
                raise self.parsed.fail((*path, "where"), "a query with filters needs the twin graph")
            return {u for u, c in self.twin.classes.items() if c == selector.cls}
        conditions = [Condition(f.field, f.op, f.value) for f in selector.where]
        found: set[str] = set()
        offset = 0
        try:
            while True:
                page = self.store.find(
                    selector.cls or "Twin", where=conditions, limit=1000, offset=offset, scope=self.scope
                )
                found.update(item.uid for item in page.items)
                offset += len(page.items)
                if offset >= page.total or not page.items:
                    break
        except (GraphError, OntologyError) as exc:
            raise self.parsed.fail((*path, "class" if "class" in str(exc).lower() else "where"), str(exc)) from None
        return found


def slice_roots(parsed: ParsedSpec, store: GraphStore, scope: ReadScope = UNRESTRICTED) -> tuple[str, ...]:
    """The uids the spec's slice starts from (empty = the whole twin), checked against the graph within `scope`."""
    spec = parsed.spec.slice
    roots = list(spec.roots)
    if roots:
        present = set(store.get_many(roots, scope))
        missing = [u for u in roots if u not in present]
        if missing:
            raise parsed.fail(("slice", "roots"), f"unknown twin uid(s): {', '.join(map(repr, missing))}")
    if spec.query is not None:
        resolver = TargetResolver(store, EnterpriseSlice(read_at=dt.datetime.now(dt.UTC), roots=()), parsed, scope)
        query = spec.query.model_copy(update={"within": None})
        found = sorted(resolver.uids(query, ("slice", "query")))
        if not found:
            raise parsed.fail(("slice", "query"), "the query finds no twins")
        roots += found
    return tuple(dict.fromkeys(roots))


def plan_study(
    parsed: ParsedSpec,
    twin: EnterpriseSlice,
    store: GraphStore | None,
    scope: ReadScope = UNRESTRICTED,
    memo: dict[tuple[tuple[str | int, ...], str], frozenset[str]] | None = None,
    demand: Sequence[GroupForecast] | None = None,
) -> StudyPlan:
    """The study with every target resolved (SpecError naming the line of an unknown uid or a bad query); `memo`
    keeps resolved targets for the next plan of the same spec; `demand` holds the stored forecasts a `demand:`
    spec names (read through the forecast service)."""
    spec = parsed.spec
    resolver = TargetResolver(store, twin, parsed, scope, memo)
    kpis = tuple(_plan_kpi(k, i, resolver) for i, k in enumerate(spec.kpis))
    keys = [k.key for k in kpis]
    duplicate = next((k for k in keys if keys.count(k) > 1), None)
    if duplicate:
        raise parsed.fail(("kpis",), f"KPI {duplicate!r} appears twice; give one of them a `label`")
    scenarios = tuple(_plan_scenario(s, i, spec, resolver) for i, s in enumerate(spec.scenarios))
    names = [s.name for s in scenarios]
    if "baseline" in names or len(set(names)) != len(names):
        raise parsed.fail(("scenarios",), "scenario names must be unique and not 'baseline'")
    planned = (ScenarioPlan("baseline"), *scenarios)
    demand_plan = None
    if spec.demand is not None:
        if demand is None:
            raise parsed.fail(
                ("demand",), "a study with forecast demand needs the forecast store (run it as a service)"
            )
        demand_plan, rates = _plan_demand(parsed, spec.demand, demand, twin)
        planned = tuple(replace(s, demand_rates=rates["mean"]) for s in planned)
        if spec.demand.variants:
            clash = {VARIANT_LOW, VARIANT_HIGH} & set(names)
            if clash:
                raise parsed.fail(("scenarios",), f"{', '.join(sorted(clash))} is the name of a demand variant")
            planned += (
                ScenarioPlan(VARIANT_LOW, demand_rates=rates["lo"]),
                ScenarioPlan(VARIANT_HIGH, demand_rates=rates["hi"]),
            )
    return StudyPlan(
        spec.name,
        spec.steps,
        spec.step_days,
        spec.replications,
        spec.seed,
        spec.model_defaults(),
        kpis,
        planned,
        demand_plan,
    )


VARIANT_LOW = "forecast_p10"
VARIANT_HIGH = "forecast_p90"


def product_of(template: str, key: str) -> str:
    """The product uid a group key names through `template` ({key}, {key1}, {key2}... : the parts split at '/')."""
    parts = key.split("/")

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "key":
            return key
        index = int(name[3:]) - 1
        return parts[index] if index < len(parts) else ""

    return re.sub(r"\{(key[1-9]?)\}", fill, template)


def _plan_demand(
    parsed: ParsedSpec, spec: DemandSpec, groups: Sequence[GroupForecast], twin: EnterpriseSlice
) -> tuple[DemandPlan, dict[str, tuple[DemandRatePlan, ...]]]:
    """Daily forecast rates per product of the slice for each model step (point, low and high), day 0 being the
    forecast's first period; SpecError naming the `demand` line when nothing maps or the forecast is too short."""
    study = parsed.spec
    path: tuple[str | int, ...] = ("demand",)
    name = spec.forecast or (groups[0].series if groups else "")
    if not groups:
        raise parsed.fail((*path, "forecast"), f"no stored forecast of {name!r} by its champion model version")
    starts = {g.periods[0] for g in groups if g.periods}
    if len(starts) != 1:
        raise parsed.fail(
            (*path, "forecast"),
            f"the forecasts of {name!r} start on different periods ({', '.join(sorted(starts))}): run them together",
        )
    day0 = dt.date.fromisoformat(next(iter(starts))[:10])
    used: list[ForecastUsed] = []
    daily: dict[str, dict[str, np.ndarray]] = {}
    short: list[str] = []
    for g in groups:
        product = product_of(spec.product, _group_key(g.series))
        in_slice = product in twin.products
        used.append(
            ForecastUsed(
                g.series,
                g.forecast_id,
                g.model_version,
                g.model_kind,
                g.input_digest,
                g.created_at,
                product if in_slice else None,
            )
        )
        if not in_slice:
            continue
        per_day, covered = _daily(g, day0, study.horizon_days)
        if covered < study.horizon_days:
            short.append(f"{g.series} covers {covered} days")
            continue
        bucket = daily.setdefault(product, {k: np.zeros(study.horizon_days) for k in ("mean", "lo", "hi")})
        for k in bucket:
            bucket[k] += per_day[k]
    if short:
        raise parsed.fail(
            (*path, "forecast"),
            f"the study runs {study.horizon_days} days from {day0.isoformat()}, longer than the forecast: "
            f"{'; '.join(short[:5])} (forecast a longer horizon, `twin forecast run NAME --horizon H`, or shorten it)",
        )
    if not daily:
        examples = ", ".join(repr(product_of(spec.product, _group_key(u.series))) for u in used[:2])
        raise parsed.fail(
            (*path, "product"),
            f"no group of {name!r} names a product of the slice through {spec.product!r} (e.g. {examples})",
        )
    notes = []
    left_out = sum(u.product is None for u in used)
    if left_out:
        notes.append(f"{left_out} forecast group(s) name no product of the slice and were left out")
    if day0 < twin.read_at.date() - dt.timedelta(days=7):
        notes.append(f"the forecast starts on {day0.isoformat()}, before the twin was read; re-run it for current data")
    steps, step_days = study.steps, study.step_days
    rates: dict[str, tuple[DemandRatePlan, ...]] = {}
    for k in ("mean", "lo", "hi"):
        rates[k] = tuple(
            DemandRatePlan(
                product,
                tuple(
                    round(float(values[k][t * step_days : (t + 1) * step_days].mean()), 6)
                    for t in range(steps)
                    if t * step_days < study.horizon_days
                ),
            )
            for product, values in sorted(daily.items())
        )
    variants = (VARIANT_LOW, VARIANT_HIGH) if spec.variants else ()
    plan = DemandPlan(name, day0.isoformat(), tuple(used), variants, tuple(notes))
    return plan, rates


def _group_key(series: str) -> str:
    """A grouped series' key (`NAME/KEY` -> KEY; a series without groups is its own key)."""
    return series.split("/", 1)[1] if "/" in series else series


def _daily(group: GroupForecast, day0: dt.date, days: int) -> tuple[dict[str, np.ndarray], int]:
    """A group's forecast in units per day for `days` days from `day0` (each period's value spread evenly over its
    days), and how many of those days its periods cover."""
    starts = [dt.date.fromisoformat(p[:10]) for p in group.periods]
    if not starts:
        return {k: np.zeros(days) for k in ("mean", "lo", "hi")}, 0
    length = (starts[1] - starts[0]).days if len(starts) > 1 else {"D": 1, "W": 7, "M": 30}.get(group.freq, 1)
    ends = [*starts[1:], starts[-1] + dt.timedelta(days=max(1, length))]
    out = {k: np.zeros(days) for k in ("mean", "lo", "hi")}
    covered = 0
    for start, end, *values in zip(starts, ends, group.mean, group.lo, group.hi, strict=True):
        span = max(1, (end - start).days)
        first, last = (start - day0).days, min(days, (end - day0).days)
        if last <= first:
            continue
        covered = max(covered, last)
        for k, v in zip(("mean", "lo", "hi"), values, strict=True):
            out[k][max(0, first) : last] = v / span
    return out, covered


def _expand(twin: EnterpriseSlice, uids: frozenset[str]) -> dict[str, set[str]]:
    """The lines, products, assets, people and materials a set of twins stands for."""
    out: dict[str, set[str]] = {
        k: set() for k in ("processes", "products", "assets", "persons", "materials", "skills", "projects")
    }
    for uid in uids:
        if uid in twin.projects:
            out["projects"].add(uid)
        if uid in twin.skills:
            out["skills"].add(uid)
            out["processes"].update(j for j, p in twin.processes.items() if uid in p.skills)
            out["projects"].update(q for q, p in twin.projects.items() if uid in p.skills)
        if uid in twin.it_systems:
            hit = twin.dependents({uid})
            out["processes"].update(hit & set(twin.processes))
            out["projects"].update(hit & set(twin.projects))
        if uid in twin.capabilities:
            out["processes"].update(_needs(twin, uid) & set(twin.processes))
        if uid in twin.processes:
            out["processes"].add(uid)
        if uid in twin.products:
            out["products"].add(uid)
        if uid in twin.assets:
            out["assets"].add(uid)
        if uid in twin.persons:
            out["persons"].add(uid)
        if uid in twin.materials:
            out["materials"].add(uid)
    for uid in uids:
        for j, process in twin.processes.items():
            if uid in process.machines or any(twin.within(w, uid) for w in process.work_centers):
                out["processes"].add(j)
        for p, person in twin.persons.items():
            if person.unit and twin.within(person.unit, uid):
                out["persons"].add(p)
    if out["processes"] and not out["products"]:
        out["products"] = {p for j in out["processes"] for p in twin.processes[j].produces}
    if out["processes"] and not out["assets"]:
        out["assets"] = {m for j in out["processes"] for m in twin.processes[j].machines}
    if out["processes"] and not out["materials"]:
        out["materials"] = {m for j in out["processes"] for m in twin.processes[j].consumes}
    if out["products"] and not out["processes"]:
        out["processes"] = {j for j, p in twin.processes.items() if set(p.produces) & out["products"]}
    return out


def _needs(twin: EnterpriseSlice, uid: str) -> set[str]:
    """Every twin `uid` needs, directly or through others."""
    seen: set[str] = set()
    stack = list(twin.depends_on.get(uid, ()))
    while stack:
        need = stack.pop()
        if need not in seen:
            seen.add(need)
            stack.extend(twin.depends_on.get(need, ()))
    return seen


def _plan_kpi(kpi: KpiSpec, index: int, resolver: TargetResolver) -> KpiPlan:
    if kpi.of is None:
        return KpiPlan(kpi.key, kpi.name, threshold_below=kpi.threshold_below, threshold_above=kpi.threshold_above)
    path: tuple[str | int, ...] = ("kpis", index, "of")
    uids = resolver.uids(kpi.of, path)
    parts = _expand(resolver.twin, uids)
    if not any(parts.values()):
        raise resolver.parsed.fail(
            path, "selects no line, product, asset, person, material, skill or project of the slice"
        )
    return KpiPlan(
        kpi.key,
        kpi.name,
        processes=frozenset(parts["processes"]),
        products=frozenset(parts["products"]),
        assets=frozenset(parts["assets"]),
        persons=frozenset(parts["persons"]),
        materials=frozenset(parts["materials"]),
        skills=frozenset(parts["skills"]),
        projects=frozenset(parts["projects"]),
        threshold_below=kpi.threshold_below,
        threshold_above=kpi.threshold_above,
    )


def _plan_scenario(scenario: ScenarioDef, index: int, spec: StudySpec, resolver: TargetResolver) -> ScenarioPlan:
    twin = resolver.twin
    outages, shocks, workforce, capacity, overrides = [], [], [], [], []
    it_outages: list[ITOutagePlan] = []
    failures: list[MachineFailurePlan] = []
    staffing: list[StaffingPlan] = []
    shortages: list[SkillShortagePlan] = []
    changes: list[ProcessChangePlan] = []
    defaults = spec.model_defaults()
    for i, item in enumerate(scenario.interventions):
        path: tuple[str | int, ...] = ("scenarios", index, "interventions", i)
        if isinstance(item, ParameterOverrideSpec):
            uids = resolver.uids(item.target, (*path, "target")) if item.target else None
            overrides.append(ParameterOverride(item.parameter, item.value, uids))
            continue
        start, end = (math.floor(d / spec.step_days) for d in item.bounds(spec.horizon_days))
        end = max(end, start + 1)
        if isinstance(item, Staffing):
            staffing.append(_plan_staffing(item, path, resolver, spec, start, end))
            continue
        uids = resolver.uids(item.target, (*path, "target"))
        parts = _expand(twin, uids)
        if isinstance(item, ITOutage):  # a CyberIncident is one too
            systems = frozenset(u for u in uids if u in twin.it_systems)
            if not systems:
                raise resolver.parsed.fail((*path, "target"), "selects no IT system or application of the slice")
            spread = item.spread_probability if isinstance(item, CyberIncident) else 0.0
            it_outages.append(ITOutagePlan(systems, item.degradation, item.recovery_hours, spread, start, end))
        elif isinstance(item, MachineFailure):
            assets = frozenset(parts["assets"])
            if not assets:
                raise resolver.parsed.fail((*path, "target"), "selects no machine of the slice")
            every = None if item.preventive_every_days is None else max(1, item.preventive_every_days // spec.step_days)
            factor = item.preventive_mtbf_factor or defaults.preventive_mtbf_factor
            failures.append(
                MachineFailurePlan(
                    assets,
                    item.breakdown,
                    item.repair_hours,
                    item.mtbf_factor,
                    every,
                    item.preventive_hours,
                    factor,
                    start,
                    end,
                )
            )
        elif isinstance(item, SkillShortage):
            skills = frozenset(u for u in uids if u in twin.skills)
            if not skills:
                raise resolver.parsed.fail((*path, "target"), "selects no skill of the slice")
            shortages.append(SkillShortagePlan(skills, item.share, start, end))
        elif isinstance(item, ProcessChange):
            processes = frozenset(parts["processes"])
            if not processes:
                raise resolver.parsed.fail((*path, "target"), "selects no production line of the slice")
            factor = item.cycle_time_factor or 1.0
            if item.cycle_time_hours is not None:
                missing = sorted(j for j in processes if not twin.processes[j].cycle_time_hours)
                if missing:
                    raise resolver.parsed.fail(
                        (*path, "cycle_time_hours"),
                        f"line(s) {', '.join(missing)} have no cycleTimeHours to compare with; use cycle_time_factor",
                    )
                factors = {item.cycle_time_hours / (twin.processes[j].cycle_time_hours or 1.0) for j in processes}
                if len(factors) > 1:
                    raise resolver.parsed.fail(
                        (*path, "cycle_time_hours"), "the lines have different cycle times; change one at a time"
                    )
                factor = factors.pop()
            route_to: frozenset[str] = frozenset()
            if item.route_to is not None:
                route_to = frozenset(_expand(twin, resolver.uids(item.route_to, (*path, "route_to")))["processes"])
                route_to -= processes
                if not route_to:
                    raise resolver.parsed.fail((*path, "route_to"), "selects no other production line of the slice")
            changes.append(
                ProcessChangePlan(processes, factor, item.yield_rate, route_to, item.route_share, start, end)
            )
        elif isinstance(item, SupplierOutage):
            suppliers = frozenset(u for u in uids if u in twin.suppliers)
            if not suppliers:
                raise resolver.parsed.fail((*path, "target"), "selects no supplier of the slice")
            outages.append(OutagePlan(suppliers, start, end))
        elif isinstance(item, DemandShock):
            customers = frozenset(u for u in uids if u in twin.customers) or None
            products = frozenset(parts["products"]) or frozenset(
                line.product for line in twin.order_lines if customers and line.customer in customers
            )
            if not products:
                raise resolver.parsed.fail((*path, "target"), "selects no product (or customer) of the slice")
            shocks.append(DemandShockPlan(products, customers, item.factor, start, end))
        elif isinstance(item, WorkforceChange):
            persons = frozenset(parts["persons"])
            if not persons:
                raise resolver.parsed.fail((*path, "target"), "selects no person of the slice")
            workforce.append(
                WorkforcePlan(
                    persons, item.attrition_add, item.attrition_factor, item.hires, item.hiring_delay_days, start, end
                )
            )
        elif isinstance(item, CapacityChange):
            processes = frozenset(parts["processes"])
            if not processes:
                raise resolver.parsed.fail((*path, "target"), "selects no production line of the slice")
            if item.factor is not None:
                factor = item.factor
            else:
                current = [
                    twin.work_centers[w].shifts_per_day or spec.model_defaults().shifts_per_day
                    for j in processes
                    for w in twin.processes[j].work_centers
                    if w in twin.work_centers
                ]
                factor = (item.shifts or 0) / (max(current) if current else spec.model_defaults().shifts_per_day)
            capacity.append(CapacityPlan(processes, factor, start, end))
    return ScenarioPlan(
        scenario.name,
        tuple(outages),
        tuple(shocks),
        tuple(workforce),
        tuple(capacity),
        tuple(overrides),
        tuple(it_outages),
        tuple(failures),
        tuple(staffing),
        tuple(shortages),
        tuple(changes),
    )


def _plan_staffing(
    item: Staffing, path: tuple[str | int, ...], resolver: TargetResolver, spec: StudySpec, start: int, end: int
) -> StaffingPlan:
    """People, destinations and skill of a staffing change, checked against the slice."""
    twin = resolver.twin
    persons: frozenset[str] = frozenset()
    if item.target is not None:
        persons = frozenset(_expand(twin, resolver.uids(item.target, (*path, "target")))["persons"])
        if not persons:
            raise resolver.parsed.fail((*path, "target"), "selects no person of the slice")
        if item.count is not None:
            persons = frozenset(sorted(persons)[: item.count])
    processes: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()
    if item.to is not None:
        to = _expand(twin, resolver.uids(item.to, (*path, "to")))
        processes, projects = frozenset(to["processes"]), frozenset(to["projects"])
        if not processes and not projects:
            raise resolver.parsed.fail((*path, "to"), "selects no production line or project of the slice")
    if item.skill is not None:
        if item.skill not in twin.skills and not (
            resolver.store is not None and resolver.store.get(item.skill, resolver.scope) is not None
        ):
            raise resolver.parsed.fail((*path, "skill"), f"unknown skill uid {item.skill!r}")
        if item.action == "hire" and item.to is None:
            processes = frozenset(j for j, p in twin.processes.items() if item.skill in p.skills)
            projects = frozenset(q for q, p in twin.projects.items() if item.skill in p.skills)
            if not processes and not projects:
                raise resolver.parsed.fail((*path, "skill"), "no line or project of the slice needs this skill")
    training = math.ceil(item.training_days / spec.step_days)
    count = item.count if item.action == "hire" and item.count is not None else len(persons)
    return StaffingPlan(item.action, persons, processes, projects, item.skill, count, training, start, end)
