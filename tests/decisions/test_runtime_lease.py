"""One decisions runtime evaluates at a time: a second runtime on the same store waits while the first holds the
lease, and takes over once the first stops (or its lease lapses)."""

from __future__ import annotations

from api.runtime import Runtime
from graph.model import Twin


def test_only_the_lease_holder_evaluates(erp_twin: Runtime) -> None:
    first = erp_twin.decision_runtime(holder="runtime-a")
    second = erp_twin.decision_runtime(holder="runtime-b")
    assert first is not None and second is not None
    for runtime in (first, second):
        runtime.start()
        runtime.stop()  # driven step by step (stop gives the lease up)
    material = erp_twin.store.query("MATCH (s:Supplier)-[:supplies]->(m:Material) RETURN m.uid ORDER BY m.uid LIMIT 1")
    uid = material[0][0]

    first.step()  # takes the lease
    erp_twin.store.upsert_twins([Twin(uid, "Material", {"stockLevel": 2.0})], actor="test", source="test")
    second.step()
    assert not second.status.leading and second.status.firings == 0
    assert erp_twin.decisions.list_proposals(erp_twin.operator()) == []
    first.step()
    assert first.status.leading and first.status.firings == 1

    first.stop()  # gives the lease up: the second takes over at its next step
    erp_twin.store.upsert_twins([Twin(uid, "Material", {"stockLevel": 500.0})], actor="test", source="test")
    second.step()
    assert second.status.leading and second.status.evaluated == 1
    [alert] = erp_twin.decisions.list_alerts(erp_twin.operator())
    assert alert.state == "resolved"  # the second runtime saw the stock recover
