"""`asOf` on the GraphQL root reads and `diff(from:, to:)`: the same queries, policy and masks on the graph as it was;
times outside the record are refused with a clear error; past states need history.read."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from governance.tokens import LocalIssuer
from graph.embedded import stop_embedded
from graph.model import Link, Twin
from tests.api.conftest import ApiHarness, _settings, sample_twins


@dataclass
class Past:
    """The app over a graph with a history, and the times between its steps."""

    api: ApiHarness
    loaded: str  # after the load
    moved: str  # after u-eng-tools moved under sales and emp-05 was deleted
    now: str


def _mark() -> str:
    time.sleep(0.005)
    when = dt.datetime.now(dt.UTC).isoformat()
    time.sleep(0.005)
    return when


@pytest.fixture(scope="module")
def past(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Past]:
    data_dir: Path = tmp_path_factory.mktemp("asof-api")
    runtime = Runtime(settings=_settings(data_dir))
    try:
        store = runtime.store
        twins, links = sample_twins()
        store.upsert_twins(twins)
        store.upsert_links(links)
        loaded = _mark()
        store.upsert_twins([Twin("emp-01", "Employee", {"salary": 99_000.0, "email": "new@example.test"})])
        store.delete_twins(["emp-05"])
        store.delete_links([("partOf", "u-eng-tools", "u-eng")])
        store.upsert_links([Link("partOf", "u-eng-tools", "u-sales")])
        moved = _mark()
        with TestClient(create_app(runtime)) as client:
            yield Past(ApiHarness(client, runtime, LocalIssuer(data_dir)), loaded, moved, _mark())
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")


EMPLOYEES = "query($at: DateTime) { employees(asOf: $at, first: 100) { totalCount nodes { uid salary email } } }"


def test_a_list_read_as_of_shows_the_graph_as_it_was(past: Past) -> None:
    now = past.api.data(EMPLOYEES)["employees"]
    then = past.api.data(EMPLOYEES, {"at": past.loaded})["employees"]
    assert then["totalCount"] == now["totalCount"] + 1  # emp-05 was deleted since
    by_uid = {n["uid"]: n for n in then["nodes"]}
    assert by_uid["emp-01"]["salary"] == 51_000.0 and by_uid["emp-01"]["email"] == "person1@example.test"
    assert {n["uid"]: n for n in now["nodes"]}["emp-01"]["salary"] == 99_000.0
    one = past.api.data(
        'query($at: DateTime) { twin(uid: "emp-05", asOf: $at) { uid ... on Employee { name } } }', {"at": past.loaded}
    )
    assert one["twin"] == {"uid": "emp-05", "name": "Person 05"}


def test_masks_and_row_rules_apply_to_the_past(past: Past) -> None:
    steward = past.api.data(EMPLOYEES, {"at": past.loaded}, role="data_steward")["employees"]["nodes"]
    email = {n["uid"]: n["email"] for n in steward}["emp-01"]
    assert email != "person1@example.test" and email is not None  # partially masked, as a live read masks it
    query = "query($at: DateTime) { employees(asOf: $at, first: 100) { nodes { uid } } }"
    # hr of engineering: u-eng-tools (emp-02, emp-05, ...) was part of engineering, then moved under sales
    then = {
        n["uid"] for n in past.api.data(query, {"at": past.loaded}, role="hr", org_unit="u-eng")["employees"]["nodes"]
    }
    now = {
        n["uid"] for n in past.api.data(query, {"at": past.moved}, role="hr", org_unit="u-eng")["employees"]["nodes"]
    }
    assert {"emp-02", "emp-05", "emp-00"} <= then
    assert "emp-02" not in now and "emp-05" not in now and "emp-00" in now


def test_aggregate_impact_and_search_take_as_of(past: Past) -> None:
    query = """query($at: DateTime) {
      aggregate(className: Employee, asOf: $at) { metrics { value } }
      search(text: "Person", first: 50, asOf: $at) { twin { uid } }
      impact(uid: "machine-0", asOf: $at) { twin { uid } }
    }"""
    then = past.api.data(query, {"at": past.loaded})
    now = past.api.data(query)
    assert then["aggregate"][0]["metrics"][0]["value"] == now["aggregate"][0]["metrics"][0]["value"] + 1
    assert "emp-05" in {h["twin"]["uid"] for h in then["search"]}
    assert "emp-05" not in {h["twin"]["uid"] for h in now["search"]}
    assert then["impact"] == now["impact"]


def test_diff_lists_the_changes_masked_and_needs_history_read(past: Past) -> None:
    query = """query($from: DateTime!, $to: DateTime) {
      diff(from: $from, to: $to) { uid kind op className linkType target fields before after }
    }"""
    found = past.api.data(query, {"from": past.loaded, "to": past.moved})["diff"]
    ops = {(d["kind"], d["op"], d["uid"], d["linkType"], d["target"]) for d in found}
    assert ("twin", "delete", "emp-05", None, None) in ops
    assert ("link", "create", "u-eng-tools", "partOf", "u-sales") in ops
    update = next(d for d in found if d["uid"] == "emp-01" and d["kind"] == "twin")
    assert update["fields"] == ["email", "salary"] and update["after"]["email"] == "new@example.test"
    masked = past.api.data(query, {"from": past.loaded, "to": past.moved}, role="compliance")["diff"]
    email = next(d for d in masked if d["uid"] == "emp-01" and d["kind"] == "twin")["after"]["email"]
    assert email.startswith("sha256:")
    status, body = past.api.gql(query, {"from": past.loaded}, role="executive")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_as_of_needs_history_read(past: Past) -> None:
    status, body = past.api.gql(EMPLOYEES, {"at": past.loaded}, role="executive")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert past.api.data(EMPLOYEES, role="executive")["employees"]["totalCount"] > 0  # the live graph stays readable


@pytest.mark.parametrize(
    ("at", "problem"),
    [("1999-01-01T00:00:00+00:00", "before the first recorded change"), ("2999-01-01T00:00:00", "in the future")],
)
def test_times_outside_the_record_are_clear_errors(past: Past, at: str, problem: str) -> None:
    status, body = past.api.gql(EMPLOYEES, {"at": at})
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and problem in error["message"]
    assert body["data"] is None or body["data"].get("employees") is None


def test_hidden_fields_stay_hidden_in_the_past(past: Past) -> None:
    read = "query($at: DateTime) { employees(asOf: $at, first: 100) { nodes { uid salary email } } }"
    status, body = past.api.gql(read, {"at": past.loaded}, role="architect")
    assert "errors" not in body, body
    values = [n["salary"] for n in body["data"]["employees"]["nodes"]] + [
        n["email"] for n in body["data"]["employees"]["nodes"]
    ]
    assert 53_000.0 not in values and "person3@example.test" not in values
    assert {m["field"] for m in body["extensions"]["masked"]} >= {"salary", "email"}
    for query in (
        "query($at: DateTime) { employees(asOf: $at, where: {salary: {eq: 53000}}) { totalCount } }",
        'query($at: DateTime) { aggregate(className: Employee, asOf: $at, groupBy: ["salary"]) { group } }',
    ):
        status, body = past.api.gql(query, {"at": past.loaded}, role="architect")
        assert body["errors"][0]["extensions"]["code"] == "FIELD_NOT_READABLE", body


def test_the_running_ontology_is_recorded_as_a_version(past: Past) -> None:
    from graph.ontology_versions import OntologyVersions, digest_of, terms_of

    versions = OntologyVersions(past.api.runtime.settings.resolved_database_url).all()
    assert [(v.actor, v.active, v.digest) for v in versions] == [
        ("api", False, digest_of(terms_of(past.api.runtime.ontology)))
    ]
