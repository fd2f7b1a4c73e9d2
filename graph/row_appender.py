"""Appending many rows to a relational table (history, lineage, ledger, audit...) in one statement, without the GIL.

These rows are inserted on a thread while another thread keeps working in Python (a writer's history thread, the
sync's committer, the API's audit trail). With the driver's `executemany`, the inserting thread gives up the GIL
for each row's `sqlite3_step` and then waits for it again, up to the interpreter's switch interval (5 ms), while
the other thread computes: the two convoy. A 540k-row insert that takes 4 s alone had not finished after 45 s
next to a busy thread; the API's audit trail appended 683 events/s instead of thousands. On SQLite the rows
therefore go in as one JSON array read by `json_each`: one statement, the whole insert in C with the GIL released.
Elsewhere (PostgreSQL) they go through SQLAlchemy's executemany, which pipelines them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Table, insert
from sqlalchemy.dialects import postgresql

_JSON_ARROW = sqlite3.sqlite_version_info >= (3, 38, 0)  # `->>` (older SQLite: json_extract)


class RowAppender:
    """Inserts rows of `row_columns` values, plus `fixed_columns` values shared by every row of one call; with
    `conflict_keys`, a row whose keys exist updates that row's `update_columns` instead (an upsert), or is skipped
    when there are none."""

    def __init__(
        self,
        engine: Engine,
        table: Table,
        row_columns: Sequence[str],
        fixed_columns: Sequence[str] = (),
        *,
        conflict_keys: Sequence[str] = (),
        update_columns: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.row_columns = tuple(row_columns)
        self.fixed_columns = tuple(fixed_columns)
        unknown = [
            c for c in (*self.row_columns, *self.fixed_columns, *conflict_keys, *update_columns) if c not in table.c
        ]
        if unknown:
            raise ValueError(f"table {table.name} has no column(s) {', '.join(unknown)}")
        self._sql: str | None = None
        self._statement: Any = insert(table)
        if engine.dialect.name == "sqlite":
            picks = [
                f"value ->> {i}" if _JSON_ARROW else f"json_extract(value, '$[{i}]')"
                for i in range(len(self.row_columns))
            ]
            names = ", ".join((*self.row_columns, *self.fixed_columns))
            self._sql = (
                f"INSERT INTO {table.name} ({names}) SELECT {', '.join(picks)}"
                f"{''.join(', ?' for _ in self.fixed_columns)} FROM json_each(?)"
            )
            if conflict_keys:  # `WHERE true` keeps SQLite from reading ON as a join's
                updates = ", ".join(f"{c} = excluded.{c}" for c in update_columns)
                action = f"DO UPDATE SET {updates}" if update_columns else "DO NOTHING"
                self._sql += f" WHERE true ON CONFLICT ({', '.join(conflict_keys)}) {action}"
        elif conflict_keys:
            statement = postgresql.insert(table)
            self._statement = (
                statement.on_conflict_do_update(
                    index_elements=list(conflict_keys),
                    set_={c: statement.excluded[c] for c in update_columns},
                )
                if update_columns
                else statement.on_conflict_do_nothing(index_elements=list(conflict_keys))
            )

    @property
    def embeds_json(self) -> bool:
        """Whether a list or dict value goes in as its JSON text (SQLite's json_each path: encoded once with the
        rows); otherwise values must be text, numbers or None."""
        return self._sql is not None

    def append(
        self, conn: Connection, rows: Sequence[Sequence[str | int | float | None]], fixed: Sequence[Any] = ()
    ) -> int:
        """Insert `rows` (text, finite numbers or None, in `row_columns` order; lists and dicts where `embeds_json`)
        with the `fixed` values; returns the number of rows given.

        Rows are stored in the order given (ascending ids).
        """
        if not rows:
            return 0
        if self._sql is not None:
            conn.exec_driver_sql(self._sql, (*fixed, _json_array(rows)))
        else:
            names = (*self.row_columns, *self.fixed_columns)
            conn.execute(self._statement, [dict(zip(names, (*row, *fixed), strict=True)) for row in rows])
        return len(rows)

    def sqlite_statement(
        self, rows: Sequence[Sequence[str | int | float | None]], fixed: Sequence[Any] = ()
    ) -> tuple[str, tuple[Any, ...]]:
        """The one SQLite statement and its parameters that insert `rows`, for a caller that runs it on a driver
        cursor of its own (inside a BEGIN IMMEDIATE it manages)."""
        if self._sql is None:
            raise ValueError(f"the appender of {self.table.name} is not on SQLite")
        return self._sql, (*fixed, _json_array(rows))


def _json_array(rows: Sequence[Sequence[Any]]) -> str:
    """The rows as one JSON array of arrays, UTF-8 text as is (orjson: a tenth of the standard library's time).

    An integer beyond 64 bits is refused, as the driver refuses it: SQLite's JSON would read it as a float.
    """
    try:
        return orjson.dumps(rows).decode()  # text, not bytes: SQLite would take a BLOB for JSONB
    except orjson.JSONEncodeError as error:
        raise OverflowError(f"a row value cannot be stored: {error}") from None
