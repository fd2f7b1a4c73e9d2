"""Route condition expressions (CEL): checked at load naming file, line and expression; evaluated on the change as
the route's role sees it (masked values are never visible to a condition); an evaluation error counts as not matched
with a warning and a metric, and suspends nothing. Tested with real routes to a signed webhook receiver."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.http.metrics import ApiMetrics
from api.runtime import Runtime
from api.settings import Settings
from connectors.routes import RouteError, load_routes, property_patch
from graph.embedded import stop_embedded
from graph.model import Twin
from ontology.core import load_core
from tests.connectors.test_event_routes import SECRET, Receiver
from tests.waiting import wait_for

ANN = {"name": "Ann", "employeeId": "E1", "salary": 50000.0, "capacityHoursPerWeek": 40.0}
BEN = {"name": "Ben", "employeeId": "E2", "salary": 30000.0, "capacityHoursPerWeek": 40.0}


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    first, second = Receiver(), Receiver()
    yield first, second
    first.server.shutdown()
    second.server.shutdown()


@pytest.fixture
def twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("ROUTE_SECRET", SECRET)
    runtime = Runtime(settings=Settings(data_dir=tmp_path / "twin", runtime_lease_seconds=3))
    runtime.settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield runtime
    finally:
        runtime.close()
        stop_embedded(tmp_path / "twin" / "graph")


def _route(name: str, url: str, role: str, condition: str) -> str:
    return (
        f"  {name}:\n    endpoint: {url}\n    role: {role}\n    secret: ${{ROUTE_SECRET}}\n"
        f"    filter:\n      classes: [Employee]\n      condition: '{condition}'\n"
    )


def test_a_condition_picks_the_changes_a_route_carries(twin: Runtime, receivers: tuple[Receiver, Receiver]) -> None:
    part_time, _ = receivers
    condition = 'op == "update" && "capacityHoursPerWeek" in changed && after.capacityHoursPerWeek < 20.0'
    (twin.settings.data_dir / "routes.yaml").write_text(
        "routes:\n" + _route("part-time", part_time.url, "executive", condition)
    )
    twin.store.upsert_twins([Twin("e1", "Employee", ANN), Twin("e2", "Employee", BEN)])
    twin.store.upsert_twins(
        [
            Twin("e1", "Employee", {**ANN, "capacityHoursPerWeek": 16.0}),  # passes
            Twin("e2", "Employee", {**BEN, "name": "Ben B"}),
        ]
    )  # an update, hours unchanged
    twin.store.upsert_twins([Twin("e2", "Employee", {**BEN, "name": "Ben B", "capacityHoursPerWeek": 30.0})])
    head = twin.store.feed.head()
    routes = twin.route_runtime()
    routes.start()
    try:
        assert wait_for(lambda: routes.status()[0].cursor == head, 20), routes.status()
    finally:
        routes.stop()
    assert [(e["type"], e["subject"]) for e in part_time.events] == [("twin.updated", "e1")]
    assert part_time.events[0]["data"]["patch"] == [{"op": "replace", "path": "/capacityHoursPerWeek", "value": 16.0}]
    status = routes.status()[0]
    assert status.condition_errors == 0 and status.failures == 0 and status.delivered == 1


def test_a_condition_sees_values_only_as_the_role_does_and_errors_count_as_not_matched(
    twin: Runtime, receivers: tuple[Receiver, Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    clear, masked = receivers
    condition = "after.salary > 40000.0"
    (twin.settings.data_dir / "routes.yaml").write_text(
        "routes:\n"
        + _route("clear", clear.url, "admin", condition)
        + _route("masked", masked.url, "architect", condition)
    )
    twin.store.upsert_twins([Twin("e1", "Employee", ANN), Twin("e2", "Employee", BEN)])
    twin.store.delete_twins(["e2"])  # a delete: `after` is empty, so `after.salary` cannot be evaluated
    head = twin.store.feed.head()
    routes = twin.route_runtime()
    with caplog.at_level(logging.WARNING, logger="connectors.routes"):
        routes.start()
        try:
            assert wait_for(lambda: all(s.cursor == head for s in routes.status()), 20), routes.status()
        finally:
            routes.stop()
    status = {s.route: s for s in routes.status()}
    # the admin reads the salary: Ann's 50,000 passes, Ben's 30,000 does not, Ben's deletion cannot be told
    assert [e["subject"] for e in clear.events] == ["e1"]
    assert status["clear"].condition_errors == 1
    # the architect sees "***" for a salary: the condition can never compare it, so nothing passes on it
    assert masked.events == []
    assert status["masked"].condition_errors == 3
    assert not status["masked"].suspended and status["masked"].failures == 0 and status["masked"].cursor == head
    metrics = ApiMetrics()
    metrics.watch_routes(routes)
    exposed = metrics.exposition().decode()
    assert 'twin_route_condition_errors_total{route="masked"} 3.0' in exposed
    assert 'twin_route_condition_errors_total{route="clear"} 1.0' in exposed
    warnings = [r.getMessage() for r in caplog.records if "route masked: condition" in r.getMessage()]
    assert len(warnings) == 1 and "counted as not matched" in warnings[0]  # once a minute, not once per change
    assert "50000" not in " ".join(r.getMessage() for r in caplog.records)  # the warning names no value


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("after.salery > 1.0", "names the property 'salery', which no class the route carries nor any link has"),
        ('"wage" in changed', "names the property 'wage'"),
        ("department == 1", r"uses unknown variable\(s\) department; known: kind, op, class"),
        ("after.salary >", "is not a valid CEL expression: .*Syntax error"),
    ],
)
def test_a_bad_condition_is_refused_at_load_naming_file_line_and_expression(
    tmp_path: Path, condition: str, message: str
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "routes:\n  ok:\n    endpoint: nats://h:4222/S/p\n    role: viewer\n"
        "  people:\n    endpoint: nats://h:4222/S/p\n    role: executive\n    filter:\n"
        f"      classes: [Employee]\n      condition: '{condition}'\n"
    )
    quoted = condition.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*").replace(".", r"\.")
    expected = rf"routes\.yaml:10: route 'people': filter\.condition: '?{quoted}'? {message}"
    with pytest.raises(RouteError, match=expected):
        load_routes(path, load_core(), secrets={})


def test_comprehension_variables_and_link_properties_are_allowed() -> None:
    core = load_core()
    relationship_properties = {
        p.name for rels in core.relationship_types().values() for _, r in rels for p in r.properties
    }
    assert relationship_properties  # the core ontology has link properties to test against
    link_property = sorted(relationship_properties)[0]
    for condition in ('changed.exists(p, p == "salary")', f'kind == "link" && has(after.{link_property})'):
        routes = _load(core, condition)
        assert routes[0].filter.condition is not None and routes[0].filter.condition.source == condition


def _load(core, condition: str):  # type: ignore[no-untyped-def]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "routes.yaml"
        path.write_text(
            f"routes:\n  a:\n    endpoint: nats://h:4222/S/p\n    role: admin\n"
            f"    filter:\n      condition: '{condition}'\n"
        )
        return load_routes(path, core, secrets={})


def test_the_patch_of_a_change_turns_the_state_before_into_the_state_after() -> None:
    import jsonpatch

    before = {"name": "Ann", "salary": 1, "a/b": "x", "gone": [1, 2], "flag": 1, "tags": {"k": 1}}
    after = {"name": "Ann B", "salary": 1, "a/b": "y", "new~": None, "flag": True, "tags": {"k": 2}}
    patch = property_patch(before, after)
    assert jsonpatch.apply_patch(before, patch) == after
    assert {"op": "replace", "path": "/flag", "value": True} in patch  # 1 == True in Python, not in JSON
    assert {"op": "replace", "path": "/a~1b", "value": "y"} in patch and {"op": "remove", "path": "/gone"} in patch
    assert {"op": "add", "path": "/new~0", "value": None} in patch
    assert not any(op["path"] == "/salary" for op in patch)
    assert property_patch({}, {}) == []
