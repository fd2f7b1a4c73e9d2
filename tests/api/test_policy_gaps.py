"""Gaps a review found in what the policy lets through, each closed: lineage digests of masked values, relationship
properties, row-ruled roles combined with others, paths for row-ruled roles, and cursors no one issued."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from governance.lineage import ProvenanceRecord
from tests.api.conftest import ApiHarness


@pytest.fixture(scope="module")
def salary_lineage(api: ApiHarness) -> None:
    """Lineage of emp-05's salary and name, as a connector would record it."""
    lineage = api.runtime.lineage
    run = lineage.start_run("connector", "hr-review-test")
    lineage.record(
        [
            ProvenanceRecord.of(
                "emp-05",
                prop,
                value,
                source_system="hr",
                source_object="people",
                record_key="E005",
                run_id=run.run_id,
                source_field=prop,
            )
            for prop, value in (("salary", 55000.0), ("name", "Person 05"))
        ]
    )


@pytest.mark.parametrize(
    "role,digest_of",
    [
        ("admin", {"salary", "name"}),
        ("architect", {"name"}),
        ("data_steward", {"name"}),
        ("compliance", {"salary", "name"}),
    ],
)
def test_lineage_digests_only_of_values_the_caller_may_see_or_hash(
    api: ApiHarness, salary_lineage: None, role: str, digest_of: set[str]
) -> None:
    records = api.data('{ lineage(uid: "emp-05") { property value valueDigest } }', role=role)["lineage"]
    by_property = {r["property"]: r for r in records}
    assert {p for p, r in by_property.items() if r["valueDigest"] is not None} == digest_of
    assert all(len(r["valueDigest"]) == 64 for r in records if r["valueDigest"] is not None)


def test_relationship_properties_are_masked_like_twin_properties(api: ApiHarness) -> None:
    query = "{ materials { nodes { uid leadTimeDays suppliedBy { edges { leadTimeDays } } } } }"
    admin = api.data(query)["materials"]["nodes"]
    assert [e["leadTimeDays"] for n in admin for e in n["suppliedBy"]["edges"]] == [14]
    status, body = api.gql(query, role="viewer")
    assert status == 200 and "errors" not in body
    assert [e["leadTimeDays"] for n in body["data"]["materials"]["nodes"] for e in n["suppliedBy"]["edges"]] == [None]
    masked = body["extensions"]["masked"]
    assert {"className": "supplies", "field": "leadTimeDays", "mode": "null", "count": 1} in masked


def test_a_row_ruled_role_shows_its_fields_only_where_no_other_role_widens_the_rows(api: ApiHarness) -> None:
    query = "{ employees(first: 50) { nodes { uid email worksIn { nodes { uid } } } } }"
    hr_alone = api.data(query, role="hr", org_unit="u-eng-tools")["employees"]["nodes"]
    assert hr_alone and all("@" in n["email"] for n in hr_alone)  # its own unit: shown
    token = api.issuer.issue_token(["hr", "executive"], sub="hr-and-exec", org_unit="u-eng-tools")
    status, body = api.gql(query, token=token)
    assert status == 200 and "errors" not in body
    both = body["data"]["employees"]["nodes"]
    outside = [n for n in both if n["worksIn"]["nodes"] and n["worksIn"]["nodes"][0]["uid"] != "u-eng-tools"]
    assert outside and all("@" not in n["email"] for n in both)  # never the clear address outside hr's unit


def test_paths_work_for_roles_with_row_rules(api: ApiHarness) -> None:
    query = '{ path(source: "emp-02", target: "u-root") { length types nodes { uid } } }'
    hr = api.data(query, role="hr", org_unit="u-eng-tools")["path"]
    assert hr == api.data(query, role="architect")["path"]
    assert hr["nodes"][0]["uid"] == "emp-02" and hr["length"] == len(hr["types"]) >= 2
    outside = api.data('{ path(source: "emp-01", target: "u-root") { length } }', role="hr", org_unit="u-eng-tools")
    assert outside["path"] is None  # emp-01 works in u-sales: outside the caller's scope


@pytest.mark.parametrize("offset", [2**31, 2**63 - 1, 10**30])
def test_cursors_no_one_issued_are_refused_clearly(api: ApiHarness, offset: int) -> None:
    cursor = base64.urlsafe_b64encode(f"twin-cursor:{offset}".encode()).decode()
    for query in (
        "query($c: String) { employees(first: 2, after: $c) { nodes { uid } } }",
        "query($c: String) { orgUnits { nodes { hasMember(first: 2, after: $c) { nodes { uid } } } } }",
    ):
        status, body = api.gql(query, {"c": cursor})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
        assert "not a cursor this API issued" in body["errors"][0]["message"]


def test_link_properties_in_history_are_masked_by_their_classification(api: ApiHarness, tmp_path: Path) -> None:
    """A policy that redacts Internal values for a role with history.read: the link entries of a twin's history
    show the link's properties masked, as the edges of a connection do."""
    from api.context import RequestContext
    from api.graphql.records import _masked_link
    from governance.identity import Subject
    from governance.policy import load_policy

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "version: test\nroles:\n  auditor:\n    description: history, Internal values redacted\n"
        "    read: ['*']\n    fields: {Internal: redact}\n    operations: [history.read]\n",
        encoding="utf-8",
    )
    ontology = api.store.ontology
    rel = ontology.relationships("Supplier")["supplies"]

    def context(policy_path: object, role: str) -> RequestContext:
        policy = load_policy(ontology, policy_path)  # type: ignore[arg-type]
        subject = Subject(f"test-{role}", frozenset({role}))
        return RequestContext(subject, policy, policy.read_scope(subject), api.store, None)

    auditor = context(policy_file, "auditor")
    assert _masked_link(auditor, "supplies", rel, {"leadTimeDays": 14}) == {"leadTimeDays": "***"}
    assert auditor.masked_report() == [{"className": "supplies", "field": "leadTimeDays", "mode": "redact", "count": 1}]
    assert _masked_link(context(None, "admin"), "supplies", rel, {"leadTimeDays": 14}) == {"leadTimeDays": 14}
