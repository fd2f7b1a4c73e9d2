"""A deterministic synthetic enterprise of N twins and about 5N links on the core ontology, for graph benchmarks."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from graph.model import Link, Twin
from ontology.model import Ontology

SHARES = {  # fraction of twins per class
    "OrgUnit": 0.005,
    "Site": 0.001,
    "WorkCenter": 0.01,
    "Machine": 0.1,
    "Employee": 0.4,
    "Process": 0.05,
    "Material": 0.1,
    "Product": 0.05,
    "Supplier": 0.02,
    "Customer": 0.05,
}
SKILLS = 500


@dataclass
class SyntheticEnterprise:
    """Twins grouped by class and the links between them."""

    uids: dict[str, list[str]]
    twins: list[Twin]
    links: list[Link]


def _value(kind: str, rng: random.Random, i: int) -> object:
    if kind in ("string", "uuid"):
        return f"v{i}"
    if kind in ("integer", "long", "short", "byte"):
        return rng.randint(1, 100)
    if kind in ("double", "float", "decimal"):
        return round(rng.uniform(1, 1000), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "date":
        return f"20{rng.randint(10, 25)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
    return None


def build(ontology: Ontology, n: int, seed: int = 42) -> SyntheticEnterprise:
    """N twins (plus SKILLS skills and ~0.2N sales orders) with about 5N valid links."""
    rng = random.Random(seed)
    uids: dict[str, list[str]] = {}
    counts = {cls: max(2, int(n * share)) for cls, share in SHARES.items()}
    counts["Skill"] = SKILLS
    counts["SalesOrder"] = max(2, n - sum(counts.values()))
    twins: list[Twin] = []
    for cls, count in counts.items():
        props = ontology.properties(cls)
        required = [p for p in props.values() if p.required and p.name != "name"]
        extra = [p for p in props.values() if p.schema.kind in ("double", "integer", "string") and p.name != "name"][:3]
        prefix = cls.lower()
        uids[cls] = [f"{prefix}-{i}" for i in range(count)]
        for i, uid in enumerate(uids[cls]):
            values: dict[str, object] = {"name": f"{cls} {i}"}
            for p in (*required, *extra):
                value = _value(p.schema.kind, rng, i)
                if value is not None:
                    values[p.name] = value
            twins.append(Twin(uid, cls, values))
    links: list[Link] = []
    pick = rng.choice
    units, emps = uids["OrgUnit"], uids["Employee"]
    links += [Link("partOf", u, units[(i - 1) // 4]) for i, u in enumerate(units) if i]
    for i, e in enumerate(emps):
        links.append(Link("worksIn", e, units[i % len(units)]))
        if i:
            links.append(Link("reportsTo", e, emps[(i - 1) // 8]))
        for s in rng.sample(uids["Skill"], 3):
            links.append(Link("hasSkill", e, s))
        for m in {pick(uids["Machine"]), pick(uids["Machine"])}:
            links.append(Link("operates", e, m))
    for i, wc in enumerate(uids["WorkCenter"]):
        links.append(Link("locatedAt", wc, uids["Site"][i % len(uids["Site"])]))
    for i, m in enumerate(uids["Machine"]):
        links.append(Link("partOf", m, uids["WorkCenter"][i % len(uids["WorkCenter"])]))
        if i:
            links.append(Link("dependsOn", m, uids["Machine"][rng.randrange(i)]))
    for p in uids["Process"]:
        for m in {pick(uids["Machine"]) for _ in range(3)}:
            links.append(Link("requires", p, m))
        for mat in {pick(uids["Material"]) for _ in range(3)}:
            links.append(Link("consumes", p, mat))
        links.append(Link("produces", p, pick(uids["Product"])))
    for mat in uids["Material"]:
        for s in {pick(uids["Supplier"]) for _ in range(2)}:
            links.append(Link("supplies", s, mat))
    for o in uids["SalesOrder"]:
        links.append(Link("placedBy", o, pick(uids["Customer"])))
        for prod in {pick(uids["Product"]) for _ in range(3)}:
            links.append(Link("orders", o, prod))
    return SyntheticEnterprise(uids=uids, twins=twins, links=links)


def batches(items: list, size: int) -> Iterator[list]:  # type: ignore[type-arg]
    """Consecutive slices of `items`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
