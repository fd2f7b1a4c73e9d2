"""The results store: every study with its spec, model version, twin state time, slice, seeds, runs and summaries.

Tables live in the relational store (SQLite or PostgreSQL through SQLAlchemy 2). A study keeps the exact slice of the
twin it ran on, so `twin scenario rerun ID` reproduces its numbers exactly even after the live graph has changed.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Column, Float, ForeignKey, Integer, MetaData, RowMapping, String, Table, Text, insert, select

from graph.relational import create_tables, relational_engine
from simulation.errors import StudyNotFound
from simulation.runner import RunResult
from simulation.statistics import KpiSummary

metadata = MetaData()

study_table = Table(
    "sim_study",
    metadata,
    Column("study_id", String(32), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("spec", Text, nullable=False),
    Column("source", String(512), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("twin_state_time", String(40), nullable=False),
    Column("slice", Text, nullable=False),
    Column("plan", Text, nullable=False),
    Column("slice_digest", String(64), nullable=False),
    Column("seed", String(24), nullable=False),
    Column("replications", Integer, nullable=False),
    Column("seeds", Text, nullable=False),
    Column("executor", String(16), nullable=False),
    Column("wall_seconds", Float, nullable=False),
    Column("agent_steps", Integer, nullable=False),
    Column("calibration", Text, nullable=False),
    Column("run_id", String(64), nullable=True),
)

run_table = Table(
    "sim_run",
    metadata,
    Column("study_id", String(32), ForeignKey("sim_study.study_id", ondelete="CASCADE"), primary_key=True),
    Column("scenario", String(256), primary_key=True),
    Column("replication", Integer, primary_key=True),
    Column("seed", String(24), nullable=False),
    Column("kpi_values", Text, nullable=False),
    Column("kpi_series", Text, nullable=False),
    Column("agents", Integer, nullable=False),
    Column("seconds", Float, nullable=False),
)

summary_table = Table(
    "sim_summary",
    metadata,
    Column("study_id", String(32), ForeignKey("sim_study.study_id", ondelete="CASCADE"), primary_key=True),
    Column("scenario", String(256), primary_key=True),
    Column("kpi", String(128), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("summary", Text, nullable=False),
)


experiment_table = Table(
    "sim_experiment",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("spec", Text, nullable=False),
    Column("source", String(512), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("twin_state_time", String(40), nullable=False),
    Column("slice", Text, nullable=False),
    Column("slice_digest", String(64), nullable=False),
    Column("seeds", Text, nullable=False),
    Column("executor", String(16), nullable=False),
    Column("wall_seconds", Float, nullable=False),
    Column("evaluations", Integer, nullable=False),
    Column("result", Text, nullable=False),
    Column("run_id", String(64), nullable=True),
)


@dataclass(frozen=True)
class ExperimentRecord:
    """A stored experiment: its spec, the slice it ran on, its seeds and its result (JSON of ExperimentResult)."""

    experiment_id: str
    name: str
    kind: str
    created_at: str
    spec: str
    source: str
    model_version: str
    twin_state_time: str
    slice_digest: str
    seeds: list[int]
    executor: str
    wall_seconds: float
    evaluations: int
    result: dict[str, Any]
    run_id: str | None


@dataclass(frozen=True)
class StudyRecord:
    """A stored study's header."""

    study_id: str
    name: str
    created_at: str
    spec: str
    source: str
    model_version: str
    twin_state_time: str
    slice_digest: str
    seed: int
    replications: int
    seeds: list[int]
    executor: str
    wall_seconds: float
    agent_steps: int
    calibration: dict[str, dict[str, int]]
    run_id: str | None


@dataclass(frozen=True)
class StoredStudy:
    """A stored study with its runs and summaries."""

    record: StudyRecord
    runs: list[RunResult]
    summaries: list[KpiSummary]


class ResultsStore:
    """Studies in the relational store at `url` (sqlite:/// or postgresql://)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)

    def save(
        self,
        *,
        name: str,
        spec: str,
        source: str,
        model_version: str,
        twin_state_time: dt.datetime,
        slice_json: str,
        plan_json: str,
        slice_digest: str,
        seed: int,
        seeds: list[int],
        executor: str,
        wall_seconds: float,
        agent_steps: int,
        calibration: dict[str, dict[str, int]],
        runs: list[RunResult],
        summaries: list[KpiSummary],
        run_id: str | None = None,
    ) -> str:
        """Store a finished study; returns its id."""
        study_id = uuid.uuid4().hex[:12]
        with self.engine.begin() as conn:
            conn.execute(
                insert(study_table).values(
                    study_id=study_id,
                    name=name,
                    created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    spec=spec,
                    source=source,
                    model_version=model_version,
                    twin_state_time=twin_state_time.isoformat(),
                    slice=slice_json,
                    plan=plan_json,
                    slice_digest=slice_digest,
                    seed=str(seed),
                    replications=len(seeds),
                    seeds=json.dumps([str(s) for s in seeds]),
                    executor=executor,
                    wall_seconds=wall_seconds,
                    agent_steps=agent_steps,
                    calibration=json.dumps(calibration, sort_keys=True),
                    run_id=run_id,
                )
            )
            if runs:
                conn.execute(
                    insert(run_table),
                    [
                        {
                            "study_id": study_id,
                            "scenario": r.scenario,
                            "replication": r.replication,
                            "seed": str(r.seed),
                            "kpi_values": json.dumps(r.values),
                            "kpi_series": json.dumps(r.series),
                            "agents": r.agents,
                            "seconds": r.seconds,
                        }
                        for r in runs
                    ],
                )
            if summaries:
                conn.execute(
                    insert(summary_table),
                    [
                        {
                            "study_id": study_id,
                            "scenario": s.scenario,
                            "kpi": s.kpi,
                            "position": i,
                            "summary": json.dumps(asdict(s)),
                        }
                        for i, s in enumerate(summaries)
                    ],
                )
        return study_id

    def studies(self, limit: int = 100) -> list[StudyRecord]:
        """Stored studies, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(study_table).order_by(study_table.c.created_at.desc(), study_table.c.study_id).limit(limit)
            ).all()
        return [_record(row._mapping) for row in rows]

    def get(self, study_id: str) -> StoredStudy:
        """A stored study with its runs and summaries; StudyNotFound when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(study_table).where(study_table.c.study_id == study_id)).first()
            if row is None:
                raise StudyNotFound(f"no stored study with id {study_id!r} (see `twin scenario list`)")
            runs = conn.execute(
                select(run_table)
                .where(run_table.c.study_id == study_id)
                .order_by(run_table.c.replication, run_table.c.scenario)
            ).all()
            summaries = conn.execute(
                select(summary_table).where(summary_table.c.study_id == study_id).order_by(summary_table.c.position)
            ).all()
        return StoredStudy(
            _record(row._mapping),
            [
                RunResult(
                    r.scenario,
                    r.replication,
                    int(r.seed),
                    json.loads(r.kpi_values),
                    json.loads(r.kpi_series),
                    r.agents,
                    r.seconds,
                )
                for r in runs
            ],
            [KpiSummary(**json.loads(s.summary)) for s in summaries],
        )

    def summaries_of(self, study_ids: list[str]) -> dict[str, list[KpiSummary]]:
        """The KPI summaries of several studies, in one query (for lists of studies)."""
        found: dict[str, list[KpiSummary]] = {study_id: [] for study_id in study_ids}
        if not study_ids:
            return found
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(summary_table.c.study_id, summary_table.c.summary)
                .where(summary_table.c.study_id.in_(study_ids))
                .order_by(summary_table.c.study_id, summary_table.c.position)
            ).all()
        for study_id, summary in rows:
            found[study_id].append(KpiSummary(**json.loads(summary)))
        return found

    def save_experiment(
        self,
        *,
        name: str,
        kind: str,
        spec: str,
        source: str,
        model_version: str,
        twin_state_time: dt.datetime,
        slice_json: str,
        slice_digest: str,
        seeds: list[int],
        executor: str,
        wall_seconds: float,
        evaluations: int,
        result: dict[str, Any],
        run_id: str | None = None,
    ) -> str:
        """Store a finished experiment in one transaction; returns its id."""
        experiment_id = uuid.uuid4().hex[:12]
        with self.engine.begin() as conn:
            conn.execute(
                insert(experiment_table).values(
                    experiment_id=experiment_id,
                    name=name,
                    kind=kind,
                    created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    spec=spec,
                    source=source,
                    model_version=model_version,
                    twin_state_time=twin_state_time.isoformat(),
                    slice=slice_json,
                    slice_digest=slice_digest,
                    seeds=json.dumps([str(s) for s in seeds]),
                    executor=executor,
                    wall_seconds=wall_seconds,
                    evaluations=evaluations,
                    result=json.dumps(result, sort_keys=True, allow_nan=True),
                    run_id=run_id,
                )
            )
        return experiment_id

    def experiments(self, limit: int = 100) -> list[ExperimentRecord]:
        """Stored experiments, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(experiment_table)
                .order_by(experiment_table.c.created_at.desc(), experiment_table.c.experiment_id)
                .limit(limit)
            ).all()
        return [_experiment(row._mapping) for row in rows]

    def experiment(self, experiment_id: str) -> ExperimentRecord:
        """A stored experiment; StudyNotFound when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(experiment_table).where(experiment_table.c.experiment_id == experiment_id)
            ).first()
        if row is None:
            raise StudyNotFound(f"no stored experiment with id {experiment_id!r} (see `twin scenario experiments`)")
        return _experiment(row._mapping)

    def experiment_slice(self, experiment_id: str) -> str:
        """The slice a stored experiment ran on, as stored JSON."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(experiment_table.c.slice).where(experiment_table.c.experiment_id == experiment_id)
            ).first()
        if row is None:
            raise StudyNotFound(f"no stored experiment with id {experiment_id!r}")
        return str(row[0])

    def inputs(self, study_id: str) -> tuple[str, str]:
        """The slice a study ran on and its resolved plan, as stored JSON."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(study_table.c.slice, study_table.c.plan).where(study_table.c.study_id == study_id)
            ).first()
        if row is None:
            raise StudyNotFound(f"no stored study with id {study_id!r}")
        return str(row[0]), str(row[1])


def _experiment(row: RowMapping) -> ExperimentRecord:
    return ExperimentRecord(
        experiment_id=row["experiment_id"],
        name=row["name"],
        kind=row["kind"],
        created_at=row["created_at"],
        spec=row["spec"],
        source=row["source"],
        model_version=row["model_version"],
        twin_state_time=row["twin_state_time"],
        slice_digest=row["slice_digest"],
        seeds=[int(s) for s in json.loads(row["seeds"])],
        executor=row["executor"],
        wall_seconds=row["wall_seconds"],
        evaluations=row["evaluations"],
        result=json.loads(row["result"]),
        run_id=row["run_id"],
    )


def _record(row: RowMapping) -> StudyRecord:
    return StudyRecord(
        study_id=row["study_id"],
        name=row["name"],
        created_at=row["created_at"],
        spec=row["spec"],
        source=row["source"],
        model_version=row["model_version"],
        twin_state_time=row["twin_state_time"],
        slice_digest=row["slice_digest"],
        seed=int(row["seed"]),
        replications=row["replications"],
        seeds=[int(s) for s in json.loads(row["seeds"])],
        executor=row["executor"],
        wall_seconds=row["wall_seconds"],
        agent_steps=row["agent_steps"],
        calibration=json.loads(row["calibration"]),
        run_id=row["run_id"],
    )
