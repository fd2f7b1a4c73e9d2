"""Experiments: an optimisation whose answer is known by hand, grids, sensitivity, and bad specs refused at the line.

The synthetic enterprise: one line with plenty of machine capacity, limited by labour only: 4 people on the first
shift, each making 8 units a day (1 labour hour a unit, no overtime, never absent, never leaving); demand is Poisson
with 100 units a day; an order not shipped within 2 days is lost. A second shift of h people adds 8h units a day at
a labour cost of 8 x 40 = 320 a day each. Each lost unit costs 200. With h = 8 the line makes 96 a day and loses
about 4 a day (about 290,000 a year), more than a ninth person costs (116,800 a year); with h = 9 it makes 104 and
loses almost nothing, so a tenth person only adds cost: the best second-shift size is 9.
"""

from __future__ import annotations

import datetime as dt

import pytest

from simulation.errors import ExperimentInfeasible, SpecError
from simulation.experiment import Evaluator, compare, run_experiment
from simulation.experiment_spec import ParsedExperiment, parse_experiment
from simulation.runner import SerialExecutor
from simulation.scenario import StudyPlan, plan_study
from simulation.slice import AssetTwin, EnterpriseSlice, PersonTwin, ProcessTwin, ProductTwin


def synthetic() -> EnterpriseSlice:
    """The one-line, labour-bound enterprise of the module docstring."""
    people = {f"emp-{i}": PersonTwin(f"emp-{i}", f"Worker {i}", 40.0, {}, ("press",), None) for i in range(4)}
    return EnterpriseSlice(
        read_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        roots=(),
        persons=people,
        assets={"press": AssetTwin("press", "Press", "Machine", 1000.0, 1e12, 1.0, "operational", None)},
        processes={"line": ProcessTwin("line", "Line", "Process", 1000.0, None, (), ("widget",), ("press",), (), ())},
        products={"widget": ProductTwin("widget", "Widget", "W-1", 10.0, None)},
        classes={"line": "Process", "press": "Machine", "widget": "Product", **dict.fromkeys(people, "Employee")},
    )


SPEC = """\
name: second shift size
horizon_days: 365
replications: 10
seed: 5
defaults: {{absence_rate: 0, annual_attrition: 0, overtime_cap: 0, labour_share: 0.032, demand_utilisation: 0.1,
           patience_days: 2}}
kpis: [lost_sales, labour_cost, fill_rate]
scenarios:
  - name: second shift
    interventions:
      - kind: workforce_change
        target: {{uids: [emp-0]}}
        hires: ${{shift}}
experiment:
  kind: {kind}
  variables:
    shift: {{low: 0, high: 16, integer: true}}
  objective:
    minimize: {{lost_sales: 200, labour_cost: 1}}
  budget: {budget}
  batch: 3
  seed: 11
{constraints}"""


def _experiment(
    kind: str = "optimize", budget: int = 12, constraints: str = "", high: int = 16
) -> tuple[ParsedExperiment, EnterpriseSlice, StudyPlan]:
    text = SPEC.format(kind=kind, budget=budget, constraints=constraints).replace("high: 16", f"high: {high}")
    parsed = parse_experiment(text, "shift.yaml")
    twin = synthetic()
    plan = plan_study(parsed.study, twin, None)
    return parsed, twin, plan


def test_optimisation_finds_the_known_best_second_shift_with_paired_confidence() -> None:
    """TPE finds h = 9 in 12 of 17 decisions; CRN make 8 and 10 distinguishably worse than 9, pairwise."""
    parsed, twin, plan = _experiment()
    result = run_experiment(parsed, twin, plan, SerialExecutor())
    assert result.sampler == "optuna-tpe" and len(result.evaluations) == 12
    best = result.best_evaluation
    assert best is not None and best.decision == {"shift": 9}
    assert best.ci_low <= best.mean <= best.ci_high
    assert result.best_vs_baseline is not None and result.best_vs_baseline.high < 0  # far better than no 2nd shift
    assert result.runs == 13 * 10  # the baseline and 12 decisions, 10 replications each
    evaluator = Evaluator(parsed, twin, plan, SerialExecutor())
    assert evaluator.seeds == result.seeds
    seven, eight, nine, ten = evaluator.evaluate([{"shift": 7}, {"shift": 8}, {"shift": 9}, {"shift": 10}])
    assert nine.values == best.values  # the same seeds: the same numbers
    assert compare(eight, nine).low > 0 and compare(ten, nine).low > 0  # both worse than 9, and the CIs say so
    paired = compare(seven, eight)  # two short-staffed lines: the same demand days hurt both
    assert paired.low > 0 and paired.high - paired.mean < paired.unpaired_half_width / 2
    assert nine.index in result.frontier or best.index in result.frontier


def test_a_cost_constraint_moves_the_optimum_and_an_impossible_one_is_refused_at_its_line() -> None:
    """Labour cost at most 1.4 million a year allows 7 people at most (8 cost 1,401,600)."""
    parsed, twin, plan = _experiment(
        budget=20, constraints="  constraints:\n    - {kpi: labour_cost, at_most: 1400000}\n", high=10
    )
    result = run_experiment(parsed, twin, plan, SerialExecutor())
    assert result.sampler == "exhaustive" and len(result.evaluations) == 11
    assert result.best_evaluation is not None and result.best_evaluation.decision == {"shift": 7}
    assert all(not e.feasible for e in result.evaluations if e.decision["shift"] >= 8)
    parsed, twin, plan = _experiment(
        budget=3, constraints="  constraints:\n    - {kpi: labour_cost, at_most: 100000}\n"
    )
    with pytest.raises(ExperimentInfeasible, match=r"line 24: experiment\.constraints\.0: no evaluated decision"):
        run_experiment(parsed, twin, plan, SerialExecutor())


def test_grid_and_sensitivity() -> None:
    """A grid evaluates every grid point; one-at-a-time sensitivity moves the objective with the variable."""
    parsed, twin, plan = _experiment(kind="grid")
    result = run_experiment(parsed, twin, plan, SerialExecutor())
    assert [e.decision["shift"] for e in result.evaluations] == [0, 4, 8, 12, 16]
    assert result.best_evaluation is not None and result.best_evaluation.decision == {"shift": 8}  # 9 is off the grid
    parsed, twin, plan = _experiment(kind="sensitivity")
    result = run_experiment(parsed, twin, plan, SerialExecutor())
    (row,) = result.sensitivity
    assert row.variable == "shift" and (row.low_value, row.high_value) == (0, 16)
    assert row.low_ci[0] > 0 and row.high_ci[0] > 0  # 0 people lose sales, 16 cost too much: both worse than 8
    assert row.swing == pytest.approx(abs(row.high_diff - row.low_diff))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("hires: ${shift}", "hires: ${shifts}"), r"line 13: unknown decision variable \$\{shifts\}"),
        (("{low: 0, high: 16, integer: true}", "{low: 5, high: 5}"), r"line 17: experiment\.variables\.shift: .*empty"),
        (("{low: 0, high: 16, integer: true}", "{values: []}"), r"line 17: .*empty bounds"),
        (("lost_sales: 200,", "lost_sale: 200,"), r"line 19: .*KPI 'lost_sale' is not measured"),
        (
            ("seed: 11\n", "seed: 11\n  constraints: [{kpi: fill_rate, at_least: 0.9, at_most: 0.5}]\n"),
            r"line 23: .*infeasible: at_least 0.9 is above at_most 0.5",
        ),
        (("seed: 5", "seed: ${shift}"), r"line 4: \$\{shift\} is outside `scenarios:`"),
        (("kind: optimize", "kind: anneal"), r"line 15: experiment\.kind: 'anneal' is not allowed"),
        (("uids: [emp-0]", "uids: [emp-99]"), r"line 12: .*unknown twin uid"),
    ],
)
def test_bad_experiment_specs_are_refused_at_their_line(change: tuple[str, str], message: str) -> None:
    """Unknown variables, empty bounds, unmeasured KPIs, infeasible constraints, misplaced placeholders."""
    text = SPEC.format(kind="optimize", budget=12, constraints="").replace(*change)
    with pytest.raises(SpecError, match=message):
        parsed = parse_experiment(text, "shift.yaml")
        plan_study(parsed.study, synthetic(), None)


def test_sobol_indices_from_salib() -> None:
    """With one variable, it explains (nearly) all the objective's variance: first-order and total indices near 1."""
    text = SPEC.format(kind="sensitivity", budget=12, constraints="  method: sobol\n  samples: 4\n")
    parsed = parse_experiment(
        text.replace("horizon_days: 365", "horizon_days: 120").replace("replications: 10", "replications: 3")
    )
    twin = synthetic()
    result = run_experiment(parsed, twin, plan_study(parsed.study, twin, None), SerialExecutor())
    (row,) = result.sensitivity
    assert result.sampler == "sobol" and row.first_order is not None and row.total_order is not None
    assert row.total_order > 0.5 and row.first_order > 0.5
