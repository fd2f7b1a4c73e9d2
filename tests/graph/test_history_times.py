"""History times in any zone mean the same instant: `as_of` and `record(at=...)` on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from graph.history import Change, ChangeContext, HistoryStore
from graph.model import Twin
from graph.store import GraphStore
from tests.graph.contract_ontology import contract_ontology

ZONES = [
    dt.UTC,
    dt.timezone(dt.timedelta(hours=2)),
    dt.timezone(dt.timedelta(hours=-5)),
    dt.timezone(dt.timedelta(hours=5, minutes=30)),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh history database: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_as_of_gives_the_same_state_in_every_zone(graph_data_dir: Path, history_url: str) -> None:
    store = GraphStore.open(f"falkordb+embedded://{graph_data_dir}", contract_ontology(), history_url=history_url)
    try:
        store.upsert_twins([Twin("u1", "Unit", {"name": "v1"})])
        time.sleep(0.02)
        mid = dt.datetime.now(dt.UTC)
        time.sleep(0.02)
        store.upsert_twins([Twin("u1", "Unit", {"name": "v2"})])
        for zone in ZONES:
            assert store.as_of("u1", mid.astimezone(zone)) == {"name": "v1", "_class": "Unit"}, zone
        assert store.as_of("u1", mid.replace(tzinfo=None)) == {"name": "v1", "_class": "Unit"}  # naive is UTC
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        assert {store.as_of("u1", later.astimezone(zone))["name"] for zone in ZONES} == {"v2"}  # type: ignore[index]
    finally:
        store.close()


def test_record_at_a_time_in_another_zone_stores_that_instant(history_url: str) -> None:
    store = HistoryStore(history_url)
    noon = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
    store.record(
        [Change("t", "twin", "create", None, {"v": 1}, "Plant")],
        ChangeContext(),
        at=noon.astimezone(dt.timezone(dt.timedelta(hours=-5))),
    )  # 07:00 -05:00
    store.record(
        [Change("t", "twin", "update", {"v": 1}, {"v": 2}, "Plant")],
        ChangeContext(),
        at=(noon + dt.timedelta(hours=1)).astimezone(dt.timezone(dt.timedelta(hours=9))),
    )  # 22:00 +09:00
    assert [e.at for e in store.history("t")] == [noon, noon + dt.timedelta(hours=1)]
    assert store.as_of("t", noon - dt.timedelta(seconds=1)) is None
    assert store.as_of("t", noon.astimezone(dt.timezone(dt.timedelta(hours=3))))["v"] == 1  # type: ignore[index]
    assert store.as_of("t", noon + dt.timedelta(minutes=30))["v"] == 1  # type: ignore[index]
    assert store.as_of("t", noon + dt.timedelta(hours=1))["v"] == 2  # type: ignore[index]


def test_a_time_that_is_not_a_datetime_is_refused_by_name(tmp_path: Path) -> None:
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    with pytest.raises(TypeError, match="as_of's `when` must be a datetime, got date"):
        store.as_of("t", dt.date(2024, 6, 1))  # type: ignore[arg-type]
