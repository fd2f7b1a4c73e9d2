"""Alerts: what an automation raises when its condition holds — severity, a deduplication key (one open alert per
key), states open -> acknowledged -> resolved, a snooze, and the evidence (the twins, the values and their lineage
that made the condition true). Read through `visible_alerts`, which applies the policy: a subject sees no alert about
a twin it may not read, and evidence values are masked as a read of those twins masks them."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
    and_,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from governance.decisions.evidence import Evidence, visible_evidence
from governance.errors import GovernanceError
from governance.identity import Subject
from governance.policy import Policy
from graph.reads import TwinReader
from graph.relational import create_tables, relational_engine

AlertState = Literal["open", "acknowledged", "resolved"]
SEVERITIES = ("info", "warning", "critical")
_NEXT: dict[str, tuple[str, ...]] = {
    "acknowledge": ("open",),
    "resolve": ("open", "acknowledged"),
    "snooze": ("open", "acknowledged"),
}

metadata = MetaData()
alert_table = Table(
    "decision_alert",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("automation", String(256), nullable=False),
    Column("rule_version", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("key", String(512), nullable=False),
    Column("open_key", String(512), nullable=True, unique=True),  # the key while not resolved: one open per key
    Column("state", String(16), nullable=False),
    Column("twin_uid", String(512), nullable=False),
    Column("twin_class", String(256), nullable=False),
    Column("message", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("fired", BigInteger, nullable=False),  # times the condition held while this alert was open
    Column("snoozed_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(512), nullable=False),
    Index("ix_decision_alert_state", "state"),
)


class AlertError(GovernanceError):
    """An alert transition that its state does not allow, or an alert that does not exist for the caller."""


@dataclass(frozen=True)
class Alert:
    """One alert as stored (or as a subject may see it: evidence masked)."""

    id: str
    automation: str
    rule_version: str
    severity: str
    key: str
    state: AlertState
    twin_uid: str
    twin_class: str
    message: str
    evidence: Evidence
    fired: int
    snoozed_until: datetime | None
    created_at: datetime
    updated_at: datetime
    updated_by: str

    def snoozed(self, now: datetime | None = None) -> bool:
        """Whether the alert is snoozed at `now`."""
        return self.snoozed_until is not None and self.snoozed_until > (now or datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "id": self.id,
            "automation": self.automation,
            "ruleVersion": self.rule_version,
            "severity": self.severity,
            "key": self.key,
            "state": self.state,
            "twin": self.twin_uid,
            "className": self.twin_class,
            "message": self.message,
            "evidence": self.evidence.to_dict(),
            "fired": self.fired,
            "snoozedUntil": _text(self.snoozed_until),
            "createdAt": _text(self.created_at),
            "updatedAt": _text(self.updated_at),
            "updatedBy": self.updated_by,
        }


class AlertStore:
    """Alerts in the relational store (sqlite:/// or postgresql:// URL)."""

    def __init__(self, url: str) -> None:
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)

    def raise_alert(
        self,
        *,
        automation: str,
        rule_version: str,
        severity: str,
        key: str,
        twin_uid: str,
        twin_class: str,
        message: str,
        evidence: Evidence,
        actor: str,
    ) -> tuple[Alert, bool]:
        """Open an alert for `key`, or count one more firing of the alert already open for it; (alert, new?)."""
        t, now = alert_table, datetime.now(UTC)
        for _ in range(3):
            with self.engine.begin() as conn:
                row = conn.execute(select(t).where(t.c.open_key == key)).first()
                if row is not None:
                    conn.execute(
                        update(t)
                        .where(t.c.id == row.id)
                        .values(fired=t.c.fired + 1, evidence=evidence.to_json(), message=message, updated_at=now)
                    )
                    return self._stored(conn, row.id), False
                alert_id = uuid.uuid4().hex[:16]
                try:
                    with conn.begin_nested():
                        conn.execute(
                            insert(t).values(
                                id=alert_id,
                                automation=automation,
                                rule_version=rule_version,
                                severity=severity,
                                key=key,
                                open_key=key,
                                state="open",
                                twin_uid=twin_uid,
                                twin_class=twin_class,
                                message=message,
                                evidence=evidence.to_json(),
                                fired=1,
                                snoozed_until=None,
                                created_at=now,
                                updated_at=now,
                                updated_by=actor,
                            )
                        )
                except IntegrityError:  # another evaluator opened it an instant ago: count this firing on it
                    continue
                return self._stored(conn, alert_id), True
        raise AlertError(f"alert key {key[:80]!r} is contended; try again")

    def transition(
        self,
        alert_id: str,
        action: Literal["acknowledge", "resolve", "snooze"],
        actor: str,
        until: datetime | None = None,
    ) -> Alert:
        """Acknowledge, resolve or snooze (until `until`) an alert; AlertError when its state does not allow it."""
        t, now = alert_table, datetime.now(UTC)
        with self.engine.begin() as conn:
            row = conn.execute(select(t).where(t.c.id == alert_id)).first()
            if row is None:
                raise AlertError(f"no alert {alert_id[:40]!r}")
            if row.state not in _NEXT[action]:
                raise AlertError(f"alert {alert_id} is {row.state}; it cannot be {action}d")
            values: dict[str, Any] = {"updated_at": now, "updated_by": actor}
            if action == "acknowledge":
                values["state"] = "acknowledged"
            elif action == "resolve":
                values.update(state="resolved", open_key=None)
            else:
                if until is None or _aware(until) <= now:
                    raise AlertError("a snooze needs a time in the future")
                values["snoozed_until"] = _aware(until)
            conn.execute(update(t).where(t.c.id == alert_id).values(**values))
            return self._stored(conn, alert_id)

    def get(self, alert_id: str) -> Alert | None:
        """The stored alert (unmasked: for the service, which masks before answering)."""
        with self.engine.connect() as conn:
            return self._get(conn, alert_id)

    def list(self, states: Sequence[str] | None = None, limit: int = 200) -> list[Alert]:
        """Stored alerts, newest first (unmasked)."""
        t = alert_table
        query = select(t).order_by(t.c.created_at.desc(), t.c.id).limit(limit)
        if states:
            query = query.where(t.c.state.in_(list(states)))
        with self.engine.connect() as conn:
            return [_alert(row) for row in conn.execute(query)]

    def page(
        self,
        *,
        states: Sequence[str] | None = None,
        severities: Sequence[str] | None = None,
        automations: Sequence[str] | None = None,
        twin_uid: str | None = None,
        classes: Sequence[str] | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 200,
    ) -> builtins.list[Alert]:
        """Stored alerts matching the filters, newest first, after the position `before` (created_at, id) of the
        last one a previous page held (unmasked)."""
        t = alert_table
        query = select(t).order_by(t.c.created_at.desc(), t.c.id).limit(limit)
        for column, wanted in ((t.c.state, states), (t.c.severity, severities), (t.c.automation, automations)):
            if wanted:
                query = query.where(column.in_(list(wanted)))
        if classes is not None:
            query = query.where(t.c.twin_class.in_(list(classes)))
        if twin_uid is not None:
            query = query.where(t.c.twin_uid == twin_uid)
        if before is not None:
            query = query.where(or_(t.c.created_at < before[0], and_(t.c.created_at == before[0], t.c.id > before[1])))
        with self.engine.connect() as conn:
            return [_alert(row) for row in conn.execute(query)]

    def changed_since(self, moment: datetime, limit: int = 500) -> builtins.list[Alert]:
        """Alerts created or changed at or after `moment`, oldest change first (unmasked)."""
        t = alert_table
        query = select(t).where(t.c.updated_at >= moment).order_by(t.c.updated_at, t.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [_alert(row) for row in conn.execute(query)]

    def resolve_cleared(self, pairs: Sequence[tuple[str, str]], actor: str) -> builtins.list[Alert]:
        """Resolve the open (or acknowledged) alerts of each (automation, twin uid) whose condition no longer holds;
        the alerts this call resolved."""
        if not pairs:
            return []
        t, now = alert_table, datetime.now(UTC)
        resolved: builtins.list[Alert] = []
        with self.engine.begin() as conn:
            for chunk in range(0, len(pairs), 400):
                wanted = list(pairs[chunk : chunk + 400])
                rows = conn.execute(
                    select(t.c.id).where(
                        t.c.state.in_(["open", "acknowledged"]),
                        tuple_(t.c.automation, t.c.twin_uid).in_(wanted),
                    )
                ).all()
                for (alert_id,) in rows:
                    moved = conn.execute(
                        update(t)
                        .where(t.c.id == alert_id, t.c.state.in_(["open", "acknowledged"]))
                        .values(state="resolved", open_key=None, updated_at=now, updated_by=actor)
                    ).rowcount
                    if moved == 1:
                        resolved.append(self._stored(conn, alert_id))
        return resolved

    @classmethod
    def _stored(cls, conn: Any, alert_id: str) -> Alert:
        """The alert this transaction just wrote; AlertError if it is gone (deleted concurrently)."""
        alert = cls._get(conn, alert_id)
        if alert is None:
            raise AlertError(f"alert {alert_id!r} is not stored")
        return alert

    @staticmethod
    def _get(conn: Any, alert_id: str) -> Alert | None:
        row = conn.execute(select(alert_table).where(alert_table.c.id == alert_id)).first()
        return _alert(row) if row is not None else None


def visible_alerts(alerts: Sequence[Alert], policy: Policy, subject: Subject, reader: TwinReader) -> list[Alert]:
    """The alerts `subject` may see, evidence masked: none about a twin whose class it may not read or that its row
    rules hide; evidence twins it may not see are left out, values masked by the policy."""
    readable = [
        a for a in alerts if a.twin_class in policy.ontology and policy.decide(subject, "read", a.twin_class).allowed
    ]
    if not readable:
        return []
    scope = policy.read_scope(subject)
    every_row = scope.predicate is None and scope.readable_classes is None
    uids = sorted({a.twin_uid for a in readable} | {t.uid for a in readable for t in a.evidence.twins})
    seen = set(uids) if every_row else set(reader.get_many(uids, scope))
    shown = []
    for alert in readable:
        if alert.twin_uid not in seen and not policy.sees_created(subject, alert.twin_class):
            continue  # hidden by a row rule now, or gone and only a reader of every row may still see it
        shown.append(replace(alert, evidence=visible_evidence(alert.evidence, policy, subject, seen)))
    return shown


def _alert(row: Any) -> Alert:
    return Alert(
        id=row.id,
        automation=row.automation,
        rule_version=row.rule_version,
        severity=row.severity,
        key=row.key,
        state=row.state,
        twin_uid=row.twin_uid,
        twin_class=row.twin_class,
        message=row.message,
        evidence=Evidence.from_json(row.evidence),
        fired=int(row.fired),
        snoozed_until=_aware(row.snoozed_until) if row.snoozed_until else None,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
        updated_by=row.updated_by,
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _text(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
