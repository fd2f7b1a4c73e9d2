"""A study resolves its targets within the caller's read scope: it can name and filter only what the caller reads."""

from __future__ import annotations

import pytest

from graph.model import ReadScope
from graph.store import GraphStore
from simulation.errors import SpecError
from simulation.scenario import parse_spec, slice_roots


def _spec(target: str) -> str:
    return f"""
name: scoped
horizon_days: 30
kpis: [throughput]
slice:
  query: {target}
scenarios:
  - name: more demand
    interventions: [{{kind: demand_shock, target: {{class: Product}}, start_day: 1, duration_days: 5, factor: 1.2}}]
"""


def test_targets_outside_the_scope_are_unknown_and_hidden_fields_cannot_filter(enterprise_store: GraphStore) -> None:
    everything = slice_roots(parse_spec(_spec("{class: Supplier}")), enterprise_store)
    assert everything and all(uid.startswith("sup-") for uid in everything)
    no_suppliers = ReadScope(readable_classes=frozenset({"Machine", "Product"}))
    with pytest.raises(SpecError, match="finds no twins"):
        slice_roots(parse_spec(_spec("{class: Supplier}")), enterprise_store, no_suppliers)
    hidden = ReadScope(hidden={"Supplier": frozenset({"reliability"})})
    spec = parse_spec(_spec("{class: Supplier, where: [{field: reliability, op: gt, value: 0.5}]}"))
    assert slice_roots(spec, enterprise_store)  # unrestricted, the filter works
    with pytest.raises(SpecError, match="reliability"):
        slice_roots(spec, enterprise_store, hidden)
