"""The privacy-budget ledger: every differentially private answer spends epsilon from its role's budget for the
current period (day, week or month, UTC); an answer that would overspend is refused before anything is read."""

from __future__ import annotations

import threading
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.exc import OperationalError

from governance.errors import PolicyDenied
from governance.policy import PrivacyBudgetRule
from graph.relational import create_tables, relational_engine

metadata = MetaData()
spend_table = Table(
    "privacy_budget_spend",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("role", String(128), nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("subject", String(512), nullable=False),
    Column("query", String(512), nullable=False),
    Column("spent_at", DateTime(timezone=True), nullable=False),
    Index("ix_privacy_budget_role_period", "role", "period_start"),
)

_ATTEMPTS = 20
_lock = threading.Lock()  # SQLite: one spender at a time in this process (PostgreSQL: an advisory lock per role)


class PrivacyBudgetExhausted(PolicyDenied):
    """The role's privacy budget for this period cannot pay for the answer."""


@dataclass(frozen=True)
class BudgetState:
    """Where one role's budget stands in the current period."""

    role: str
    period: Literal["day", "week", "month"]
    period_start: datetime
    limit: float
    spent: float

    @property
    def remaining(self) -> float:
        """Epsilon still available in this period."""
        return max(self.limit - self.spent, 0.0)


def period_start(period: Literal["day", "week", "month"], now: datetime) -> datetime:
    """The UTC start of the `period` that holds `now`."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


class PrivacyBudgetLedger:
    """Spends and reports epsilon per role and period in the relational store."""

    def __init__(self, url: str) -> None:
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)

    def state(self, rule: PrivacyBudgetRule, now: datetime | None = None) -> BudgetState:
        """The role's budget in the period that holds `now`."""
        start = period_start(rule.period, now or datetime.now(UTC))
        with self.engine.connect() as conn:
            spent = conn.execute(
                select(func.coalesce(func.sum(spend_table.c.epsilon), 0.0)).where(
                    spend_table.c.role == rule.role, spend_table.c.period_start == start
                )
            ).scalar_one()
        return BudgetState(rule.role, rule.period, start, rule.epsilon_per_period, float(spent))

    def spend(
        self, rule: PrivacyBudgetRule, epsilon: float, subject: str, query: str, now: datetime | None = None
    ) -> BudgetState:
        """Record `epsilon` spent by `subject` under `rule`'s role, or refuse when the period's budget cannot pay."""
        if not (0 < epsilon <= rule.epsilon_per_query):
            raise PrivacyBudgetExhausted(
                f"epsilon {epsilon!r} is outside (0, {rule.epsilon_per_query}] allowed per query for role {rule.role}"
            )
        now = now or datetime.now(UTC)
        start = period_start(rule.period, now)
        t = spend_table
        spent_so_far = (
            select(func.coalesce(func.sum(t.c.epsilon), 0.0))
            .where(t.c.role == rule.role, t.c.period_start == start)
            .scalar_subquery()
        )
        row = select(
            literal(rule.role),
            literal(start, DateTime(timezone=True)),
            literal(epsilon),
            literal(subject[:512]),
            literal(query[:512]),
            literal(now, DateTime(timezone=True)),
        ).where(spent_so_far + epsilon <= rule.epsilon_per_period + 1e-9)
        # One statement reads the period's total and records the spend only when the budget can pay: concurrent
        # spenders in other processes cannot both pass the check (SQLite serialises the statement's write,
        # PostgreSQL's advisory lock per role serialises the check too).
        columns = ["role", "period_start", "epsilon", "subject", "query", "spent_at"]
        statement = insert(t).from_select(columns, row).returning(t.c.id)  # (rowcount is -1 here on PostgreSQL)
        for attempt in range(_ATTEMPTS):
            try:
                with _lock, self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        key = {"key": zlib.crc32(rule.role.encode())}
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), key)
                    inserted = conn.execute(statement).first() is not None
                    spent = float(conn.execute(select(spent_so_far)).scalar_one())
                break
            except OperationalError:  # SQLite: another process wrote since this statement's snapshot; try again
                if attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        if not inserted:
            raise PrivacyBudgetExhausted(
                f"the privacy budget of role {rule.role} for this {rule.period} is spent "
                f"({spent:g} of {rule.epsilon_per_period:g}; this answer needs {epsilon:g}); "
                f"it renews at {_next_period(rule.period, start).isoformat()}"
            )
        return BudgetState(rule.role, rule.period, start, rule.epsilon_per_period, spent)


def _next_period(period: Literal["day", "week", "month"], start: datetime) -> datetime:
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
