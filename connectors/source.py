"""The contract every data source fulfils: records in batches, a change watermark, the full key set."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol, overload, runtime_checkable

from connectors.errors import ConnectorError


@dataclass(frozen=True)
class Watermark:
    """How far a source has been read: the newest change time seen, as an aware UTC datetime."""

    value: datetime

    def __post_init__(self) -> None:
        if self.value.tzinfo is None:
            raise ValueError(f"watermark {self.value.isoformat()} has no time zone; give an aware UTC datetime")
        object.__setattr__(self, "value", self.value.astimezone(UTC))


@overload
def change_time(value: datetime) -> datetime: ...
@overload
def change_time(value: Any) -> datetime | None: ...
def change_time(value: Any) -> datetime | None:
    """A record's change time as an aware UTC datetime: ISO 8601 text (Z allowed), a datetime (naive = UTC), a
    date (its midnight), or seconds since the epoch; None for anything else (the record then counts as changed)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


@dataclass(frozen=True)
class SourceRecord:
    """One record as read from a source: its stable key, plain JSON-able field values and its change time."""

    key: str
    fields: dict[str, Any] = field(default_factory=dict)
    watermark: datetime | None = None
    deleted: bool = False


class SourceError(ConnectorError):
    """A source could not be read; names the source operation (model, method) that failed, never credentials."""

    def __init__(self, message: str, *, model: str | None = None, method: str | None = None) -> None:
        self.model = model
        self.method = method
        where = ".".join(part for part in (model, method) if part)
        super().__init__(f"{where}: {message}" if where else message)


class SourceObjectMissing(SourceError):
    """The source has no such object (table, model, endpoint), e.g. an ERP module that is not activated there."""


class UnknownSourceField(SourceError):
    """A field a mapping reads does not exist in the source object; `field` names it as the mapping wrote it."""

    def __init__(self, message: str, *, field: str, model: str | None = None, method: str | None = None) -> None:
        self.field = field
        super().__init__(message, model=model, method=method)


@runtime_checkable
class Source(Protocol):
    """A readable system of record: full or incremental batches of records, plus the keys that exist now."""

    name: str

    def read(self, since: Watermark | None) -> Iterator[list[SourceRecord]]:
        """Batches of records changed after `since`, or every record when `since` is None."""
        ...

    def all_keys(self) -> set[str]:
        """Every key the source holds now, so runs can detect deletions (full runs always, incremental runs when
        the source `lists_keys`)."""
        ...


@runtime_checkable
class AcknowledgingSource(Source, Protocol):
    """A source whose server keeps what was read until told it is safe (MQTT QoS 1): the sync engine calls
    `acknowledge(page)` for each page it read, in order, once the page's relational commit (ledger, telemetry,
    quarantine) is durable, and `close()` when the entity's read is over; a page never acknowledged is delivered
    again to the next session (at least once)."""

    def acknowledge(self, page: list[SourceRecord]) -> None:
        """Release `page` (a list this source's read handed out, the same object) and every page before it."""
        ...

    def close(self) -> None:
        """End the session; pages not acknowledged stay with the server for the next session."""
        ...


@runtime_checkable
class SplittableSource(Source, Protocol):
    """A source that other processes can read by key ranges, so a large read is split among sync worker processes
    (connectors/sync/workers.py): it pickles as what opens it again (never a live connection), counts its records
    with their key span, and reads the records of one key range as `read` would."""

    page_size: int

    @property
    def splittable(self) -> bool:
        """Whether this instance can be read by key ranges from another process now (one integer key, a database
        other processes reach)."""
        ...

    def key_census(self) -> tuple[int, tuple[int, int] | None]:
        """How many records the source holds, with its smallest and largest key (None: not one integer key)."""
        ...

    def count(self, since: Watermark | None = None) -> int:
        """How many records `read(since)` would return."""
        ...

    def read_slice(self, since: Watermark | None, low: int | None, high: int | None) -> Iterator[list[SourceRecord]]:
        """The pages `read(since)` gives of the records with `low` <= key < `high` (None: open), in key order."""
        ...


def splits(source: object) -> bool:
    """Whether a source can be read by key ranges in worker processes (see SplittableSource)."""
    return isinstance(source, SplittableSource) and source.splittable is True


def lists_keys(source: object) -> bool:
    """Whether listing a source's keys costs far less than reading its records (a class attribute `lists_keys`
    says so: SQL and Tryton fetch keys only, a file is parsed once), so every incremental run compares the key set
    with the ledger to find deleted records. Streams (MQTT) and paged APIs (REST) do not; their deletions are seen
    by full runs and by records marked deleted."""
    return getattr(source, "lists_keys", False) is True
