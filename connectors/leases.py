"""Connector leases in the relational store: one runtime runs a connector at a time, across processes and machines.

A lease is held until it expires; its holder renews it well before then. A runtime that dies stops renewing, and
another runtime on the same store takes the connector over once the lease has expired, within one lease period.
Expiry uses the holders' clocks, so machines sharing a store should keep their clocks in sync (NTP).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Column, Float, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from graph.relational import create_tables, relational_engine

metadata = MetaData()
connector_lease_table = Table(
    "connector_lease",
    metadata,
    Column("connector", String(128), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", Float, nullable=False),  # seconds since the epoch
    Column("acquired_at", Float, nullable=False),
)


@dataclass(frozen=True)
class Lease:
    """Who holds a connector, until when (seconds since the epoch)."""

    connector: str
    holder: str
    expires_at: float
    acquired_at: float


class LeaseStore:
    """Acquire, renew and release connector leases (sqlite:/// or postgresql:// URL)."""

    def __init__(self, url: str) -> None:
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)

    def acquire(self, connector: str, holder: str, seconds: float, now: float | None = None) -> bool:
        """Take or renew the lease of `connector` for `seconds`; False while another holder's lease is unexpired."""
        moment = time.time() if now is None else now
        t = connector_lease_table
        with self.engine.begin() as conn:
            renewed = conn.execute(
                update(t).where(t.c.connector == connector, t.c.holder == holder).values(expires_at=moment + seconds)
            )
            if renewed.rowcount == 1:
                return True
            taken = conn.execute(
                update(t)
                .where(t.c.connector == connector, t.c.expires_at < moment)
                .values(holder=holder, expires_at=moment + seconds, acquired_at=moment)
            )
            if taken.rowcount == 1:
                return True
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(t).values(
                        connector=connector, holder=holder, expires_at=moment + seconds, acquired_at=moment
                    )
                )
            return True
        except IntegrityError:  # another holder has it (or took it between our update and insert)
            return False

    def release(self, connector: str, holder: str) -> bool:
        """Give the lease up now (only its holder can); whether it was held."""
        t = connector_lease_table
        with self.engine.begin() as conn:
            return conn.execute(delete(t).where(t.c.connector == connector, t.c.holder == holder)).rowcount == 1

    def leases(self) -> list[Lease]:
        """Every lease recorded (expired ones included), by connector."""
        t = connector_lease_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.connector))
            return [Lease(r.connector, r.holder, r.expires_at, r.acquired_at) for r in rows]
