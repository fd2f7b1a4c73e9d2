"""A deterministic manufacturing enterprise on the core ontology for simulation tests and benchmarks.

Production lines (a Process performed by a WorkCenter) each consume their own materials and produce their own
products, so lines are independent unless they share a supplier. Suppliers, sales-order history, maintenance
history and people with skills who operate the lines' machines make every calibration path reachable.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from graph.model import Link, Twin
from graph.store import GraphStore

PRODUCT_LINES = (("Pumps", "HP"), ("Valves", "IV"), ("Compressors", "CP"), ("Gearboxes", "GB"), ("Actuators", "AC"))
HISTORY_END = dt.date(2025, 6, 30)


@dataclass
class Line:
    """One production line of the built enterprise and the twins that belong to it."""

    process: str
    work_center: str
    site: str
    machines: list[str] = field(default_factory=list)
    materials: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    people: list[str] = field(default_factory=list)


@dataclass
class EnterpriseLayout:
    """What was built: twins, links and where each line's twins are."""

    twins: list[Twin]
    links: list[Link]
    lines: list[Line]
    suppliers_of: dict[str, list[str]]
    sites: dict[str, str]
    unit_of_site: dict[str, str]

    def sole_supplier(self, line: int) -> tuple[str, str]:
        """(material, supplier) of a material of line `line` that exactly one supplier supplies."""
        for material in self.lines[line].materials:
            if len(self.suppliers_of[material]) == 1:
                return material, self.suppliers_of[material][0]
        raise LookupError(f"line {line} has no single-sourced material")


def build_enterprise(
    *,
    people: int = 24,
    work_centers: int = 3,
    lines_per_center: int = 1,
    machines: int | None = None,
    products: int | None = None,
    materials: int | None = None,
    suppliers: int | None = None,
    customers: int = 3,
    history_days: int = 180,
    dual_source_share: float = 0.0,
    seed: int = 11,
) -> EnterpriseLayout:
    """An enterprise of the given size; with the defaults, 3 lines each with one single-sourced material."""
    rng = random.Random(seed)
    n_lines = work_centers * lines_per_center
    machines = machines or 2 * n_lines
    products = products or n_lines
    materials = materials or n_lines
    suppliers = suppliers or materials
    twins: list[Twin] = []
    links: list[Link] = []
    sites = {"Plant A": "site-plant-a", "Plant B": "site-plant-b"}
    unit_of_site = {name: f"ou-{uid[5:]}" for name, uid in sites.items()}
    for name, uid in sites.items():
        twins.append(Twin(uid, "Site", {"name": name, "siteCode": name.upper().replace(" ", "-")}))
        twins.append(Twin(unit_of_site[name], "OrgUnit", {"name": f"{name} operations"}))
        links.append(Link("locatedAt", unit_of_site[name], uid))
    skills = [f"skill-{k}" for k in range(work_centers)]
    for k, uid in enumerate(skills):
        twins.append(Twin(uid, "Skill", {"name": f"Skill {k}", "category": "technical"}))

    lines: list[Line] = []
    for w in range(work_centers):
        site_name = "Plant A" if w % 2 == 0 else "Plant B"
        wc = f"wc-{w}"
        team = f"ou-team-{w}"
        twins.append(
            Twin(
                wc,
                "WorkCenter",
                {"name": f"Work centre {w}", "shiftsPerDay": 1, "oee": 0.8, "capacityPerDay": 150.0 * lines_per_center},
            )
        )
        twins.append(Twin(team, "OrgUnit", {"name": f"Team {w}"}))
        links += [Link("locatedAt", wc, sites[site_name]), Link("partOf", team, unit_of_site[site_name])]
        for j in range(lines_per_center):
            i = w * lines_per_center + j
            process = f"proc-{i}"
            props: dict[str, object] = {"name": f"Line {i}"}
            if i % 3 != 2:
                props["throughputPerDay"] = 120.0
            twins.append(Twin(process, "Process", props))
            links += [Link("performs", wc, process), Link("requires", process, skills[w])]
            lines.append(Line(process, wc, site_name))

    for m in range(machines):
        line = lines[m % n_lines]
        uid = f"mach-{m}"
        props = {"name": f"Machine {m}", "capacityPerDay": 130.0, "status": "operational"}
        if m % 3 != 0:
            props |= {"mtbfHours": float(rng.randint(400, 900)), "mttrHours": float(rng.randint(4, 12))}
        twins.append(Twin(uid, "Machine", props))
        links += [Link("partOf", uid, line.work_center), Link("requires", line.process, uid)]
        line.machines.append(uid)
        for e in range(2):
            start = dt.datetime(2025, 1, 10) + dt.timedelta(days=rng.randint(0, 150), hours=e)
            event = f"maint-{m}-{e}"
            twins.append(
                Twin(
                    event,
                    "MaintenanceEvent",
                    {
                        "name": f"Repair {m}.{e}",
                        "maintenanceType": "corrective" if e == 0 else "preventive",
                        "scheduledAt": start.isoformat(),
                        "completedAt": (start + dt.timedelta(hours=6)).isoformat(),
                        "downtimeHours": 6.0,
                    },
                )
            )
            links.append(Link("maintains", event, uid))

    for k in range(materials):
        line = lines[k % n_lines]
        uid = f"mat-{k}"
        props = {"name": f"Material {k}", "unit": "pcs"}
        if k % 2 == 0:
            props["stockLevel"] = 900.0
        twins.append(Twin(uid, "Material", props))
        links.append(Link("consumes", line.process, uid))
        line.materials.append(uid)
    supplier_uids = [f"sup-{s}" for s in range(suppliers)]
    for s, uid in enumerate(supplier_uids):
        kind = "Castings" if s % 4 == 0 else "Components"
        reliability = round(rng.uniform(0.9, 0.99), 3)
        twins.append(
            Twin(
                uid,
                "Supplier",
                {"name": f"Supplier {s} {kind}", "reliability": reliability, "leadTimeDays": rng.randint(5, 12)},
            )
        )
    suppliers_of: dict[str, list[str]] = {}
    for k in range(materials):
        material = f"mat-{k}"
        chosen = [supplier_uids[k % suppliers]]
        if rng.random() < dual_source_share and suppliers > 1:
            chosen.append(supplier_uids[(k + 1) % suppliers])
        suppliers_of[material] = chosen
        for n, supplier in enumerate(chosen):
            links.append(Link("supplies", supplier, material, {"leadTimeDays": 7} if n == 0 and k % 2 else {}))

    customer_uids = [f"cust-{c}" for c in range(customers)]
    for c, uid in enumerate(customer_uids):
        twins.append(Twin(uid, "Customer", {"name": f"Customer {c}", "segment": "industrial"}))
    order_no = 0
    for p in range(products):
        line = lines[p % n_lines]
        uid = f"prod-{p}"
        family, prefix = PRODUCT_LINES[(p % n_lines) % len(PRODUCT_LINES)]
        twins.append(
            Twin(
                uid,
                "Product",
                {
                    "name": f"{family} P{p}",
                    "sku": f"{prefix}-{p:04d}",
                    "unitPrice": 100.0 + p,
                    "description": f"Product line {family}",
                },
            )
        )
        links.append(Link("produces", line.process, uid))
        line.products.append(uid)
        share = sum(1 for q in range(products) if q % n_lines == p % n_lines)
        rate = 0.8 * 120.0 / share
        buyers = [customer_uids[(p + j) % customers] for j in range(min(2, customers))]
        for week in range(history_days // 7):
            buyer = buyers[week % len(buyers)]
            order = f"so-{order_no}"
            order_no += 1
            day = HISTORY_END - dt.timedelta(days=history_days - 1 - week * 7 - rng.randint(0, 6))
            quantity = round(rate * 7 * rng.uniform(0.8, 1.2), 1)
            twins.append(
                Twin(
                    order,
                    "SalesOrder",
                    {
                        "name": f"Order {order_no}",
                        "orderDate": day.isoformat(),
                        "orderStatus": "delivered",
                        "quantity": quantity,
                    },
                )
            )
            links += [Link("placedBy", order, buyer), Link("orders", order, uid, {"quantity": quantity})]

    workers = max(n_lines, int(people * 0.8))
    for e in range(people):
        uid = f"emp-{e}"
        props = {"name": f"Employee {e}", "employeeId": f"E{e:05d}", "capacityHoursPerWeek": 40.0 if e % 5 else 32.0}
        twins.append(Twin(uid, "Employee", props))
        if e < workers:
            line = lines[e % n_lines]
            w = int(line.work_center.split("-")[1])
            links += [
                Link("worksIn", uid, f"ou-team-{w}"),
                Link("hasSkill", uid, skills[w], {"level": 3}),
                Link("operates", uid, line.machines[e // n_lines % len(line.machines)]),
            ]
            line.people.append(uid)
        else:
            links.append(Link("worksIn", uid, unit_of_site["Plant A"]))
    return EnterpriseLayout(twins, links, lines, suppliers_of, sites, unit_of_site)


def load_enterprise(store: GraphStore, layout: EnterpriseLayout, batch: int = 5000) -> None:
    """Write the enterprise into the graph (twins first, then links)."""
    for start in range(0, len(layout.twins), batch):
        store.upsert_twins(layout.twins[start : start + batch], actor="test", source="enterprise_graph")
    for start in range(0, len(layout.links), batch):
        store.upsert_links(layout.links[start : start + batch], actor="test", source="enterprise_graph")
