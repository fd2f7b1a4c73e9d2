"""Experiments over what-ifs: a grid of decisions, a sensitivity analysis, or a simulation-optimisation.

Every decision is evaluated as a scenario of the study with the same replication seeds as the baseline and every other
decision (common random numbers), so any two decisions are compared pairwise, replication by replication. Decisions
are evaluated in batches on the study executor (the process pool by default): a batch is one study whose scenarios are
the decisions.

Optimisation uses Optuna's TPE sampler (seeded, so a re-run asks for the same decisions): it handles integer, real and
listed variables in one search, needs no gradient and tolerates the noise replications leave, takes constraint
violations into account (`Trial.set_constraint`), and its ask/tell interface lets the experiment decide how decisions
are evaluated (batched, with common random numbers) instead of calling an objective itself. scipy's optimisers assume a
smooth deterministic function of real variables, which a replicated simulation with whole-number decisions is not.
When the whole decision space is no larger than the budget, every decision is evaluated instead (`exhaustive`).
The best decision is the feasible one (every constraint met by its replications) with the best objective statistic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from simulation.errors import ExperimentInfeasible, SpecError
from simulation.experiment_spec import Decision, ParsedExperiment, statistic
from simulation.runner import Executor, LocalExecutor, StudyInput, replication_seeds
from simulation.scenario import ScenarioPlan, StudyPlan, plan_study
from simulation.slice import EnterpriseSlice
from simulation.statistics import mean_interval

Memo = dict[tuple[tuple[str | int, ...], str], frozenset[str]]


@dataclass(frozen=True)
class Evaluation:
    """One decision evaluated over every replication: objective, KPI means, constraints and whether all are met."""

    index: int
    decision: dict[str, float | int]
    objective: float  # the objective's statistic (mean or percentile) over replications
    mean: float
    ci_low: float
    ci_high: float
    kpis: dict[str, float]
    constraints: list[float]  # per constraint: the KPI statistic, or the breach probability
    feasible: bool
    values: list[float]  # the objective per replication (paired across decisions by the seeds)


@dataclass(frozen=True)
class Comparison:
    """A paired difference of the objective (a - b) over the replications, with its 95 % confidence interval."""

    a: int
    b: int
    mean: float
    low: float
    high: float
    unpaired_half_width: float  # what the interval's half width would be without common random numbers


@dataclass(frozen=True)
class SensitivityRow:
    """How much one variable moves the objective: at its low and high value against the centre (paired)."""

    variable: str
    low_value: float
    high_value: float
    low_diff: float
    low_ci: tuple[float, float]
    high_diff: float
    high_ci: tuple[float, float]
    swing: float
    first_order: float | None = None  # Sobol S1
    total_order: float | None = None  # Sobol ST


@dataclass
class ExperimentResult:
    """What an experiment found: every evaluation, the baseline, the best decision and how sure we are of it."""

    name: str
    kind: str
    sense: str
    statistic: str
    sampler: str
    seeds: list[int]
    baseline: Evaluation
    evaluations: list[Evaluation]
    best: int | None = None
    best_vs_baseline: Comparison | None = None
    runner_up_vs_best: Comparison | None = None
    frontier: list[int] = field(default_factory=list)
    frontier_kpis: list[str] = field(default_factory=list)  # the KPIs the frontier is taken over: objective, constraint
    sensitivity: list[SensitivityRow] = field(default_factory=list)
    executor: str = ""
    wall_seconds: float = 0.0
    runs: int = 0

    def evaluation(self, index: int) -> Evaluation:
        """The evaluation with this index (-1 is the baseline)."""
        if index == self.baseline.index:
            return self.baseline
        return next(e for e in self.evaluations if e.index == index)

    @property
    def best_evaluation(self) -> Evaluation | None:
        """The best feasible evaluation."""
        return None if self.best is None else self.evaluation(self.best)


class Evaluator:
    """Evaluates decisions in batches on an executor, with the study's replication seeds (common random numbers)."""

    def __init__(
        self,
        parsed: ParsedExperiment,
        twin: EnterpriseSlice,
        plan: StudyPlan,
        executor: Executor,
        memo: Memo | None = None,
        seeds: list[int] | None = None,
    ) -> None:
        self.parsed = parsed
        self.twin = twin
        self.plan = plan
        self.executor = executor
        self.seeds = seeds if seeds is not None else replication_seeds(plan.seed, plan.replications)
        self.memo: Memo = memo if memo is not None else {}
        self.done: dict[tuple[tuple[str, float | int], ...], Evaluation] = {}
        self.order: list[Evaluation] = []
        self.runs = 0

    @staticmethod
    def key(decision: Decision) -> tuple[tuple[str, float | int], ...]:
        """A hashable form of a decision."""
        return tuple(sorted(decision.items()))

    def scenario(self, decision: Decision, name: str) -> ScenarioPlan:
        """The experiment's scenario with the decision's values, resolved against the slice (targets memoised)."""
        try:
            plan = plan_study(self.parsed.decision_spec(decision), self.twin, None, memo=self.memo)
        except SpecError as exc:
            values = ", ".join(f"{k}={v}" for k, v in decision.items())
            raise SpecError([f"with {values}: {p}" for p in exc.problems], exc.source) from None
        scenario = next(s for s in plan.scenarios if s.name == self.parsed.scenario)
        return replace(scenario, name=name)

    def baseline(self) -> Evaluation:
        """The study's baseline (no interventions), evaluated once."""
        return self._run([(ScenarioPlan("baseline"), {}, -1)])[0]

    def evaluate(self, decisions: Sequence[Decision]) -> list[Evaluation]:
        """Evaluations of the decisions (each new one run once, with every replication)."""
        fresh: list[tuple[ScenarioPlan, Decision, int]] = []
        for decision in decisions:
            k = self.key(decision)
            if k in self.done or any(self.key(d) == k for _, d, _ in fresh):
                continue
            index = len(self.order) + len(fresh)
            fresh.append((self.scenario(decision, f"#{index}"), dict(decision), index))
        for evaluation in self._run(fresh):
            self.done[self.key(evaluation.decision)] = evaluation
            self.order.append(evaluation)
        return [self.done[self.key(d)] for d in decisions]

    def _run(self, items: list[tuple[ScenarioPlan, Decision, int]]) -> list[Evaluation]:
        if not items:
            return []
        plan = replace(self.plan, scenarios=tuple(s for s, _, _ in items))
        by: dict[str, dict[int, dict[str, float]]] = {s.name: {} for s, _, _ in items}
        for batch in self.executor.map(StudyInput(self.twin, plan), list(enumerate(self.seeds))):
            for run in batch:
                by[run.scenario][run.replication] = run.values
        self.runs += len(items) * len(self.seeds)
        return [self._measure(index, decision, by[s.name]) for s, decision, index in items]

    def _measure(self, index: int, decision: Decision, runs: dict[int, dict[str, float]]) -> Evaluation:
        block = self.parsed.block
        reps = sorted(runs)
        weights = block.objective.weights
        values = [sum(w * runs[r][kpi] for kpi, w in weights.items()) for r in reps]
        ci = mean_interval(np.asarray(values))
        kpis = {kpi: float(np.mean([runs[r][kpi] for r in reps])) for kpi in runs[reps[0]]}
        measured, feasible = [], True
        for c in block.constraints:
            series = np.asarray([runs[r][c.kpi] for r in reps])
            if c.max_probability is not None:
                hit = np.zeros(len(series), dtype=bool)
                if c.below is not None:
                    hit |= series < c.below
                if c.above is not None:
                    hit |= series > c.above
                value = float(hit.mean())
                ok = value <= c.max_probability
            else:
                value = statistic(list(series), c.statistic)
                ok = (c.at_most is None or value <= c.at_most) and (c.at_least is None or value >= c.at_least)
            measured.append(value)
            feasible &= ok
        return Evaluation(
            index,
            dict(decision),
            statistic(values, block.objective.statistic),
            ci.mean,
            ci.low,
            ci.high,
            kpis,
            measured,
            feasible,
            [float(v) for v in values],
        )

    def violations(self, evaluation: Evaluation) -> list[float]:
        """Per constraint, how far it is missed (<= 0 when met), for the sampler."""
        out = []
        for c, value in zip(self.parsed.block.constraints, evaluation.constraints, strict=True):
            if c.max_probability is not None:
                out.append(value - c.max_probability)
            else:
                miss = max(
                    value - c.at_most if c.at_most is not None else -math.inf,
                    c.at_least - value if c.at_least is not None else -math.inf,
                )
                out.append(miss)
        return out


def compare(a: Evaluation, b: Evaluation) -> Comparison:
    """The paired difference a - b of the objective over replications, and the unpaired half width for contrast."""
    paired = mean_interval(np.asarray(a.values) - np.asarray(b.values))
    half_a = (a.ci_high - a.ci_low) / 2
    half_b = (b.ci_high - b.ci_low) / 2
    return Comparison(a.index, b.index, paired.mean, paired.low, paired.high, float(math.hypot(half_a, half_b)))


def run_experiment(
    parsed: ParsedExperiment,
    twin: EnterpriseSlice,
    plan: StudyPlan,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
    memo: Memo | None = None,
    seeds: list[int] | None = None,
) -> ExperimentResult:
    """Run the experiment the spec asks for on the slice (`plan` is the study planned with every variable centred;
    `memo` holds the targets that planning resolved, so decisions need no graph)."""
    executor = executor or LocalExecutor()
    block = parsed.block
    started = time.perf_counter()
    evaluator = Evaluator(parsed, twin, plan, executor, memo, seeds)
    baseline = evaluator.baseline()
    batch = block.batch or getattr(executor, "workers", 1) or 1
    sensitivity: list[SensitivityRow] = []
    sampler: str = block.kind
    if block.kind == "grid":
        grid = parsed.grid()
        for start in range(0, len(grid), max(batch, 8)):
            evaluator.evaluate(grid[start : start + max(batch, 8)])
            if progress:
                progress(len(evaluator.order), len(grid))
    elif block.kind == "sensitivity":
        sensitivity, sampler = _sensitivity(parsed, evaluator, progress)
    else:
        sampler = _optimise(parsed, evaluator, batch, progress)
    result = ExperimentResult(
        name=parsed.name,
        kind=block.kind,
        sense=block.objective.sense,
        statistic=block.objective.statistic,
        sampler=sampler,
        seeds=evaluator.seeds,
        baseline=baseline,
        evaluations=list(evaluator.order),
        sensitivity=sensitivity,
        executor=executor.name,
        runs=evaluator.runs,
    )
    if block.kind != "sensitivity":
        _choose(parsed, result)
    result.frontier = _frontier(parsed, result.evaluations)
    result.frontier_kpis = list(_frontier_dims(parsed))
    result.wall_seconds = time.perf_counter() - started
    return result


def memo_to_json(memo: Memo) -> list[list[Any]]:
    """Resolved targets as JSON (stored with an experiment, so a re-run needs no graph)."""
    return [[list(path), selector, sorted(uids)] for (path, selector), uids in sorted(memo.items(), key=str)]


def memo_from_json(items: list[list[Any]]) -> Memo:
    """Resolved targets stored by `memo_to_json`."""
    return {(tuple(path), selector): frozenset(uids) for path, selector, uids in items}


def _better(sense: str) -> Callable[[Evaluation], float]:
    return (lambda e: e.objective) if sense == "minimize" else (lambda e: -e.objective)


def _choose(parsed: ParsedExperiment, result: ExperimentResult) -> None:
    """The best feasible decision, its paired comparison with the baseline and with the runner-up; ExperimentInfeasible
    naming every constraint (with the closest any decision came) when none is met."""
    feasible = sorted((e for e in result.evaluations if e.feasible), key=_better(result.sense))
    if not feasible:
        problems = []
        for i, c in enumerate(parsed.block.constraints):
            values = [e.constraints[i] for e in result.evaluations]
            closest = min(values) if c.max_probability is not None or c.at_most is not None else max(values)
            what = "breach probability" if c.max_probability is not None else f"{c.statistic} {c.kpi}"
            problems.append(
                parsed.problem(
                    ("experiment", "constraints", i),
                    f"no evaluated decision meets it (closest {what}: {closest:.6g} over {len(values)} decisions)",
                )
            )
        raise ExperimentInfeasible(problems, parsed.source)
    best = feasible[0]
    result.best = best.index
    result.best_vs_baseline = compare(best, result.baseline)
    if len(feasible) > 1:
        result.runner_up_vs_best = compare(feasible[1], best)


def _frontier_dims(parsed: ParsedExperiment) -> dict[str, float]:
    """The frontier's KPIs (the objective's, then each bounded constraint's), each with -1.0 where higher is better."""
    sense = 1.0 if parsed.block.objective.sense == "minimize" else -1.0
    dims: dict[str, float] = {k: sense * (1.0 if w >= 0 else -1.0) for k, w in parsed.block.objective.weights.items()}
    for c in parsed.block.constraints:
        if c.max_probability is None and c.kpi not in dims:
            dims[c.kpi] = 1.0 if c.at_most is not None else -1.0
    return dims


def _frontier(parsed: ParsedExperiment, evaluations: list[Evaluation]) -> list[int]:
    """Evaluations no other one beats on every objective KPI and bounded constraint KPI (the evaluated frontier)."""
    dims = _frontier_dims(parsed)
    points = [(e.index, [dims[k] * e.kpis.get(k, 0.0) for k in dims]) for e in evaluations if e.feasible]
    front = []
    for index, p in points:
        dominated = any(all(a <= b for a, b in zip(q, p, strict=True)) and q != p for _, q in points)
        if not dominated:
            front.append(index)
    return front


def _suggest(parsed: ParsedExperiment, trial: Any) -> Decision:
    decision: Decision = {}
    for name, v in parsed.block.variables.items():
        if v.values is not None:
            decision[name] = v.value(trial.suggest_categorical(name, sorted(set(v.values))))
        elif v.integer:
            decision[name] = trial.suggest_int(name, math.ceil(v.low or 0.0), math.floor(v.high or 0.0))
        else:
            decision[name] = trial.suggest_float(name, float(v.low or 0.0), float(v.high or 0.0))
    return decision


def _space_size(parsed: ParsedExperiment) -> float:
    size = 1.0
    for v in parsed.block.variables.values():
        if v.values is not None:
            size *= len(set(v.values))
        elif v.integer:
            size *= math.floor(v.high or 0.0) - math.ceil(v.low or 0.0) + 1
        else:
            return math.inf
    return size


def _optimise(
    parsed: ParsedExperiment, evaluator: Evaluator, batch: int, progress: Callable[[int, int], None] | None
) -> str:
    """Ask Optuna's TPE for decisions in batches, evaluate them with common random numbers, tell it the results."""
    block = parsed.block
    if _space_size(parsed) <= block.budget:
        names = list(block.variables)
        values = []
        for v in block.variables.values():
            if v.values is not None:
                values.append(sorted({v.value(x) for x in v.values}))
            else:
                values.append(list(range(math.ceil(v.low or 0.0), math.floor(v.high or 0.0) + 1)))
        import itertools

        everything = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
        for start in range(0, len(everything), max(batch, 8)):
            evaluator.evaluate(everything[start : start + max(batch, 8)])
            if progress:
                progress(len(evaluator.order), len(everything))
        return "exhaustive"
    import optuna  # seconds to import: only an optimisation needs it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=block.seed,
        n_startup_trials=max(2, min(10, block.budget // 3)),
    )
    study = optuna.create_study(direction=block.objective.sense, sampler=sampler)
    attempts = 0
    while len(evaluator.order) < block.budget and attempts < 20 * block.budget:
        size = min(batch, block.budget - len(evaluator.order))
        trials = [study.ask() for _ in range(size)]
        attempts += size
        decisions = [_suggest(parsed, t) for t in trials]
        for trial, evaluation in zip(trials, evaluator.evaluate(decisions), strict=True):
            for k, violation in enumerate(evaluator.violations(evaluation)):
                trial.set_constraint(f"constraint_{k}", violation)
            study.tell(trial, evaluation.objective)
        if progress:
            progress(len(evaluator.order), block.budget)
    return "optuna-tpe"


def _sensitivity(
    parsed: ParsedExperiment, evaluator: Evaluator, progress: Callable[[int, int], None] | None
) -> tuple[list[SensitivityRow], str]:
    """One variable at a time from the centre to its low and high value (paired with the centre); with
    `method: sobol`, Sobol indices from SALib's Saltelli sample as well."""
    block = parsed.block
    centre = parsed.centre()
    decisions = [centre]
    for name, v in block.variables.items():
        low, high = v.extremes()
        decisions += [{**centre, name: low}, {**centre, name: high}]
    evaluated = evaluator.evaluate(decisions)
    if progress:
        progress(len(evaluator.order), len(decisions))
    middle = evaluated[0]
    rows = []
    for k, (name, _) in enumerate(block.variables.items()):
        low_e, high_e = evaluated[1 + 2 * k], evaluated[2 + 2 * k]
        lo, hi = compare(low_e, middle), compare(high_e, middle)
        rows.append(
            SensitivityRow(
                name,
                float(low_e.decision[name]),
                float(high_e.decision[name]),
                lo.mean,
                (lo.low, lo.high),
                hi.mean,
                (hi.low, hi.high),
                abs(hi.mean - lo.mean),
            )
        )
    method = "one_at_a_time"
    if block.method == "sobol":
        indices = _sobol(parsed, evaluator)
        rows = [replace(r, first_order=indices[r.variable][0], total_order=indices[r.variable][1]) for r in rows]
        method = "sobol"
    rows.sort(key=lambda r: -r.swing)
    return rows, method


def _sobol(parsed: ParsedExperiment, evaluator: Evaluator) -> dict[str, tuple[float, float]]:
    """First-order and total Sobol indices of the objective's mean (SALib: Saltelli sample, Sobol analysis)."""
    from SALib.analyze import sobol as sobol_analyze  # type: ignore[import-untyped]
    from SALib.sample import sobol as sobol_sample  # type: ignore[import-untyped]

    names = list(parsed.block.variables)
    bounds = [list(map(float, parsed.block.variables[n].extremes())) for n in names]
    problem = {"num_vars": len(names), "names": names, "bounds": bounds}
    sample = sobol_sample.sample(problem, parsed.block.samples, calc_second_order=False, seed=parsed.block.seed)
    decisions = [
        {n: parsed.block.variables[n].value(float(x)) for n, x in zip(names, row, strict=True)} for row in sample
    ]
    evaluated = evaluator.evaluate(decisions)
    y = np.asarray([e.mean for e in evaluated])
    analysis = sobol_analyze.analyze(problem, y, calc_second_order=False, seed=parsed.block.seed)
    return {n: (float(analysis["S1"][i]), float(analysis["ST"][i])) for i, n in enumerate(names)}
