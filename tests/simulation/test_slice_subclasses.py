"""A slice reads twins of classes an ontology extension adds under the core ones (a CNC cell is a work center, a
contractor an employee, a casting a material) exactly as it reads twins of the core classes."""

from __future__ import annotations

from pathlib import Path

from graph.model import Link, Twin
from graph.store import GraphStore
from ontology.core import load_core
from ontology.model import ClassDef, Ontology
from simulation.slice import load_slice


def test_twins_of_extension_subclasses_take_part_in_the_slice(tmp_path: Path) -> None:
    core = load_core()
    extension = Ontology(
        [
            ClassDef(f"dtmi:acme:{name};1", name, parents=(core.get(parent).id,))
            for name, parent in (
                ("CncCell", "WorkCenter"),
                ("Contractor", "Employee"),
                ("Casting", "Material"),
                ("CastingSupplier", "Supplier"),
                ("Pump", "Product"),
            )
        ]
    )
    store = GraphStore.open(f"falkordb+embedded://{tmp_path / 'graph'}", core.merge(extension))
    try:
        store.upsert_twins(
            [
                Twin("cell", "CncCell", {"name": "CNC cell 1", "capacityPerDay": 40.0, "shiftsPerDay": 2}),
                Twin("pump", "Pump", {"name": "Pump", "sku": "HP-1"}),
                Twin("housing", "Casting", {"name": "Housing casting", "stockLevel": 12.0}),
                Twin("foundry", "CastingSupplier", {"name": "Alpen Foundry", "reliability": 0.9}),
                Twin("ada", "Contractor", {"name": "Ada", "employeeId": "C-1", "capacityHoursPerWeek": 30.0}),
            ]
        )
        store.upsert_links(
            [
                Link("produces", "cell", "pump"),
                Link("consumes", "cell", "housing"),
                Link("supplies", "foundry", "housing"),
            ]
        )
        twin = load_slice(store)
    finally:
        store.close()
    assert set(twin.work_centers) == {"cell"} and twin.work_centers["cell"].capacity_per_day == 40.0
    line = twin.processes["cell"]
    assert (line.produces, line.consumes, line.work_centers) == (("pump",), ("housing",), ("cell",))
    assert set(twin.products) == {"pump"} and set(twin.materials) == {"housing"}
    assert set(twin.suppliers) == {"foundry"}
    assert [(lane.supplier, lane.material) for lane in twin.lanes] == [("foundry", "housing")]
    assert set(twin.persons) == {"ada"} and twin.persons["ada"].hours_per_week == 30.0
