"""Issue 22 items 2 and 3, issue 23 item 2 through the API: whatever a request holds (lone surrogates, NUL) it is
recorded, the chain still verifies, a state change is answered only once its record is stored, and a request whose
record cannot be stored is not served."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from api.http.app import create_app
from governance.audit import Decision, original_text
from tests.api.conftest import ApiHarness

TWIN = "query T($u: ID!) { twin(uid: $u) { uid } }"
UPSERT = "mutation U($t: [TwinInput!]!) { upsertTwins(twins: $t) { created updated } }"


def _post(api: ApiHarness, body: dict[str, Any], role: str | None = "viewer") -> Any:
    """POST `body` as JSON text with \\u escapes (as a client sends a lone surrogate)."""
    headers = {"Authorization": f"Bearer {api.token(role)}"} if role else {}
    return api.client.post(
        "/graphql", content=json.dumps(body).encode("ascii"), headers={**headers, "Content-Type": "application/json"}
    )


def _records_since(api: ApiHarness, seq: int) -> list[Any]:
    return [r for r in api.audit_records() if r.seq > seq]


def _head(api: ApiHarness) -> int:
    records = api.audit_records()
    return records[-1].seq if records else 0


def test_a_lone_surrogate_in_variables_is_recorded_with_its_neighbours(api: ApiHarness) -> None:
    start = _head(api)
    before = _post(api, {"query": TWIN, "variables": {"u": "machine-0"}})
    evil = _post(api, {"query": TWIN, "variables": {"u": "machine-\ud800"}})
    after = _post(api, {"query": TWIN, "variables": {"u": "machine-1"}})
    assert before.status_code == after.status_code == 200
    assert evil.status_code < 500
    records = _records_since(api, start)
    assert len(records) == 3, [r.operation for r in records]
    assert api.client.app.state.services.trail.failed == 0  # type: ignore[attr-defined]
    assert api.runtime.audit.verify().ok


def test_nul_in_an_anonymous_operation_name_keeps_the_chain_verifiable(api: ApiHarness) -> None:
    start = _head(api)
    answer = _post(api, {"query": "query x { __typename }", "operationName": "x\u0000y"}, role=None)
    assert answer.status_code == 401
    records = _records_since(api, start)
    assert [original_text(r.operation) for r in records] == ["graphql.invalid:x\u0000y"]
    assert api.runtime.audit.verify().ok


def test_nul_in_a_rest_path_keeps_the_chain_verifiable(api: ApiHarness) -> None:
    start = _head(api)
    answer = api.client.get("/operations/jobs/a%00b", headers={"Authorization": f"Bearer {api.token('admin')}"})
    assert answer.status_code == 404
    records = _records_since(api, start)
    assert [original_text(r.operation) for r in records] == ["rest:job.read:a\u0000b"]
    assert api.runtime.audit.verify().ok


def test_a_mutation_is_answered_only_after_its_audit_record_is_stored(api: ApiHarness) -> None:
    """With the writer busy on a long queue, the mutation's answer waits for its own record to be stored."""
    services = api.client.app.state.services  # type: ignore[attr-defined]
    start = _head(api)
    for n in range(15_000):  # reads queued before the mutation: their records are still being written
        services.trail.record(None, f"graphql.query:backlog{n}", decision=Decision.ALLOW, policy_version="v")
    answer = _post(
        api,
        {
            "query": UPSERT,
            "variables": {"t": [{"uid": "audit-durable-1", "className": "Machine", "properties": {"name": "Durable"}}]},
        },
        role="admin",
    )
    assert answer.status_code == 200, answer.text
    with api.runtime.audit.engine.connect() as conn:  # read the table itself: no flush of the writer
        operations = [
            row[0]
            for row in conn.execute(
                text("SELECT operation FROM audit_log WHERE seq > :s AND operation LIKE 'graphql.mutation%'"),
                {"s": start},
            )
        ]
    assert any(op.startswith("graphql.mutation:U") for op in operations), operations
    services.trail.flush()
    api.store.delete_twins(["audit-durable-1"])  # the session's graph stays as other tests expect it


def test_a_mutation_whose_record_cannot_be_stored_is_not_acknowledged(api: ApiHarness) -> None:
    """A second app over the same runtime: its own trail and lost-events metric, the shared one stays clean."""
    body = {
        "query": UPSERT,
        "variables": {"t": [{"uid": "audit-durable-2", "className": "Machine", "properties": {"name": "Unrecorded"}}]},
    }
    headers = {"Authorization": f"Bearer {api.token('admin')}", "Content-Type": "application/json"}
    api.audit_records()  # the shared trail's queue is empty before the table goes away
    with TestClient(create_app(api.runtime)) as client:
        trail = client.app.state.services.trail  # type: ignore[attr-defined]
        with api.runtime.audit.engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_log RENAME TO audit_log_away"))
        try:
            answer = client.post("/graphql", content=json.dumps(body), headers=headers)
        finally:
            trail.flush()
            with api.runtime.audit.engine.begin() as conn:
                conn.execute(text("ALTER TABLE audit_log_away RENAME TO audit_log"))
        api.store.delete_twins(["audit-durable-2"])
        assert answer.status_code == 503, answer.text
        assert answer.json().get("data") is None
        assert "audit" in answer.text
        assert trail.failed == 1
        assert "twin_audit_events_lost 1.0" in client.get("/metrics").text
    assert api.runtime.audit.verify().ok
