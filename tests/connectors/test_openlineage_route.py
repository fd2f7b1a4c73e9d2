"""The OpenLineage route: START and COMPLETE/FAIL run events of every connector sync run sent to an OpenLineage HTTP
endpoint (a real HTTP receiver in the test), valid against the OpenLineage JSON schema, at-least-once with its own
record of what it sent, and failing (500s, unreachable endpoint, a role that may not export lineage) without losing
a run or affecting another route.

The schema files in tests/connectors/openlineage_spec are the OpenLineage specification's (Apache-2.0), copied from
github.com/OpenLineage/OpenLineage spec/ at commit 8f02abfb7a252783b95df79f443edb13959bf52c.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource

from api.runtime import Runtime
from api.settings import Settings
from connectors.routes import RouteError, load_routes
from connectors.source import SourceError
from graph.embedded import stop_embedded
from ontology.core import load_core
from tests.connectors.test_sync_engine import MAPPING, plant
from tests.waiting import wait_for

SPEC = Path(__file__).parent / "openlineage_spec"
API_KEY = "lineage-test-key"


def _validators() -> tuple[jsonschema.Draft202012Validator, dict[str, jsonschema.Draft202012Validator]]:
    """A validator of the RunEvent, and one per facet schema, resolving the facets' references to the core spec."""
    documents = {path.name: json.loads(path.read_text()) for path in SPEC.glob("*.json")}
    registry = Registry().with_resources((doc["$id"], Resource.from_contents(doc)) for doc in documents.values())
    core = documents["OpenLineage.json"]
    facets = {}
    for name, doc in documents.items():
        if name != "OpenLineage.json":
            facet = name.removesuffix(".json")
            facets[facet] = jsonschema.Draft202012Validator(
                {"$ref": f"{doc['$id']}#/$defs/{facet}"}, registry=registry, format_checker=jsonschema.FormatChecker()
            )
    event = jsonschema.Draft202012Validator(
        {"$ref": f"{core['$id']}#/$defs/RunEvent"}, registry=registry, format_checker=jsonschema.FormatChecker()
    )
    return event, facets


class LineageReceiver:
    """An OpenLineage HTTP API stand-in: records each POSTed event with its headers; `failing` answers 500."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.authorizations: list[str | None] = []
        self.failing = False
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.failing or self.path != "/api/v1/lineage":
                    receiver.refused += 1
                    self.send_response(500 if receiver.failing else 404)
                    self.end_headers()
                    return
                assert self.headers["Content-Type"] == "application/json"
                receiver.events.append(json.loads(body))
                receiver.authorizations.append(self.headers.get("Authorization"))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/lineage"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, job: str) -> list[str]:
        """The event types received for `job`, in order."""
        return [e["eventType"] for e in self.events if e["job"]["name"] == job]


@pytest.fixture
def receiver() -> Iterator[LineageReceiver]:
    running = LineageReceiver()
    yield running
    running.server.shutdown()


@pytest.fixture
def plant_twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A data directory with a working `plant` connector and a `broken` one (its source database is missing)."""
    monkeypatch.setenv("LINEAGE_KEY", API_KEY)
    data = tmp_path / "twin"
    data.mkdir()
    url = plant(tmp_path, [("M1", "Press", "1", "down", "S1")], [("S1", "Hall 1")])
    (data / "plant.yaml").write_text(MAPPING)
    (data / "connectors.yaml").write_text(
        "connectors:\n"
        f"  plant:\n    mapping: plant.yaml\n    source: {{kind: sql, url: '{url}'}}\n"
        f"  broken:\n    mapping: plant.yaml\n"
        f"    source: {{kind: sql, url: 'sqlite:///{tmp_path / 'missing' / 'nothing.db'}'}}\n"
    )
    runtime = Runtime(settings=Settings(data_dir=data, runtime_lease_seconds=3))
    try:
        yield runtime
    finally:
        runtime.close()
        stop_embedded(data / "graph")


def _sync(runtime: Runtime, connector: str) -> None:
    """One sync run of `connector`, as `twin connect run` does it (a failing one records a FAILED run)."""
    from connectors.registry import ConnectorRegistry

    registry = ConnectorRegistry.load(runtime.ontology, data_dir=runtime.settings.data_dir, secrets={})
    runtime.sync_engine("test").run(registry.connector(connector))


def _lineage_route(runtime: Runtime, url: str, role: str = "compliance") -> None:
    (runtime.settings.data_dir / "routes.yaml").write_text(
        f"routes:\n  lineage:\n    openlineage: {url}\n    role: {role}\n    api_key: ${{LINEAGE_KEY}}\n"
    )


def test_each_sync_run_reaches_the_openlineage_endpoint_as_valid_run_events(
    plant_twin: Runtime, receiver: LineageReceiver
) -> None:
    runtime = plant_twin
    _lineage_route(runtime, receiver.url)
    _sync(runtime, "plant")
    with pytest.raises(SourceError, match="cannot read machines"):
        _sync(runtime, "broken")
    routes = runtime.route_runtime()
    routes.start()
    try:
        assert wait_for(lambda: len(receiver.events) == 4, 30), (receiver.events, routes.status())
        _sync(runtime, "plant")  # a run made while the route is live
        assert wait_for(lambda: len(receiver.events) == 6, 30), routes.status()
    finally:
        routes.stop()
    assert receiver.of("connector.plant") == ["START", "COMPLETE", "START", "COMPLETE"]
    assert receiver.of("connector.broken") == ["START", "FAIL"]
    assert set(receiver.authorizations) == {f"Bearer {API_KEY}"}
    event_schema, facet_schemas = _validators()
    checked = set()
    for event in receiver.events:
        event_schema.validate(event)
        facets = [*event["run"].get("facets", {}).values(), *event["job"].get("facets", {}).values()]
        for dataset in event["outputs"]:
            facets += [*dataset.get("facets", {}).values(), *dataset.get("outputFacets", {}).values()]
        for facet in facets:
            name = facet["_schemaURL"].rsplit("/", 1)[-1]
            facet_schemas[name].validate(facet)
            checked.add(name)
    with pytest.raises(jsonschema.ValidationError):  # the schema check can fail: a run id that is not a UUID
        event_schema.validate({**receiver.events[0], "run": {"runId": "run-1"}})
    # every facet sent was validated against its own schema (a facet without one would have raised KeyError)
    assert checked >= {"JobTypeJobFacet", "ErrorMessageRunFacet", "ColumnLineageDatasetFacet"}
    fail = next(e for e in receiver.events if e["eventType"] == "FAIL")
    assert "cannot read" in fail["run"]["facets"]["errorMessage"]["message"]
    runs = {e["run"]["runId"] for e in receiver.events if e["job"]["name"] == "connector.plant"}
    assert len(runs) == 2
    status = routes.status()[0]
    assert status.cursor == 3 and status.delivered == 6 and status.failures == 0
    assert API_KEY not in json.dumps(list(receiver.events))
    audited = runtime.audit.query(operation="route.deliver", limit=10)
    assert sum(r.rows_returned for r in audited) == 6 and {r.subject for r in audited} == {"route:lineage"}


def test_500s_and_an_unreachable_endpoint_lose_no_run_and_delay_no_other_route(
    plant_twin: Runtime, receiver: LineageReceiver
) -> None:
    runtime = plant_twin
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    (runtime.settings.data_dir / "routes.yaml").write_text(
        f"routes:\n  lineage:\n    openlineage: {receiver.url}\n    role: compliance\n"
        f"  nowhere:\n    openlineage: http://127.0.0.1:{closed}/api/v1/lineage\n    role: compliance\n"
    )
    receiver.failing = True
    _sync(runtime, "plant")
    routes = runtime.route_runtime()
    routes.start()
    try:
        assert wait_for(lambda: {s.route: s for s in routes.status()}["lineage"].failures >= 2, 20)
        status = {s.route: s for s in routes.status()}
        assert "HTTP 500" in (status["lineage"].last_error or "") and receiver.events == []
        assert status["nowhere"].failures >= 1 and "EndpointUnreachable" in (status["nowhere"].last_error or "")
        receiver.failing = False
        with pytest.raises(SourceError):
            _sync(runtime, "broken")
        assert wait_for(lambda: len(receiver.events) == 4, 30), routes.status()
    finally:
        routes.stop()
    assert receiver.of("connector.plant") == ["START", "COMPLETE"] and receiver.of("connector.broken") == [
        "START",
        "FAIL",
    ]
    status = {s.route: s for s in routes.status()}
    assert status["lineage"].failures == 0 and not status["lineage"].suspended
    assert status["nowhere"].delivered == 0 and status["nowhere"].failures >= 1


def test_a_role_that_may_not_export_lineage_sends_nothing_and_says_why(
    plant_twin: Runtime, receiver: LineageReceiver
) -> None:
    runtime = plant_twin
    _lineage_route(runtime, receiver.url, role="viewer")
    _sync(runtime, "plant")
    routes = runtime.route_runtime()
    routes.start()
    try:
        assert wait_for(lambda: routes.status()[0].suspended, 20)
    finally:
        routes.stop()
    assert receiver.events == [] and receiver.refused == 0
    assert "role 'viewer' may not export lineage (lineage.export)" in (routes.status()[0].last_error or "")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "    openlineage: ftp://x/api/v1/lineage\n    role: compliance\n",
            "openlineage: expected an http:// or https://",
        ),
        (
            "    openlineage: http://x/api\n    endpoint: nats://h:4222/S/p\n    role: compliance\n",
            "give either `endpoint`",
        ),
        (
            "    openlineage: http://x/api\n    role: compliance\n    filter: {classes: [Employee]}\n",
            "an OpenLineage route sends every sync run; it takes no filter",
        ),
        (
            "    endpoint: nats://h:4222/S/p\n    role: viewer\n    api_key: k\n",
            "only OpenLineage routes take an api_key",
        ),
        (
            "    openlineage: http://x/api\n    role: compliance\n    payload: twin\n",
            "payload: an OpenLineage route sends",
        ),
    ],
)
def test_a_bad_openlineage_route_is_refused_naming_file_line_and_field(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("routes:\n  lineage:\n" + body)
    with pytest.raises(RouteError, match=rf"routes\.yaml:2: route 'lineage': .*{message}"):
        load_routes(path, load_core(), secrets={})


def test_cli_lists_an_openlineage_routes_backlog_and_refuses_what_does_not_apply(
    plant_twin: Runtime, receiver: LineageReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from api.cli.app import app
    from api.settings import get_settings

    runtime = plant_twin
    _lineage_route(runtime, receiver.url)
    _sync(runtime, "plant")
    monkeypatch.setenv("TWIN_DATA_DIR", str(runtime.settings.data_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        listed = json.loads(runner.invoke(app, ["routes", "list", "--json"]).output)["routes"]
        assert listed == [{**listed[0], "route": "lineage", "payload": "openlineage", "cursor": 0, "behind": 1}]
        assert "1 route(s) OK: lineage" in runner.invoke(app, ["routes", "check"]).output
        for command in (["routes", "test", "lineage"], ["routes", "replay", "lineage", "--from", "1"]):
            refused = runner.invoke(app, command)
            assert refused.exit_code == 1 and "applies to change-feed routes only" in refused.output
        _lineage_route(runtime, receiver.url, role="viewer")
        denied = runner.invoke(app, ["routes", "check"])
        assert denied.exit_code == 1 and "'viewer' may not export lineage" in denied.output.replace("\n", "")
    finally:
        get_settings.cache_clear()
    assert receiver.events == []
