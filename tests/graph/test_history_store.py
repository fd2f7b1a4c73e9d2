"""The history store on SQLite and PostgreSQL: rows as given (text of any kind), in order, and the pending
transaction that a writer feeds piece by piece and then commits or rolls back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from graph.history import Change, ChangeContext, HistoryStore

AWKWARD = {
    "name": 'Zürich "Nord" \\ plant\nline 2\ttab',
    "emoji": "\U0001f3ed factory",
    "ctrl": "bell\x07 and unit\x1f separator",
    "n": 12345678901234567,
    "x": 0.1,
    "flag": False,
    "list": [1, "two", None],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh history database: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_recorded_states_read_back_exactly(history_url: str) -> None:
    store = HistoryStore(history_url)
    context = ChangeContext("alice", "erp", "run-1")
    written = store.record(
        [
            Change("t1", "twin", "create", None, AWKWARD, "Plant"),
            Change("t1", "link", "create", None, {}, None, "locatedAt", "site-1"),
            Change("t1", "twin", "update", AWKWARD, {**AWKWARD, "name": "Bern"}, "Plant"),
        ],
        context,
    )
    assert written == 3
    entries = store.history("t1")
    assert [(e.kind, e.op, e.link_type, e.target) for e in entries] == [
        ("twin", "create", None, None),
        ("link", "create", "locatedAt", "site-1"),
        ("twin", "update", None, None),
    ]
    assert entries[0].after == AWKWARD and entries[0].before is None
    assert entries[1].after == {} and entries[2].before == AWKWARD and entries[2].after["name"] == "Bern"
    assert {(e.actor, e.source, e.run_id) for e in entries} == {("alice", "erp", "run-1")}
    assert store.history("site-1")[0].uid == "t1"  # found by its target too
    assert store.as_of("t1", dt.datetime.now(dt.UTC))["name"] == "Bern"


def test_pending_changes_fed_in_pieces_commit_in_order(history_url: str) -> None:
    store = HistoryStore(history_url)
    pending = store.begin([Change("a", "twin", "create", None, {"i": 0}, "Plant")], ChangeContext("bob"))
    for piece in range(1, 4):
        pending.add([Change("a", "twin", "update", {"i": piece - 1}, {"i": piece}, "Plant")])
    assert store.history("a") == []  # nothing visible before the commit
    assert pending.commit() == 4
    assert [e.after["i"] for e in store.history("a")] == [0, 1, 2, 3]
    with pytest.raises(RuntimeError, match="after their write was committed"):
        pending.add([Change("a", "twin", "delete", {"i": 3}, None, "Plant")])


def test_pending_changes_rolled_back_leave_nothing(history_url: str) -> None:
    store = HistoryStore(history_url)
    store.record([Change("kept", "twin", "create", None, {"v": 1}, "Plant")], ChangeContext())
    pending = store.begin([], ChangeContext())
    pending.add([Change("dropped", "twin", "create", None, {"v": 1}, "Plant")])
    pending.add([Change("kept", "twin", "update", {"v": 1}, {"v": 2}, "Plant")])
    pending.rollback()
    assert store.history("dropped") == []
    assert [e.op for e in store.history("kept")] == ["create"]
