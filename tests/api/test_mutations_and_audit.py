"""Mutations through the GraphStore (validated, allowed by policy) and the audit record of every operation."""

from __future__ import annotations

from governance.audit import Decision, TamperKind
from governance.canonical import sha256_digest
from tests.api.conftest import ApiHarness

UPSERT = "mutation($t: [TwinInput!]!) { upsertTwins(twins: $t) { created updated } }"


def test_upsert_link_and_delete_twins(api: ApiHarness) -> None:
    twins = [{"uid": "m-new-1", "className": "Machine", "properties": {"name": "Lathe", "mtbfHours": 10.0}}]
    assert api.data(UPSERT, {"t": twins}, role="architect")["upsertTwins"] == {"created": 1, "updated": 0}
    links = [{"type": "locatedAt", "source": "m-new-1", "target": "site-1"}]
    result = api.data(
        "mutation($l: [LinkInput!]!) { upsertLinks(links: $l) { created } }", {"l": links}, role="architect"
    )
    assert result["upsertLinks"]["created"] == 1
    located = api.data('{ twin(uid: "m-new-1") { ... on Machine { locatedAt { nodes { uid } } } } }')
    assert located["twin"]["locatedAt"]["nodes"] == [{"uid": "site-1"}]
    assert (
        api.data('mutation { deleteTwins(uids: ["m-new-1"]) { deleted } }', role="admin")["deleteTwins"]["deleted"] == 1
    )
    assert api.data('{ twin(uid: "m-new-1") { uid } }')["twin"] is None


def test_invalid_batches_are_rejected_with_every_violation(api: ApiHarness) -> None:
    twins = [
        {"uid": "bad-1", "className": "Machine", "properties": {"name": 3, "mtbfHours": "long"}},
        {"uid": "ok-1", "className": "Machine", "properties": {"name": "fine"}},
    ]
    status, body = api.gql(UPSERT, {"t": twins})
    error = body["errors"][0]
    assert status == 200 and error["extensions"]["code"] == "BATCH_REJECTED"
    rules = {(v["path"].split(".")[-1], v["rule"]) for v in error["extensions"]["violations"]}
    assert {("name", "type"), ("mtbfHours", "type")} <= rules
    assert api.data('{ twin(uid: "ok-1") { uid } }')["twin"] is None  # nothing of the batch was written
    status, body = api.gql(UPSERT, {"t": [{"uid": "bad-2", "className": "Employee", "properties": {"name": "No id"}}]})
    assert body["errors"][0]["extensions"]["violations"][0]["rule"] == "required"
    assert api.data('{ twin(uid: "bad-1") { uid } }')["twin"] is None
    status, body = api.gql(UPSERT, {"t": [{"uid": "x", "className": "Unicorn", "properties": {}}]})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_policy_governs_writes(api: ApiHarness) -> None:
    machine = [{"uid": "m-viewer", "className": "Machine", "properties": {"name": "Nope"}}]
    assert api.gql(UPSERT, {"t": machine}, role="viewer")[1]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    salary = [
        {"uid": "emp-03", "className": "Employee", "properties": {"name": "P", "employeeId": "E003", "salary": 1.0}}
    ]
    assert (
        api.gql(UPSERT, {"t": salary}, role="architect")[1]["errors"][0]["extensions"]["code"] == "FIELD_NOT_READABLE"
    )
    outside = [{"uid": "emp-01", "className": "Employee", "properties": {"name": "Renamed", "employeeId": "E001"}}]
    status, body = api.gql(UPSERT, {"t": outside}, role="hr", org_unit="u-eng")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN" and "outside" in body["errors"][0]["message"]
    status, body = api.gql('mutation { deleteTwins(uids: ["machine-3"]) { deleted } }', role="viewer")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert api.data('{ twin(uid: "emp-01") { ... on Employee { name } } }')["twin"]["name"] == "Person 01"


def test_every_operation_is_audited(api: ApiHarness) -> None:
    start = len(api.audit_records())
    variables = {"first": 3}
    api.data("query Audited($first: Int) { employees(first: $first) { nodes { uid } } }", variables, role="architect")
    api.gql("{ auditLog { seq } }", role="architect")
    api.client.post("/graphql", json={"query": "{ __typename }"})
    api.client.get("/operations/audit/verify", headers={"Authorization": f"Bearer {api.token('compliance')}"})
    api.client.get("/operations/audit/verify", headers={"Authorization": f"Bearer {api.token('viewer')}"})
    records = api.audit_records()[start:]
    assert [(r.subject, r.decision) for r in records] == [
        ("test-architect", Decision.ALLOW),
        ("test-architect", Decision.DENY),
        ("anonymous", Decision.DENY),
        ("test-compliance", Decision.ALLOW),
        ("test-viewer", Decision.DENY),
    ]
    first = records[0]
    assert first.operation == "graphql.query:Audited:employees" and first.rows_returned == 3
    assert first.variables_digest == sha256_digest(variables) and first.roles == ("architect",)
    assert first.policy_version == api.client.app.state.services.policy.version  # type: ignore[attr-defined]
    assert records[3].operation == "rest:audit.verify"
    audit = api.data(
        '{ auditLog(first: 5, subject: "test-architect") { subject decision rowsReturned } }', role="compliance"
    )["auditLog"]
    assert audit[0] == {"subject": "test-architect", "decision": "deny", "rowsReturned": 0}


def test_audit_verify_endpoint_reports_the_chain(api: ApiHarness) -> None:
    response = api.client.get("/operations/audit/verify", headers={"Authorization": f"Bearer {api.token('admin')}"})
    body = response.json()
    assert response.status_code == 200 and body["ok"] is True and body["recordsChecked"] >= 1
    assert body["tampering"] in (None, str(TamperKind.ALTERED)) and body["tampering"] is None
