"""A line producing a product consumes the purchased materials of its bill of materials (as the ERP mapping writes
it: Material partOf Product, subassemblies as Material partOf Material)."""

from __future__ import annotations

from pathlib import Path

from graph.model import Link, Twin
from graph.store import GraphStore
from ontology.core import load_core
from simulation.slice import load_slice


def test_bill_of_materials_feeds_the_line_that_makes_the_product(tmp_path: Path) -> None:
    store = GraphStore.open(f"falkordb+embedded://{tmp_path / 'graph'}", load_core())
    try:
        store.upsert_twins(
            [
                Twin("wc", "WorkCenter", {"name": "Assembly", "capacityPerDay": 10.0}),
                Twin("pump", "Product", {"name": "Pump", "sku": "HP-1"}),
                Twin("housing", "Material", {"name": "Housing (in-house subassembly)"}),
                Twin("casting", "Material", {"name": "Casting"}),
                Twin("seal", "Material", {"name": "Seal"}),
                Twin("unused", "Material", {"name": "Unrelated bolt"}),
                Twin("alpen", "Supplier", {"name": "Alpen Castings"}),
                Twin("north", "Supplier", {"name": "Northgate Seals"}),
            ]
        )
        store.upsert_links(
            [
                Link("produces", "wc", "pump"),
                Link("partOf", "housing", "pump"),
                Link("partOf", "casting", "housing"),
                Link("partOf", "seal", "pump"),
                Link("supplies", "alpen", "casting"),
                Link("supplies", "north", "seal"),
                Link("supplies", "north", "unused"),
            ]
        )
        line = load_slice(store).processes["wc"]
        # purchased components, through the in-house subassembly; never the subassembly itself or unrelated parts
        assert line.consumes == ("casting", "seal")
    finally:
        store.close()
