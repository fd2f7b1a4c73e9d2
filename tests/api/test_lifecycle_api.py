"""The lifecycle over GraphQL: `transitionTwin` moves a twin (policy-decided, audited), a retired twin leaves the
caller's queries, and a bad transition is a clear client error that changes nothing."""

from __future__ import annotations

from tests.api.conftest import ApiHarness

UPSERT = "mutation($t: [TwinInput!]!) { upsertTwins(twins: $t) { created } }"
MOVE = (
    'mutation($u: ID!, $s: String!) { transitionTwin(uid: $u, state: $s, reason: "sold") '
    "{ uid className before after } }"
)
LIST = '{ machines(where: {name: {startsWith: "Lifecycle"}}) { nodes { uid } } }'


def test_a_retired_twin_leaves_queries_and_bad_transitions_are_refused(api: ApiHarness) -> None:
    twins = [{"uid": f"m-life-{i}", "className": "Machine", "properties": {"name": f"Lifecycle {i}"}} for i in range(2)]
    assert api.data(UPSERT, {"t": twins}, role="architect")["upsertTwins"]["created"] == 2
    moved = api.data(MOVE, {"u": "m-life-1", "s": "retired"}, role="architect")["transitionTwin"]
    assert moved == {"uid": "m-life-1", "className": "Machine", "before": "active", "after": "retired"}
    assert [n["uid"] for n in api.data(LIST)["machines"]["nodes"]] == ["m-life-0"]
    assert api.data('{ twin(uid: "m-life-1") { uid } }')["twin"] is None
    # a read that opts in sees it again
    assert api.data('{ twin(uid: "m-life-1", includeRetired: true) { uid } }')["twin"] == {"uid": "m-life-1"}
    opted = api.data(LIST.replace("machines(", "machines(includeRetired: true, "))["machines"]["nodes"]
    assert sorted(n["uid"] for n in opted) == ["m-life-0", "m-life-1"]
    status, body = api.gql(MOVE, {"u": "m-life-1", "s": "suspended"}, role="architect")
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "cannot go from retired to suspended; from retired it may go to active" in error["message"]
    status, body = api.gql(MOVE, {"u": "m-life-0", "s": "retired"}, role="viewer")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert [n["uid"] for n in api.data(LIST)["machines"]["nodes"]] == ["m-life-0"]  # the denied move changed nothing
    audited = [r for r in api.audit_records() if r.operation == "twin.lifecycle"]
    # the move, the refused bad transition and the denied one, in order
    assert [r.decision for r in audited][-3:] == ["allow", "deny", "deny"]
    assert "Machine m-life-1: active -> retired (sold)" in [r.detail for r in audited]
