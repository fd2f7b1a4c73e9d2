"""Appending many rows to a relational table (history, lineage) in one statement, so the insert runs without the GIL.

History and lineage rows are inserted on a background thread while the writer's thread keeps working in Python.
With the driver's `executemany`, the inserting thread gives up the GIL for each row's `sqlite3_step` and then waits
for it again, up to the interpreter's switch interval (5 ms) while the other thread computes: the two threads
convoy, and a 500k-row insert that takes 4 s alone took minutes next to a busy thread. On SQLite the rows therefore
go in as one JSON array read by `json_each`: one statement, one step, the whole insert in C with the GIL released.
Elsewhere (PostgreSQL) the rows go through SQLAlchemy's executemany, which pipelines them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert

# JSON as SQLite reads it back unchanged: UTF-8 text as is (no \\u escapes to undo), no spaces
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False, allow_nan=False)
_JSON_ARROW = sqlite3.sqlite_version_info >= (3, 38, 0)  # `->>` (older SQLite: json_extract)


class RowAppender:
    """Inserts rows of `row_columns` values, plus `fixed_columns` values shared by every row of one call."""

    def __init__(self, engine: Engine, table: Table, row_columns: Sequence[str], fixed_columns: Sequence[str] = ()):
        self.table = table
        self.row_columns = tuple(row_columns)
        self.fixed_columns = tuple(fixed_columns)
        unknown = [c for c in (*self.row_columns, *self.fixed_columns) if c not in table.c]
        if unknown:
            raise ValueError(f"table {table.name} has no column(s) {', '.join(unknown)}")
        self._sql: str | None = None
        if engine.dialect.name == "sqlite":
            picks = [f"value ->> {i}" if _JSON_ARROW else f"json_extract(value, '$[{i}]')"
                     for i in range(len(self.row_columns))]
            names = ", ".join((*self.row_columns, *self.fixed_columns))
            self._sql = (f"INSERT INTO {table.name} ({names}) SELECT {', '.join(picks)}"
                         f"{''.join(', ?' for _ in self.fixed_columns)} FROM json_each(?)")

    def append(self, conn: Connection, rows: Sequence[Sequence[str | int | float | None]],
               fixed: Sequence[Any] = ()) -> int:
        """Insert `rows` (text, numbers or None, in `row_columns` order) with the `fixed` values; returns the count.

        Rows are stored in the order given (ascending ids).
        """
        if not rows:
            return 0
        if self._sql is not None:
            conn.exec_driver_sql(self._sql, (*fixed, _ENCODER.encode(rows)))
        else:
            names = (*self.row_columns, *self.fixed_columns)
            conn.execute(insert(self.table), [dict(zip(names, (*row, *fixed))) for row in rows])
        return len(rows)
