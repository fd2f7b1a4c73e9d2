"""The row appender on SQLite (one json_each statement) and PostgreSQL (executemany): rows stored as given and in
order, shared values, upserts and skipped conflicts, text of any kind; integers beyond 64 bits refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Column, Float, Integer, MetaData, String, Table, Text, select
from sqlalchemy.exc import DataError

from graph.relational import relational_engine
from graph.row_appender import RowAppender

metadata = MetaData()
table = Table(
    "appended",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("k", String(64), nullable=False, unique=True),
    Column("text", Text),
    Column("number", Float),
    Column("count", BigInteger),
    Column("run", String(16)),
)
AWKWARD = 'Zürich "Nord" \\ \n\ttab \U0001f3ed \x07 \u2028'


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rows.db'}"
    return str(request.getfixturevalue("postgres_url"))


def stored(url: str) -> list[tuple]:
    with relational_engine(url).connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(table.c.k, table.c.text, table.c.number, table.c.count, table.c.run).order_by(table.c.id)
            )
        ]


def test_rows_are_stored_as_given_in_order_with_the_shared_values(url: str) -> None:
    engine = relational_engine(url)
    metadata.create_all(engine)  # a test table, outside the stores' revisions
    appender = RowAppender(engine, table, ("k", "text", "number", "count"), ("run",))
    rows = [(f"k{i:03d}", AWKWARD if i % 2 else None, i / 3, 2**63 - 1 - i) for i in range(250)]
    with engine.begin() as conn:
        assert appender.append(conn, rows, ("r1",)) == 250
        assert appender.append(conn, [], ("r1",)) == 0
    assert stored(url) == [(*row, "r1") for row in rows]


def test_conflicts_update_or_are_skipped(url: str) -> None:
    engine = relational_engine(url)
    metadata.create_all(engine)  # a test table, outside the stores' revisions
    upsert = RowAppender(engine, table, ("k", "text"), ("run",), conflict_keys=("k",), update_columns=("text", "run"))
    skip = RowAppender(engine, table, ("k", "text"), ("run",), conflict_keys=("k",))
    with engine.begin() as conn:
        upsert.append(conn, [("a", "first"), ("b", "first")], ("r1",))
        upsert.append(conn, [("b", "second"), ("c", "second")], ("r2",))
        skip.append(conn, [("a", "ignored"), ("d", "third")], ("r3",))
    assert [(k, text, run) for k, text, _, _, run in stored(url)] == [
        ("a", "first", "r1"),
        ("b", "second", "r2"),
        ("c", "second", "r2"),
        ("d", "third", "r3"),
    ]


def test_integers_beyond_64_bits_are_refused_not_rounded(url: str) -> None:
    engine = relational_engine(url)
    metadata.create_all(engine)  # a test table, outside the stores' revisions
    appender = RowAppender(engine, table, ("k", "count"))
    with pytest.raises((OverflowError, DataError)), engine.begin() as conn:  # SQLite / PostgreSQL
        appender.append(conn, [("ok", 1), ("big", 2**70)])
    assert stored(url) == []  # nothing of the refused call


def test_unknown_columns_are_named() -> None:
    with pytest.raises(ValueError, match="no column.*nope"):
        RowAppender(relational_engine("sqlite://"), table, ("k", "nope"))
