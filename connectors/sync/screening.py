"""Screening a source record before the ledger and the graph see it: refused (which field, which rule, why) or mapped
to its twin and links, with the ledger payload's canonical text and digest worked out.

Screening depends on the record and the mapping alone, so it runs in the run's own process or in a sync worker
process (connectors/sync/workers.py) with the same outcome; what depends on the whole run (a key seen twice, the
ledger, identities) is decided afterwards, by the engine, in record order.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.errors import SyncError
from connectors.limits import SizeLimits, excerpt
from connectors.mapping import EntityMapping
from connectors.quarantine import INVALID_FIELD
from connectors.source import SourceRecord
from connectors.sync.mapper import MappedItem, RecordMapper, RecordRejected, record_digest
from connectors.sync_state import payload_text


@dataclass
class Refusal:
    """Why a record is quarantined: the field and rule that refuse it and the message; for an oversized record the
    key and fields as quarantine keeps them (cut short) and the report's example text."""

    field: str | None
    rule: str
    message: str
    key: str | None = None  # the key as quarantine keeps it (None: the record's key)
    fields: dict[str, object] | None = None  # the fields as quarantine keeps them (None: the record's fields)
    example: str | None = None  # the report's example (None: "<key>: <message>")


@dataclass
class Screened:
    """One record screened: refused before its key is checked for repeats (`early`: its key or a source value is
    unusable), refused after (`refusal`: too large, or its mapping refuses it), or mapped (`item`); a record the
    source marks deleted carries none of them."""

    record: SourceRecord
    early: Refusal | None = None
    refusal: Refusal | None = None
    item: MappedItem | None = None


class MappingFailed(SyncError):
    """A mapping raised something other than a refusal on one record (a defect, not bad input): the run stops,
    naming the connector, entity and record; nothing of the page that holds the record is written."""


class RecordScreen:
    """Screens the records of one entity: key and source-value checks, size limits, the mapping, the ledger digest."""

    def __init__(self, entity: EntityMapping, system: str, limits: SizeLimits, where: str) -> None:
        self.entity = entity
        self.mapper = RecordMapper(entity, system)
        self.limits = limits
        self.where = where  # "<connector>/<entity>", for a mapping failure's message
        self.keys = entity.key

    def screen(self, record: SourceRecord) -> Screened:
        """What the record becomes (see Screened); MappingFailed for a mapping that raises anything but a refusal."""
        if record.deleted:
            return Screened(record)
        fields = record.fields
        if INVALID_FIELD in fields:
            return Screened(record, early=Refusal(None, "source", str(fields[INVALID_FIELD])))
        for key_field in self.keys:
            value = fields.get(key_field)
            if value is None or value == "":
                return Screened(record, early=Refusal(key_field, "missing-key", f"key field {key_field!r} is empty"))
        oversized = self.limits.oversized(fields)
        if oversized is not None:
            refusal = Refusal(
                oversized[0],
                "size",
                oversized[1],
                key=record.key[:512],
                fields=self.limits.trimmed(fields),
                example=f"{excerpt(record.key)}: {oversized[1]}",
            )
            return Screened(record, refusal=refusal)
        try:
            item = self.mapper.map(record)
        except RecordRejected as exc:
            return Screened(record, refusal=Refusal(exc.field, exc.rule, exc.message))
        except Exception as exc:
            raise MappingFailed(
                f"{self.where}: record {excerpt(record.key)}: the mapping failed ({type(exc).__name__}: {exc}); "
                "nothing of its page was written"
            ) from exc
        if not self.entity.ledger or self.entity.identity is not None:  # (identities change what is digested)
            return Screened(record, item=item)
        stored = item.payload()  # the ledger payload as the record gives it (identities may change it later)
        item.stored = stored
        item.stored_cls = item.cls
        item.text = payload_text(stored)
        item.digest = record_digest({}, item.text)
        return Screened(record, item=item)
