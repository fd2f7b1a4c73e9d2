"""The demo's data: the sample enterprise's source systems made ready (generated, or reused when already there in
that size) and synced into the twin through the sample connectors of connectors.yaml."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from connectors.registry import ConnectorRegistry
from connectors.sample.enterprise import SampleEnterpriseError, SampleManifest, generate_sample, generate_sample_demand
from connectors.service import run_connector
from connectors.sync import SyncEngine, SyncReport
from governance.audit import AuditLog
from governance.identity import Subject
from governance.policy import Policy

SAMPLE_CONNECTORS = ("sample-hr", "sample-crm", "sample-erp")
"""The connectors (connectors.yaml) that read the sample's HR, CRM and ERP systems, in the order they are synced."""

SyncProgress = Callable[[str, str, int, int | None], None]
"""Told (connector, entity, rows done, rows in all when known) as a sample sync advances."""


def prepare_sample(sample_dir: Path, size: str | int) -> tuple[SampleManifest, bool]:
    """The sample's source systems in `sample_dir` and whether they were generated now: reused when already there in
    that size, generated otherwise."""
    try:
        manifest = SampleManifest.read(sample_dir)
    except (SampleEnterpriseError, OSError, ValueError):
        manifest = None
    wanted = size if isinstance(size, str) else "custom"
    if manifest is not None and manifest.size == wanted and (isinstance(size, str) or manifest.people == size):
        if not (sample_dir / "demand.sqlite").is_file():
            generate_sample_demand(sample_dir)
        return manifest, False
    manifest = generate_sample(sample_dir, size)
    generate_sample_demand(sample_dir)  # three years of daily demand per product: what forecasts are backtested on
    return manifest, True


def sync_sample(
    registry: ConnectorRegistry,
    engine: SyncEngine,
    *,
    subject: Subject,
    policy: Policy,
    audit: AuditLog,
    progress: SyncProgress | None = None,
) -> list[SyncReport]:
    """Sync every sample connector incrementally through the connector service (each run decided by the policy and
    audited), so a re-run over the same sample duplicates nothing."""
    reports = []
    for name in SAMPLE_CONNECTORS:
        connector = registry.connector(name)
        try:
            reports.append(
                run_connector(
                    engine,
                    connector,
                    subject=subject,
                    policy=policy,
                    audit=audit,
                    mode="incremental",
                    progress=partial(progress, name) if progress else None,
                )
            )
        finally:
            connector.close()
    return reports
