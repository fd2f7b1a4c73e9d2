"""Files as a Source through pandas: CSV, Excel (.xlsx), Parquet and JSON (an array of records or JSON lines).

The whole file is read once per run (files have no server-side filter); an incremental read keeps the rows whose
watermark column is at or after the watermark. Missing values (NaN, NaT, empty cells) become None, timestamps
ISO 8601 text (naive ones are taken as UTC), numpy scalars plain Python numbers. A file that cannot be parsed,
lacks the key or watermark column, or has an empty key is refused with a SourceError naming the file.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from connectors.source import SourceError, SourceRecord, Watermark

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


_CSV_NA_VALUES = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
"""The cells pandas reads as missing by default (kept for every column but the keys)."""


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        if value.tzinfo is not None:
            value = value.tz_convert("UTC").tz_localize(None)
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        return _plain(value.item())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _as_utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    if pd.isna(stamp):
        return None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


class FileSource:
    """One file (CSV, Excel sheet, Parquet, JSON) as a Source keyed by one or more columns."""

    lists_keys = True  # the file is parsed once: incremental runs detect deletions (connectors.source.lists_keys)

    def __init__(
        self,
        path: Path | str,
        *,
        key: Sequence[str] | str,
        watermark: str | None = None,
        format: str | None = None,
        sheet: str | int | None = None,
        name: str | None = None,
        page_size: int = 5_000,
        dtype: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.keys = (key,) if isinstance(key, str) else tuple(key)
        if not self.keys:
            raise SourceError(f"{self.path.name}: a file source needs at least one key column")
        self.watermark_column = watermark
        self.format = format or FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise SourceError(
                f"{self.path}: unknown file type {self.path.suffix!r}; give format= "
                f"({', '.join(sorted(set(FORMATS.values())))})"
            )
        self.sheet = sheet
        self.name = name or f"file:{self.path.name}"
        self.page_size = page_size
        self.dtype = dtype or {}
        self._parsed: tuple[tuple[int, int], pd.DataFrame] | None = None  # (file size, mtime) -> its frame

    def __repr__(self) -> str:
        return f"FileSource(path={str(self.path)!r}, keys={list(self.keys)!r})"

    def frame(self) -> pd.DataFrame:
        """The file as a DataFrame (SourceError naming the file when it cannot be read); parsed once while the
        file stays the same (a run with progress bars counts the rows, then reads them)."""
        try:
            stat = self.path.stat()
        except OSError:
            stat = None
        if stat is None or not self.path.is_file():
            raise SourceError(f"{self.path}: file not found", model=self.name)
        signature = (stat.st_size, stat.st_mtime_ns)
        if self._parsed is not None and self._parsed[0] == signature:
            return self._parsed[1]
        frame = self._parse()
        self._parsed = (signature, frame)
        return frame

    def _parse(self) -> pd.DataFrame:
        key_types = dict.fromkeys(self.keys, "string")
        try:
            if self.format == "csv":
                sep = "\t" if self.path.suffix.lower() == ".tsv" else ","
                # key cells keep their literal text (a country code 'NA' is Namibia); other columns keep pandas'
                # missing-value markers (an empty cell, 'NA', 'NULL' become None)
                header = pd.read_csv(self.path, sep=sep, nrows=0).columns
                na_values = {c: sorted(_CSV_NA_VALUES) for c in header if c not in self.keys}
                frame = pd.read_csv(
                    self.path, sep=sep, dtype={**key_types, **self.dtype}, keep_default_na=False, na_values=na_values
                )
            elif self.format == "excel":
                frame = pd.read_excel(
                    self.path, sheet_name=self.sheet if self.sheet is not None else 0, dtype={**key_types, **self.dtype}
                )
            elif self.format == "parquet":
                frame = pd.read_parquet(self.path)
            elif self.format in ("json", "jsonl"):
                # dtype=False: JSON values keep the types written ("00123" stays text); keys and `dtype` cast after
                frame = pd.read_json(  # dates stay text too (pandas 2 converts `*_at`/`date` columns by default)
                    self.path,
                    orient="records",
                    lines=self.format == "jsonl",
                    dtype=False,
                    convert_dates=False,
                    keep_default_dates=False,
                )
                cast = {c: t for c, t in {**key_types, **self.dtype}.items() if c in frame.columns}
                frame = frame.astype(cast) if cast else frame
            else:
                raise SourceError(f"{self.path}: unsupported format {self.format!r}", model=self.name)
        except SourceError:
            raise
        except (ValueError, TypeError, OSError, ImportError, KeyError, pd.errors.ParserError) as exc:
            message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise SourceError(f"{self.path}: cannot be read as {self.format}: {message}", model=self.name) from None
        missing = [
            c
            for c in (*self.keys, *([self.watermark_column] if self.watermark_column else []))
            if c not in frame.columns
        ]
        if missing:
            raise SourceError(
                f"{self.path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, frame.columns))})",
                model=self.name,
            )
        return frame

    def read(self, since: Watermark | None) -> Iterator[list[SourceRecord]]:
        """Pages of the file's rows (in file order), all or those changed at or after `since`."""
        frame = self.frame()
        columns = [str(c) for c in frame.columns]
        records: list[SourceRecord] = []
        for row_number, values in enumerate(frame.itertuples(index=False, name=None), start=2):
            fields = {name: _plain(value) for name, value in zip(columns, values, strict=True)}
            key_parts = [fields.get(k) for k in self.keys]
            changed = _as_utc(fields.get(self.watermark_column)) if self.watermark_column else None
            if since is not None and self.watermark_column and changed is not None and changed < since.value:
                continue
            if any(part is None or part == "" for part in key_parts):
                # an empty key cannot be synced; the engine quarantines it under the row number
                fields["__row__"] = row_number
                records.append(SourceRecord(f"{self.path.name}:row{row_number}", fields, changed))
            else:
                records.append(SourceRecord("|".join(str(p) for p in key_parts), fields, changed))
            if len(records) >= self.page_size:
                yield records
                records = []
        if records:
            yield records

    def all_keys(self) -> set[str]:
        """Every key in the file now."""
        frame = self.frame()
        return {"|".join(str(_plain(v)) for v in row) for row in frame[list(self.keys)].itertuples(index=False)}

    def count(self, since: Watermark | None = None) -> int:
        """Rows in the file (progress bars)."""
        return len(self.frame())
