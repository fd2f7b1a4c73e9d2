"""The privacy-budget ledger: every differentially private answer spends epsilon from its role's budget for the
current period (day, week or month, UTC); an answer that would overspend is refused before anything is read."""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Column, DateTime, Float, Index, Integer, MetaData, String, Table, func, insert, select, text

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
        with _lock, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(rule.role.encode())})
            spent = float(
                conn.execute(
                    select(func.coalesce(func.sum(spend_table.c.epsilon), 0.0)).where(
                        spend_table.c.role == rule.role, spend_table.c.period_start == start
                    )
                ).scalar_one()
            )
            if spent + epsilon > rule.epsilon_per_period + 1e-9:
                raise PrivacyBudgetExhausted(
                    f"the privacy budget of role {rule.role} for this {rule.period} is spent "
                    f"({spent:g} of {rule.epsilon_per_period:g}; this answer needs {epsilon:g}); "
                    f"it renews at {_next_period(rule.period, start).isoformat()}"
                )
            conn.execute(
                insert(spend_table).values(
                    role=rule.role,
                    period_start=start,
                    epsilon=epsilon,
                    subject=subject[:512],
                    query=query[:512],
                    spent_at=now,
                )
            )
        return BudgetState(rule.role, rule.period, start, rule.epsilon_per_period, spent + epsilon)


def _next_period(period: Literal["day", "week", "month"], start: datetime) -> datetime:
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
