"""Experiment specs: a study spec whose interventions hold `${variable}` placeholders, plus an `experiment:` block.

The block names the decision variables (bounds, integer or not, or a list of values), what to find (`kind`: a grid
of every combination, a sensitivity analysis, or an optimisation), the objective (a weighted sum of KPI values per
replication, its mean or a percentile, minimised or maximised) and constraints (a KPI statistic at most / at least a
bound, or a KPI's threshold breached with at most some probability). `parse_experiment` refuses a bad file with every
problem at its line: an undeclared `${name}`, a declared variable no intervention uses, empty bounds, a constraint no
decision can meet, a KPI the study does not measure. `decision_spec` gives the study spec of one decision.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ontology.safe_yaml import compose_yaml
from ontology.yaml_lines import line_map, line_of
from simulation.errors import SpecError
from simulation.scenario import ParsedSpec, parse_spec

_STRICT = ConfigDict(extra="forbid")
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PERCENTILE = re.compile(r"p([0-9]{1,2})")


class Variable(BaseModel):
    """A decision variable: a range (`low`..`high`, whole numbers when `integer`) or a list of `values`."""

    model_config = _STRICT
    low: float | None = None
    high: float | None = None
    integer: bool = False
    values: list[float] | None = None
    baseline: float | None = None  # the value the sensitivity analysis varies around (default: the middle)
    steps: int = Field(5, ge=2, le=1000)  # grid points of a range in a grid or Sobol sample

    @model_validator(mode="after")
    def _range_or_values(self) -> Variable:
        if self.values is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give `values:` or `low:`/`high:`, not both")
            if not self.values:
                raise ValueError("empty bounds: `values:` lists nothing")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give `low:` and `high:` (or `values:`)")
        if not self.low < self.high:
            raise ValueError(f"empty bounds: low {self.low:g} is not below high {self.high:g}")
        if self.integer and math.floor(self.high) < math.ceil(self.low):
            raise ValueError(f"empty bounds: no whole number between {self.low:g} and {self.high:g}")
        if self.baseline is not None and not self.low <= self.baseline <= self.high:
            raise ValueError(f"baseline {self.baseline:g} lies outside [{self.low:g}, {self.high:g}]")
        return self

    def value(self, x: float) -> float | int:
        """`x` as this variable holds it (a whole number when integer)."""
        return int(round(x)) if self.integer or (self.values and all(v == int(v) for v in self.values)) else float(x)

    def grid(self) -> list[float | int]:
        """The values a grid takes: the list, or `steps` points across the range (whole numbers once each)."""
        if self.values is not None:
            return [self.value(v) for v in self.values]
        low, high = float(self.low or 0.0), float(self.high or 0.0)
        points = [low + (high - low) * k / (self.steps - 1) for k in range(self.steps)]
        return list(dict.fromkeys(self.value(p) for p in points))

    def centre(self) -> float | int:
        """The baseline value (given, else the middle of the range or list)."""
        if self.baseline is not None:
            return self.value(self.baseline)
        if self.values is not None:
            return self.value(sorted(self.values)[len(self.values) // 2])
        return self.value(((self.low or 0.0) + (self.high or 0.0)) / 2)

    def extremes(self) -> tuple[float | int, float | int]:
        """The lowest and highest value."""
        if self.values is not None:
            return self.value(min(self.values)), self.value(max(self.values))
        return self.value(self.low or 0.0), self.value(self.high or 0.0)


class Objective(BaseModel):
    """A weighted sum of KPI values per replication, whose mean (or percentile `pNN`) is minimised or maximised."""

    model_config = _STRICT
    minimize: dict[str, float] | None = None
    maximize: dict[str, float] | None = None
    statistic: str = "mean"

    @model_validator(mode="after")
    def _one_direction(self) -> Objective:
        if (self.minimize is None) == (self.maximize is None):
            raise ValueError("give exactly one of `minimize:` or `maximize:` (KPI: weight)")
        if not (self.minimize or self.maximize):
            raise ValueError("the objective names no KPI")
        return self

    @field_validator("statistic")
    @classmethod
    def _statistic(cls, value: str) -> str:
        if value != "mean" and not _PERCENTILE.fullmatch(value):
            raise ValueError("`statistic` is `mean` or a percentile such as `p90`")
        return value

    @property
    def weights(self) -> dict[str, float]:
        """KPI key -> weight."""
        return dict(self.minimize or self.maximize or {})

    @property
    def sense(self) -> Literal["minimize", "maximize"]:
        """Which way is better."""
        return "minimize" if self.minimize is not None else "maximize"


class Constraint(BaseModel):
    """A KPI's statistic within bounds, or the chance of breaching a threshold at most `max_probability`."""

    model_config = _STRICT
    kpi: str
    statistic: str = "mean"
    at_most: float | None = None
    at_least: float | None = None
    below: float | None = None  # a breach: the KPI below this in a replication
    above: float | None = None  # a breach: the KPI above this in a replication
    max_probability: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _feasible(self) -> Constraint:
        bound = self.at_most is not None or self.at_least is not None
        breach = self.below is not None or self.above is not None
        if bound == breach:
            raise ValueError(
                "give `at_most:`/`at_least:` on the KPI, or `below:`/`above:` with `max_probability:` for a breach"
            )
        if breach and self.max_probability is None:
            raise ValueError("a breach threshold (`below:`/`above:`) needs `max_probability:`")
        if bound and self.max_probability is not None:
            raise ValueError("`max_probability:` goes with a breach threshold (`below:`/`above:`)")
        if self.at_most is not None and self.at_least is not None and self.at_least > self.at_most:
            raise ValueError(f"infeasible: at_least {self.at_least:g} is above at_most {self.at_most:g}")
        if self.statistic != "mean" and not _PERCENTILE.fullmatch(self.statistic):
            raise ValueError("`statistic` is `mean` or a percentile such as `p90`")
        return self


class ExperimentBlock(BaseModel):
    """The `experiment:` block of a spec."""

    model_config = _STRICT
    kind: Literal["grid", "sensitivity", "optimize"]
    variables: dict[str, Variable] = Field(min_length=1)
    objective: Objective
    constraints: list[Constraint] = []
    scenario: str | None = None  # the scenario whose interventions hold the variables (default: the first)
    budget: int = Field(20, ge=1, le=10_000)  # evaluations an optimisation may make
    batch: int | None = Field(None, ge=1, le=64)  # decisions evaluated together (default: the executor's workers)
    method: Literal["one_at_a_time", "sobol"] = "one_at_a_time"  # of a sensitivity analysis
    samples: int = Field(8, ge=2, le=4096)  # base samples of a Sobol analysis (N x (2 x variables + 2) runs)
    seed: int = Field(0, ge=0)  # of the optimiser's sampler

    @field_validator("variables")
    @classmethod
    def _names(cls, value: dict[str, Variable]) -> dict[str, Variable]:
        bad = [name for name in value if not _NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"variable names are identifiers: {', '.join(map(repr, bad))}")
        return value


Decision = dict[str, float | int]


@dataclass(frozen=True)
class ParsedExperiment:
    """A validated experiment: its block, the study text with placeholders, the baseline study, line numbers."""

    block: ExperimentBlock
    source: str
    text: str  # the whole file as given (stored, so a re-run reproduces it)
    template: str  # the study part: the experiment block blanked out, placeholders kept, lines unchanged
    study: ParsedSpec  # the study with every variable at its centre
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    scenario: str = ""

    @property
    def name(self) -> str:
        """The study's name."""
        return self.study.spec.name

    def problem(self, path: tuple[str | int, ...], message: str) -> str:
        """`message` prefixed with the line and dotted path."""
        line = line_of(self.lines, path)
        where = ".".join(str(p) for p in path)
        return f"line {line}: {where}: {message}" if line else f"{where}: {message}"

    def fail(self, path: tuple[str | int, ...], message: str) -> SpecError:
        """A SpecError for one problem at `path`."""
        return SpecError([self.problem(path, message)], self.source)

    def centre(self) -> Decision:
        """Every variable at its baseline value."""
        return {name: v.centre() for name, v in self.block.variables.items()}

    def decision_spec(self, decision: Mapping[str, float | int]) -> ParsedSpec:
        """The study spec of one decision (SpecError at the line of a value the intervention does not accept)."""
        unknown = sorted(set(decision) - set(self.block.variables))
        if unknown:
            raise SpecError([f"unknown decision variable(s): {', '.join(unknown)}"], self.source)
        text = PLACEHOLDER.sub(lambda m: _literal(decision[m.group(1).strip()]), self.template)
        return parse_spec(text, self.source)

    def grid(self) -> list[Decision]:
        """Every combination of the variables' grid values."""
        names = list(self.block.variables)
        values = [self.block.variables[n].grid() for n in names]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def _literal(value: float | int) -> str:
    return str(int(value)) if isinstance(value, int) else repr(float(value))


def parse_experiment(text: str, source: str = "<experiment>") -> ParsedExperiment:
    """A validated experiment spec; SpecError lists every problem with its line."""
    try:  # placeholders stand for numbers: read the structure with a number in their place (flow style too)
        node = compose_yaml(PLACEHOLDER.sub("0", text), source)
        data = None if node is None else yaml.SafeLoader("").construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise SpecError([f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}"], source) from None
    if not isinstance(data, dict) or node is None or not isinstance(node, yaml.MappingNode):
        raise SpecError(["line 1: an experiment spec is a study spec (a mapping) with an `experiment:` block"], source)
    lines = line_map(node)
    if "experiment" not in data:
        raise SpecError(["line 1: no `experiment:` block (kind, variables, objective); a plain study is run"], source)
    try:
        block = ExperimentBlock.model_validate(data["experiment"])
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = ("experiment", *error["loc"])
            line = line_of(lines, loc)
            where = ".".join(str(p) for p in loc)
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "literal_error" and "expected" in error.get("ctx", {}):
                message = f"{error.get('input')!r} is not allowed; expected {error['ctx']['expected']}"
            problems.append(f"line {line}: {where}: {message}" if line else f"{where}: {message}")
        raise SpecError(problems, source) from None
    key, value = next((k, v) for k, v in node.value if k.value == "experiment")
    first, last = key.start_mark.line, value.end_mark.line
    if value.end_mark.column == 0:
        last -= 1
    text_lines = text.split("\n")
    template = "\n".join("" if first <= i <= last else line for i, line in enumerate(text_lines))
    found = [(k, v) for k, v in node.value if k.value == "scenarios"]
    scenarios = (found[0][0].start_mark.line + 1, found[0][1].end_mark.line + 1) if found else (0, -1)
    problems = _placeholder_problems(template, block, lines, scenarios)
    if problems:
        raise SpecError(problems, source)
    centre = {name: v.centre() for name, v in block.variables.items()}
    study = parse_spec(PLACEHOLDER.sub(lambda m: _literal(centre[m.group(1).strip()]), template), source)
    parsed = ParsedExperiment(block, source, text, template, study, lines)
    scenario = block.scenario or study.spec.scenarios[0].name
    if scenario not in [s.name for s in study.spec.scenarios]:
        raise parsed.fail(("experiment", "scenario"), f"no scenario is called {scenario!r}")
    problems = _kpi_problems(parsed)
    if problems:
        raise SpecError(problems, source)
    return ParsedExperiment(block, source, text, template, study, lines, scenario)


def _placeholder_problems(
    template: str, block: ExperimentBlock, lines: dict[tuple[str | int, ...], int], scenarios: tuple[int, int]
) -> list[str]:
    """Placeholders naming no declared variable or outside the scenarios, and declared variables nothing uses."""
    problems = []
    used: set[str] = set()
    for number, line in enumerate(template.split("\n"), start=1):
        for match in PLACEHOLDER.finditer(line):
            name = match.group(1).strip()
            if not scenarios[0] <= number <= scenarios[1]:
                problems.append(f"line {number}: ${{{name}}} is outside `scenarios:`; variables go into interventions")
            elif name not in block.variables:
                known = ", ".join(block.variables)
                problems.append(f"line {number}: unknown decision variable ${{{name}}}; declared: {known}")
            used.add(name)
    for name in block.variables:
        if name not in used:
            at = line_of(lines, ("experiment", "variables", name))
            problems.append(f"line {at}: experiment.variables.{name}: no intervention uses ${{{name}}}")
    return problems


def _kpi_problems(parsed: ParsedExperiment) -> list[str]:
    """Objective and constraint KPIs the study does not measure."""
    keys = [k.key for k in parsed.study.spec.kpis]
    problems = []
    direction = parsed.block.objective.sense
    for kpi in parsed.block.objective.weights:
        if kpi not in keys:
            problems.append(
                parsed.problem(
                    ("experiment", "objective", direction, kpi), f"KPI {kpi!r} is not measured; kpis: {', '.join(keys)}"
                )
            )
    for i, constraint in enumerate(parsed.block.constraints):
        if constraint.kpi not in keys:
            problems.append(
                parsed.problem(
                    ("experiment", "constraints", i, "kpi"),
                    f"KPI {constraint.kpi!r} is not measured; kpis: {', '.join(keys)}",
                )
            )
    return problems


def statistic(values: list[float], name: str) -> float:
    """The mean or the `pNN` percentile of replication values."""
    import numpy as np

    if name == "mean":
        return float(np.mean(values))
    match = _PERCENTILE.fullmatch(name)
    return float(np.percentile(values, int(match.group(1)) if match else 50))
