"""Mapping source records to twins and links: one entity mapping applied to each record of a page."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.errors import ConnectorError
from connectors.mapping import EntityMapping, LinkRule, PropertyRule
from connectors.source import SourceRecord
from connectors.sync_state import LedgerEntry, payload_text
from connectors.telemetry import Reading
from connectors.transforms import TransformError, cast_value

LinkKey = tuple[str, str, str]  # (type, source uid, target uid): a link as the graph and the ledger name it


@dataclass(frozen=True, slots=True, eq=False)
class MappedLink:
    """A link a record produces: its type, source and target uids and its properties."""

    type: str
    source: str
    target: str
    properties: dict[str, Any]

    @property
    def key(self) -> LinkKey:
        """(type, source uid, target uid)."""
        return (self.type, self.source, self.target)

    def row(self) -> list[Any]:
        """The link as the ledger payload lists it: [type, source, target, properties]."""
        return [self.type, self.source, self.target, self.properties]

    def moved(self, source: str, target: str) -> MappedLink:
        """The same link between other endpoints (a merged or restored identity)."""
        return MappedLink(self.type, source, target, self.properties)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled as its four fields (a worker process hands links back by the thousand): a frozen dataclass's own
        # way (Python-level __setstate__ over its fields) costs several times more to load
        return (MappedLink, (self.type, self.source, self.target, self.properties))


def ledger_links(entry: LedgerEntry | None) -> list[MappedLink]:
    """The links a ledger entry says its record produced (none without an entry)."""
    if entry is None:
        return []
    return [MappedLink(t, s, d, p) for t, s, d, p in entry.payload.get("l", [])]


def ledger_link_keys(entries: Iterable[LedgerEntry]) -> list[LinkKey]:
    """The (type, source, target) of every link these ledger entries list."""
    return [(t, s, d) for entry in entries for t, s, d, _ in entry.payload.get("l", [])]


def record_digest(payload: Mapping[str, Any], text: str | None = None) -> str:
    """The ledger digest of a payload (or of its canonical `text`, when the caller has it already)."""
    text = text if text is not None else payload_text(payload)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass
class MappedItem:
    """One mapped record on its way to the graph."""

    record: SourceRecord
    natural_uid: str
    uid: str
    cls: str | None
    props: dict[str, Any]
    links: list[MappedLink]
    link_rules: dict[str, LinkRule]
    readings: list[Reading] = field(default_factory=list)
    status: str = "created"
    old: LedgerEntry | None = None
    digest: str = ""
    accepted: bool = True
    own_cls: str | None = None
    text: str | None = None  # the canonical text of `stored`
    stored: dict[str, Any] | None = None  # the ledger payload as digested (while the class stays `stored_cls`)
    stored_cls: str | None = None
    lifecycle: str | None = (
        None  # the state the record gives its twin (a mapping's `lifecycle`, or `on_delete: retire`)
    )
    valid_from: dt.datetime | None = None  # when the record's values take effect (a mapping's `valid_from`; None:
    # when written)

    def __post_init__(self) -> None:
        self.own_cls = self.cls

    def payload(self) -> dict[str, Any]:
        """What the ledger keeps of this record: uid fed, class written, properties, links, own uid and class (and
        the lifecycle state, when the mapping gives one)."""
        payload = {
            "u": self.uid,
            "c": self.cls,
            "p": self.props,
            "l": sorted([link.row() for link in self.links]),
            "n": self.natural_uid,
            "nc": self.own_cls,
        }
        if self.lifecycle is not None:
            payload["s"] = self.lifecycle
        if self.valid_from is not None:  # a new effective date is a change even with the same values
            payload["v"] = self.valid_from.isoformat()
        return payload


class RecordRejected(ConnectorError):
    """A record cannot be mapped: which field, which rule, why."""

    def __init__(self, field_name: str | None, rule: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.rule = rule
        self.message = message


class RecordMapper:
    """Applies one entity mapping to source records."""

    def __init__(self, entity: EntityMapping, system: str) -> None:
        self.entity = entity
        self.system = system
        self.rules: tuple[PropertyRule, ...] = entity.properties
        self.link_rules = {rule.type: rule for rule in entity.links}

    def map(self, record: SourceRecord) -> MappedItem:
        """The twin, links and readings a record gives; RecordRejected names the field and rule that refuse it."""
        fields = record.fields
        entity = self.entity
        if entity.link is not None:
            return self._association(record)
        assert entity.uid is not None
        try:
            natural = entity.uid.render(fields)
        except TransformError as exc:
            raise RecordRejected(
                ",".join(entity.uid.fields), "uid", f"uid rule {entity.uid.source!r}: {exc.message}"
            ) from None
        props: dict[str, Any] = {}
        for rule in self.rules:
            try:
                props[rule.name] = rule.compute(fields)
            except TransformError as exc:
                raise RecordRejected(rule.name, exc.rule, f"{rule.name}: {exc.message}") from None
        links: list[MappedLink] = []
        for link_rule in entity.links:
            try:
                target = link_rule.target_of(fields)
                if target is None:
                    continue
                link_props = {p.name: v for p in link_rule.properties if (v := p.compute(fields)) is not None}
            except TransformError as exc:
                raise RecordRejected(link_rule.type, exc.rule, f"link {link_rule.type}: {exc.message}") from None
            links.append(MappedLink(link_rule.type, natural, target, link_props))
        readings: list[Reading] = []
        if entity.telemetry is not None:
            stamp = fields.get(entity.telemetry.time)
            try:
                ts = cast_value(stamp, "dateTime")
            except TransformError as exc:
                raise RecordRejected(entity.telemetry.time, "telemetry.time", exc.message) from None
            if ts is None:
                raise RecordRejected(
                    entity.telemetry.time, "telemetry.time", f"time field {entity.telemetry.time!r} is empty"
                )
            for source_field, metric in entity.telemetry.metrics:
                value = fields.get(source_field)
                if value is None:
                    continue
                try:
                    number = cast_value(value, "double")
                except TransformError as exc:
                    raise RecordRejected(source_field, "telemetry.metric", exc.message) from None
                readings.append(Reading(natural, metric, ts, number, self.system))
        lifecycle = None
        if entity.lifecycle is not None:
            lifecycle = entity.lifecycle.state_of(fields)
            if lifecycle is None:
                given = entity.lifecycle
                raise RecordRejected(
                    given.field,
                    "lifecycle",
                    f"lifecycle: {given.field} = {str(fields.get(given.field))[:40]!r} maps to no state "
                    f"(mapped: {', '.join(sorted(given.states))}) and the rule has no default",
                )
        elif entity.on_delete == "retire":
            lifecycle = "active"  # a record that comes back brings its retired twin back
        item = MappedItem(record, natural, natural, entity.cls, props, links, self.link_rules, readings)
        item.lifecycle = lifecycle
        if entity.valid_from is not None:
            item.valid_from = effective_time(entity.valid_from, fields.get(entity.valid_from))
        return item

    def _association(self, record: SourceRecord) -> MappedItem:
        rule = self.entity.link
        assert rule is not None and rule.source is not None
        fields = record.fields
        try:
            source = rule.source.render(fields)
            target = rule.target_of(fields)
            if target is None:
                raise RecordRejected(
                    ",".join(rule.target_fields), "link.target", f"link {rule.type}: the target is empty"
                )
            props = {p.name: v for p in rule.properties if (v := p.compute(fields)) is not None}
        except TransformError as exc:
            raise RecordRejected(rule.type, exc.rule, f"link {rule.type}: {exc.message}") from None
        natural = f"link:{rule.type}:{source}->{target}"
        return MappedItem(
            record, natural, natural, None, {}, [MappedLink(rule.type, source, target, props)], {rule.type: rule}
        )


def effective_time(field_name: str, value: Any) -> dt.datetime | None:
    """A record's effective date (a mapping's `valid_from` field) as a time in UTC: a date means its midnight UTC, a
    naive date and time is UTC; None for an empty field (the values take effect when they are written);
    RecordRejected naming the field when the value is not an ISO 8601 date or date and time."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            when = (
                dt.datetime.fromisoformat(text)
                if len(text) > 10
                else dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
            )
        except ValueError:
            raise RecordRejected(
                field_name,
                "valid_from",
                f"valid_from: {field_name} = {text[:40]!r} is not an ISO 8601 date or date and time",
            ) from None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
