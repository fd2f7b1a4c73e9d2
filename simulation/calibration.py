"""Model parameters from the twin's data where it has them, documented defaults where it does not.

Every parameter a model uses is recorded as a `ParameterSource` saying whether it came from a twin property
("twin"), from history in the twin (sales orders, maintenance events: "history") or from `Defaults` ("default"), so a
study can show what its numbers rest on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from simulation.slice import EnterpriseSlice, MaintenanceRecord

Source = Literal["twin", "history", "default", "override"]
MARKET = "market"
"""The demand agent that stands for customers the twin does not know (products without order history)."""


@dataclass(frozen=True)
class Defaults:
    """Documented defaults for what the twin does not say; every field can be overridden in a scenario."""

    hours_per_week: float = 40.0  # contracted hours of an employee without capacityHoursPerWeek
    working_days_per_week: float = 5.0  # a step of one day is a working day
    absence_rate: float = 0.04  # share of working days a person is absent (sickness, leave)
    absence_spell_days: float = 3.0  # mean length of an absence
    annual_attrition: float = 0.10  # share of people who leave in a year
    hiring_delay_days: float = 60.0  # days from a leave to the replacement's first day
    mtbf_hours: float = 600.0  # mean operating hours between failures of an asset
    mttr_hours: float = 8.0  # mean hours to repair an asset
    hours_per_shift: float = 8.0
    shifts_per_day: int = 1
    reliability: float = 0.95  # share of a supplier's deliveries that arrive on the due day
    lead_time_days: float = 7.0
    line_capacity_per_day: float = 100.0  # units a line makes per day when neither it nor its assets say
    demand_utilisation: float = 0.8  # demand without history = this share of the producing lines' capacity
    material_safety_days: float = 7.0  # the buyer keeps stock + on order = usage x (lead time + this)
    finished_goods_days: float = 2.0  # lines build this many days of demand ahead
    patience_days: int = 14  # an order not shipped within this many days is lost
    overtime_cap: float = 0.2  # overtime hours at most this share of regular hours
    labour_share: float = 0.85  # the roster's present hours cover this share of nominal capacity without overtime
    hourly_rate: float = 40.0  # labour cost per paid hour of a person without a salary in the twin
    overtime_premium: float = 1.5  # an overtime hour costs this many regular hours
    it_recovery_hours: float = 4.0  # hours an IT system needs after an outage ends when it has no recoveryTimeHours
    preventive_mtbf_factor: float = 1.5  # preventive maintenance lengthens the time between failures this much
    project_effort_hours: float = 400.0  # planned effort of a project without `effort`

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Names of the defaults (valid keys of a scenario's `defaults:` overrides)."""
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class ParameterSource:
    """Where one parameter of one twin came from."""

    twin: str
    parameter: str
    value: float
    source: Source
    detail: str = ""


@dataclass(frozen=True)
class PersonParams:
    """A person's working hours per day, the lines they work on (hours split evenly) and their risks."""

    uid: str
    hours_per_day: float
    processes: tuple[str, ...]
    absence_rate: float
    annual_attrition: float
    skills: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()  # projects they are assigned to (hours split evenly over lines and projects)
    hourly_rate: float = 0.0


@dataclass(frozen=True)
class AssetParams:
    """An asset's reliability and operating hours per day."""

    uid: str
    mtbf_hours: float
    mttr_hours: float
    operating_hours_per_day: float


@dataclass(frozen=True)
class ProcessParams:
    """A line: nominal capacity per day, its assets, materials, products and labour hours per unit."""

    uid: str
    capacity_per_day: float
    machines: tuple[str, ...]
    materials: tuple[str, ...]
    products: tuple[str, ...]
    labour_hours_per_unit: float
    yield_rate: float = 1.0
    operating_hours_per_day: float = 8.0
    skills: tuple[str, ...] = ()


@dataclass(frozen=True)
class ITSystemParams:
    """An IT system: hours it needs to recover, the lines and projects that need it, the IT systems linked to it."""

    uid: str
    recovery_hours: float
    processes: tuple[str, ...]
    projects: tuple[str, ...]
    linked: tuple[str, ...]


@dataclass(frozen=True)
class ProjectParams:
    """A project: working hours of effort left, the working day it is due (None: no end date), the skills it needs."""

    uid: str
    remaining_hours: float
    due_day: float | None
    skills: tuple[str, ...]


@dataclass(frozen=True)
class MaterialParams:
    """A material: stock at the start and expected use per day."""

    uid: str
    initial_stock: float
    usage_per_day: float


@dataclass(frozen=True)
class LaneParams:
    """A supplier-material lane with its lead time in days."""

    supplier: str
    material: str
    lead_time_days: float


@dataclass(frozen=True)
class SupplierParams:
    """A supplier's on-time share."""

    uid: str
    reliability: float


@dataclass(frozen=True)
class DemandParams:
    """A customer's (or the market's) mean demand per day by product."""

    uid: str
    rates: dict[str, float]


@dataclass(frozen=True)
class Calibration:
    """All parameters of one model, keyed and ordered by twin uid, with where each came from."""

    defaults: Defaults
    persons: tuple[PersonParams, ...]
    assets: tuple[AssetParams, ...]
    processes: tuple[ProcessParams, ...]
    materials: tuple[MaterialParams, ...]
    lanes: tuple[LaneParams, ...]
    suppliers: tuple[SupplierParams, ...]
    demand: tuple[DemandParams, ...]
    products: tuple[str, ...]
    sources: tuple[ParameterSource, ...] = field(default=(), compare=False)
    it_systems: tuple[ITSystemParams, ...] = ()
    projects: tuple[ProjectParams, ...] = ()

    def source_counts(self) -> dict[str, dict[str, int]]:
        """Per parameter, how many values came from the twin, its history, defaults or overrides."""
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for s in self.sources:
            counts[s.parameter][s.source] += 1
        return {k: dict(v) for k, v in sorted(counts.items())}


@dataclass(frozen=True)
class ParameterOverride:
    """A scenario's fixed value for one parameter of some twins (or of all twins the parameter applies to)."""

    parameter: str
    value: float
    uids: frozenset[str] | None = None


OVERRIDABLE = (
    "hours_per_day",
    "absence_rate",
    "annual_attrition",
    "mtbf_hours",
    "mttr_hours",
    "capacity_per_day",
    "labour_hours_per_unit",
    "initial_stock",
    "usage_per_day",
    "lead_time_days",
    "reliability",
    "demand_per_day",
    "yield_rate",
    "hourly_rate",
)
"""Per-twin parameters a scenario may override."""


def calibrate(
    twin: EnterpriseSlice, defaults: Defaults | None = None, overrides: tuple[ParameterOverride, ...] = ()
) -> Calibration:
    """Parameters for every agent of the slice, from twin properties, twin history and defaults, then overrides."""
    d = defaults or Defaults()
    sources: list[ParameterSource] = []

    def note(uid: str, parameter: str, value: float, source: Source, detail: str = "") -> float:
        sources.append(ParameterSource(uid, parameter, float(value), source, detail))
        return float(value)

    # ---- assets: operating hours from the work centre's shifts, reliability from the twin or its history
    wc_shifts = {uid: (wc.shifts_per_day or d.shifts_per_day) for uid, wc in twin.work_centers.items()}
    history = _failure_history(twin)
    assets = []
    for uid, asset in sorted(twin.assets.items()):
        hours = d.hours_per_shift * wc_shifts.get(asset.work_center or "", d.shifts_per_day)
        if asset.mtbf_hours:
            mtbf = note(uid, "mtbf_hours", asset.mtbf_hours, "twin", "mtbfHours")
        elif uid in history and history[uid][0] > 0:
            failures, span_days, _ = history[uid]
            mtbf = note(
                uid,
                "mtbf_hours",
                span_days * hours / failures,
                "history",
                f"{failures} corrective MaintenanceEvent(s) over {span_days:.0f} days",
            )
        else:
            mtbf = note(uid, "mtbf_hours", d.mtbf_hours, "default")
        if asset.mttr_hours:
            mttr = note(uid, "mttr_hours", asset.mttr_hours, "twin", "mttrHours")
        elif uid in history and (downtime := history[uid][2]) is not None:
            mttr = note(uid, "mttr_hours", downtime, "history", "mean downtimeHours of MaintenanceEvents")
        else:
            mttr = note(uid, "mttr_hours", d.mttr_hours, "default")
        assets.append(AssetParams(uid, mtbf, mttr, hours))

    # ---- lines: capacity from the process, else its machines, else its work centre, else the default
    machine_users: dict[str, int] = defaultdict(int)
    wc_users: dict[str, int] = defaultdict(int)
    for process in twin.processes.values():
        for m in process.machines:
            machine_users[m] += 1
        for wc in process.work_centers:
            wc_users[wc] += 1
    capacities: dict[str, float] = {}
    for uid, process in sorted(twin.processes.items()):
        machine_caps = [(twin.assets[m].capacity_per_day, m) for m in process.machines if m in twin.assets]
        wc_caps = [
            twin.work_centers[w].capacity_per_day
            for w in process.work_centers
            if w in twin.work_centers and twin.work_centers[w].capacity_per_day
        ]
        if process.throughput_per_day:
            field_name = "throughputPerDay" if process.cls != "WorkCenter" else "capacityPerDay"
            capacities[uid] = note(uid, "capacity_per_day", process.throughput_per_day, "twin", field_name)
        elif machine_caps and all(c for c, _ in machine_caps):
            total = sum((c or 0.0) / machine_users[m] for c, m in machine_caps)  # every c is set (checked above)
            capacities[uid] = note(uid, "capacity_per_day", total, "twin", "sum of its machines' capacityPerDay")
        elif wc_caps:
            total = sum(
                (twin.work_centers[w].capacity_per_day or 0.0) / wc_users[w]
                for w in process.work_centers
                if w in twin.work_centers and twin.work_centers[w].capacity_per_day
            )
            capacities[uid] = note(uid, "capacity_per_day", total, "twin", "work centre capacityPerDay")
        else:
            capacities[uid] = note(uid, "capacity_per_day", d.line_capacity_per_day, "default")

    # ---- demand: order history per customer and product, else a share of the producing lines' capacity
    producers: dict[str, list[str]] = defaultdict(list)
    for uid, process in sorted(twin.processes.items()):
        for product in process.produces:
            producers[product].append(uid)
    products = tuple(sorted(p for p in twin.products if producers.get(p)))
    window = _history_window_days(twin)
    by_customer: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in twin.order_lines:
        if line.product in producers:
            by_customer[line.customer or MARKET][line.product] += line.quantity
    product_rate: dict[str, float] = defaultdict(float)
    demand_rates: dict[str, dict[str, float]] = defaultdict(dict)
    for customer, quantities in sorted(by_customer.items()):
        for product, quantity in sorted(quantities.items()):
            rate = quantity / window
            demand_rates[customer][product] = rate
            product_rate[product] += rate
    for product in products:
        if product in product_rate:
            note(
                product, "demand_per_day", product_rate[product], "history", f"SalesOrder lines over {window:.0f} days"
            )
            continue
        share = sum(capacities[j] / len(twin.processes[j].produces) for j in producers[product])
        rate = note(
            product,
            "demand_per_day",
            d.demand_utilisation * share,
            "default",
            f"{d.demand_utilisation:.0%} of the producing lines' capacity",
        )
        demand_rates[MARKET][product] = rate
        product_rate[product] = rate

    # ---- people: hours, the lines they can staff (operate its machines, hold a required skill)
    persons = []
    roster_hours: dict[str, float] = defaultdict(float)
    for uid, person in sorted(twin.persons.items()):
        if person.hours_per_week:
            weekly = note(uid, "hours_per_day", person.hours_per_week, "twin", "capacityHoursPerWeek")
        else:
            weekly = note(uid, "hours_per_day", d.hours_per_week, "default")
        lines = _lines_of(twin, uid)
        projects = tuple(q for q, project in sorted(twin.projects.items()) if uid in project.assignees)
        hours = weekly / d.working_days_per_week
        for j in lines:
            roster_hours[j] += hours / (len(lines) + len(projects))
        if person.salary:
            rate = note(uid, "hourly_rate", person.salary / (52 * weekly), "twin", "salary / (52 x weekly hours)")
        else:
            rate = note(uid, "hourly_rate", d.hourly_rate, "default")
        persons.append(
            PersonParams(
                uid,
                hours,
                lines,
                d.absence_rate,
                d.annual_attrition,
                tuple(sorted(person.skills)),
                projects,
                rate,
            )
        )
        note(uid, "absence_rate", d.absence_rate, "default")
        note(uid, "annual_attrition", d.annual_attrition, "default")

    processes = []
    for uid, process in sorted(twin.processes.items()):
        present_hours = roster_hours.get(uid, 0.0) * (1 - d.absence_rate)
        hpu = present_hours / (d.labour_share * capacities[uid]) if present_hours > 0 else 0.0
        note(
            uid,
            "labour_hours_per_unit",
            hpu,
            "default" if hpu else "twin",
            "roster hours / (labour_share x capacity)" if hpu else "no staff linked: labour does not limit",
        )
        processes.append(
            ProcessParams(
                uid,
                capacities[uid],
                tuple(m for m in process.machines if m in twin.assets),
                tuple(m for m in process.consumes if m in twin.materials),
                tuple(p for p in process.produces if p in products),
                hpu,
                _yield(uid, process.yield_rate, note),
                d.hours_per_shift * max((wc_shifts.get(w, d.shifts_per_day) for w in process.work_centers), default=1),
                process.skills,
            )
        )

    # ---- materials and supply
    usage: dict[str, float] = defaultdict(float)
    for params in processes:
        line_rate = sum(product_rate[p] / len(producers[p]) for p in params.products)
        for m in params.materials:
            usage[m] += min(line_rate, params.capacity_per_day)
    lanes = []
    lane_leads: dict[str, list[float]] = defaultdict(list)
    for lane in twin.lanes:
        supplier = twin.suppliers[lane.supplier]
        material = twin.materials[lane.material]
        key = f"{lane.supplier}->{lane.material}"
        if lane.lead_time_days is not None:
            lead = note(key, "lead_time_days", lane.lead_time_days, "twin", "supplies.leadTimeDays")
        elif supplier.lead_time_days is not None:
            lead = note(key, "lead_time_days", supplier.lead_time_days, "twin", "Supplier.leadTimeDays")
        elif material.lead_time_days is not None:
            lead = note(key, "lead_time_days", material.lead_time_days, "twin", "Material.leadTimeDays")
        else:
            lead = note(key, "lead_time_days", d.lead_time_days, "default")
        lanes.append(LaneParams(lane.supplier, lane.material, lead))
        lane_leads[lane.material].append(lead)
    suppliers = []
    for uid, supplier in sorted(twin.suppliers.items()):
        if supplier.reliability is not None:
            rel = note(uid, "reliability", supplier.reliability, "twin", "reliability")
        else:
            rel = note(uid, "reliability", d.reliability, "default")
        suppliers.append(SupplierParams(uid, rel))
    materials = []
    for uid, material in sorted(twin.materials.items()):
        rate = note(uid, "usage_per_day", usage.get(uid, 0.0), "history", "demand of the lines consuming it")
        if material.stock_level is not None:
            stock = note(uid, "initial_stock", material.stock_level, "twin", "stockLevel")
        else:
            lead = max(lane_leads.get(uid, [d.lead_time_days]))
            stock = note(
                uid,
                "initial_stock",
                rate * (d.material_safety_days + 1),
                "default",
                f"usage x {d.material_safety_days + 1:.0f} days (lead {lead:.0f} days on order)",
            )
        materials.append(MaterialParams(uid, stock, rate))

    # ---- IT systems: recovery time, the lines and projects that need them, the systems linked to them
    it_systems = []
    for uid, system in sorted(twin.it_systems.items()):
        if system.recovery_hours is not None:
            recovery = note(uid, "recovery_hours", system.recovery_hours, "twin", "recoveryTimeHours")
        else:
            recovery = note(uid, "recovery_hours", d.it_recovery_hours, "default")
        hit = twin.dependents({uid})
        linked = {n for n in twin.depends_on.get(uid, ()) if n in twin.it_systems}
        linked |= {dep for dep, needs in twin.depends_on.items() if uid in needs and dep in twin.it_systems}
        it_systems.append(
            ITSystemParams(
                uid,
                recovery,
                tuple(sorted(hit & set(twin.processes))),
                tuple(sorted(hit & set(twin.projects))),
                tuple(sorted(linked - {uid})),
            )
        )

    # ---- projects: effort left and the working day they are due, counted from the day the twin was read
    project_params = []
    for uid, project in sorted(twin.projects.items()):
        if project.effort_hours is not None:
            effort = note(uid, "effort_hours", project.effort_hours, "twin", "effort")
        else:
            effort = note(uid, "effort_hours", d.project_effort_hours, "default")
        done = min(max(project.progress or 0.0, 0.0), 1.0)
        due = None
        if project.end is not None:
            due = (project.end - twin.read_at.date()).days * d.working_days_per_week / 7
        project_params.append(ProjectParams(uid, effort * (1 - done), due, project.skills))

    calibration = Calibration(
        defaults=d,
        persons=tuple(persons),
        assets=tuple(assets),
        processes=tuple(processes),
        materials=tuple(materials),
        lanes=tuple(lanes),
        suppliers=tuple(suppliers),
        demand=tuple(DemandParams(c, dict(sorted(r.items()))) for c, r in sorted(demand_rates.items())),
        products=products,
        sources=tuple(sources),
        it_systems=tuple(it_systems),
        projects=tuple(project_params),
    )
    return apply_overrides(calibration, overrides) if overrides else calibration


def apply_overrides(calibration: Calibration, overrides: tuple[ParameterOverride, ...]) -> Calibration:
    """The calibration with scenario overrides applied (recorded as source "override")."""
    sources = list(calibration.sources)
    groups = {
        "persons": ("hours_per_day", "absence_rate", "annual_attrition", "hourly_rate"),
        "assets": ("mtbf_hours", "mttr_hours"),
        "processes": ("capacity_per_day", "labour_hours_per_unit", "yield_rate"),
        "materials": ("initial_stock", "usage_per_day"),
        "suppliers": ("reliability",),
    }
    updated: dict[str, tuple[object, ...]] = {}
    for group, names in groups.items():
        items = list(getattr(calibration, group))
        for o in overrides:
            if o.parameter not in names:
                continue
            for i, item in enumerate(items):
                if o.uids is None or item.uid in o.uids:
                    items[i] = replace(item, **{o.parameter: o.value})
                    uid = item.uid
                    sources.append(ParameterSource(uid, o.parameter, o.value, "override"))
        updated[group] = tuple(items)
    lanes = list(calibration.lanes)
    demand = list(calibration.demand)
    for o in overrides:
        if o.parameter == "lead_time_days":
            hit = o.uids
            lanes = [
                replace(lane, lead_time_days=o.value)
                if hit is None or lane.supplier in hit or lane.material in hit
                else lane
                for lane in lanes
            ]
        if o.parameter == "demand_per_day":
            total: dict[str, float] = defaultdict(float)
            for dp in demand:
                for product, rate in dp.rates.items():
                    total[product] += rate
            demand = [
                DemandParams(
                    dp.uid,
                    {
                        p: (o.value * r / total[p] if total[p] and (o.uids is None or p in o.uids) else r)
                        for p, r in dp.rates.items()
                    },
                )
                for dp in demand
            ]
    return replace(calibration, lanes=tuple(lanes), demand=tuple(demand), sources=tuple(sources), **updated)  # type: ignore[arg-type]


def _yield(uid: str, value: float | None, note: Callable[..., float]) -> float:
    """A line's yield from the twin (yieldRate), else 1 (every unit good)."""
    if value is not None and 0 < value <= 1:
        return note(uid, "yield_rate", value, "twin", "yieldRate")
    return note(uid, "yield_rate", 1.0, "default", "no yieldRate: every unit is good")


def _lines_of(twin: EnterpriseSlice, person_uid: str) -> tuple[str, ...]:
    """Lines a person staffs: those using an asset they operate (holding a required skill when the line asks one)."""
    person = twin.persons[person_uid]
    lines = []
    for uid, process in sorted(twin.processes.items()):
        uses_machine = any(m in process.machines for m in person.operates)
        qualified = not process.skills or any(s in person.skills for s in process.skills)
        if uses_machine and qualified:
            lines.append(uid)
    if not lines and not person.operates:
        for uid, process in sorted(twin.processes.items()):
            in_place = person.unit is not None and any(
                twin.within(person.unit, wc) or any(twin.within(person.unit, c) for c in twin.containers.get(wc, ()))
                for wc in process.work_centers
            )
            if process.skills and any(s in person.skills for s in process.skills) and in_place:
                lines.append(uid)
    return tuple(lines)


def _history_window_days(twin: EnterpriseSlice) -> float:
    """Days the sales-order history covers (at least four weeks; a year when orders carry no dates)."""
    dates = [line.order_date for line in twin.order_lines if line.order_date is not None]
    if not dates:
        return 365.0
    return float(max(28, (max(dates) - min(dates)).days + 1))


def _failure_history(twin: EnterpriseSlice) -> dict[str, tuple[int, float, float | None]]:
    """Per asset: corrective maintenance events, the days of history they span, mean downtime hours."""
    events: dict[str, list[MaintenanceRecord]] = defaultdict(list)
    for record in twin.maintenance:
        events[record.asset].append(record)
    moments = [moment for r in twin.maintenance if (moment := r.scheduled_at or r.completed_at)]
    span = max(30.0, (max(moments) - min(moments)).total_seconds() / 86400) if moments else 365.0
    result = {}
    for asset, records in events.items():
        failures = sum(1 for r in records if r.maintenance_type in (None, "corrective"))
        downtimes = [r.downtime_hours for r in records if r.downtime_hours is not None]
        result[asset] = (failures, span, sum(downtimes) / len(downtimes) if downtimes else None)
    return result


def lead_steps(days: float, step_days: int) -> int:
    """A lead time in whole steps (at least one)."""
    return max(1, math.ceil(days / step_days))
