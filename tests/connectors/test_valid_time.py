"""Valid time beside transaction time (graph/valid_time.py): a real sync of an HR table with an effective-date column.
A transfer effective next month is in the live graph at once (transaction time) but invisible at validAt=now and
visible at validAt=next month; a hire effective next month is not there yet at validAt=now; what a twin held before
its first dated record stays valid until the record takes effect; asOf before the sync still answers as known then;
a malformed effective date quarantines the record naming the field; validAt without valid time is a clear error."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from connectors.mapping import MappingError, parse_mapping
from connectors.quarantine import QuarantineStore
from connectors.sql_source import SqlSource
from connectors.sync import Connector, SyncEngine
from graph.embedded import stop_embedded
from graph.store import GraphStore
from graph.valid_time import ValidTimes, ValidTimeUnavailable
from ontology.model import Ontology
from tests.connectors.twin_fixtures import core  # noqa: F401

MAPPING = """\
system: hr
entities:
  - name: employees
    class: Employee
    uid: "hr:employee:{code}"
    key: code
    watermark: updated_at
    properties:
      employeeId: code
      name: name
      jobTitle: title
    valid_from: effective_date
"""

NOW = dt.datetime.now(dt.UTC)
NEXT_MONTH = (NOW + dt.timedelta(days=31)).date().isoformat()
LAST_YEAR = (NOW - dt.timedelta(days=365)).date().isoformat()


def hr_source(tmp_path: Path, rows: list[tuple[str, str, str, str | None]]) -> str:
    """A SQLite HR table: code, name, title, effective_date, updated_at."""
    url = f"sqlite:///{tmp_path / 'hr.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE employees (id INTEGER PRIMARY KEY, code TEXT, name TEXT, title TEXT, "
                "effective_date TEXT, updated_at TEXT)"
            )
        )
        for code, name, title, effective in rows:
            conn.execute(
                text(
                    "INSERT INTO employees (code, name, title, effective_date, updated_at) "
                    "VALUES (:c, :n, :t, :e, '2025-01-01 00:00:00')"
                ),
                {"c": code, "n": name, "t": title, "e": effective},
            )
    engine.dispose()
    return url


def connector(core: Ontology, url: str, mapping: str = MAPPING) -> Connector:  # noqa: F811
    return Connector(
        "hr",
        parse_mapping(mapping, core, "hr.yaml"),
        lambda e: SqlSource(url, table=e.name, key="code", watermark=e.watermark, name=e.name),
    )


@pytest.fixture
def store(tmp_path: Path, core: Ontology) -> Iterator[GraphStore]:  # noqa: F811
    """An embedded graph with history (valid time lives beside it)."""
    opened = GraphStore.open(
        f"falkordb+embedded://{tmp_path / 'graph'}", core, history_url=f"sqlite:///{tmp_path / 'history.db'}"
    )
    try:
        yield opened
    finally:
        opened.close()
        stop_embedded(tmp_path / "graph")


def _mark() -> dt.datetime:
    time.sleep(0.01)
    when = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    return when


def titles(store: GraphStore, when: dt.datetime | None = None, valid_at: dt.datetime | None = None) -> dict[str, str]:
    """uid -> jobTitle (None when absent) of every employee, as the reader at (when, valid_at) sees them."""
    reader = store.at(when, valid_at)
    return {t.uid: t.properties.get("jobTitle") for t in reader.twins_of(["Employee"])}


def later(days: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)


def test_a_future_dated_transfer_is_valid_only_from_its_date(
    core: Ontology,  # noqa: F811
    store: GraphStore,
    tmp_path: Path,
) -> None:
    url = hr_source(
        tmp_path,
        [
            ("E1", "Ada", "Engineer", LAST_YEAR),
            ("E2", "Bob", "Clerk", None),  # no effective date: valid from when it is written
            ("E3", "Cy", "Analyst", NEXT_MONTH),  # a hire that starts next month
            ("E4", "Di", "Nurse", "next tuesday"),  # not a date
        ],
    )
    hr = connector(core, url)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = SyncEngine(store, state_url)
    report = engine.run(hr, "full")
    quarantined = {q.record_key: q for q in QuarantineStore(state_url).rows("hr")}
    assert set(quarantined) == {"E4"} and report.counts["quarantined"] == 1
    assert quarantined["E4"].rule == "valid_from" and quarantined["E4"].field == "effective_date"
    assert "'next tuesday' is not an ISO 8601 date" in quarantined["E4"].message
    first = _mark()

    with create_engine(url).begin() as conn:  # Ada's transfer, effective next month
        conn.execute(
            text(
                "UPDATE employees SET title = 'Manager', effective_date = :e, updated_at = '2025-02-01' "
                "WHERE code = 'E1'"
            ),
            {"e": NEXT_MONTH},
        )
    engine.run(hr, "incremental")
    second = _mark()

    live = titles(store)  # transaction time: the graph holds what the source said last
    assert live == {"hr:employee:E1": "Manager", "hr:employee:E2": "Clerk", "hr:employee:E3": "Analyst"}
    assert titles(store, valid_at=later(0)) == {"hr:employee:E1": "Engineer", "hr:employee:E2": "Clerk"}
    assert titles(store, valid_at=later(40)) == live
    assert titles(store, second, later(40)) == live  # asOf given explicitly, same answer
    # as known before the transfer was entered: Ada stays an engineer next month too
    assert titles(store, first, later(40)) == {
        "hr:employee:E1": "Engineer",
        "hr:employee:E2": "Clerk",
        "hr:employee:E3": "Analyst",
    }
    # a valid time before anything took effect: only what has no later start (none here) shows
    assert titles(store, valid_at=NOW - dt.timedelta(days=3650)) == {}
    assert store.at(None, later(0)).get("hr:employee:E3") is None  # not hired yet
    hired = store.at(None, later(40)).get("hr:employee:E3")
    assert hired is not None and hired.properties["name"] == "Cy"


def test_values_held_before_the_first_dated_record_stay_valid_until_it_takes_effect(
    core: Ontology,  # noqa: F811
    store: GraphStore,
    tmp_path: Path,
) -> None:
    url = hr_source(tmp_path, [("E1", "Ada", "Engineer", None)])
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = SyncEngine(store, state_url)
    engine.run(connector(core, url, MAPPING.replace("    valid_from: effective_date\n", "")), "full")  # no valid time
    with pytest.raises(ValidTimeUnavailable, match="no valid time is recorded.*valid_from"):
        store.at(None, later(0))
    with create_engine(url).begin() as conn:
        conn.execute(
            text("UPDATE employees SET title = 'Manager', effective_date = :e, updated_at = '2025-02-01'"),
            {"e": NEXT_MONTH},
        )
    engine.run(connector(core, url), "full")  # the mapping now names the effective date
    assert titles(store) == {"hr:employee:E1": "Manager"}
    assert titles(store, valid_at=later(0)) == {"hr:employee:E1": "Engineer"}  # the baseline, until next month
    assert titles(store, valid_at=later(40)) == {"hr:employee:E1": "Manager"}
    # the same effective date given again with other values: the later recording wins
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE employees SET title = 'Director', updated_at = '2025-03-01'"))
    engine.run(connector(core, url), "full")
    assert titles(store, valid_at=later(0)) == {"hr:employee:E1": "Engineer"}
    assert titles(store, valid_at=later(40)) == {"hr:employee:E1": "Director"}
    versions = ValidTimes.beside(store.history).versions(dt.datetime.now(dt.UTC))["hr:employee:E1"]  # type: ignore[arg-type]
    assert [v.valid_from is None for v in versions] == [True, False, False]


def test_valid_from_must_name_a_field(core: Ontology) -> None:  # noqa: F811
    with pytest.raises(MappingError, match="valid_from must name the source field"):
        parse_mapping(MAPPING.replace("valid_from: effective_date", "valid_from: [a, b]"), core, "hr.yaml")
    association = """\
system: hr
entities:
  - name: skills
    link: {type: hasSkill, source: "hr:employee:{e}", target: "hr:skill:{s}"}
    valid_from: since
"""
    with pytest.raises(MappingError, match="an association entity"):
        parse_mapping(association, core, "hr.yaml")
