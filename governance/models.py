"""The model registry: versions of the forecasting models of each series, champion and challengers, approved
promotion, drift monitoring with retrain alerts — every action audited.

A version records its kind, parameters, training window, the digest of its input data, its backtest metrics, a
reference sample of its training inputs (for drift), who trained it and who approved it. The first version of a
series becomes its champion (there is nothing to replace); later ones are challengers. Promoting a challenger needs
an approval by someone holding `model.approve` who did not train it (no self-approval), and a promotion of an
unapproved version is refused; both refusals are audited. Drift: the recent inputs against a reference — the
champion's training sample, or for a seasonal series the year-over-year log ratios of training against recent
periods — by the population stability index and the two-sample Kolmogorov-Smirnov test (a shift when both cross
their limits), and accuracy decay (the MASE on realised values against the backtest's); either raises a `retrain`
alert (one open alert per series), audited, for people to act on. A retrain alert is a proposal: someone holding
`model.approve` who did not raise it approves it (`approve_retrain`), the retraining runtime
(simulation/forecast/retraining.py) retrains the series and marks it `retrained` with the versions it registered.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sqlalchemy import Column, Index, Integer, MetaData, RowMapping, String, Table, Text, insert, select, update

from governance.audit import AuditEvent, AuditLog, Decision
from governance.errors import GovernanceError, PolicyDenied
from governance.identity import Subject
from governance.policy import Policy
from graph.relational import create_tables, relational_engine

APPROVE = "model.approve"
TRAIN = "forecast.run"
PSI_LIMIT = 0.25  # population stability index above which inputs have shifted
KS_P_LIMIT = 0.01  # Kolmogorov-Smirnov p-value below which inputs have shifted
DECAY_LIMIT = 2.0  # realised MASE over backtest MASE above which accuracy has decayed
REFERENCE_POINTS = 520

metadata = MetaData()

model_version_table = Table(
    "model_version",
    metadata,
    Column("version_id", String(32), primary_key=True),
    Column("series", String(512), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("params", Text, nullable=False),
    Column("train_start", String(40), nullable=False),
    Column("train_end", String(40), nullable=False),
    Column("train_points", Integer, nullable=False),
    Column("input_digest", String(64), nullable=False),
    Column("metrics", Text, nullable=False),
    Column("reference", Text, nullable=False),
    Column("trained_by", String(256), nullable=False),
    Column("trained_at", String(32), nullable=False),
    Column("approved_by", String(256), nullable=True),
    Column("approved_at", String(32), nullable=True),
    Column("status", String(16), nullable=False),  # champion | challenger | retired
    Index("ix_model_version_series_status", "series", "status"),
)

model_alert_table = Table(
    "model_alert",
    metadata,
    Column("alert_id", String(32), primary_key=True),
    Column("series", String(512), nullable=False),
    Column("version_id", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # retrain
    Column("raised_at", String(32), nullable=False),
    Column("raised_by", String(256), nullable=False),
    Column("reasons", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open | approved (retraining) | retrained | resolved
    Index("ix_model_alert_series_status", "series", "status"),
)


class ModelRegistryError(GovernanceError):
    """A model registry request cannot be done (unknown version, refused approval or promotion)."""


class UnknownModelVersion(ModelRegistryError):
    """No model version has the given id."""


class ApprovalRefused(ModelRegistryError):
    """An approval was refused (self-approval, a retired version, approved already)."""


class PromotionRefused(ModelRegistryError):
    """A promotion was refused (the version is not approved, or belongs to another series)."""


@dataclass(frozen=True)
class ModelVersion:
    """One trained version of a series' model."""

    version_id: str
    series: str
    kind: str
    params: dict[str, Any]
    train_start: str
    train_end: str
    train_points: int
    input_digest: str
    metrics: dict[str, Any]
    trained_by: str
    trained_at: str
    approved_by: str | None
    approved_at: str | None
    status: str
    reference: tuple[float, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class DriftReport:
    """What a drift check found: input shift (PSI, KS) and accuracy decay, and the alert it raised, if any."""

    series: str
    version_id: str
    psi: float
    ks_statistic: float
    ks_p_value: float
    accuracy_ratio: float | None
    reasons: tuple[str, ...]
    alert_id: str | None

    @property
    def drifted(self) -> bool:
        """Whether any threshold was crossed."""
        return bool(self.reasons)


@dataclass(frozen=True)
class ModelAlert:
    """A raised alert (a retrain proposal) for a series' champion."""

    alert_id: str
    series: str
    version_id: str
    kind: str
    raised_at: str
    raised_by: str
    reasons: tuple[str, ...]
    detail: dict[str, Any]
    status: str


def population_stability_index(reference: Sequence[float], recent: Sequence[float], bins: int = 10) -> float:
    """PSI of `recent` against `reference` over the reference's decile bins (0: same distribution)."""
    ref = np.asarray(reference, dtype=np.float64)
    new = np.asarray(recent, dtype=np.float64)
    if len(ref) < 2 or len(new) < 1:
        return 0.0
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if np.allclose(new, ref[0]) else math.inf
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(ref, edges)[0] / len(ref)
    actual = np.histogram(new, edges)[0] / len(new)
    expected = np.clip(expected, 1e-4, None)
    actual = np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


class ModelRegistry:
    """Model versions and alerts in the relational store at `url`; every action appended to `audit`."""

    def __init__(self, url: str, audit: AuditLog, policy: Policy) -> None:
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)
        self.audit = audit
        self.policy = policy

    # ------------------------------------------------------------------ reads
    def get(self, version_id: str) -> ModelVersion:
        """A version by id; UnknownModelVersion otherwise."""
        t = model_version_table
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.version_id == version_id)).first()
        if row is None:
            raise UnknownModelVersion(f"no model version {version_id[:40]!r} (see `twin forecast models SERIES`)")
        return _version(row._mapping)

    def versions(self, series: str) -> list[ModelVersion]:
        """Every version of a series, oldest first."""
        t = model_version_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.series == series).order_by(t.c.trained_at)).all()
        return [_version(r._mapping) for r in rows]

    def champion(self, series: str) -> ModelVersion | None:
        """The series' champion, if it has one."""
        found = [v for v in self.versions(series) if v.status == "champion"]
        return found[-1] if found else None

    def challengers(self, series: str) -> list[ModelVersion]:
        """The series' challengers, oldest first."""
        return [v for v in self.versions(series) if v.status == "challenger"]

    def alerts(
        self, series: str | None = None, *, open_only: bool = True, status: str | None = None
    ) -> list[ModelAlert]:
        """Raised alerts (of one series; open ones, or those in `status`), newest first."""
        t = model_alert_table
        query = select(t).order_by(t.c.raised_at.desc())
        if series is not None:
            query = query.where(t.c.series == series)
        if status is not None:
            query = query.where(t.c.status == status)
        elif open_only:
            query = query.where(t.c.status == "open")
        with self.engine.connect() as conn:
            return [_alert(r._mapping) for r in conn.execute(query).all()]

    def alert(self, alert_id: str) -> ModelAlert:
        """An alert by id; UnknownModelVersion (naming the alert) otherwise."""
        t = model_alert_table
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.alert_id == alert_id)).first()
        if row is None:
            raise UnknownModelVersion(f"no model alert {alert_id[:40]!r} (see `twin forecast models SERIES`)")
        return _alert(row._mapping)

    def approve_retrain(self, subject: Subject, alert_id: str) -> ModelAlert:
        """Approve the retraining an open `retrain` alert proposes: needs `model.approve`, and not by whoever raised
        it (four eyes); the retraining runtime then retrains the series (`retrained`)."""
        alert = self.alert(alert_id)
        variables = {"series": alert.series, "alert": alert_id}
        self._require(subject, APPROVE, variables)
        refusal = None
        if alert.kind != "retrain" or alert.status != "open":
            refusal = f"alert {alert_id} is {alert.status}, not an open retrain proposal"
        elif alert.raised_by == subject.sub:
            refusal = f"{subject.sub} raised alert {alert_id} and may not approve it (four eyes)"
        if refusal is not None:
            self._audit(subject, "model.retrain.approve", variables, refusal, Decision.DENY)
            raise ApprovalRefused(refusal)
        detail = {**alert.detail, "approved_by": subject.sub, "approved_at": _now()}
        self._set_alert(alert_id, "open", "approved", detail)
        self._audit(subject, "model.retrain.approve", variables, "retraining approved")
        return self.alert(alert_id)

    def retrained(self, subject: Subject, alert_id: str, versions: Sequence[str]) -> ModelAlert:
        """Record that an approved retrain alert was acted on: the versions its retraining registered; audited."""
        alert = self.alert(alert_id)
        detail = {**alert.detail, "retrained_by": subject.sub, "retrained_at": _now(), "versions": list(versions)}
        self._set_alert(alert_id, "approved", "retrained", detail)
        self._audit(
            subject,
            "model.retrain",
            {"series": alert.series, "alert": alert_id},
            f"retrained: {', '.join(versions) or 'no new version (nothing new to train on)'}",
        )
        return self.alert(alert_id)

    def _set_alert(self, alert_id: str, was: str, status: str, detail: Mapping[str, Any]) -> None:
        t = model_alert_table
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(t)
                .where(t.c.alert_id == alert_id, t.c.status == was)
                .values(status=status, detail=json.dumps(dict(detail), default=str))
            ).rowcount
        if changed != 1:
            raise ApprovalRefused(f"alert {alert_id} is no longer {was}")

    # ------------------------------------------------------------------ actions
    def register(
        self,
        subject: Subject,
        *,
        series: str,
        kind: str,
        params: Mapping[str, Any],
        train_start: str,
        train_end: str,
        train_points: int,
        input_digest: str,
        metrics: Mapping[str, Any],
        reference: Sequence[float],
    ) -> ModelVersion:
        """Record a trained version: the series' champion when it has none, a challenger otherwise; audited."""
        self._require(subject, TRAIN, {"series": series, "kind": kind})
        version_id = uuid.uuid4().hex[:16]
        status = "champion" if self.champion(series) is None else "challenger"
        sample = [float(v) for v in list(reference)[-REFERENCE_POINTS:]]
        with self.engine.begin() as conn:
            conn.execute(
                insert(model_version_table).values(
                    version_id=version_id,
                    series=series,
                    kind=kind,
                    params=json.dumps(dict(params), sort_keys=True, default=str),
                    train_start=train_start,
                    train_end=train_end,
                    train_points=train_points,
                    input_digest=input_digest,
                    metrics=json.dumps(dict(metrics), sort_keys=True, default=str),
                    reference=json.dumps(sample),
                    trained_by=subject.sub,
                    trained_at=_now(),
                    status=status,
                )
            )
        detail = "first version: champion" if status == "champion" else "challenger: promotion needs approval"
        self._audit(subject, "model.register", {"series": series, "version": version_id, "kind": kind}, detail)
        return self.get(version_id)

    def approve(self, subject: Subject, version_id: str) -> ModelVersion:
        """Approve a version for promotion: needs `model.approve`, and the approver must not be its trainer."""
        version = self.get(version_id)
        variables = {"series": version.series, "version": version_id}
        self._require(subject, APPROVE, variables)
        refusal = None
        if version.trained_by == subject.sub:
            refusal = f"{subject.sub} trained version {version_id} and may not approve it (four eyes)"
        elif version.status == "retired":
            refusal = f"version {version_id} is retired"
        elif version.approved_by is not None:
            refusal = f"version {version_id} was approved already by {version.approved_by}"
        if refusal is not None:
            self._audit(subject, "model.approve", variables, refusal, Decision.DENY)
            raise ApprovalRefused(refusal)
        t = model_version_table
        with self.engine.begin() as conn:
            conn.execute(
                update(t).where(t.c.version_id == version_id).values(approved_by=subject.sub, approved_at=_now())
            )
        self._audit(subject, "model.approve", variables, "approved for promotion")
        return self.get(version_id)

    def promote(self, subject: Subject, version_id: str) -> ModelVersion:
        """Make an approved challenger its series' champion (the old champion retires); refused unless approved."""
        version = self.get(version_id)
        variables = {"series": version.series, "version": version_id}
        self._require(subject, TRAIN, variables)
        refusal = None
        if version.status == "champion":
            refusal = f"version {version_id} is the champion already"
        elif version.status != "challenger":
            refusal = f"version {version_id} is {version.status}, not a challenger"
        elif version.approved_by is None:
            refusal = f"version {version_id} is not approved: `twin forecast approve {version_id}` by another person"
        if refusal is not None:
            self._audit(subject, "model.promote", variables, refusal, Decision.DENY)
            raise PromotionRefused(refusal)
        t = model_version_table
        with self.engine.begin() as conn:
            conn.execute(
                update(t).where(t.c.series == version.series, t.c.status == "champion").values(status="retired")
            )
            conn.execute(update(t).where(t.c.version_id == version_id).values(status="champion"))
            conn.execute(
                update(model_alert_table)
                .where(model_alert_table.c.series == version.series, model_alert_table.c.status == "open")
                .values(status="resolved")
            )
        self._audit(subject, "model.promote", variables, f"champion now (approved by {version.approved_by})")
        return self.get(version_id)

    def check_drift(
        self,
        subject: Subject,
        series: str,
        recent: Sequence[float],
        *,
        reference: Sequence[float] | None = None,
        realised_mase: float | None = None,
    ) -> DriftReport:
        """Compare recent inputs with a reference (the champion's training sample unless given; a seasonal series
        passes seasonally matched ones), and realised accuracy with the backtest's; raise a `retrain` alert when
        inputs shifted (PSI and KS agree) or accuracy decayed (one open alert per series); audited."""
        self._require(subject, TRAIN, {"series": series})
        champion = self.champion(series)
        if champion is None:
            raise UnknownModelVersion(f"series {series[:120]!r} has no champion to check (run a forecast first)")
        base = list(champion.reference if reference is None else reference)
        psi = population_stability_index(base, recent)
        if len(recent) >= 2 and len(base) >= 2:
            ks = stats.ks_2samp(np.asarray(base, dtype=np.float64), np.asarray(recent, dtype=np.float64))
            ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
        else:
            ks_stat, ks_p = 0.0, 1.0
        backtest_mase = champion.metrics.get("mase")
        ratio = None
        if realised_mase is not None and isinstance(backtest_mase, int | float) and backtest_mase > 0:
            ratio = float(realised_mase) / float(backtest_mase)
        reasons = []
        if psi > PSI_LIMIT and ks_p < KS_P_LIMIT:  # both: PSI alone is noisy on a few recent points
            reasons.append(f"input shift: PSI {psi:.3f} > {PSI_LIMIT} and KS p-value {ks_p:.2g} < {KS_P_LIMIT}")
        if ratio is not None and ratio > DECAY_LIMIT:
            reasons.append(f"accuracy decay: realised MASE {ratio:.2f}x the backtest's (> {DECAY_LIMIT})")
        detail = {
            "psi": psi,
            "ks_statistic": ks_stat,
            "ks_p_value": ks_p,
            "accuracy_ratio": ratio,
            "recent_points": len(recent),
        }
        alert_id = None
        if reasons:
            existing = self.alerts(series) or self.alerts(series, status="approved")  # one pending per series
            if existing:
                alert_id = existing[0].alert_id
            else:
                alert_id = uuid.uuid4().hex[:16]
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(model_alert_table).values(
                            alert_id=alert_id,
                            series=series,
                            version_id=champion.version_id,
                            kind="retrain",
                            raised_at=_now(),
                            raised_by=subject.sub,
                            reasons=json.dumps(reasons),
                            detail=json.dumps(detail),
                            status="open",
                        )
                    )
        self._audit(
            subject,
            "model.drift",
            {"series": series, "version": champion.version_id},
            "; ".join(reasons) if reasons else "no drift",
        )
        return DriftReport(series, champion.version_id, psi, ks_stat, ks_p, ratio, tuple(reasons), alert_id)

    # ------------------------------------------------------------------ policy and audit
    def _require(self, subject: Subject, operation: str, variables: Mapping[str, object]) -> None:
        decision = self.policy.decide(subject, "operation", operation)
        if not decision.allowed:
            self._audit(subject, operation, variables, decision.reason, Decision.DENY)
            raise PolicyDenied(f"{subject.sub} may not {operation}: {decision.reason}")

    def _audit(
        self,
        subject: Subject,
        operation: str,
        variables: Mapping[str, object],
        detail: str,
        decision: Decision = Decision.ALLOW,
    ) -> None:
        self.audit.append(
            AuditEvent.for_subject(
                subject,
                operation,
                decision,
                variables=dict(variables),
                policy_version=self.policy.version,
                detail=detail[:500],
            )
        )


def _version(row: RowMapping) -> ModelVersion:
    return ModelVersion(
        version_id=row["version_id"],
        series=row["series"],
        kind=row["kind"],
        params=json.loads(row["params"]),
        train_start=row["train_start"],
        train_end=row["train_end"],
        train_points=row["train_points"],
        input_digest=row["input_digest"],
        metrics=json.loads(row["metrics"]),
        trained_by=row["trained_by"],
        trained_at=row["trained_at"],
        approved_by=row["approved_by"],
        approved_at=row["approved_at"],
        status=row["status"],
        reference=tuple(json.loads(row["reference"])),
    )


def _alert(row: RowMapping) -> ModelAlert:
    return ModelAlert(
        alert_id=row["alert_id"],
        series=row["series"],
        version_id=row["version_id"],
        kind=row["kind"],
        raised_at=row["raised_at"],
        raised_by=row["raised_by"],
        reasons=tuple(json.loads(row["reasons"])),
        detail=json.loads(row["detail"]),
        status=row["status"],
    )
