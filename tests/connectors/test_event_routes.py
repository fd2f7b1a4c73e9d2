"""Event routes: routes.yaml checked at load, the change feed delivered through the policy gate to real endpoints
(a signed webhook receiver, NATS JetStream), cursors that survive restarts, a failing route that delays no other."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.app import app
from api.runtime import Runtime
from api.settings import Settings, get_settings
from connectors.events.webhook_signature import verify_webhook_signature
from connectors.route_delivery import RouteCursors
from connectors.routes import RouteError, load_routes
from governance.identity import Subject
from graph.embedded import stop_embedded
from graph.model import Link, Twin
from ontology.core import load_core
from tests.connectors.test_event_endpoints import jetstream_stream, read_jetstream, service_missing  # noqa: F401
from tests.waiting import wait_for

SECRET = "route-test-secret"


class Receiver:
    """A local webhook receiver that checks each request's signature; `failing` makes it answer 500."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.rejected = 0
        self.failing = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                verify_webhook_signature(
                    SECRET, body, self.headers.get("webhook-timestamp"), self.headers.get("webhook-signature")
                )
                receiver.events.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()


@pytest.fixture
def twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("ROUTE_SECRET", SECRET)
    runtime = Runtime(settings=Settings(data_dir=tmp_path / "twin", runtime_lease_seconds=3))
    try:
        yield runtime
    finally:
        runtime.close()
        stop_embedded(tmp_path / "twin" / "graph")


def _write_routes(runtime: Runtime, text: str) -> None:
    runtime.settings.data_dir.mkdir(parents=True, exist_ok=True)
    (runtime.settings.data_dir / "routes.yaml").write_text(text)


PEOPLE = [
    Twin("u1", "OrgUnit", {"name": "Plant A"}),
    Twin(
        "e1",
        "Employee",
        {"name": "Ann", "employeeId": "E1", "email": "ann@example.test", "salary": 50000.0, "phone": "+49 1"},
    ),
    Twin("m1", "Machine", {"name": "Press"}),
]


def test_routes_file_errors_name_file_line_route_and_field(tmp_path: Path) -> None:
    core = load_core()
    path = tmp_path / "routes.yaml"
    cases = [
        (
            "routes:\n  a:\n    endpoint: nats://h:4222/S/p\n    role: executive\n    filter: {classes: [Spaceship]}\n",
            r"routes.yaml:2: route 'a': filter.classes: unknown class 'Spaceship'",
        ),
        ("routes:\n  a:\n    endpoint: nats://h:4222/S/p\n    role: janitor\n", r":2: route 'a': role: unknown role"),
        (
            "routes:\n\n  b:\n    endpoint: https://x/hook\n    role: viewer\n",
            r":3: route 'b': secret: a webhook route",
        ),
        (
            "routes:\n  c:\n    endpoint: https://x/hook\n    role: viewer\n    secret: ${NOPE}\n",
            r"secret \$\{NOPE\} is not set",
        ),
        ("routes:\n  d:\n    endpoint: nats://h:4222/S/p\n    role: viewer\n    colour: red\n", r"route 'd': colour"),
        (
            "routes:\n  e:\n    endpoint: nats://h:4222/S/p\n    role: viewer\n    filter: {link_types: [knows]}\n",
            r"filter.link_types: unknown relationship 'knows'",
        ),
        ("routes: [\n", r"routes.yaml:2: not valid YAML"),
    ]
    for text, message in cases:
        path.write_text(text)
        with pytest.raises(RouteError, match=message):
            load_routes(path, core, secrets={})
    assert load_routes(tmp_path / "absent.yaml", core) == []


def test_a_webhook_route_carries_only_what_its_role_may_read_and_resumes_from_its_cursor(
    twin: Runtime, receiver: Receiver
) -> None:
    _write_routes(
        twin,
        f"routes:\n  people:\n    endpoint: {receiver.url}\n    role: executive\n"
        "    secret: ${ROUTE_SECRET}\n    filter: {classes: [Person, OrgUnit], link_types: [worksIn]}\n",
    )
    twin.store.upsert_twins(PEOPLE)
    twin.store.upsert_links([Link("worksIn", "e1", "u1")])
    routes = twin.route_runtime()
    routes.start()
    try:
        assert wait_for(lambda: len(receiver.events) == 3, 20), receiver.events
    finally:
        routes.stop()
    by_subject = {(e["type"], e["subject"]): e for e in receiver.events}
    assert set(by_subject) == {("twin.created", "u1"), ("twin.created", "e1"), ("link.created", "e1")}
    ann = by_subject[("twin.created", "e1")]
    values = {op["path"]: op["value"] for op in ann["data"]["patch"]}
    executive = Subject(sub="x", roles=frozenset({"executive"}))
    for name, value in PEOPLE[1].properties.items():  # every field: clear exactly when the executive may read it
        shown = twin.policy.field_mode(executive, "Employee", name) == "show"
        assert (values.get(f"/{name}") == value) is shown, (name, values.get(f"/{name}"))
    assert ann["data"]["masked"] and ann["specversion"] == "1.0" and ann["source"] == "urn:enterprise-twin:twin"
    feed = [c.seq for c in twin.store.feed.read(0)]
    assert sorted(int(e["id"]) for e in receiver.events) == [s for s in feed if s != 3]  # seq 3: the Machine
    cursors = RouteCursors(twin.settings.resolved_database_url)
    assert cursors.get("people") == (max(feed), 3)

    twin.store.upsert_twins([Twin("e1", "Employee", {**PEOPLE[1].properties, "name": "Ann B"})])
    again = twin.route_runtime()
    again.start()
    try:
        assert wait_for(lambda: len(receiver.events) == 4, 20)
    finally:
        again.stop()
    update = receiver.events[-1]
    assert update["type"] == "twin.updated" and update["data"]["patch"] == [
        {"op": "replace", "path": "/name", "value": "Ann B"}
    ]
    assert int(update["id"]) == max(feed) + 1  # continued from the stored cursor: nothing re-sent, nothing skipped
    deliveries = twin.audit.query(operation="route.deliver", limit=10)
    assert [r.rows_returned for r in deliveries] == [3, 1] and deliveries[0].subject == "route:people"


def test_a_failing_route_delays_no_other_and_catches_up_once_its_endpoint_answers(
    twin: Runtime, receiver: Receiver, jetstream_stream: tuple[str, str]
) -> None:  # noqa: F811
    stream, prefix = jetstream_stream
    receiver.failing = True
    _write_routes(
        twin,
        f"routes:\n  hook:\n    endpoint: {receiver.url}\n    role: architect\n"
        f"    secret: ${{ROUTE_SECRET}}\n  bus:\n    endpoint: nats://127.0.0.1:4222/{stream}/{prefix}\n"
        "    role: architect\n    payload: twin\n",
    )
    twin.store.upsert_twins(PEOPLE)
    routes = twin.route_runtime()
    routes.start()
    try:
        assert wait_for(lambda: len(read_jetstream(stream, f"{prefix}.>")) == 3, 20)
        status = {s.route: s for s in routes.status()}
        assert status["bus"].failures == 0 and status["bus"].delivered == 3
        assert wait_for(lambda: {s.route: s for s in routes.status()}["hook"].failures >= 2, 20)
        assert "500" in ({s.route: s for s in routes.status()}["hook"].last_error or "")
        receiver.failing = False
        assert wait_for(lambda: len(receiver.events) == 3, 30)
    finally:
        routes.stop()
    messages = [json.loads(m.data) for m in read_jetstream(stream, f"{prefix}.>")]
    assert [m["id"] for m in messages] == ["1", "2", "3"]
    employee = next(m for m in messages if m["subject"] == "e1")
    assert employee["data"]["state"]["salary"] == "***" and employee["data"]["state"]["name"] == "Ann"


def test_cli_lists_checks_and_replays_routes(
    twin: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_routes(
        twin, f"routes:\n  people:\n    endpoint: {receiver.url}\n    role: executive\n    secret: ${{ROUTE_SECRET}}\n"
    )
    twin.store.upsert_twins(PEOPLE)
    monkeypatch.setenv("TWIN_DATA_DIR", str(twin.settings.data_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        assert "1 route(s) OK: people" in runner.invoke(app, ["routes", "check"]).output
        listed = json.loads(runner.invoke(app, ["routes", "list", "--json"]).output)
        assert listed["head"] == 3 and listed["routes"][0]["behind"] == 3
        assert SECRET not in runner.invoke(app, ["routes", "list"]).output
        tested = runner.invoke(app, ["routes", "test", "people"])
        assert tested.exit_code == 0 and receiver.events[-1]["type"] == "route.test"
        assert [r.operation for r in twin.audit.query(operation="route.test", limit=10)] == ["route.test"]
        past = runner.invoke(app, ["routes", "replay", "people", "--from", "9"])
        assert past.exit_code == 1 and "past the feed's end (head 3)" in past.output
        assert runner.invoke(app, ["routes", "replay", "people", "--from", "2"]).exit_code == 0
        assert json.loads(runner.invoke(app, ["routes", "list", "--json"]).output)["routes"][0]["cursor"] == 1
        unknown = runner.invoke(app, ["routes", "test", "nope"])
        assert unknown.exit_code == 1 and "no route named 'nope'" in unknown.output
    finally:
        get_settings.cache_clear()


def test_serve_refuses_to_start_on_a_broken_routes_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "twin"
    data.mkdir()
    (data / "routes.yaml").write_text("routes:\n  a:\n    endpoint: nats://h:4222/S/p\n    role: janitor\n")
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    get_settings.cache_clear()
    try:
        refused = CliRunner().invoke(app, ["serve", "--port", "1"])
    finally:
        get_settings.cache_clear()
    message = refused.output.replace("\n", "")  # the console wraps long lines
    assert refused.exit_code == 1 and "routes.yaml:2: route 'a': role: unknown role 'janitor'" in message
    assert "Traceback" not in refused.output
