"""Values the graph stores exactly or refuses: durations to the microsecond, integers only within 64 bits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.backends import falkor_params
from graph.embedded import stop_embedded
from graph.errors import QueryError
from graph.model import Twin
from graph.store import GraphStore
from graph.transfer import export_graph, read_graph_file
from graph.values import encode
from ontology.core import load_core
from ontology.durations import parse_duration
from ontology.model import ClassDef, Ontology, PropertyDef
from ontology.schema import Schema, check_value, primitive

DURATIONS = [
    dt.timedelta(microseconds=5),
    dt.timedelta(seconds=12.345678),
    dt.timedelta(seconds=59, microseconds=999999),
    dt.timedelta(days=3, hours=4),
]
DURATION = Schema("duration")


@pytest.mark.parametrize(
    "delta",
    [
        *DURATIONS,
        dt.timedelta(0),
        dt.timedelta(microseconds=-1),
        -dt.timedelta(days=2, seconds=1.5),
        dt.timedelta.max,
        dt.timedelta.min,
    ],
)
def test_durations_are_encoded_exactly_and_pass_the_ontology_check(delta: dt.timedelta) -> None:
    text = encode(delta, DURATION)
    assert "e" not in text.lower() and check_value(text, DURATION) == []
    assert parse_duration(text) == delta


def test_duration_text_is_canonical_iso_8601() -> None:
    assert encode(dt.timedelta(microseconds=5), DURATION) == "PT0.000005S"
    assert encode(dt.timedelta(seconds=59, microseconds=999999), DURATION) == "PT59.999999S"
    assert encode(dt.timedelta(seconds=90, microseconds=500000), DURATION) == "PT1M30.5S"
    assert encode(dt.timedelta(days=3, hours=4), DURATION) == "P3DT4H"
    assert encode(-dt.timedelta(minutes=15), DURATION) == "-PT15M"


@pytest.fixture
def core_store(graph_data_dir: Path, tmp_path: Path) -> Iterator[GraphStore]:
    """An empty store of the core ontology on an embedded graph, with history in SQLite."""
    store = GraphStore.open(
        f"falkordb+embedded://{graph_data_dir}", load_core(), history_url=f"sqlite:///{tmp_path / 'history.db'}"
    )
    yield store
    store.close()


def test_durations_round_trip_through_the_graph_and_an_export(core_store: GraphStore, tmp_path: Path) -> None:
    twins = [Twin(f"a{i}", "Activity", {"name": f"step {i}", "plannedDuration": d}) for i, d in enumerate(DURATIONS)]
    core_store.upsert_twins(twins)
    for twin, delta in zip(twins, DURATIONS, strict=True):
        assert parse_duration(core_store.get(twin.uid).properties["plannedDuration"]) == delta
    assert core_store.upsert_twins(twins).unchanged == len(twins)  # the same value encodes to the same text

    path = tmp_path / "graph.jsonl"
    with path.open("w", encoding="utf-8") as out:
        export_graph(core_store, out)
    copy_dir = tmp_path / "copy"
    try:
        copy, summary = GraphStore.load(
            f"falkordb+embedded://{copy_dir}",
            load_core(),
            *read_graph_file(path),
            history_url=f"sqlite:///{tmp_path / 'copy.db'}",
        )
        try:
            assert summary.created == len(twins)
            for twin, delta in zip(twins, DURATIONS, strict=True):
                assert parse_duration(copy.get(twin.uid).properties["plannedDuration"]) == delta
        finally:
            copy.close()
    finally:
        stop_embedded(copy_dir)


def _counter_ontology() -> Ontology:
    return Ontology(
        [ClassDef("https://x.test#C", "C", properties=(PropertyDef("counter", primitive("unsignedLong")),))],
        iri="https://x.test",
    )


def test_integers_beyond_64_bits_are_refused_not_clamped(graph_data_dir: Path, tmp_path: Path) -> None:
    store = GraphStore.open(
        f"falkordb+embedded://{graph_data_dir}", _counter_ontology(), history_url=f"sqlite:///{tmp_path / 'history.db'}"
    )
    try:
        with pytest.raises(QueryError, match="9223372036854775808 does not fit a 64-bit integer"):
            store.upsert_twins([Twin("c1", "C", {"counter": 2**63})])
        assert store.get("c1") is None and store.history_of("c1") == []  # nothing written, nothing recorded
        store.upsert_twins([Twin("c2", "C", {"counter": 2**63 - 1})])
        with pytest.raises(QueryError, match="18446744073709551615 does not fit"):
            store.upsert_twins([Twin("c2", "C", {"counter": 2**64 - 1})])  # an update: the old value stays
        assert store.get("c2").properties["counter"] == 2**63 - 1
        assert [e.after for e in store.history_of("c2")] == [{"counter": 2**63 - 1}]
    finally:
        store.close()


@pytest.mark.parametrize(
    "params",
    [
        {"rows": [[2**63]]},
        {"rows": [["x", -(2**63) - 1]]},
        {"rows": [{"p": 2**63}]},
        {"v": 2**70},
        {"rows": [['has "quote"', 2**63]]},
    ],
)
def test_parameter_encoder_refuses_integers_beyond_64_bits(params: dict[str, object]) -> None:
    with pytest.raises(QueryError, match="does not fit a 64-bit integer"):
        falkor_params(params)


def test_parameter_encoder_keeps_the_64_bit_ends_and_digit_text() -> None:
    header = falkor_params({"v": [[2**63 - 1, -(2**63)]]})
    assert "9223372036854775807" in header and "-9223372036854775808" in header
    assert falkor_params({"v": [["12345678901234567890123"]]}) == 'CYPHER v=[["12345678901234567890123"]] '
