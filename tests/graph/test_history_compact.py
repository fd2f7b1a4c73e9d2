"""Compact history of bulk loads: the sample enterprise bulk-loaded with one history row per twin (holding the links
from it) answers every history question exactly as the same load recorded one row per change: `history(uid)`,
`as_of(uid, t)`, the whole graph as of a time, `diff`, and the change feed, field by field, before and after later
updates, deletions and an erasure (which write rows of one change each, so both forms are read side by side)."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import pytest

from graph.embedded import stop_embedded
from graph.feed import FeedChange
from graph.history import ChangeContext, HistoryEntry, HistoryStore, LoadedTwin
from graph.model import Link, Twin
from graph.replay import replay_until
from graph.store import GraphStore
from ontology.core import load_core
from tests.api.conftest import sample_twins

FORMS = ("compact", "rows")


@dataclass
class Loaded:
    """A store bulk-loaded in one history form, and the times after each step."""

    store: GraphStore
    history_db: Path
    marks: list[dt.datetime]


def _tick() -> dt.datetime:
    time.sleep(0.003)
    now = dt.datetime.now(dt.UTC)
    time.sleep(0.003)
    return now


def _steps(store: GraphStore) -> list[dt.datetime]:
    """Changes after the load, the same in both forms: updates, a link moved, a twin deleted, an erasure."""
    marks = [_tick()]
    store.upsert_twins(
        [Twin("emp-03", "Employee", {"salary": 99_000.0}), Twin("machine-1", "Machine", {"status": "down"})]
    )
    store.upsert_links([Link("hasSkill", "emp-04", "skill-1", {"level": 2})])  # a loaded link's property changes
    marks.append(_tick())
    store.delete_links([("worksIn", "emp-05", "u-eng-tools")])
    store.upsert_links([Link("worksIn", "emp-05", "u-eng")])
    marks.append(_tick())
    store.delete_twins(["emp-23", "machine-3"])  # their loaded links go with them
    marks.append(_tick())
    store.upsert_twins([Twin("emp-02", "Employee", {"email": None, "phone": None})], source="erasure")
    assert store.history is not None
    store.history.erase_values("emp-02", ["email", "phone"])
    marks.append(_tick())
    return marks


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Loaded]]:
    """The sample enterprise bulk-loaded twice on one graph server: compact history, and one row per change."""
    root = tmp_path_factory.mktemp("compact")
    twins, links = sample_twins()
    stores: dict[str, Loaded] = {}
    try:
        for form in FORMS:
            db = root / f"{form}.db"
            store, summary = GraphStore.load(
                f"falkordb+embedded://{root / 'graph'}",
                load_core(),
                twins,
                links,
                graph_name=form,
                history_url=f"sqlite:///{db}",
                actor="loader",
                source="sample",
                run_id="run-1",
                compact_history=form == "compact",
            )
            assert summary.created == len(twins) + len(links)
            stores[form] = Loaded(store, db, _steps(store))
        yield stores
    finally:
        for one in stores.values():
            one.store.close()
        stop_embedded(root / "graph")


def _uids() -> list[str]:
    twins, _ = sample_twins()
    return [t.uid for t in twins]


def _fields(entry: HistoryEntry | FeedChange) -> tuple[Any, ...]:
    """Every field of a change but its row id, sequence number and time (which differ between two loads)."""
    return (
        entry.kind,
        entry.op,
        entry.uid,
        entry.cls,
        entry.link_type,
        entry.target,
        entry.actor,
        entry.source,
        entry.run_id,
        entry.before,
        entry.after,
    )


def _by_write(entries: list[HistoryEntry] | list[FeedChange]) -> list[list[tuple[Any, ...]]]:
    """The changes grouped by the write that made them (one time each), in order; within a write as a set (a load
    records its links in the order of their sources)."""
    return [sorted(map(_fields, group), key=repr) for _, group in itertools.groupby(entries, key=lambda e: e.at)]


def test_a_compact_load_keeps_one_row_per_twin(loaded: dict[str, Loaded]) -> None:
    twins, links = sample_twins()
    for form, expected in (("compact", [("twin", len(twins))]), ("rows", [("link", len(links)), ("twin", len(twins))])):
        with sqlite3.connect(loaded[form].history_db) as db:
            rows = db.execute(
                "SELECT kind, count(*) FROM twin_history WHERE actor = 'loader' GROUP BY kind ORDER BY kind"
            ).fetchall()
        assert rows == expected, form


def test_history_of_every_twin_is_the_same_in_both_forms(loaded: dict[str, Loaded]) -> None:
    compact, rows = loaded["compact"].store, loaded["rows"].store
    incoming = 0
    for uid in _uids():
        got, want = compact.history_of(uid), rows.history_of(uid)
        assert _by_write(got) == _by_write(want), uid
        assert got[0].kind == "twin" and got[0].uid == uid and got[0].op == "create"  # the twin before its links
        incoming += sum(1 for e in got if e.kind == "link" and e.target == uid and e.actor == "loader")
    assert incoming == len(sample_twins()[1])  # every loaded link is found by its target too
    assert [e.after for e in compact.history_of("emp-02") if e.kind == "twin"][0] == {
        k: v
        for k, v in next(t for t in sample_twins()[0] if t.uid == "emp-02").properties.items()
        if k not in ("email", "phone")
    }  # erased from the compact row as from a row of one change
    assert len(compact.history_of("u-eng", limit=3)) == 3


def test_as_of_of_every_twin_is_the_same_in_both_forms(loaded: dict[str, Loaded]) -> None:
    compact, rows = loaded["compact"], loaded["rows"]
    for uid in _uids():
        for mine, theirs in zip(compact.marks, rows.marks, strict=True):
            assert compact.store.as_of(uid, mine) == rows.store.as_of(uid, theirs), (uid, mine)


def test_the_whole_graph_as_of_each_time_is_the_same_in_both_forms(loaded: dict[str, Loaded]) -> None:
    compact, rows = loaded["compact"], loaded["rows"]
    assert compact.store.history is not None and rows.store.history is not None
    for mine, theirs in zip(compact.marks, rows.marks, strict=True):
        got, want = replay_until(compact.store.history, mine), replay_until(rows.store.history, theirs)
        assert got.twins == want.twins and got.links == want.links
        past, other = compact.store.at(mine), rows.store.at(theirs)
        for start in ("machine-0", "u-root", "mat-1", "emp-04"):
            assert sorted((h.twin.uid, h.depth) for h in past.impact(start, 3)) == sorted(
                (h.twin.uid, h.depth) for h in other.impact(start, 3)
            )
        assert sorted(astuple(t) for t in past.find("Employee", limit=100).items) == sorted(
            astuple(t) for t in other.find("Employee", limit=100).items
        )
    first = replay_until(compact.store.history, compact.marks[0])
    assert ("hasSkill", "emp-04", "skill-1") in first.links and ("worksIn", "emp-23", "u-eng-tools") in first.links
    assert first.links[("supplies", "sup-1", "mat-1")] == {"leadTimeDays": 14}


def test_diff_is_the_same_in_both_forms(loaded: dict[str, Loaded]) -> None:
    compact, rows = loaded["compact"], loaded["rows"]
    start_c = compact.store.history.first_time() if compact.store.history else None
    start_r = rows.store.history.first_time() if rows.store.history else None
    assert start_c is not None and start_r is not None
    pairs = [(start_c, start_r), *zip(compact.marks, rows.marks, strict=True)]
    for (a, b), (c, d) in itertools.combinations(pairs, 2):
        got = sorted(map(astuple, compact.store.diff(a, c)), key=repr)
        want = sorted(map(astuple, rows.store.diff(b, d)), key=repr)
        assert got == want, (a, c)
    changed = {(d.kind, d.op, d.uid, d.target): d for d in compact.store.diff(start_c, compact.marks[-1])}
    updated = changed[("link", "update", "emp-04", "skill-1")]  # a link of a compact row, updated since
    assert (updated.fields, updated.before, updated.after) == (("level",), {"level": 5}, {"level": 2})
    assert ("link", "delete", "emp-23", "u-eng-tools") in changed  # went with its twin


def test_the_change_feed_is_the_same_in_both_forms_in_pages_of_any_size(loaded: dict[str, Loaded]) -> None:
    compact, rows = loaded["compact"].store.feed, loaded["rows"].store.feed
    assert compact.head() == rows.head()
    whole = compact.read(0, 10_000)
    assert [c.seq for c in whole] == list(range(1, compact.head() + 1))
    assert _by_write(whole) == _by_write(rows.read(0, 10_000))
    load = [c for c in whole if c.actor == "loader"]
    assert [c.kind for c in load] == sorted((c.kind for c in load), key=lambda k: k != "twin")  # twins, then links
    for size in (1, 7, 61):  # pages that end inside a row's links and between the twins and the links
        paged: list[FeedChange] = []
        while len(paged) < len(whole):
            paged += compact.read(paged[-1].seq if paged else 0, size)
        assert paged == whole, size
    assert compact.read(len(load) - 3, 5) == whole[len(load) - 3 : len(load) + 2]


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh relational store on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'h.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_recovery_of_a_compact_write_keeps_what_landed_and_numbers_the_rest_again(history_url: str) -> None:
    history = HistoryStore(history_url)
    pending = history.begin([], ChangeContext("loader"))
    pending.add_loaded(
        [
            LoadedTwin("a", "Machine", {"name": "A"}, [("dependsOn", "b", {}), ("dependsOn", "c", {})]),
            LoadedTwin("b", "Machine", {"name": "B"}, [("dependsOn", "c", {})], ["a"]),
            LoadedTwin("c", "Machine", {"name": "C"}, [], ["a", "b"]),
        ]
    )
    pending.add_loaded([LoadedTwin("d", "Machine", {"name": "D"}, [("dependsOn", "c", {})])])
    pending.seal()
    assert pending.write_id is not None and pending.count == 8
    kept = history.settle(pending.write_id, lambda entries: {e.id for e in entries if e.uid != "a"})
    assert kept == (5, 3)  # b, c, d and their two links; a and its two links dropped
    changes = HistoryStore(history.url).history("c")
    assert [(e.kind, e.uid, e.target) for e in changes] == [("twin", "c", None), ("link", "b", "c")]
    from graph.feed import ChangeFeed

    feed = ChangeFeed(history)
    assert [(c.seq, c.kind, c.uid, c.target) for c in feed.read(0, 100)] == [
        (1, "twin", "b", None),
        (2, "twin", "c", None),
        (3, "twin", "d", None),
        (4, "link", "b", "c"),
        (5, "link", "d", "c"),
    ]
    assert [(c.seq, c.uid) for c in feed.read(3, 1)] == [(4, "b")]
