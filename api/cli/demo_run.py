"""The main job: a living twin of the sample enterprise — sources generated, synced with lineage, audited, queryable."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import connectors.sample
from api.runtime import Runtime
from connectors.registry import ConnectorRegistry
from connectors.sample.activity import SampleActivity
from connectors.sample.demo import SAMPLE_CONNECTORS, SyncProgress, prepare_sample, sync_sample
from connectors.sample.enterprise import SampleManifest
from connectors.sync import SyncReport
from governance.audit import AuditEvent
from governance.roles import BUILT_IN_ROLES
from governance.tokens import issue_token
from graph.model import UNRESTRICTED
from graph.plan import Compare, Connection, ListRead, Projection, Step, Window


@dataclass(frozen=True)
class DemoExamples:
    """Real twins of the loaded sample that the printed example queries refer to."""

    supplier: str
    employee: str
    plant: str | None


@dataclass
class DemoResult:
    """What `twin demo` did: the sample, each sync, the tokens and the example twins."""

    manifest: SampleManifest
    generated: bool
    reports: list[SyncReport] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    examples: DemoExamples | None = None
    seconds: float = 0.0
    automations: bool = False  # the sample's automations were installed now (an existing file is kept)


def run_demo(
    runtime: Runtime,
    size: str | int = "small",
    progress: SyncProgress | None = None,
) -> DemoResult:
    """Generate (or reuse) the sample, sync it through the real connectors with lineage and audit, issue tokens."""
    started = time.perf_counter()
    data_dir = runtime.settings.data_dir
    manifest, generated = prepare_sample(data_dir / "sample", size)
    result = DemoResult(manifest=manifest, generated=generated)
    registry = ConnectorRegistry.load(runtime.ontology, data_dir=data_dir)
    subject = runtime.operator()
    result.reports = sync_sample(
        registry,
        runtime.sync_engine("twin demo"),
        subject=subject,
        policy=runtime.policy,
        audit=runtime.audit,
        progress=progress,
    )
    result.automations = install_sample_automations(data_dir)
    result.examples = find_examples(runtime)
    for role in BUILT_IN_ROLES:
        org = result.examples.plant if role.name == "hr" else None
        result.tokens[role.name] = issue_token(data_dir, role.name, sub=f"demo-{role.name}", org_unit=org)
    result.seconds = time.perf_counter() - started
    runtime.audit.append(
        AuditEvent.for_subject(
            subject,
            "demo",
            "allow",
            policy_version=runtime.policy.version,
            variables={"size": str(size), "generated": generated},
            rows_returned=sum(r.counts.get("created", 0) + r.counts.get("updated", 0) for r in result.reports),
            detail=f"synced {', '.join(SAMPLE_CONNECTORS)}",
        )
    )
    return result


SAMPLE_AUTOMATIONS = Path(connectors.sample.__file__).resolve().parent / "automations.yaml"


def install_sample_automations(data_dir: Path) -> bool:
    """Put the sample enterprise's automations (reorder, machine maintenance, supplier at risk, KPI breach) in
    DATA_DIR/automations.yaml unless the data directory has its own; whether they were installed now."""
    target = data_dir / "automations.yaml"
    if target.exists():
        return False
    target.write_text(SAMPLE_AUTOMATIONS.read_text(encoding="utf-8"), encoding="utf-8")
    return True


def living_sample(runtime: Runtime) -> SampleActivity:
    """Make the served demo move: the sample connectors synced every TWIN_DEMO_SYNC_SECONDS and a driver (started
    here) writing a business change into the sample's HR or ERP database every TWIN_DEMO_ACTIVITY_SECONDS."""
    settings = runtime.settings
    runtime.schedule_every.update(dict.fromkeys(SAMPLE_CONNECTORS, settings.demo_sync_seconds))
    activity = SampleActivity(settings.data_dir / "sample", every_seconds=settings.demo_activity_seconds)
    activity.start()
    return activity


def find_examples(runtime: Runtime) -> DemoExamples:
    """Twins worth showing: the supplier whose failure reaches furthest (sole supplier of the most materials), an
    employee with an email address, the unit 'Plant A'."""
    store = runtime.store
    everything = Window(0, 1_000_000)
    suppliers_of = Connection(Step("supplies", "in", "Supplier"), Projection(), window=Window(0, 0), total=True)
    materials = Connection(
        Step("supplies", "out", "Material"), Projection(connections=[suppliers_of]), window=everything
    )
    supplier_rows = store.read_list(
        ListRead("Supplier", Projection(connections=[materials]), everything), UNRESTRICTED
    ).items
    sole = {
        row.uid: sum(1 for item in row.connections[materials].items if item.node.connections[suppliers_of].total == 1)
        for row in supplier_rows
    }
    supplier = min(sole, key=lambda uid: (-sole[uid], uid), default="")
    employee = store.read_list(
        ListRead("Employee", Projection(), Window(0, 1), Compare("email", "is_null", False)), UNRESTRICTED
    ).items
    plant = store.read_list(
        ListRead("OrgUnit", Projection(), Window(0, 1), Compare("name", "eq", "Plant A")), UNRESTRICTED
    ).items
    return DemoExamples(
        supplier=supplier,
        employee=employee[0].uid if employee else "",
        plant=plant[0].uid if plant else None,
    )
