"""IT outages, cyber incidents, machine failures, staffing, skill shortages and process changes, each on a small
hand-built twin graph whose effect can be computed by hand, and together on the sample enterprise with CIs.

The hand-built enterprise: line A (100 units a day) needs the MES application, which runs on the database server
(proc-a -dependsOn-> app-mes -dependsOn-> sys-db); line B (50 a day) needs no IT. Demand is ten times capacity, so a
line makes exactly its capacity every day it can; machines never fail on their own (MTBF 10^12 hours) and people are
never absent, so every number below is arithmetic. A project of 80 hours, due in 20 working days, is worked on by
one qualified person (8 hours a day) and one without the skill it needs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pytest

from graph.embedded import stop_embedded
from graph.model import Link, Twin
from graph.store import GraphStore
from ontology.core import load_core
from simulation.calibration import calibrate
from simulation.errors import SpecError
from simulation.kpis import measure
from simulation.model import EnterpriseModel
from simulation.runner import SerialExecutor, run_study
from simulation.scenario import parse_spec, plan_study
from simulation.slice import EnterpriseSlice, load_slice
from tests.simulation.enterprise_graph import build_enterprise, load_enterprise

HORIZON = 30
TODAY = dt.datetime.now(dt.UTC).date()


def hand_built() -> tuple[list[Twin], list[Link]]:
    """The small enterprise of the module docstring."""
    never = {"mtbfHours": 1e12}
    twins = [
        Twin("proc-a", "Process", {"name": "Line A", "throughputPerDay": 100.0, "cycleTimeHours": 2.0}),
        Twin("proc-b", "Process", {"name": "Line B", "throughputPerDay": 50.0}),
        Twin("prod-a", "Product", {"name": "Alpha", "sku": "A-1"}),
        Twin("prod-b", "Product", {"name": "Beta", "sku": "B-1"}),
        Twin("mach-a", "Machine", {"name": "Press A", **never}),  # MTTR from its two repairs on record: 6 h
        Twin("mach-b", "Machine", {"name": "Press B", **never, "mttrHours": 3.0}),
        Twin("sys-db", "ITSystem", {"name": "Database server", "recoveryTimeHours": 12.0}),
        Twin("app-mes", "Application", {"name": "MES"}),
        Twin("app-crm", "Application", {"name": "CRM"}),
        Twin("cap-x", "Capability", {"name": "Make to order"}),
        Twin("skill-py", "Skill", {"name": "Python"}),
        Twin(
            "prj-1",
            "Project",
            {
                "name": "Upgrade",
                "effort": "PT80H",
                "startDate": TODAY.isoformat(),
                "endDate": (TODAY + dt.timedelta(days=28)).isoformat(),
            },
        ),
        Twin("emp-1", "Employee", {"name": "Ada", "employeeId": "E1", "capacityHoursPerWeek": 40.0, "salary": 83200.0}),
        Twin("emp-2", "Employee", {"name": "Bob", "employeeId": "E2", "capacityHoursPerWeek": 40.0}),
        Twin("emp-3", "Employee", {"name": "Cy", "employeeId": "E3", "capacityHoursPerWeek": 40.0}),
    ]
    for e in range(2):
        at = dt.datetime(2026, 1, 5 + 20 * e, 8)
        twins.append(
            Twin(
                f"repair-a-{e}",
                "MaintenanceEvent",
                {
                    "name": f"Repair {e}",
                    "maintenanceType": "corrective",
                    "scheduledAt": at.isoformat(),
                    "completedAt": (at + dt.timedelta(hours=6)).isoformat(),
                    "downtimeHours": 6.0,
                },
            )
        )
    links = [
        Link("produces", "proc-a", "prod-a"),
        Link("produces", "proc-b", "prod-b"),
        Link("requires", "proc-a", "mach-a"),
        Link("requires", "proc-b", "mach-b"),
        Link("dependsOn", "proc-a", "app-mes"),
        Link("dependsOn", "app-mes", "sys-db"),
        Link("dependsOn", "app-crm", "sys-db"),
        Link("supports", "app-crm", "prj-1"),
        Link("realizes", "proc-a", "cap-x"),
        Link("needsSkill", "prj-1", "skill-py"),
        Link("hasSkill", "emp-1", "skill-py", {"level": 4}),
        Link("hasSkill", "emp-2", "skill-py", {"level": 2}),
        Link("assignedTo", "emp-1", "prj-1"),
        Link("assignedTo", "emp-3", "prj-1"),
        Link("maintains", "repair-a-0", "mach-a"),
        Link("maintains", "repair-a-1", "mach-a"),
    ]
    return twins, links


@pytest.fixture(scope="module")
def hand_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphStore]:
    """The hand-built enterprise in its own embedded graph."""
    path = tmp_path_factory.mktemp("hand-graph") / "graph"
    store = GraphStore.open(f"falkordb+embedded://{path}", load_core())
    try:
        twins, links = hand_built()
        store.upsert_twins(twins, actor="test", source="hand-built")
        store.upsert_links(links, actor="test", source="hand-built")
        yield store
    finally:
        store.close()
        stop_embedded(path)


@pytest.fixture(scope="module")
def hand(hand_store: GraphStore) -> EnterpriseSlice:
    """The hand-built enterprise as a slice."""
    return load_slice(hand_store)


SPEC = """\
name: hand
horizon_days: 30
replications: 2
defaults: {{absence_rate: 0, annual_attrition: 0, demand_utilisation: 10, overtime_cap: 0}}
kpis:
  - {{name: throughput, label: a, of: {{uids: [proc-a]}}}}
  - {{name: throughput, label: b, of: {{uids: [proc-b]}}}}
  - {{name: downtime_hours, label: down_a, of: {{uids: [proc-a]}}}}
  - {{name: downtime_hours, label: down_b, of: {{uids: [proc-b]}}}}
  - {{name: downtime_hours, label: down_capability, of: {{uids: [cap-x]}}}}
  - projects_late
  - labour_cost
scenarios:
  - name: change
    interventions:
{interventions}
"""


def _run(
    hand: EnterpriseSlice, store: GraphStore, interventions: str
) -> tuple[EnterpriseModel, EnterpriseModel, dict[str, float], dict[str, float]]:
    """Baseline and the scenario on one seed: the models and their KPI values."""
    indented = "\n".join("      " + line for line in interventions.strip().splitlines())
    parsed = parse_spec(SPEC.format(interventions=indented), "hand.yaml")
    plan = plan_study(parsed, hand, store)
    out = []
    for scenario in plan.scenarios:
        model = EnterpriseModel(calibrate(hand, plan.defaults, scenario.overrides), scenario, HORIZON, 1, 7).run()
        out.append((model, {k.key: measure(model, k)[0] for k in plan.kpis}))
    (base, base_kpis), (changed, kpis) = out
    return base, changed, base_kpis, kpis


def _line(model: EnterpriseModel, uid: str) -> np.ndarray:
    return model.produced[:, model.process_index[uid]]


def test_slice_reads_it_systems_capabilities_projects_and_dependencies(hand: EnterpriseSlice) -> None:
    """IT systems are not machines; dependencies, projects (effort, due date, skills, people) are read."""
    assert set(hand.it_systems) == {"sys-db", "app-mes", "app-crm"} and "sys-db" not in hand.assets
    assert hand.depends_on["proc-a"] == ("app-mes", "mach-a") and hand.depends_on["app-mes"] == ("sys-db",)
    assert hand.depends_on["cap-x"] == ("proc-a",) and hand.depends_on["prj-1"] == ("app-crm",)
    assert hand.dependents({"sys-db"}) == {"app-mes", "app-crm", "proc-a", "cap-x", "prj-1"}
    project = hand.projects["prj-1"]
    assert project.effort_hours == 80.0 and project.skills == ("skill-py",) and project.assignees == ("emp-1", "emp-3")
    calibration = calibrate(hand)
    assert calibration.projects[0].due_day == 20.0 and calibration.projects[0].remaining_hours == 80.0
    sources = {(s.twin, s.parameter): s for s in calibration.sources}
    assert sources[("sys-db", "recovery_hours")].source == "twin"
    assert sources[("app-mes", "recovery_hours")].source == "default"
    assert sources[("mach-a", "mttr_hours")].source == "history" and sources[("mach-a", "mttr_hours")].value == 6.0
    assert sources[("emp-1", "hourly_rate")].value == 40.0 and sources[("emp-1", "hourly_rate")].source == "twin"


def test_it_outage_two_dependsOn_hops_up_stops_the_line_for_exactly_the_window(
    hand: EnterpriseSlice, hand_store: GraphStore
) -> None:
    """sys-db down days 10-19 (no recovery): line A makes nothing on exactly those days, line B is untouched."""
    base, changed, base_kpis, kpis = _run(
        hand,
        hand_store,
        "- {kind: it_outage, target: {uids: [sys-db]}, start_day: 10, duration_days: 10, recovery_hours: 0}",
    )
    assert np.all(_line(base, "proc-a") == 100.0)
    made = _line(changed, "proc-a")
    assert np.all(made[10:20] == 0.0) and np.all(made[:10] == 100.0) and np.all(made[20:] == 100.0)
    assert np.array_equal(_line(changed, "proc-b"), _line(base, "proc-b"))
    assert kpis["a"] == base_kpis["a"] - 10 * 100
    assert kpis["down_a"] == 80.0 and kpis["down_capability"] == 80.0 and kpis["down_b"] == 0.0


def test_it_outage_recovers_in_the_systems_recovery_time(hand: EnterpriseSlice, hand_store: GraphStore) -> None:
    """The server's recoveryTimeHours (12 h = 1.5 working days of line A) follow the window."""
    _, changed, _, kpis = _run(
        hand, hand_store, "- {kind: it_outage, target: {uids: [sys-db]}, start_day: 10, duration_days: 10}"
    )
    made = _line(changed, "proc-a")
    assert np.all(made[10:21] == 0.0) and made[21] == 50.0 and made[22] == 100.0
    assert kpis["down_a"] == 92.0


def test_cyber_incident_spreads_with_its_probability(hand: EnterpriseSlice, hand_store: GraphStore) -> None:
    """Hit on the CRM: without spread only the project it supports pauses; with certain spread the server and MES
    fall too and line A stops."""
    incident = (
        "- {{kind: cyber_incident, target: {{uids: [app-crm]}}, start_day: 2, duration_days: 10, recovery_hours: 0, "
        "spread_probability: {p}}}"
    )
    base, contained, _, kpis = _run(hand, hand_store, incident.format(p=0.0))
    assert np.array_equal(_line(contained, "proc-a"), _line(base, "proc-a")) and kpis["down_a"] == 0.0
    worked = contained.project_hours[:, 0]
    assert np.all(worked[2:12] == 0.0) and worked[0] == 8.0
    # 16 h before the incident, 64 h from day 12 at 8 h a day: done on day 19, the last day before it is due
    assert contained.project_done[0] == 19 and kpis["projects_late"] == 0.0
    _, spread, _, kpis = _run(hand, hand_store, incident.format(p=1.0))
    assert spread.it_hit == {"app-crm", "sys-db", "app-mes"}
    assert np.all(_line(spread, "proc-a")[2:12] == 0.0) and kpis["down_a"] == 80.0


def test_machine_failure_breakdown_history_mttr_and_preventive_maintenance(
    hand: EnterpriseSlice, hand_store: GraphStore
) -> None:
    """A 16 h breakdown stops line B two days; press A's breakdown lasts its historical MTTR (6 of 8 hours); servicing
    press B every 5 days for 4 hours costs 5 half days."""
    base, changed, base_kpis, kpis = _run(
        hand,
        hand_store,
        """
- {kind: machine_failure, target: {uids: [mach-b]}, start_day: 3, breakdown: true, repair_hours: 16}
- {kind: machine_failure, target: {uids: [mach-a]}, start_day: 3, breakdown: true}
""",
    )
    b = _line(changed, "proc-b")
    assert b[2] == 50.0 and b[3] == 0.0 and b[4] == 0.0 and b[5] == 50.0
    assert kpis["down_b"] == 16.0 and kpis["b"] == base_kpis["b"] - 100.0
    assert _line(changed, "proc-a")[3] == 25.0 and kpis["down_a"] == 6.0
    _, serviced, _, kpis = _run(
        hand,
        hand_store,
        "- {kind: machine_failure, target: {uids: [mach-b]}, preventive_every_days: 5, preventive_hours: 4}",
    )
    assert kpis["down_b"] == 20.0 and list(np.flatnonzero(_line(serviced, "proc-b") < 50.0)) == [5, 10, 15, 20, 25]
    assert serviced.failure_probability[serviced.asset_index["mach-b"]] < base.failure_probability[0]


def test_process_change_cycle_time_yield_and_routing(hand: EnterpriseSlice, hand_store: GraphStore) -> None:
    """Line A's cycle time doubled (2 h -> 4 h) for 10 days halves its output there; a yield of 0.8 on line B;
    routing line B's product to line A empties line B in the window."""
    _, changed, base_kpis, kpis = _run(
        hand,
        hand_store,
        """
- {kind: process_change, target: {uids: [proc-a]}, cycle_time_hours: 4, start_day: 10, duration_days: 10}
- {kind: process_change, target: {uids: [proc-b]}, yield_rate: 0.8}
""",
    )
    assert np.all(_line(changed, "proc-a")[10:20] == 50.0) and kpis["a"] == base_kpis["a"] - 500.0
    assert np.allclose(_line(changed, "proc-b"), 40.0) and kpis["b"] == pytest.approx(base_kpis["b"] * 0.8)
    _, routed, _, _ = _run(
        hand,
        hand_store,
        "- {kind: process_change, target: {uids: [proc-b]}, route_to: {uids: [proc-a]}, start_day: 5, end_day: 15}",
    )
    assert np.all(_line(routed, "proc-b")[5:15] == 0.0) and np.all(_line(routed, "proc-b")[15:] == 50.0)
    assert np.allclose(_line(routed, "proc-a"), 100.0)
    assert routed.shipped[5:15, routed.product_index["prod-b"]].sum() > 0  # line A made Beta meanwhile


@pytest.mark.parametrize(
    ("change", "done_day", "late"),
    [
        ("- {kind: staffing, action: leave, target: {uids: [emp-1]}, start_day: 5}", None, 1.0),
        ("- {kind: staffing, action: reassign, target: {uids: [emp-2]}, to: {uids: [prj-1]}}", 4, 0.0),
        (
            "- {kind: staffing, action: train, target: {uids: [emp-3]}, skill: skill-py, training_days: 5}",
            7,
            0.0,
        ),
        ("- {kind: staffing, action: hire, count: 1, skill: skill-py}", 4, 0.0),
        ("- {kind: skill_shortage, target: {uids: [skill-py]}, share: 1.0, start_day: 0, end_day: 10}", 19, 0.0),
        ("- {kind: skill_shortage, target: {uids: [skill-py]}, share: 1.0, start_day: 0, end_day: 11}", 20, 1.0),
    ],
)
def test_staffing_and_skill_shortage_move_the_project(
    hand: EnterpriseSlice, hand_store: GraphStore, change: str, done_day: int | None, late: float
) -> None:
    """80 hours at 8 h a day finish on day 9; leavers, moves, training, hires and shortages shift that by hand."""
    base, changed, base_kpis, kpis = _run(hand, hand_store, change)
    assert base.project_done[0] == 9 and base_kpis["projects_late"] == 0.0
    assert changed.project_done[0] == (HORIZON + 1 if done_day is None else done_day)
    assert kpis["projects_late"] == late
    if "hire" in change:  # a hire is paid from day 0 at the default rate (40 an hour, 8 hours, 30 days)
        assert kpis["labour_cost"] == base_kpis["labour_cost"] + 8 * 40 * 30
    assert base_kpis["labour_cost"] == 3 * 8 * 40 * 30


def test_new_interventions_refuse_targets_of_the_wrong_kind(hand: EnterpriseSlice, hand_store: GraphStore) -> None:
    """An IT outage of a machine, a shortage of a line, training in an unknown skill: errors at the line."""
    for bad, message in (
        ("- {kind: it_outage, target: {uids: [mach-a]}, start_day: 1}", "selects no IT system"),
        ("- {kind: skill_shortage, target: {uids: [proc-a]}, share: 0.5}", "selects no skill"),
        ("- {kind: staffing, action: train, target: {uids: [emp-3]}, skill: skill-none}", "unknown skill uid"),
        ("- {kind: process_change, target: {uids: [proc-b]}, cycle_time_hours: 3}", "no cycleTimeHours"),
    ):
        with pytest.raises(SpecError, match=message) as caught:
            _run(hand, hand_store, bad)
        assert "line 16" in str(caught.value)
    with pytest.raises(SpecError, match=r"line 16: .*`reassign` needs `to:`"):
        _run(hand, hand_store, "- {kind: staffing, action: reassign, target: {uids: [emp-1]}}")


# ------------------------------------------------------------------------------------------ the sample enterprise


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphStore]:
    """The simulation tests' sample enterprise plus an ERP application line 0 depends on and a project."""
    layout = build_enterprise()
    path = tmp_path_factory.mktemp("sample-it") / "graph"
    store = GraphStore.open(f"falkordb+embedded://{path}", load_core())
    try:
        load_enterprise(store, layout)
        store.upsert_twins(
            [
                Twin("app-erp", "Application", {"name": "ERP", "recoveryTimeHours": 8.0}),
                Twin("srv-erp", "ITSystem", {"name": "ERP host"}),
            ],
            actor="test",
            source="test",
        )
        store.upsert_links(
            [Link("dependsOn", "proc-0", "app-erp"), Link("hosts", "srv-erp", "app-erp")], actor="test", source="test"
        )
        yield store
    finally:
        store.close()
        stop_embedded(path)


SAMPLE = """\
name: enterprise-wide what-ifs
horizon_days: 120
replications: 4
seed: 3
kpis:
  - {name: throughput, label: line0, of: {uids: [proc-0]}}
  - {name: backlog, label: backlog0, of: {uids: [proc-0]}}
  - {name: throughput, label: line1, of: {uids: [proc-1]}}
  - {name: throughput, label: line2, of: {uids: [proc-2]}}
  - {name: downtime_hours, label: down0, of: {uids: [proc-0]}}
  - {name: downtime_hours, label: down1, of: {uids: [proc-1]}}
  - {name: labour_utilisation, label: skill2_use, of: {uids: [skill-2]}}
  - labour_cost
scenarios:
  - name: ERP host down
    interventions:
      - {kind: it_outage, target: {class: ITSystem, where: [{field: name, value: ERP host}]}, start_day: 30,
         duration_days: 5}
  - name: line 1 presses wear
    interventions:
      - {kind: machine_failure, target: {class: Machine, within: wc-1}, mtbf_factor: 0.1}
  - name: team 2 loses half its people
    interventions:
      - {kind: staffing, action: leave, target: {class: Employee, within: ou-team-2}, count: 4, start_day: 10}
  - name: line 1 new process at 70 % yield
    interventions:
      - {kind: process_change, target: {uids: [proc-1]}, yield_rate: 0.7, start_day: 20}
"""


def test_enterprise_wide_interventions_on_the_sample_enterprise(sample_store: GraphStore) -> None:
    """Each change hits what it should (CI of the paired difference away from zero) and spares the other lines."""
    twin = load_slice(sample_store)
    assert "srv-erp" in twin.it_systems and twin.dependents({"srv-erp"}) >= {"app-erp", "proc-0"}
    plan = plan_study(parse_spec(SAMPLE, "sample.yaml"), twin, sample_store)
    result = run_study(twin, plan, SerialExecutor())

    def diff(scenario: str, kpi: str) -> tuple[float, float, float]:
        s = result.summary(scenario, kpi)
        assert s.diff_mean is not None and s.diff_low is not None and s.diff_high is not None
        return s.diff_mean, s.diff_low, s.diff_high

    assert diff("ERP host down", "backlog0")[1] > 0 and diff("ERP host down", "down0")[1] > 0
    assert 5 * 8 <= diff("ERP host down", "down0")[0] <= 5 * 8 + 8  # less where a machine was down anyway
    assert diff("ERP host down", "line1") == (0.0, 0.0, 0.0)
    assert diff("line 1 presses wear", "down1")[1] > 0
    assert diff("line 1 presses wear", "line0") == (0.0, 0.0, 0.0)
    assert diff("team 2 loses half its people", "labour_cost")[2] < 0
    assert diff("team 2 loses half its people", "line2")[2] < 0
    assert diff("line 1 new process at 70 % yield", "line1")[2] < 0


def test_a_slice_around_a_line_holds_the_it_systems_it_needs_however_far(hand_store: GraphStore) -> None:
    """Around line A: its application and the server under it (two dependsOn hops), not the CRM that shares it."""
    around = load_slice(hand_store, roots=("proc-a",))
    assert {"app-mes", "sys-db"} <= set(around.it_systems) and "app-crm" not in around.it_systems
    assert around.dependents({"sys-db"}) >= {"app-mes", "proc-a"}
