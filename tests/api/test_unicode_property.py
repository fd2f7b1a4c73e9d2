"""Issue 22, "must show": arbitrary Unicode — lone surrogates, NUL, control characters, long strings — in variables,
operation names, uids, where values and REST paths never gets a 500; every request is either refused with a 4xx or
recorded in the audit log, and the audit chain verifies afterwards. Few examples in the default run."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.http.limits import INTERNAL_ERROR
from tests.api.conftest import ApiHarness

AWKWARD = ["\ud800", "\udfff", "\udbff\udc00", "\x00", "\x01", "\x1b[2J", "\x7f", "\u202e", "\ufeff", "\\", '"', "é"]

awkward_text = st.one_of(
    st.lists(st.one_of(st.sampled_from(AWKWARD), st.text(max_size=8)), max_size=12).map("".join),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=60),  # includes lone surrogates (Cs)
    st.builds(lambda s, n: s * n, st.sampled_from(["a", "\x00", "\ud800", "ß"]), st.integers(500, 6000)),
)

TARGETS = {
    "variable": lambda s: {"query": "query T($u: ID!) { twin(uid: $u) { uid } }", "variables": {"u": s}},
    "operation_name": lambda s: {"query": "query Q { __typename }", "operationName": s},
    "where": lambda s: {
        "query": "query W($v: String) { machines(where: {name: {contains: $v}}) { nodes { uid } } }",
        "variables": {"v": s},
    },
    "query_text": lambda s: {"query": "query Q { __typename } # " + s},
    "inline_uid": lambda s: {"query": "{ twin(uid: %s) { uid } }" % json.dumps(s)},
    "upsert_uid": lambda s: {
        "query": "mutation U($t: [TwinInput!]!) { upsertTwins(twins: $t) { created } }",
        "variables": {"t": [{"uid": s, "className": "Skill", "properties": {"name": s}}]},
    },
}


def _count(api: ApiHarness) -> int:
    trail = api.client.app.state.services.trail  # type: ignore[attr-defined]
    trail.flush()
    return trail.log.head()[0]


def _check(api: ApiHarness, status: int, body: Any, before: int, what: str) -> None:
    assert status < 500, (what, status, body)
    assert INTERNAL_ERROR not in json.dumps(body), (what, body)
    if status < 400:
        assert _count(api) > before, f"{what} was served but not audited"


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(text=awkward_text, target=st.sampled_from(sorted(TARGETS)), as_admin=st.booleans())
@example(text="\ud800", target="query_text", as_admin=False)  # a raw lone surrogate in the query text: was a 500
@example(text="", target="operation_name", as_admin=False)  # an operationName naming no operation: was a 500
@example(text="x\x00y", target="variable", as_admin=True)
@example(text="\udfff", target="where", as_admin=False)
@example(text="\ud800", target="upsert_uid", as_admin=True)
def test_arbitrary_unicode_is_refused_or_audited(api: ApiHarness, text: str, target: str, as_admin: bool) -> None:
    token = api.token("admin" if as_admin else "viewer")
    before = _count(api)
    payload = json.dumps(TARGETS[target](text)).encode("ascii")  # \u escapes: how a client sends any str
    answer = api.client.post(
        "/graphql", content=payload, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    _check(api, answer.status_code, answer.json() if answer.content else None, before, target)
    if target == "upsert_uid" and answer.status_code == 200 and not answer.json().get("errors"):
        api.store.delete_twins([json.loads(json.dumps(text))])  # the uid as the server decoded it


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=awkward_text)
@example(text="a\x00b")
def test_arbitrary_unicode_in_rest_paths_is_refused_or_audited(api: ApiHarness, text: str) -> None:
    before = _count(api)
    path = quote(text.encode("utf-8", "surrogatepass"), safe="")
    answer = api.client.get(f"/operations/jobs/{path}", headers={"Authorization": f"Bearer {api.token('admin')}"})
    assert answer.status_code < 500, answer.text
    assert answer.status_code >= 400 or _count(api) > before, "the job read was served but not audited"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=awkward_text, field=st.sampled_from(["spec", "replications", "executor"]))
@example(text="\ud800", field="replications")  # the validation error echoed it: a 500
def test_arbitrary_unicode_in_rest_bodies_is_refused_or_audited(api: ApiHarness, text: str, field: str) -> None:
    before = _count(api)
    body = {"spec": "name: x\n", field: text}
    answer = api.client.post(
        "/operations/scenarios",
        content=json.dumps(body).encode("ascii"),
        headers={"Authorization": f"Bearer {api.token('executive')}", "Content-Type": "application/json"},
    )
    assert answer.status_code < 500, answer.text
    assert answer.status_code >= 400 or _count(api) > before, "the study was started but not audited"


def test_the_audit_chain_verifies_after_the_properties(api: ApiHarness) -> None:
    """Runs after the two properties above (file order): everything they recorded chains and verifies."""
    _count(api)
    result = api.runtime.audit.verify()
    assert result.ok, result.message
