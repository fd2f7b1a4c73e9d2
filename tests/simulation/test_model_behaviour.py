"""The enterprise model behaves as an enterprise does: outages starve their lines only, capacity helps, seeds rule."""

from __future__ import annotations

import numpy as np
import pytest

from graph.store import GraphStore
from simulation.calibration import ParameterOverride, calibrate
from simulation.model import EnterpriseModel
from simulation.runner import replication_seeds
from simulation.scenario import CapacityPlan, OutagePlan, ScenarioPlan
from simulation.slice import EnterpriseSlice, load_slice
from tests.simulation.enterprise_graph import EnterpriseLayout

STEPS = 150


@pytest.fixture(scope="module")
def twin(enterprise_store: GraphStore) -> EnterpriseSlice:
    """The whole small enterprise as a slice."""
    return load_slice(enterprise_store)


def _run(
    twin: EnterpriseSlice, plan: ScenarioPlan, seed: int, overrides: tuple[ParameterOverride, ...] = ()
) -> EnterpriseModel:
    return EnterpriseModel(calibrate(twin, overrides=overrides), plan, STEPS, 1, seed).run()


def test_slice_reads_the_network_of_lines(twin: EnterpriseSlice, enterprise_layout: EnterpriseLayout) -> None:
    """Every line comes with its machines, materials, products and suppliers; people staff the lines they operate."""
    assert sorted(twin.processes) == sorted(line.process for line in enterprise_layout.lines)
    for line in enterprise_layout.lines:
        process = twin.processes[line.process]
        assert set(process.machines) == set(line.machines)
        assert set(process.consumes) == set(line.materials)
        assert set(process.produces) == set(line.products)
    assert {(lane.supplier, lane.material) for lane in twin.lanes} == {
        (s, m) for m, suppliers in enterprise_layout.suppliers_of.items() for s in suppliers
    }
    calibration = calibrate(twin)
    staffed = {p.uid: p.processes for p in calibration.persons}
    for line in enterprise_layout.lines:
        assert all(staffed[person] == (line.process,) for person in line.people)


def test_calibration_says_where_each_parameter_came_from(twin: EnterpriseSlice) -> None:
    """Twin properties, history (orders, maintenance) and defaults are each named as the source."""
    calibration = calibrate(twin)
    counts = calibration.source_counts()
    assert counts["demand_per_day"] == {"history": 3}
    assert counts["mtbf_hours"].get("twin") and counts["mtbf_hours"].get("history")
    assert counts["capacity_per_day"] == {"twin": 3}
    assert counts["absence_rate"] == {"default": len(twin.persons)}
    by_twin = {(s.twin, s.parameter): s for s in calibration.sources}
    assert by_twin[("mach-0", "mtbf_hours")].source == "history"  # mach-0 has no mtbfHours, two repairs on record
    assert "MaintenanceEvent" in by_twin[("mach-0", "mtbf_hours")].detail


def test_outage_of_the_only_supplier_starves_its_line_and_nothing_else(
    twin: EnterpriseSlice, enterprise_layout: EnterpriseLayout
) -> None:
    """Line 0's sole supplier down for 40 days: line 0 makes less; lines 1 and 2 are exactly unchanged (CRN)."""
    material, supplier = enterprise_layout.sole_supplier(0)
    outage = ScenarioPlan("outage", outages=(OutagePlan(frozenset({supplier}), 20, 60),))
    for seed in replication_seeds(7, 3):
        base = _run(twin, ScenarioPlan("baseline"), seed)
        hit = _run(twin, outage, seed)
        j0 = base.process_index[enterprise_layout.lines[0].process]
        assert hit.produced[:, j0].sum() < base.produced[:, j0].sum() * 0.9
        assert hit.lost.sum() > base.lost.sum()
        k = base.material_index[material]
        assert hit.material_stock[55, k] < base.material_stock[55, k]
        for line in enterprise_layout.lines[1:]:
            j = base.process_index[line.process]
            assert np.array_equal(hit.produced[:, j], base.produced[:, j])
            for product in line.products:
                i = base.product_index[product]
                assert np.array_equal(hit.shipped[:, i], base.shipped[:, i])


def test_a_second_supplier_keeps_a_line_running_through_an_outage(twin: EnterpriseSlice) -> None:
    """Dual sourcing: when another supplier of the material exists, orders go there and output holds."""
    from dataclasses import replace

    from simulation.slice import SupplyLane

    lanes = (*twin.lanes, SupplyLane("sup-1", "mat-0", 7))  # sup-1 also supplies line 0's material
    dual = replace(twin, lanes=lanes)
    outage = ScenarioPlan("outage", outages=(OutagePlan(frozenset({"sup-0"}), 20, 60),))
    seed = replication_seeds(3, 1)[0]

    def line0(twin_slice: EnterpriseSlice, plan: ScenarioPlan) -> float:
        return float(_run(twin_slice, plan, seed).produced[:, 0].sum())

    single_loss = line0(twin, ScenarioPlan("b")) - line0(twin, outage)
    dual_loss = line0(dual, ScenarioPlan("b")) - line0(dual, outage)
    assert dual_loss < 0.25 * single_loss


def test_more_capacity_never_lowers_throughput_in_expectation(twin: EnterpriseSlice) -> None:
    """With demand above capacity, +50 % capacity raises mean throughput; it never lowers it in any replication."""
    lines = frozenset(twin.processes)
    more = ScenarioPlan("more", capacity=(CapacityPlan(lines, 1.5, 0, STEPS),))
    heavy = tuple(ParameterOverride("demand_per_day", 170.0, frozenset({p})) for p in twin.products)
    diffs, heavy_diffs = [], []
    for seed in replication_seeds(11, 5):
        diffs.append(_run(twin, more, seed).produced.sum() - _run(twin, ScenarioPlan("b"), seed).produced.sum())
        heavy_diffs.append(
            _run(twin, more, seed, heavy).produced.sum() - _run(twin, ScenarioPlan("b"), seed, heavy).produced.sum()
        )
    assert np.mean(diffs) >= 0 and min(diffs) >= -1e-6
    assert np.mean(heavy_diffs) > 0.05 * STEPS * 120 and min(heavy_diffs) > 0


def test_identical_seeds_give_identical_results_and_different_seeds_differ(twin: EnterpriseSlice) -> None:
    """Same seed -> the same arrays bit for bit; another seed -> another history."""
    a = _run(twin, ScenarioPlan("b"), 123)
    b = _run(twin, ScenarioPlan("b"), 123)
    c = _run(twin, ScenarioPlan("b"), 124)
    for name in ("produced", "shipped", "lost", "availability", "headcount", "material_stock", "overtime"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.availability, c.availability) or not np.array_equal(a.demanded, c.demanded)


def test_agents_are_mesa_agents_of_every_kind(twin: EnterpriseSlice) -> None:
    """People, assets, lines, suppliers and customers are Mesa agents with their own behaviour counters."""
    model = _run(twin, ScenarioPlan("b"), 5)
    kinds = {cls.__name__: len(agents) for cls, agents in model.agents_by_type.items()}
    assert kinds["PersonAgent"] == len(twin.persons)
    assert kinds["AssetAgent"] == len(twin.assets)
    assert kinds["ProcessAgent"] == len(twin.processes)
    assert kinds["SupplierAgent"] == len(twin.suppliers)
    assert kinds["CustomerDemand"] >= len(twin.customers)
    assert sum(a.failures for a in model.assets) > 0
    assert model.lines[0].output == pytest.approx(model.produced[:, 0].sum())


def test_attrition_in_one_plant_thins_that_plant_only_and_hires_add_people(
    twin: EnterpriseSlice, enterprise_layout: EnterpriseLayout
) -> None:
    """Attrition +50 points in Plant B: fewer people there on average; Plant A's people exactly as before."""
    from simulation.scenario import WorkforcePlan

    plant_b = frozenset(p for p in twin.persons if twin.within(p, "site-plant-b"))
    plant_a = [p for p in twin.persons if p not in plant_b]
    assert plant_b and plant_a
    attrition = ScenarioPlan("attrition", workforce=(WorkforcePlan(plant_b, 0.5, 1.0, 0, 120.0, 0, STEPS),))
    hires = ScenarioPlan("hires", workforce=(WorkforcePlan(plant_b, 0.0, 1.0, 3, None, 10, STEPS),))
    fewer = 0
    for seed in replication_seeds(5, 4):
        base = _run(twin, ScenarioPlan("b"), seed)
        hit = _run(twin, attrition, seed)
        b_rows = [base.person_index[p] for p in sorted(plant_b)]
        a_rows = [base.person_index[p] for p in sorted(plant_a)]
        fewer += hit.headcount[:, b_rows].sum() - base.headcount[:, b_rows].sum()
        assert np.array_equal(hit.headcount[:, a_rows], base.headcount[:, a_rows])
        hired = _run(twin, hires, seed)
        assert hired.headcount[-1].sum() == base.headcount[-1].sum() + 3
    assert fewer < 0


def test_weekly_steps_tell_the_same_story_as_daily_ones(twin: EnterpriseSlice) -> None:
    """A 7-day step over the same horizon makes about the same total output as daily steps."""
    calibration = calibrate(twin)
    daily = [
        EnterpriseModel(calibration, ScenarioPlan("b"), 364, 1, s).run().produced.sum() for s in replication_seeds(2, 3)
    ]
    weekly = [
        EnterpriseModel(calibration, ScenarioPlan("b"), 52, 7, s).run().produced.sum() for s in replication_seeds(2, 3)
    ]
    assert np.mean(weekly) == pytest.approx(np.mean(daily), rel=0.1)
