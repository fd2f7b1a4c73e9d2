"""A scenario's slice of the twin: suppliers -> materials -> processes -> products -> customers, people and assets.

`load_slice(store, roots=...)` reads the operational network out of the GraphStore (a few read-only queries, never a
write) into plain frozen dataclasses. The slice is what a study is built from and what is stored with it, so a stored
study can be re-run on exactly the data it first saw even after the live graph has moved on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from graph.model import UNRESTRICTED, ReadScope
from graph.store import GraphStore
from ontology.model import Ontology
from simulation.errors import SliceError

NODE_CLASSES = (
    "Employee",
    "Asset",
    "Process",
    "Material",
    "Product",
    "Supplier",
    "Customer",
    "SalesOrder",
    "MaintenanceEvent",
    "Capability",
    "Project",
)
"""Classes (with their subclasses) whose twins a slice reads (IT systems and applications are Assets)."""

EDGE_TYPES = (
    "supplies",
    "consumes",
    "produces",
    "performs",
    "requires",
    "partOf",
    "operates",
    "hasSkill",
    "worksIn",
    "locatedAt",
    "placedBy",
    "orders",
    "maintains",
    "dependsOn",
    "hosts",
    "supports",
    "realizes",
    "assignedTo",
    "needsSkill",
)
"""Relationship types a slice reads."""

CONTAINER_TYPES = frozenset({"worksIn", "partOf", "locatedAt"})
"""Edges that put a twin inside another one (a person in a unit, a unit in a plant, a machine in a work centre)."""

HUB_CLASSES = frozenset(
    {"Supplier", "Customer", "Skill", "OrgUnit", "Location", "Site", "SalesOrder", "ITSystem", "Capability", "Project"}
)
"""Twins that connect unrelated lines; a slice walks through them only when they are roots."""

SLICE_KINDS = (
    "WorkCenter",
    "Employee",
    "Material",
    "Product",
    "Supplier",
    "Customer",
    "SalesOrder",
    "MaintenanceEvent",
    "Skill",
    "OrgUnit",
    "Site",
    "Location",
    "ITSystem",
    "Capability",
    "Project",
)
"""Core classes a slice tells apart; a twin of a subclass (an ontology extension's) counts as the first it is a."""


@dataclass(frozen=True)
class PersonTwin:
    """An employee: weekly hours, skills (uid -> level), the assets they operate and the unit they work in."""

    uid: str
    name: str
    hours_per_week: float | None
    skills: dict[str, int]
    operates: tuple[str, ...]
    unit: str | None
    salary: float | None = None  # yearly; with the weekly hours it gives the hourly rate labour cost is counted at


@dataclass(frozen=True)
class AssetTwin:
    """A machine (or other asset a process needs): capacity, reliability figures, status, its work centre."""

    uid: str
    name: str
    cls: str
    capacity_per_day: float | None
    mtbf_hours: float | None
    mttr_hours: float | None
    status: str | None
    work_center: str | None


@dataclass(frozen=True)
class ITSystemTwin:
    """An IT system or application: what it is, how critical, how long it takes to recover after an outage."""

    uid: str
    name: str
    cls: str
    criticality: str | None
    recovery_hours: float | None
    status: str | None


@dataclass(frozen=True)
class ProjectTwin:
    """A project (or task): dates, planned effort and progress, the skills it needs and the people assigned."""

    uid: str
    name: str
    start: dt.date | None
    end: dt.date | None
    effort_hours: float | None
    progress: float | None
    skills: tuple[str, ...]
    assignees: tuple[str, ...]


@dataclass(frozen=True)
class WorkCenterTwin:
    """A work centre: capacity, shifts and OEE."""

    uid: str
    name: str
    capacity_per_day: float | None
    shifts_per_day: int | None
    oee: float | None


@dataclass(frozen=True)
class ProcessTwin:
    """A production line: a Process (or a WorkCenter that produces directly) with its inputs, outputs and needs."""

    uid: str
    name: str
    cls: str  # the Process's own class; "WorkCenter" for a work center (of any subclass) that produces directly
    throughput_per_day: float | None
    cycle_time_hours: float | None
    consumes: tuple[str, ...]
    produces: tuple[str, ...]
    machines: tuple[str, ...]
    skills: tuple[str, ...]
    work_centers: tuple[str, ...]
    yield_rate: float | None = None


@dataclass(frozen=True)
class MaterialTwin:
    """A material with its stock on hand and general lead time."""

    uid: str
    name: str
    stock_level: float | None
    lead_time_days: int | None


@dataclass(frozen=True)
class SupplierTwin:
    """A supplier with its reliability (share of on-time deliveries) and usual lead time."""

    uid: str
    name: str
    reliability: float | None
    lead_time_days: int | None


@dataclass(frozen=True)
class SupplyLane:
    """One `supplies` edge: a supplier delivering a material, with the edge's lead time when it has one."""

    supplier: str
    material: str
    lead_time_days: int | None


@dataclass(frozen=True)
class ProductTwin:
    """A product the enterprise sells."""

    uid: str
    name: str
    sku: str | None
    unit_price: float | None
    description: str | None


@dataclass(frozen=True)
class CustomerTwin:
    """A customer."""

    uid: str
    name: str


@dataclass(frozen=True)
class OrderLine:
    """One line of a historical sales order: who ordered how much of which product, when."""

    order: str
    customer: str | None
    product: str
    quantity: float
    order_date: dt.date | None


@dataclass(frozen=True)
class MaintenanceRecord:
    """A recorded maintenance of an asset."""

    uid: str
    asset: str
    maintenance_type: str | None
    scheduled_at: dt.datetime | None
    completed_at: dt.datetime | None
    downtime_hours: float | None


def slice_digest(slice_json: str) -> str:
    """SHA-256 of a slice's JSON (`EnterpriseSlice.to_json`)."""
    return hashlib.sha256(slice_json.encode()).hexdigest()


@dataclass(frozen=True)
class EnterpriseSlice:
    """The operational network a model is built from; read-only data, keyed by twin uid."""

    read_at: dt.datetime
    roots: tuple[str, ...]
    persons: dict[str, PersonTwin] = field(default_factory=dict)
    assets: dict[str, AssetTwin] = field(default_factory=dict)
    work_centers: dict[str, WorkCenterTwin] = field(default_factory=dict)
    processes: dict[str, ProcessTwin] = field(default_factory=dict)
    materials: dict[str, MaterialTwin] = field(default_factory=dict)
    suppliers: dict[str, SupplierTwin] = field(default_factory=dict)
    lanes: tuple[SupplyLane, ...] = ()
    products: dict[str, ProductTwin] = field(default_factory=dict)
    customers: dict[str, CustomerTwin] = field(default_factory=dict)
    order_lines: tuple[OrderLine, ...] = ()
    maintenance: tuple[MaintenanceRecord, ...] = ()
    classes: dict[str, str] = field(default_factory=dict)
    containers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    it_systems: dict[str, ITSystemTwin] = field(default_factory=dict)
    capabilities: dict[str, str] = field(default_factory=dict)  # uid -> name
    projects: dict[str, ProjectTwin] = field(default_factory=dict)
    depends_on: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Twin -> the twins it needs directly (dependsOn; an application its host; a process its required assets and
    the IT systems that support it; a capability the processes that realize it and what supports it)."""

    @property
    def skills(self) -> frozenset[str]:
        """Uids of the skills people of the slice hold or its lines and projects need."""
        held = {s for p in self.persons.values() for s in p.skills}
        needed = {s for p in self.processes.values() for s in p.skills}
        return frozenset(held | needed | {s for q in self.projects.values() for s in q.skills})

    def dependents(self, uids: frozenset[str] | set[str]) -> set[str]:
        """Every twin that needs one of `uids`, directly or through others (the uids themselves excluded)."""
        needed_by: dict[str, list[str]] = defaultdict(list)
        for dependent, needs in self.depends_on.items():
            for need in needs:
                needed_by[need].append(dependent)
        seen: set[str] = set()
        queue = deque(uids)
        while queue:
            for dependent in needed_by.get(queue.popleft(), ()):
                if dependent not in seen and dependent not in uids:
                    seen.add(dependent)
                    queue.append(dependent)
        return seen

    @property
    def agent_count(self) -> int:
        """Agents a model of this slice has (people, assets, lines, suppliers, customers + one market)."""
        return (
            len(self.persons) + len(self.assets) + len(self.processes) + len(self.suppliers) + len(self.customers) + 1
        )

    def within(self, uid: str, container: str) -> bool:
        """Whether `uid` is `container` or lies inside it (worksIn, partOf, locatedAt, performedBy; transitively)."""
        return uid == container or container in self.containers.get(uid, ())

    def to_json(self) -> str:
        """The slice as canonical JSON (stored with a study)."""
        return json.dumps(_ADAPTER.dump_python(self, mode="json"), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> EnterpriseSlice:
        """A slice stored by `to_json`."""
        return _ADAPTER.validate_python(json.loads(text))

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON: identifies the data a study ran on."""
        return slice_digest(self.to_json())


_ADAPTER = TypeAdapter(EnterpriseSlice)


@dataclass
class _Raw:
    """Nodes and edges as read, before they are turned into typed twins."""

    nodes: dict[str, tuple[str, dict[str, Any]]]  # uid -> (class, properties)
    kinds: dict[str, str]  # uid -> the slice kind of its class (SLICE_KINDS), or the class itself
    edges: list[tuple[str, str, str, dict[str, Any]]]
    asset_classes: frozenset[str]
    process_classes: frozenset[str]
    it_classes: frozenset[str] = frozenset()


def load_slice(store: GraphStore, roots: Sequence[str] = (), scope: ReadScope = UNRESTRICTED) -> EnterpriseSlice:
    """The operational network around `roots` (the whole twin when empty), read-only, within the caller's scope."""
    read_at = dt.datetime.now(dt.UTC)
    raw = _read(store, scope)
    missing = [uid for uid in roots if uid not in raw.nodes]
    if missing:
        known = store.get_many(missing)
        unknown = [uid for uid in missing if uid not in known]
        if unknown:
            raise SliceError(f"slice root(s) {', '.join(map(repr, unknown))} are not twins of the graph")
    keep = _with_needs(raw, _reachable(raw, roots)) if roots else set(raw.nodes)
    built = _build(raw, keep, tuple(roots), read_at)
    if not built.processes:
        raise SliceError(
            "the slice holds no production line (no Process or WorkCenter that produces a Product); "
            f"roots: {', '.join(roots) or 'whole twin'}"
        )
    return built


def _read(store: GraphStore, scope: ReadScope) -> _Raw:
    """Nodes of the slice classes and the edges between any twins, in two read-only round trips."""
    ontology = store.ontology
    kind_of = _kind_namer(ontology)
    nodes: dict[str, tuple[str, dict[str, Any]]] = {}
    kinds: dict[str, str] = {}
    for record in store.twins_of(NODE_CLASSES, scope):
        hidden = scope.hidden_for(record.labels)
        nodes[record.uid] = (record.cls, {k: v for k, v in record.properties.items() if k not in hidden})
        kinds[record.uid] = kind_of(record.cls)
    links, classes = store.links_of(EDGE_TYPES, scope)
    edges = []
    for link in links:
        for uid in (link.source, link.target):
            if uid not in nodes:
                nodes[uid] = (classes[uid], {"_outside": True})
                kinds[uid] = kind_of(classes[uid])
        edges.append((link.type, link.source, link.target, link.properties))
    edges.sort(key=lambda e: (e[0], e[1], e[2]))
    return _Raw(
        nodes=nodes,
        kinds=kinds,
        edges=edges,
        asset_classes=_names(ontology, "Asset"),
        process_classes=_names(ontology, "Process"),
        it_classes=_names(ontology, "ITSystem") if "ITSystem" in ontology else frozenset(),
    )


def _kind_namer(ontology: Ontology) -> Callable[[str], str]:
    """The slice kind of a class name: the first of SLICE_KINDS it is (or inherits from), else the name itself."""
    known = [kind for kind in SLICE_KINDS if kind in ontology]
    memo: dict[str, str] = {}

    def kind_of(cls: str) -> str:
        if cls not in memo:
            memo[cls] = next((k for k in known if ontology.is_a(cls, k)), cls) if cls in ontology else cls
        return memo[cls]

    return kind_of


def _names(ontology: Ontology, root: str) -> frozenset[str]:
    """Names of a class and all its subclasses."""
    return frozenset({root, *(ontology.classes[cid].name for cid in ontology.descendants(root))})


def _reachable(raw: _Raw, roots: Sequence[str]) -> set[str]:
    """Twins connected to the roots without walking through hubs (suppliers, customers, skills, places) unless roots."""
    neighbours: dict[str, set[str]] = defaultdict(set)
    for _, source, target, _ in raw.edges:
        neighbours[source].add(target)
        neighbours[target].add(source)
    root_set = set(roots)
    seen = set(roots)
    queue = deque(roots)
    while queue:
        uid = queue.popleft()
        if uid not in root_set and raw.kinds.get(uid, "Twin") in HUB_CLASSES:
            continue
        for other in sorted(neighbours[uid]):
            if other not in seen:
                seen.add(other)
                queue.append(other)
    return seen


def _with_needs(raw: _Raw, keep: set[str]) -> set[str]:
    """`keep` plus every twin a kept one needs through dependsOn, hosts or supports, however far (the IT systems
    under an application a kept line depends on), without fanning out to what else needs them."""
    needs: dict[str, set[str]] = defaultdict(set)
    for rel, source, target, _ in raw.edges:
        if rel == "dependsOn":
            needs[source].add(target)
        elif rel in ("hosts", "supports"):
            needs[target].add(source)
    out = set(keep)
    stack = list(keep)
    while stack:
        for need in needs.get(stack.pop(), ()):
            if need not in out:
                out.add(need)
                stack.append(need)
    return out


def _num(props: dict[str, Any], name: str) -> float | None:
    value = props.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(props: dict[str, Any], name: str) -> int | None:
    value = props.get(name)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _date(value: Any) -> dt.date | None:
    """A date from a stored date, datetime or ISO text; None when absent or unreadable."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _datetime(value: Any) -> dt.datetime | None:
    """A datetime from a stored datetime or ISO text; None when absent or unreadable."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _effort_hours(value: Any) -> float | None:
    """Working hours of an ISO 8601 effort (PT40H; a day counts 8 hours, a week 40) or of a plain number of hours."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    match = _DURATION.fullmatch(value.strip().upper())
    if not match or not any(match.groups()):
        return None
    weeks, days, hours, minutes = (float(g) if g else 0.0 for g in match.groups())
    return weeks * 40 + days * 8 + hours + minutes / 60


_DURATION = re.compile(r"P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?)?")


def _build(raw: _Raw, keep: set[str], roots: tuple[str, ...], read_at: dt.datetime) -> EnterpriseSlice:
    """Typed twins for the kept uids, with their relationships resolved."""
    out: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = defaultdict(lambda: defaultdict(list))
    into: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for rel, source, target, props in raw.edges:
        if source in keep and target in keep:
            out[source][rel].append((target, props))
            into[target][rel].append(source)

    def cls_of(uid: str) -> str:  # the slice kind: a work center of an extension's subclass is a WorkCenter
        return raw.kinds.get(uid, "Twin")

    def class_of(uid: str) -> str:  # the twin's own class
        return raw.nodes.get(uid, ("Twin", {}))[0]

    def props_of(uid: str) -> dict[str, Any]:
        return raw.nodes.get(uid, ("Twin", {}))[1]

    def name_of(uid: str) -> str:
        return str(props_of(uid).get("name", uid))

    def targets(uid: str, rel: str) -> list[str]:
        return [t for t, _ in out[uid][rel]]

    kept = sorted(uid for uid in keep if uid in raw.nodes and not props_of(uid).get("_outside"))
    by_cls: dict[str, list[str]] = defaultdict(list)
    for uid in kept:
        by_cls[cls_of(uid)].append(uid)

    work_centers = {
        uid: WorkCenterTwin(
            uid,
            name_of(uid),
            _num(props_of(uid), "capacityPerDay"),
            _int(props_of(uid), "shiftsPerDay"),
            _num(props_of(uid), "oee"),
        )
        for uid in by_cls.get("WorkCenter", [])
    }
    assets: dict[str, AssetTwin] = {}
    for uid in kept:
        cls = class_of(uid)
        if cls_of(uid) == "WorkCenter" or cls not in raw.asset_classes or cls in raw.it_classes:
            continue
        wc = next((t for t in targets(uid, "partOf") if cls_of(t) == "WorkCenter"), None)
        p = props_of(uid)
        assets[uid] = AssetTwin(
            uid,
            name_of(uid),
            cls,
            _num(p, "capacityPerDay"),
            _num(p, "mtbfHours"),
            _num(p, "mttrHours"),
            p.get("status"),
            wc,
        )
    machines_of_wc: dict[str, list[str]] = defaultdict(list)
    for asset in assets.values():
        if asset.work_center:
            machines_of_wc[asset.work_center].append(asset.uid)

    def bill_of_materials(product: str) -> set[str]:
        """Purchased materials that go into `product`: its components (Material partOf Product), through any
        in-house subassemblies (Material partOf Material), down to the materials some supplier delivers."""
        purchased: set[str] = set()
        seen: set[str] = set()
        queue = deque(s for s in into[product]["partOf"] if cls_of(s) == "Material")
        while queue:
            material = queue.popleft()
            if material in seen:
                continue
            seen.add(material)
            if into[material]["supplies"]:
                purchased.add(material)
            queue.extend(s for s in into[material]["partOf"] if cls_of(s) == "Material")
        return purchased

    processes: dict[str, ProcessTwin] = {}
    for uid in kept:
        is_process = class_of(uid) in raw.process_classes
        cls = class_of(uid) if is_process else cls_of(uid)  # a line a work center runs itself: "WorkCenter"
        produces = sorted(t for t in targets(uid, "produces") if cls_of(t) == "Product")
        if not produces or not (is_process or cls == "WorkCenter"):
            continue
        required = targets(uid, "requires")
        wcs = sorted(
            {
                *(s for s in into[uid]["performs"] if cls_of(s) == "WorkCenter"),
                *(t for t in required if cls_of(t) == "WorkCenter"),
                *([uid] if cls == "WorkCenter" else []),
            }
        )
        machines = sorted(t for t in required if t in assets)
        if not machines:
            machines = sorted({m for wc in wcs for m in machines_of_wc.get(wc, [])})
        skills = sorted(t for t in required if cls_of(t) == "Skill")
        p = props_of(uid)
        processes[uid] = ProcessTwin(
            uid,
            name_of(uid),
            cls,
            _num(p, "throughputPerDay") if is_process else _num(p, "capacityPerDay"),
            _num(p, "cycleTimeHours"),
            tuple(
                sorted(
                    {
                        *(t for t in targets(uid, "consumes") if cls_of(t) == "Material"),
                        *(m for product in produces for m in bill_of_materials(product)),
                    }
                )
            ),
            tuple(produces),
            tuple(machines),
            tuple(skills),
            tuple(wcs),
            _num(p, "yieldRate"),
        )

    persons = {}
    for uid in by_cls.get("Employee", []):
        p = props_of(uid)
        skill_levels = {t: int(props.get("level") or 3) for t, props in out[uid]["hasSkill"]}
        unit = next(iter(targets(uid, "worksIn")), None)
        persons[uid] = PersonTwin(
            uid,
            name_of(uid),
            _num(p, "capacityHoursPerWeek"),
            skill_levels,
            tuple(sorted(t for t in targets(uid, "operates") if t in assets)),
            unit,
            _num(p, "salary"),
        )

    materials = {
        uid: MaterialTwin(uid, name_of(uid), _num(props_of(uid), "stockLevel"), _int(props_of(uid), "leadTimeDays"))
        for uid in by_cls.get("Material", [])
    }
    suppliers = {
        uid: SupplierTwin(uid, name_of(uid), _num(props_of(uid), "reliability"), _int(props_of(uid), "leadTimeDays"))
        for uid in by_cls.get("Supplier", [])
    }
    lanes = tuple(
        SupplyLane(uid, t, _int(props, "leadTimeDays"))
        for uid in sorted(suppliers)
        for t, props in out[uid]["supplies"]
        if t in materials
    )
    products = {
        uid: ProductTwin(
            uid,
            name_of(uid),
            props_of(uid).get("sku"),
            _num(props_of(uid), "unitPrice"),
            props_of(uid).get("description"),
        )
        for uid in by_cls.get("Product", [])
    }
    customers = {uid: CustomerTwin(uid, name_of(uid)) for uid in by_cls.get("Customer", [])}
    order_lines = []
    for uid in by_cls.get("SalesOrder", []):
        p = props_of(uid)
        customer = next(iter(targets(uid, "placedBy")), None)
        order_date = _date(p.get("orderDate"))
        lines = [(t, props) for t, props in out[uid]["orders"] if t in products]
        for product, props in lines:
            quantity = _num(props, "quantity")
            if quantity is None:
                total = _num(p, "quantity")
                quantity = total / len(lines) if total is not None else 1.0
            buyer = customer if customer in customers else None
            order_lines.append(OrderLine(uid, buyer, product, quantity, order_date))
    maintenance = []
    for uid in by_cls.get("MaintenanceEvent", []):
        p = props_of(uid)
        maintained = next(iter(targets(uid, "maintains")), None)
        if maintained is not None and maintained in assets:
            maintenance.append(
                MaintenanceRecord(
                    uid,
                    maintained,
                    p.get("maintenanceType"),
                    _datetime(p.get("scheduledAt")),
                    _datetime(p.get("completedAt")),
                    _num(p, "downtimeHours"),
                )
            )
    it_systems = {
        uid: ITSystemTwin(
            uid,
            name_of(uid),
            class_of(uid),
            props_of(uid).get("criticality"),
            _num(props_of(uid), "recoveryTimeHours"),
            props_of(uid).get("status"),
        )
        for uid in kept
        if class_of(uid) in raw.it_classes
    }
    projects = {
        uid: ProjectTwin(
            uid,
            name_of(uid),
            _date(props_of(uid).get("startDate")),
            _date(props_of(uid).get("endDate")),
            _effort_hours(props_of(uid).get("effort")),
            _num(props_of(uid), "progress"),
            tuple(sorted(t for t in targets(uid, "needsSkill") if cls_of(t) == "Skill")),
            tuple(sorted(s for s in into[uid]["assignedTo"] if s in persons)),
        )
        for uid in by_cls.get("Project", [])
    }
    depends_on: dict[str, set[str]] = defaultdict(set)
    for rel, source, target, _ in raw.edges:
        if source not in keep or target not in keep:
            continue
        if rel == "dependsOn":
            depends_on[source].add(target)
        elif rel in ("hosts", "supports", "realizes"):
            depends_on[target].add(source)
        elif rel == "requires" and (target in assets or target in it_systems):
            depends_on[source].add(target)
    return EnterpriseSlice(
        read_at=read_at,
        roots=roots,
        persons=persons,
        assets=assets,
        work_centers=work_centers,
        processes=processes,
        materials=materials,
        suppliers=suppliers,
        lanes=lanes,
        products=products,
        customers=customers,
        order_lines=tuple(order_lines),
        maintenance=tuple(maintenance),
        classes={uid: cls_of(uid) for uid in kept},
        containers=_containers(raw, keep),
        it_systems=it_systems,
        capabilities={uid: name_of(uid) for uid in by_cls.get("Capability", [])},
        projects=projects,
        depends_on={uid: tuple(sorted(needs)) for uid, needs in sorted(depends_on.items())},
    )


def _containers(raw: _Raw, keep: set[str]) -> dict[str, tuple[str, ...]]:
    """For each kept twin, every twin it lies inside (transitively over worksIn, partOf, locatedAt, performedBy)."""
    parents: dict[str, set[str]] = defaultdict(set)
    for rel, source, target, _ in raw.edges:
        if rel in CONTAINER_TYPES:
            parents[source].add(target)
        elif rel == "performs":
            parents[target].add(source)
    result: dict[str, tuple[str, ...]] = {}
    for uid in keep:
        seen: set[str] = set()
        stack = list(parents.get(uid, ()))
        while stack:
            parent = stack.pop()
            if parent in seen:
                continue
            seen.add(parent)
            stack.extend(parents.get(parent, ()))
        if seen:
            result[uid] = tuple(sorted(seen))
    return result
