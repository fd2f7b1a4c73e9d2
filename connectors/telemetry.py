"""The telemetry time series in the relational store: one row per (asset twin, metric, time), written idempotently."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, Connection, Float, Index, MetaData, String, Table, func, select

from graph.relational import create_tables, relational_engine
from graph.row_appender import RowAppender

metadata = MetaData()

telemetry_table = Table(
    "telemetry",
    metadata,
    Column("asset_uid", String(512), primary_key=True),
    Column("metric", String(128), primary_key=True),
    Column("ts", String(40), primary_key=True),
    Column("value", Float, nullable=True),
    Column("source", String(256), nullable=False),
    Column("run_id", String(64), nullable=False),
    Index("ix_telemetry_metric_ts", "metric", "ts"),
    Index("ix_telemetry_run", "run_id"),  # the readings a sync run brought (anomaly detection as they arrive)
)


@dataclass(frozen=True)
class Reading:
    """One measured value of an asset's metric at a time (UTC ISO 8601)."""

    asset_uid: str
    metric: str
    ts: str
    value: float | None
    source: str = ""


class TelemetryStore:
    """Appends readings (a replayed reading is ignored, so re-delivery never duplicates) and reads series back."""

    def __init__(self, url: str) -> None:
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)
        self._appender = RowAppender(
            self.engine,
            telemetry_table,
            ("asset_uid", "metric", "ts", "value", "source"),
            ("run_id",),
            conflict_keys=("asset_uid", "metric", "ts"),
        )

    def append(self, conn: Connection, readings: Sequence[Reading], run_id: str) -> None:
        """Store readings (finite values: the mapping's cast refuses others) inside the caller's transaction."""
        self._appender.append(conn, [(r.asset_uid, r.metric, r.ts, r.value, r.source) for r in readings], (run_id,))

    def series(self, asset_uid: str, metric: str, since: datetime | None = None, limit: int = 10_000) -> list[Reading]:
        """Readings of one asset's metric in time order."""
        t = telemetry_table
        query = select(t).where(t.c.asset_uid == asset_uid, t.c.metric == metric)
        if since is not None:
            query = query.where(t.c.ts >= since.isoformat())
        with self.engine.connect() as conn:
            return [
                Reading(r.asset_uid, r.metric, r.ts, r.value, r.source)
                for r in conn.execute(query.order_by(t.c.ts).limit(limit))
            ]

    def of_run(self, run_id: str, limit: int = 200_000) -> list[Reading]:
        """The readings a sync run stored (a replayed reading keeps the run that first stored it), per stream in
        time order."""
        t = telemetry_table
        query = select(t).where(t.c.run_id == run_id).order_by(t.c.asset_uid, t.c.metric, t.c.ts).limit(limit)
        with self.engine.connect() as conn:
            return [Reading(r.asset_uid, r.metric, r.ts, r.value, r.source) for r in conn.execute(query)]

    def latest_before(self, asset_uid: str, metric: str, ts: str, limit: int) -> list[Reading]:
        """The last `limit` readings of one stream before `ts`, in time order (to prime a detector)."""
        t = telemetry_table
        query = (
            select(t)
            .where(t.c.asset_uid == asset_uid, t.c.metric == metric, t.c.ts < ts)
            .order_by(t.c.ts.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            found = [Reading(r.asset_uid, r.metric, r.ts, r.value, r.source) for r in conn.execute(query)]
        return found[::-1]

    def count(self, asset_uid: str | None = None) -> int:
        """Number of stored readings (of one asset, or all)."""
        t = telemetry_table
        query = select(func.count()).select_from(t)
        if asset_uid is not None:
            query = query.where(t.c.asset_uid == asset_uid)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)
