"""GraphQL subscriptions over WebSocket (graphql-transport-ws): authenticated at connection_init, governed and
audited at subscribe, changes streamed as they are committed, filtered and masked by the policy; a token that
expires ends the connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import api.graphql.subscriptions
from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from governance.tokens import LocalIssuer
from graph.embedded import stop_embedded
from graph.model import Link, Twin

PROTOCOL = ["graphql-transport-ws"]
CHANGES = "subscription($a: Int) { changes(after: $a) { seq uid kind op className after } }"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime, LocalIssuer]]:
    runtime = Runtime(settings=Settings(data_dir=tmp_path / "twin"))
    runtime.store.upsert_twins([Twin("u-a", "OrgUnit", {"name": "Plant A"}), Twin("u-b", "OrgUnit", {"name": "B"})])
    try:
        with TestClient(create_app(runtime)) as client:
            yield client, runtime, LocalIssuer(tmp_path / "twin")
    finally:
        runtime.close()
        stop_embedded(tmp_path / "twin" / "graph")


def _connect(client: TestClient, token: str):  # type: ignore[no-untyped-def]
    ws = client.websocket_connect("/graphql", subprotocols=PROTOCOL)
    socket = ws.__enter__()
    socket.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
    assert socket.receive_json() == {"type": "connection_ack"}
    return ws, socket


def test_changes_stream_as_committed_masked_and_filtered_by_the_subscribers_role(served) -> None:  # type: ignore[no-untyped-def]
    client, runtime, issuer = served
    ina = {"name": "Ina", "employeeId": "E1", "salary": 60000.0, "email": "ina@x.test"}
    otto = {"name": "Otto", "employeeId": "E2", "salary": 70000.0}
    runtime.store.upsert_twins(
        [Twin("e-in", "Employee", ina), Twin("e-out", "Employee", otto), Twin("m1", "Machine", {"name": "Press"})]
    )
    runtime.store.upsert_links([Link("worksIn", "e-in", "u-a"), Link("worksIn", "e-out", "u-b")])
    head = runtime.store.feed.head()
    ws, socket = _connect(client, issuer.issue_token("hr", sub="hanna", org_unit="u-a"))
    try:
        socket.send_json({"id": "1", "type": "subscribe", "payload": {"query": CHANGES, "variables": {"a": head}}})
        runtime.store.upsert_twins([Twin("e-in", "Employee", {**ina, "name": "Ina K"})])
        runtime.store.upsert_twins(
            [Twin("e-out", "Employee", {**otto, "name": "Otto B"}), Twin("m1", "Machine", {"name": "Press 2"})]
        )
        runtime.store.upsert_twins([Twin("e-in", "Employee", {**ina, "name": "Ina L"})])
        received = [socket.receive_json() for _ in range(2)]
    finally:
        ws.__exit__(None, None, None)
    assert {m["type"] for m in received} == {"next"} and {m["id"] for m in received} == {"1"}
    changes = [m["payload"]["data"]["changes"] for m in received]
    # hr sees people of its own unit only (its row rule), never the machine nor Otto, who works elsewhere
    assert [(c["uid"], c["kind"], c["op"], c["after"]["name"]) for c in changes] == [
        ("e-in", "twin", "update", "Ina K"),
        ("e-in", "twin", "update", "Ina L"),
    ]
    assert changes[0]["seq"] > head and changes[1]["seq"] == changes[0]["seq"] + 3
    client.app.state.services.trail.flush()  # type: ignore[attr-defined]
    records = [
        r
        for r in client.app.state.services.trail.log.query(limit=100)  # type: ignore[attr-defined]
        if r.operation == "graphql.subscription:changes"
    ]
    assert [(r.subject, str(r.decision)) for r in records] == [("hanna", "allow")]


def test_refusals_follow_the_protocol_and_are_audited(served) -> None:  # type: ignore[no-untyped-def]
    client, _, issuer = served
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as socket:
        socket.send_json({"type": "connection_init", "payload": {"Authorization": "Bearer forged"}})
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == 4403
    ws, socket = _connect(client, issuer.issue_token("viewer", sub="vic"))
    try:
        socket.send_json({"id": "a", "type": "subscribe", "payload": {"query": CHANGES}})
        refused = socket.receive_json()
        assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "FORBIDDEN"
        socket.send_json({"id": "b", "type": "subscribe", "payload": {"query": "subscription { nope }"}})
        invalid = socket.receive_json()
        assert invalid["type"] == "error" and "nope" in invalid["payload"][0]["message"]
        socket.send_json({"type": "ping"})
        assert socket.receive_json() == {"type": "pong"}
        socket.send_json({"type": "connection_init"})
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == 4429
    finally:
        ws.__exit__(None, None, None)
    services = client.app.state.services  # type: ignore[attr-defined]
    services.trail.flush()
    decisions = {(r.subject, r.operation, str(r.decision)) for r in services.trail.log.query(limit=100)}
    assert ("vic", "graphql.subscription:changes", "deny") in decisions
    assert ("anonymous", "graphql.subscription:connect", "deny") in decisions


def test_an_expired_token_ends_the_connection(served, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    client, _, issuer = served
    monkeypatch.setattr(api.graphql.subscriptions, "TOKEN_CHECK_SECONDS", 0.2)
    ws, socket = _connect(client, issuer.issue_token("architect", sub="ari", ttl=2))
    try:
        socket.send_json({"id": "1", "type": "subscribe", "payload": {"query": CHANGES}})
        ended = socket.receive_json()  # no change is committed: the next message is the token's end
        assert ended["type"] == "error" and ended["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == 4403
    finally:
        ws.__exit__(None, None, None)


def test_a_connection_without_the_subprotocol_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = served
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/graphql") as socket:
        socket.receive_json()
    assert closed.value.code == 4406


def test_a_subscription_without_variable_definitions_streams_too(served) -> None:  # type: ignore[no-untyped-def]
    # `subscription { changes { ... } }` (no variables, what the console sends) once failed with an internal error
    client, runtime, issuer = served
    ws, socket = _connect(client, issuer.issue_token("architect", sub="ari"))
    try:
        socket.send_json(
            {"id": "1", "type": "subscribe", "payload": {"query": "subscription { changes { seq uid op className } }"}}
        )
        time.sleep(0.3)  # subscribed (from the head) before the write below
        runtime.store.upsert_twins([Twin("m9", "Machine", {"name": "Lathe"})])
        message = socket.receive_json()
    finally:
        ws.__exit__(None, None, None)
    assert message["type"] == "next" and message["id"] == "1"
    assert message["payload"]["data"]["changes"]["uid"] == "m9"
    assert message["payload"]["data"]["changes"]["op"] == "create"
