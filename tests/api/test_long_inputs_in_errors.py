"""An error quotes at most a short prefix of what the caller sent: a 1 MB uid, key or value is never echoed back
whole (issue 23, "Error messages echo a 1 MB uid back whole")."""

from __future__ import annotations

import pytest

from tests.api.conftest import ApiHarness

HUGE = "u" * 1_000_000


@pytest.mark.parametrize(
    "query,variables",
    [
        ("query($u: ID!) { history(uid: $u) { op } }", {"u": HUGE}),
        ("query($u: ID!) { lineage(uid: $u) { property } }", {"u": HUGE}),
        ("query($u: ID!) { scenarioRun(id: $u) { id } }", {"u": HUGE}),
        ("query($w: JSON) { aggregate(className: Machine, where: $w) { group } }", {"w": {HUGE: {"eq": 1}}}),
        ("query($w: JSON) { aggregate(className: Machine, where: $w) { group } }", {"w": {"name": {HUGE: 1}}}),
        ("query($g: [String!]) { aggregate(className: Machine, groupBy: $g) { group } }", {"g": [HUGE]}),
        ("query($w: JSON) { aggregate(className: Machine, where: $w) { group } }", {"w": {"mtbfHours": {"eq": HUGE}}}),
    ],
)
def test_an_error_quotes_a_short_prefix_of_a_huge_input(api: ApiHarness, query: str, variables: dict) -> None:
    status, body = api.gql(query, variables)
    errors = body.get("errors")
    assert errors, body
    message = errors[0]["message"]
    assert len(message) < 400, message[:500]
    assert "internal error" not in message
    assert "uuuuuuuu" in message or "1000000" in message, message  # the input is still named by its prefix


def test_quoted_keeps_short_inputs_whole_and_cuts_long_ones() -> None:
    from ontology.errors import quoted

    assert quoted("machine-1") == "'machine-1'"
    long = quoted("x" * 5000)
    assert long.startswith("'xxxx") and "5000 characters" in long and len(long) < 100
    assert quoted(12345) == "12345"
    assert quoted("\x00" * 3) == repr("\x00" * 3)
