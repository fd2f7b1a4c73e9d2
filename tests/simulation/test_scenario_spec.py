"""Bad study specs are refused with messages that name the line and the problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from graph.store import GraphStore
from simulation.errors import SpecError
from simulation.scenario import StudyLimits, check_limits, parse_spec, plan_study, read_spec, slice_roots
from simulation.slice import load_slice

BUNDLED = Path(__file__).resolve().parents[2] / "simulation" / "scenarios"

GOOD = """\
name: outage study
horizon_days: 120
replications: 3
kpis:
  - throughput
  - {name: fill_rate, threshold_below: 0.9}
scenarios:
  - name: outage
    interventions:
      - kind: supplier_outage
        target: {uids: [sup-0]}
        start_day: 10
        duration_days: 30
"""


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_spec(textwrap.dedent(text), "study.yaml")
    return caught.value


def test_a_good_spec_parses() -> None:
    """The reference spec validates; intervention windows become [start, end) in days."""
    parsed = parse_spec(GOOD, "study.yaml")
    outage = parsed.spec.scenarios[0].interventions[0]
    assert outage.bounds(parsed.spec.horizon_days) == (10, 40)
    assert parsed.line_of(("scenarios", 0, "interventions", 0, "start_day")) == 12


def test_unknown_kpi_is_refused_naming_its_line() -> None:
    """A KPI that does not exist: its line, and the KPIs that do."""
    error = _error(GOOD.replace("  - throughput", "  - througput"))
    assert "line 5" in str(error) and "'througput'" in str(error) and "fill_rate" in str(error)


def test_negative_horizon_is_refused_naming_its_line() -> None:
    """horizon_days must be positive."""
    error = _error(GOOD.replace("horizon_days: 120", "horizon_days: -5"))
    assert "line 2: horizon_days" in str(error) and "greater than 0" in str(error)


def test_intervention_outside_the_horizon_is_refused() -> None:
    """An outage starting after the horizon, or running past it, names the field's line."""
    late = _error(GOOD.replace("start_day: 10", "start_day: 200"))
    assert "line 12: scenarios.0.interventions.0.start_day" in str(late) and "outside the horizon" in str(late)
    long = _error(GOOD.replace("duration_days: 30", "duration_days: 500"))
    assert "line 13: scenarios.0.interventions.0.duration_days" in str(long) and "after the horizon" in str(long)


def test_unknown_fields_and_kinds_are_refused() -> None:
    """A misspelt field or intervention kind is named with its line."""
    error = _error(GOOD.replace("factor_x", "").replace("start_day: 10", "start_dy: 10"))
    assert "line 12" in str(error) and "start_dy" in str(error)
    kind = _error(GOOD.replace("supplier_outage", "supplier_strike"))
    assert "line 10" in str(kind) and "supplier_strike" in str(kind)


def test_yaml_syntax_error_names_the_line() -> None:
    """Broken YAML reports the line where it broke."""
    error = _error("name: x\nkpis: [throughput\nscenarios: []\n")
    assert "line" in str(error) and "not valid YAML" in str(error)


def test_unknown_uid_is_refused_naming_its_line(enterprise_store: GraphStore) -> None:
    """A target uid the twin does not have is refused when the study is planned against the graph."""
    parsed = parse_spec(GOOD.replace("uids: [sup-0]", "uids: [sup-0, sup-404]"), "study.yaml")
    twin = load_slice(enterprise_store)
    with pytest.raises(SpecError) as caught:
        plan_study(parsed, twin, enterprise_store)
    assert "line 11" in str(caught.value) and "'sup-404'" in str(caught.value)
    roots = parse_spec(GOOD.replace("name: outage study\n", "name: s\nslice: {roots: [nope-1]}\n"), "study.yaml")
    with pytest.raises(SpecError) as caught:
        slice_roots(roots, enterprise_store)
    assert "line 2: slice.roots" in str(caught.value) and "'nope-1'" in str(caught.value)


def test_bad_query_field_is_refused(enterprise_store: GraphStore) -> None:
    """A query on a field the class does not have is refused with the ontology's message and the line."""
    parsed = parse_spec(
        GOOD.replace("{uids: [sup-0]}", "{class: Supplier, where: [{field: colour, value: red}]}"), "study.yaml"
    )
    with pytest.raises(SpecError) as caught:
        plan_study(parsed, load_slice(enterprise_store), enterprise_store)
    assert "line 11" in str(caught.value) and "colour" in str(caught.value)


def test_study_too_big_for_the_limits_is_refused() -> None:
    """replications x runs x steps x agents over the configured limit names the replications line."""
    parsed = parse_spec(GOOD, "study.yaml")
    with pytest.raises(SpecError) as caught:
        check_limits(parsed, agents=1000, limits=StudyLimits(max_agent_steps=500_000))
    message = str(caught.value)
    assert "line 3: replications" in message and "too big" in message and "720,000 agent-steps" in message
    with pytest.raises(SpecError, match="exceed the limit of 2"):
        check_limits(parsed, agents=10, limits=StudyLimits(max_replications=2))
    check_limits(parsed, agents=10, limits=StudyLimits())


def test_queries_with_within_select_people_of_a_site(enterprise_store: GraphStore) -> None:
    """`within` a site found by a query keeps only the twins inside it (people of Plant B's team)."""
    spec = GOOD.replace(
        "kind: supplier_outage\n        target: {uids: [sup-0]}",
        "kind: workforce_change\n        target: {class: Employee, within: {class: Site, "
        "where: [{field: name, value: Plant B}]}}\n        attrition_add: 0.15",
    )
    parsed = parse_spec(spec, "study.yaml")
    twin = load_slice(enterprise_store)
    plan = plan_study(parsed, twin, enterprise_store)
    persons = plan.scenarios[1].workforce[0].persons
    assert persons and all(twin.within(p, "site-plant-b") for p in persons)
    assert not any(twin.within(p, "site-plant-a") for p in persons)


@pytest.mark.parametrize("path", sorted(BUNDLED.glob("*.yaml")), ids=lambda p: p.stem)
def test_bundled_scenarios_are_valid_and_resolve_on_a_sample_sized_enterprise(
    path: Path, enterprise_store: GraphStore
) -> None:
    """Every bundled example parses and all its queries find twins in the test enterprise."""
    parsed = read_spec(path)
    plan = plan_study(parsed, load_slice(enterprise_store), enterprise_store)
    assert len(plan.scenarios) >= 2 and plan.replications == 30 and plan.steps == 365
