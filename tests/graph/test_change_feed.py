"""The change feed: every committed change once, in one gap-free sequence, also with concurrent writers and after a
writer was killed between its graph write and its history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.feed import MAX_PAGE, FeedError
from graph.model import Link, Twin
from graph.store import GraphStore
from tests.graph.contract_ontology import contract_ontology

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(graph_data_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[GraphStore]:
    """A store with its history (and so its feed) in SQLite, then in PostgreSQL."""
    url = (
        f"sqlite:///{tmp_path / 'history.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    )
    opened = GraphStore.open(f"falkordb+embedded://{graph_data_dir}", contract_ontology(), history_url=url)
    yield opened
    opened.close()


def test_every_change_once_in_order_with_pages_and_cursors(store: GraphStore) -> None:
    store.upsert_twins([Twin(f"m{i}", "Machine", {"name": f"m{i}", "capacity": 1.0}) for i in range(5)])
    store.upsert_links([Link("dependsOn", "m1", "m0"), Link("dependsOn", "m2", "m0")])
    store.upsert_twins([Twin("m0", "Machine", {"name": "m0", "capacity": 2.0})])
    store.upsert_twins([Twin("m0", "Machine", {"name": "m0", "capacity": 2.0})])  # no change: nothing in the feed
    store.delete_twins(["m2"])  # its link goes first
    feed = store.feed
    everything = feed.read(0, MAX_PAGE)
    assert feed.head() == len(everything) == 10
    assert [c.seq for c in everything] == list(range(1, 11))
    assert [(c.kind, c.op, c.uid) for c in everything[5:]] == [
        ("link", "create", "m1"),
        ("link", "create", "m2"),
        ("twin", "update", "m0"),
        ("link", "delete", "m2"),
        ("twin", "delete", "m2"),
    ]
    assert everything[7].before == {"name": "m0", "capacity": 1.0} and everything[7].after["capacity"] == 2.0
    paged, cursor = [], 0
    while page := feed.read(cursor, 3):  # pages that start inside one write (five twins) and cross writes
        paged += page
        cursor = page[-1].seq
    assert paged == everything
    assert feed.read(10) == []
    with pytest.raises(FeedError, match="beyond the feed's end"):
        feed.read(11)
    for bad in (-1, "3", True):
        with pytest.raises(FeedError, match="cursor"):
            feed.read(bad)  # type: ignore[arg-type]
    with pytest.raises(FeedError, match="1 to"):
        feed.read(0, MAX_PAGE + 1)


def test_concurrent_writers_get_one_gap_free_sequence(store: GraphStore) -> None:
    def write(prefix: str) -> None:
        for batch in range(10):
            store.upsert_twins(
                [Twin(f"{prefix}{batch}-{i}", "Machine", {"name": prefix, "capacity": 1.0}) for i in range(20)]
            )

    threads = [threading.Thread(target=write, args=(p,)) for p in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    changes = store.feed.read(0, MAX_PAGE)
    assert [c.seq for c in changes] == list(range(1, 601))
    assert len({c.uid for c in changes}) == 600 and store.stats().twins == 600


WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from graph import history
    from graph.model import Twin
    from graph.store import GraphStore
    from tests.graph.contract_ontology import contract_ontology

    store = GraphStore.open(f"falkordb+embedded://{sys.argv[1]}", contract_ontology(), history_url=sys.argv[2])
    store.upsert_twins([Twin(f"m{i}", "Machine", {"name": f"m{i}", "capacity": 1.0}) for i in range(3)])
    history.PendingChanges.commit = lambda *_: os.kill(os.getpid(), signal.SIGKILL)  # after the graph write
    store.upsert_twins([Twin(f"n{i}", "Machine", {"name": f"n{i}", "capacity": 1.0}) for i in range(4)])
    """
)


def test_a_write_whose_writer_was_killed_enters_the_feed_once_recovered(graph_data_dir: Path, tmp_path: Path) -> None:
    history_url = f"sqlite:///{tmp_path / 'history.db'}"
    killed = subprocess.run(
        [sys.executable, "-c", WRITER, str(graph_data_dir), history_url],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    store = GraphStore.open(f"falkordb+embedded://{graph_data_dir}", contract_ontology(), history_url=history_url)
    try:
        changes = store.feed.read(0, MAX_PAGE)  # the open recovered the killed write's history
        assert [c.seq for c in changes] == list(range(1, 8))
        assert sorted(c.uid for c in changes[3:]) == ["n0", "n1", "n2", "n3"]
        store.upsert_twins([Twin("z", "Machine", {"name": "z", "capacity": 1.0})])
        assert [c.seq for c in store.feed.read(7)] == [8]
    finally:
        store.close()
