"""Any SQL database SQLAlchemy reaches (SQLite, PostgreSQL, MariaDB/MySQL, ...) as a Source: one table or query.

Reads page by key (keyset pagination: ``WHERE key > :last ORDER BY key LIMIT n``, composite keys as row-value
comparison), so a page costs the same at any depth. Incremental reads take rows whose watermark column (a timestamp,
or numeric seconds since the epoch) is at or after the watermark minus `overlap` (inclusive, so rows sharing the
watermark's timestamp are never skipped; the sync ledger recognises the re-read rows as unchanged). Naive timestamps
in the database are taken as UTC. A query that joins tables names each joined table's change-time column as an output
column in `related_watermarks`: a row counts as changed when any of them is at or after the bound (so renaming a site
re-reads the work centres that show its code), and its change time is the newest of them.

Deletion checks count and list keys only. A query whose rows are exactly its base table's rows (inner joins along
required foreign keys that only add columns, no filter) may say so with `key_table: <that table>`: keys are then
counted and listed on that table, without running the joins. The declaration is the mapping author's: a query that
drops or repeats base rows must not make it (a dropped row would not be seen as deleted by incremental runs).

Values handed on are plain JSON-able types: dates and times as ISO 8601 text, Decimal as fixed-point text,
bytes as base64 text; everything else as the driver returns it.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    MetaData,
    Table,
    and_,
    cast,
    column,
    create_engine,
    func,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.sql.expression import FromClause
from sqlalchemy.types import Float, Integer, NullType, Numeric

from connectors.source import SourceError, SourceRecord, Watermark, change_time
from graph.urls import redact_url

_engines: dict[str, Engine] = {}
# (SQLite URL, table) -> (the table's CREATE statement, the table reflected): reflection costs several queries per
# read, and a table whose CREATE statement is unchanged (ALTER TABLE rewrites it) has the same columns
_reflected: dict[tuple[str, str], tuple[str, Table]] = {}
_REFLECTED_MAX = 256


def source_engine(url: str) -> Engine:
    """A shared engine for a source database URL (postgresql:// uses psycopg 3, mysql:// uses PyMySQL)."""
    if url not in _engines:
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):  # a malformed port, for one, is a ValueError
            raise SourceError(f"source database URL is not valid: {redact_url(url)!r}") from None
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        elif parsed.drivername in ("mysql", "mariadb"):
            parsed = parsed.set(drivername="mysql+pymysql")
        _engines[url] = create_engine(parsed, pool_pre_ping=True)
    return _engines[url]


def dispose_source_engine(url: str) -> None:
    """Close the pooled connections of a source database (before dropping it, or at shutdown)."""
    engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


_PLAIN = frozenset({str, int, float, bool})  # types handed on as they are (checked inline: one call less per value)


def plain_value(value: Any) -> Any:
    """A database value as a plain JSON-able value (see the module docstring)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


class SqlSource:
    """One table (or SELECT query) of a SQL database, read in key order, fully or since a watermark."""

    lists_keys = True  # keys only, cheaply: incremental runs detect deletions (connectors.source.lists_keys)

    def __init__(
        self,
        url: str,
        *,
        table: str | None = None,
        query: str | None = None,
        key: Sequence[str] | str,
        watermark: str | None = None,
        schema: str | None = None,
        name: str | None = None,
        page_size: int = 5_000,
        overlap: dt.timedelta = dt.timedelta(seconds=1),
        columns: Sequence[str] | None = None,
        related_watermarks: Sequence[str] = (),
        key_table: str | None = None,
    ) -> None:
        if (table is None) == (query is None):
            raise SourceError("a SQL source needs exactly one of `table` or `query`")
        if key_table is not None and query is None:
            raise SourceError(
                f"key_table {key_table!r} goes with a query (a table source lists its own keys)", model=name or table
            )
        self._arguments = {
            "table": table,
            "query": query,
            "key": key,
            "watermark": watermark,
            "schema": schema,
            "name": name,
            "page_size": page_size,
            "overlap": overlap,
            "columns": columns,
            "related_watermarks": related_watermarks,
            "key_table": key_table,
        }
        keys = (key,) if isinstance(key, str) else tuple(key)
        if not keys:
            raise SourceError(f"SQL source {table or 'query'}: needs at least one key column")
        self.url = url
        self.engine = source_engine(url)
        self.keys = keys
        self.watermark_column = watermark
        self.related_watermarks = tuple(related_watermarks)
        if self.related_watermarks and watermark is None:
            raise SourceError("related_watermarks need the row's own watermark column", model=name or table or "query")
        self.name = name or f"sql:{table or 'query'}"
        self.page_size = page_size
        self.overlap = overlap
        self._table_name = table
        self._query = query
        self._schema = schema
        self._columns = tuple(columns) if columns else None
        self._selectable: Any = None
        self._key_table = key_table
        self._keyed: Any = None

    def __repr__(self) -> str:
        return f"SqlSource(name={self.name!r}, keys={list(self.keys)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its arguments: a sync worker process opens the same source on its own engine (a database
        engine and its connections never cross a process)."""
        return (_reopened, (type(self), self.url, self._arguments))

    @property
    def splittable(self) -> bool:
        """Whether other processes can read this source by key ranges (`read_slice`): one key column, on a database
        another process reaches (not an in-memory SQLite)."""
        if len(self.keys) != 1:
            return False
        url = self.engine.url
        if url.get_backend_name() == "sqlite":
            database = url.database or ""
            in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
            return not in_memory and "memory" not in str(url.query.get("mode", ""))
        return True

    @property
    def selectable(self) -> Any:
        """The reflected table, or the query as a subquery with its discovered columns (resolved on first use)."""
        if self._selectable is not None:
            return self._selectable
        selectable: FromClause
        try:
            if self._table_name is not None:
                selectable = self._reflect_table(self._table_name)
            else:
                with self.engine.connect() as conn:
                    names = list(conn.execute(text(f"SELECT * FROM ({self._query}) q WHERE 1 = 0")).keys())
                selectable = text(self._query or "").columns(*(column(n) for n in names)).subquery("q")
        except NoSuchTableError:
            raise SourceError(f"table {self._table_name!r} does not exist", model=self.name) from None
        except SQLAlchemyError as exc:
            raise SourceError(
                f"cannot read {self._table_name or 'the query'}: {type(exc).__name__}", model=self.name
            ) from None
        known = set(selectable.c.keys())
        wanted = (*self.keys, *self._change_columns, *(self._columns or ()))
        missing = [c for c in wanted if c not in known]
        if missing:
            raise SourceError(
                f"unknown column(s) {', '.join(missing)} (has: {', '.join(sorted(known))})", model=self.name
            )
        self._selectable = selectable
        return selectable

    def _key_source(self) -> Any:
        """Where keys are counted and listed: the declared `key_table` of a query, else the table or query itself."""
        if self._key_table is None:
            return self.selectable
        if self._keyed is None:
            try:
                keyed = self._reflect_table(self._key_table)
            except NoSuchTableError:
                raise SourceError(f"key_table {self._key_table!r} does not exist", model=self.name) from None
            except SQLAlchemyError as exc:
                raise SourceError(
                    f"cannot read key_table {self._key_table!r}: {type(exc).__name__}", model=self.name
                ) from None
            missing = [k for k in self.keys if k not in keyed.c]
            if missing:
                raise SourceError(
                    f"key_table {self._key_table!r} has no key column(s) {', '.join(missing)}", model=self.name
                )
            self._keyed = keyed
        return self._keyed

    def _reflect_table(self, name: str) -> Table:
        """A table as reflected; on SQLite reused while the table's CREATE statement stays the same."""
        if self.engine.dialect.name != "sqlite" or self._schema is not None:
            return Table(name, MetaData(), schema=self._schema, autoload_with=self.engine)
        with self.engine.connect() as conn:
            ddl = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            ).scalar()
        key = (self.url, name)
        known = _reflected.get(key)
        if ddl is not None and known is not None and known[0] == ddl:
            return known[1]
        table = Table(name, MetaData(), schema=self._schema, autoload_with=self.engine)
        if ddl is not None:
            if len(_reflected) >= _REFLECTED_MAX:
                _reflected.clear()
            _reflected[key] = (ddl, table)
        return table

    def _base(self) -> Any:
        source = self.selectable
        columns = [source.c[c] for c in self._columns] if self._columns else list(source.c)
        for name in (*self.keys, *self._change_columns):
            if name not in [c.name for c in columns]:
                columns.append(source.c[name])
        return source, columns

    def read(self, since: Watermark | None) -> Iterator[list[SourceRecord]]:
        """Pages of records in key order: all, or those changed at or after `since` minus the overlap."""
        return self._pages(since)

    def read_slice(self, since: Watermark | None, low: int | None, high: int | None) -> Iterator[list[SourceRecord]]:
        """The pages `read(since)` gives of the records whose key is at least `low` and below `high` (an open end:
        None), in key order (one integer key column; see `splittable`)."""
        if len(self.keys) != 1:
            raise SourceError("a read by key ranges needs one key column", model=self.name)
        source = self.selectable
        bounds = []
        if low is not None:
            bounds.append(source.c[self.keys[0]] >= low)
        if high is not None:
            bounds.append(source.c[self.keys[0]] < high)
        return self._pages(since, bounds)

    def _pages(self, since: Watermark | None, bounds: Sequence[Any] = ()) -> Iterator[list[SourceRecord]]:
        """Pages of records in key order, changed since `since` (None: all) and within the key `bounds`."""
        source, columns = self._base()
        key_cols = [source.c[k] for k in self.keys]
        conditions = list(bounds)
        if since is not None:
            if self.watermark_column is None:
                raise SourceError("incremental read asked of a source without a watermark column", model=self.name)
            conditions.append(self._changed_since(source, since))
        last: tuple[Any, ...] | None = None
        names = [c.name for c in columns]
        key_index = [names.index(k) for k in self.keys]
        wm_index = names.index(self.watermark_column) if self.watermark_column else None
        related_index = [names.index(c) for c in self.related_watermarks]
        # change times as parsed, by the value read: joined rows (an order's lines) repeat their parent's time
        parsed: dict[Any, dt.datetime | None] = {}
        while True:
            query = select(*columns)
            where = list(conditions)
            if last is not None:
                where.append(key_cols[0] > last[0] if len(key_cols) == 1 else tuple_(*key_cols) > tuple_(*last))
            if where:
                query = query.where(and_(*where))
            query = query.order_by(*key_cols).limit(self.page_size)
            try:
                with self.engine.connect() as conn:
                    rows = conn.execute(query).all()
            except SQLAlchemyError as exc:
                raise SourceError(
                    f"query failed: {type(exc).__name__}: {str(exc.orig if hasattr(exc, 'orig') else exc)[:200]}",
                    model=self.name,
                    method="read",
                ) from None
            if not rows:
                return
            batch = []
            if len(parsed) > 100_000:
                parsed.clear()
            for row in rows:
                fields = {
                    name: value if value is None or type(value) in _PLAIN else plain_value(value)
                    for name, value in zip(names, row, strict=True)
                }
                key = str(row[key_index[0]]) if len(key_index) == 1 else "|".join(str(row[i]) for i in key_index)
                changed_at = None
                if wm_index is not None:
                    stamp = row[wm_index]
                    changed_at = parsed[stamp] if stamp in parsed else parsed.setdefault(stamp, _change_time(stamp))
                if related_index:  # the newest change of the row or of a joined row
                    times = []
                    for i in related_index:
                        stamp = row[i]
                        moment = parsed[stamp] if stamp in parsed else parsed.setdefault(stamp, _change_time(stamp))
                        if moment is not None:
                            times.append(moment)
                    changed_at = max([changed_at, *times] if changed_at is not None else times, default=None)
                batch.append(SourceRecord(key, fields, changed_at))
            yield batch
            last = tuple(rows[-1][i] for i in key_index)
            if len(rows) < self.page_size:
                return

    @property
    def _change_columns(self) -> tuple[str, ...]:
        """The row's own watermark column and those of joined rows."""
        return (*([self.watermark_column] if self.watermark_column else []), *self.related_watermarks)

    def _changed_since(self, source: Any, since: Watermark) -> Any:
        """Rows whose own or a joined row's change time is at or after `since` minus the overlap."""
        after = since.value - self.overlap
        dialect = self.engine.dialect.name
        tests = [source.c[c] >= _bound(source.c[c], after, dialect) for c in self._change_columns]
        return tests[0] if len(tests) == 1 else or_(*tests)

    def all_keys(self) -> set[str]:
        """Every key in the table or query (or its `key_table`) now."""
        source = self._key_source()
        key_cols = [source.c[k] for k in self.keys]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*key_cols)).all()  # in one fetch: iterating fetches row by row
        if len(key_cols) == 1:
            return {str(row[0]) for row in rows}
        return {"|".join(str(v) for v in row) for row in rows}

    @property
    def keys_on_table(self) -> bool:
        """Whether keys are counted and listed on a table (a table source, or a query's `key_table`): comparing key
        ranges then scans an index, not the query's joins again."""
        return self._table_name is not None or self._key_table is not None

    def key_range(self) -> tuple[int, int] | None:
        """The smallest and largest key when the source has one integer key column (for comparing key sets by
        ranges, see `key_buckets`); None for other keys or an empty source."""
        if len(self.keys) != 1:
            return None
        source = self._key_source()
        col = source.c[self.keys[0]]
        with self.engine.connect() as conn:
            low, high = conn.execute(select(func.min(col), func.max(col))).one()
        if type(low) is not int or type(high) is not int:
            return None
        return low, high

    def key_census(self) -> tuple[int, tuple[int, int] | None]:
        """How many records the source holds now, with its smallest and largest key (as `key_range`) in the same
        scan: what an incremental deletion check asks first."""
        source = self._key_source()
        if len(self.keys) != 1:
            with self.engine.connect() as conn:
                return int(conn.scalar(select(func.count()).select_from(source)) or 0), None
        col = source.c[self.keys[0]]
        with self.engine.connect() as conn:
            count, low, high = conn.execute(select(func.count(), func.min(col), func.max(col))).one()
        span = (low, high) if type(low) is int and type(high) is int else None
        return int(count or 0), span

    def key_buckets(self, low: int, width: int) -> dict[int, int]:
        """How many keys fall in each bucket ``(key - low) // width`` (an integer key column; see `key_range`)."""
        source = self._key_source()
        bucket = _bucket(source.c[self.keys[0]], low, width)
        with self.engine.connect() as conn:
            return {int(b): int(n) for b, n in conn.execute(select(bucket, func.count()).group_by(bucket))}

    def keys_in_buckets(self, low: int, width: int, buckets: Sequence[int]) -> set[str]:
        """The keys in these buckets (as `key_buckets` numbers them)."""
        source = self._key_source()
        col = source.c[self.keys[0]]
        found: set[str] = set()
        with self.engine.connect() as conn:  # as key ranges, which the key's index serves (no key is below `low`)
            for chunk in _chunks(sorted(buckets), 200):
                ranges = [col.between(low + b * width, low + (b + 1) * width - 1) for b in chunk]
                found.update(str(v) for v in conn.execute(select(col).where(or_(*ranges))).scalars())
        return found

    def count(self, since: Watermark | None = None) -> int:
        """How many records `read(since)` would return (for progress bars; all of them: on the `key_table`)."""
        if since is not None and self.watermark_column:
            source, _ = self._base()
            query = select(func.count()).select_from(source).where(self._changed_since(source, since))
        else:
            query = select(func.count()).select_from(self._key_source())
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)


def _reopened(cls: type[SqlSource], url: str, arguments: dict[str, Any]) -> SqlSource:
    """A SQL source opened again from its arguments (in a sync worker process)."""
    return cls(url, **arguments)


def _bucket(key: Any, low: int, width: int) -> Any:
    """``(key - low) // width`` as SQL over an integer key (or key text, cast): the same numbering on every dialect
    for keys at or above `low` (lower keys, gone from the source, fall in bucket 0 or below)."""
    return (cast(key, BigInteger) - low) // width


def _chunks(values: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    """`values` in slices of at most `size` (bounded statement size)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _change_time(value: Any) -> dt.datetime | None:
    """A row's change time; a DECIMAL/NUMERIC epoch-seconds value (a Decimal) counts as seconds too."""
    return change_time(float(value) if isinstance(value, Decimal) else value)


def _bound(wm_column: Any, after: dt.datetime, dialect: str) -> Any:
    """The watermark as the column compares it: epoch seconds (numeric columns), aware, naive UTC, or (SQLite
    query columns) ISO text."""
    if isinstance(wm_column.type, Integer):  # epoch seconds; floor keeps the bound inclusive
        return math.floor(after.timestamp())
    if isinstance(wm_column.type, (Numeric, Float)):  # (Float is no Numeric subclass in SQLAlchemy 2.1)
        return after.timestamp()
    if getattr(wm_column.type, "timezone", False):
        return after
    naive = after.astimezone(dt.UTC).replace(tzinfo=None)
    return naive.isoformat(sep=" ") if isinstance(wm_column.type, NullType) and dialect == "sqlite" else naive


__all__ = ["SqlSource", "dispose_source_engine", "plain_value", "source_engine"]
