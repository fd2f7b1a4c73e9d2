"""ISO 8601 durations: one reader and one canonical writer, used by the ontology check, the graph's stored form,
GraphQL's Duration scalar and the connectors' casts."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.transforms import TransformError, cast_value
from connectors.tryton import tryton_value
from graph.values import encode
from ontology.durations import (
    Duration,
    DurationError,
    canonical_duration,
    format_duration,
    is_duration,
    parse_duration,
    read_duration,
)
from ontology.schema import Schema, check_value

DURATION = Schema("duration")


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("P1DT2H", dt.timedelta(days=1, hours=2)),
        ("PT0.5S", dt.timedelta(milliseconds=500)),
        ("-PT15M", dt.timedelta(minutes=-15)),
        ("-P2DT1.5S", -dt.timedelta(days=2, seconds=1.5)),
        ("P1W2DT0.25S", dt.timedelta(days=9, milliseconds=250)),
        ("PT90M", dt.timedelta(minutes=90)),
        ("PT0.000001S", dt.timedelta(microseconds=1)),
        ("PT1.5000000S", dt.timedelta(seconds=1.5)),  # trailing zeros past the microsecond are still exact
        ("PT0S", dt.timedelta(0)),
    ],
)
def test_duration_text_converts_exactly(text: str, delta: dt.timedelta) -> None:
    assert parse_duration(text) == delta
    assert is_duration(text) and check_value(text, DURATION) == []


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (dt.timedelta(days=1, hours=2), "P1DT2H"),
        (dt.timedelta(milliseconds=500), "PT0.5S"),
        (dt.timedelta(minutes=-15), "-PT15M"),
        (dt.timedelta(0), "PT0S"),
        (dt.timedelta(microseconds=5), "PT0.000005S"),
        (dt.timedelta(days=3, hours=4), "P3DT4H"),
        (dt.timedelta(hours=26, seconds=5), "P1DT2H5S"),
        (-dt.timedelta(days=2, seconds=1.5), "-P2DT1.5S"),
        (dt.timedelta.max, "P999999999DT23H59M59.999999S"),
        (dt.timedelta.min, "-P999999999D"),
    ],
)
def test_the_canonical_text_leaves_zero_parts_out(delta: dt.timedelta, text: str) -> None:
    assert format_duration(delta) == text


@given(st.timedeltas())
def test_every_timedelta_reads_back_from_its_text(delta: dt.timedelta) -> None:
    text = format_duration(delta)
    assert "e" not in text.lower() and parse_duration(text) == delta and canonical_duration(text) == text


@pytest.mark.parametrize(
    "garbage", ["5 days", "", "P", "PT", "P1DT", "P1DT2", "1DT2H", "P1.5D", "PT1H ", "P1D\n", "P-1D", "PT1,5S", "p1d"]
)
def test_garbage_is_refused_naming_the_value(garbage: str) -> None:
    with pytest.raises(DurationError, match="is not an ISO 8601 duration") as refused:
        parse_duration(garbage)
    assert repr(garbage) in str(refused.value)
    assert not is_duration(garbage) and check_value(garbage, DURATION) != []
    with pytest.raises(ValueError):  # every caller that refuses a ValueError refuses a DurationError
        read_duration(garbage)


def test_years_months_and_sub_microseconds_read_but_have_no_exact_timedelta() -> None:
    assert read_duration("P1Y2M") == Duration(years=1, months=2)
    assert is_duration("P1Y2M") and check_value("P1Y2M", DURATION) == []
    with pytest.raises(DurationError, match=r"'P1Y2M' has years or months"):
        parse_duration("P1Y2M")
    with pytest.raises(DurationError, match=r"'PT0.0000001S' is finer than a microsecond"):
        parse_duration("PT0.0000001S")
    assert canonical_duration("P1Y2M") == "P1Y2M"  # kept as written


def test_huge_and_non_text_values_are_refused_naming_them() -> None:
    with pytest.raises(DurationError, match=r"'P99999999999D' is longer than any duration"):
        parse_duration("P99999999999D")
    with pytest.raises(DurationError, match=r"\(5002 characters\) has a part too long"):
        parse_duration(f"P{'9' * 5000}D")
    with pytest.raises(DurationError, match="5 is not an ISO 8601 duration"):
        parse_duration(5)  # type: ignore[arg-type]


def test_the_graph_the_casts_and_the_tryton_source_write_the_same_text() -> None:
    delta = dt.timedelta(hours=1, minutes=30)
    assert (
        encode(delta, DURATION)
        == cast_value(delta, "duration")
        == cast_value(5400, "duration")
        == cast_value(" PT90M ", "duration")
        == tryton_value(delta)
        == "PT1H30M"
    )
    assert cast_value(0.25, "duration") == "PT0.25S"
    assert cast_value("P1Y", "duration") == "P1Y"
    with pytest.raises(TransformError, match="'soon' is not an ISO 8601 duration"):
        cast_value("soon", "duration")
    with pytest.raises(TransformError, match="nan is not a number of seconds"):
        cast_value(float("nan"), "duration")
