"""Query parameters reach FalkorDB unchanged, whichever encoder writes them (JSON for plain rows, literals else)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.backends import CypherBackend, falkor_params, open_backend
from graph.embedded import stop_embedded
from graph.errors import QueryError

text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=30)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
rows = st.lists(st.lists(scalars, max_size=5), max_size=8)  # the shape of a batch: lists of plain values
maps = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), scalars, max_size=4)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CypherBackend]:
    """An embedded graph with its key created (read-only queries need it)."""
    data_dir: Path = tmp_path_factory.mktemp("parameters")
    graph = open_backend(f"falkordb+embedded://{data_dir}", graph_name="parameters")
    graph.ensure_schema()
    yield graph
    graph.close()
    stop_embedded(data_dir)


def _same(sent: Any, got: Any) -> bool:
    if isinstance(sent, float):
        # FalkorDB stores doubles exactly but writes them into replies with 15 significant digits
        return isinstance(got, float) and float(f"{sent:.15g}") == got
    if isinstance(sent, list):
        return isinstance(got, list) and len(got) == len(sent) and all(map(_same, sent, got))
    if isinstance(sent, dict):
        return dict(got).keys() == sent.keys() and all(_same(v, got[k]) for k, v in sent.items())
    return type(got) is type(sent) and got == sent


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=rows)
def test_rows_of_plain_values_arrive_unchanged(backend: CypherBackend, value: list[list[Any]]) -> None:
    assert _same(value, backend.read("RETURN $v", {"v": value})[0][0])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.lists(maps, max_size=5))
def test_rows_of_maps_arrive_unchanged(backend: CypherBackend, value: list[dict[str, Any]]) -> None:
    assert _same(value, backend.read("RETURN $v", {"v": value})[0][0])


def test_text_that_json_would_escape_takes_the_literal_path() -> None:
    for tricky in ['say "hi"', "back\\slash", "tab\there", "brace {x}"]:
        header = falkor_params({"v": [[tricky]]})
        assert "\\u" not in header  # no JSON escape reached the graph's parser
    assert falkor_params({"v": [["plain", 1, 2.5, True, None]]}) == 'CYPHER v=[["plain", 1, 2.5, true, null]] '


def test_values_the_graph_cannot_hold_are_refused_by_name() -> None:
    for rows_or_maps in ([["a\x00b"]], [{"name": "a\x00b"}]):
        with pytest.raises(QueryError, match="NUL character"):
            falkor_params({"v": rows_or_maps})
    with pytest.raises(QueryError, match="inf"):
        falkor_params({"v": [[float("inf")]]})
    with pytest.raises(QueryError, match="set"):
        falkor_params({"v": [{1, 2}]})


def test_falkordb_failures_are_typed_where_they_are_known(backend: CypherBackend) -> None:
    from graph.errors import BackendRefused, QueryTimedOut

    with pytest.raises(BackendRefused, match="refused the query"):
        backend.read("RETURN nonsense(")
    with pytest.raises(QueryTimedOut):
        backend.read("UNWIND range(1, 50000000) AS x WITH x WHERE x % 7 = 3 RETURN count(x)", timeout_ms=1)
