"""The naming plan: every class, property and relationship of the ontology mapped to GraphQL names and back."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.graphql.scalars import FILTERABLE, scalar_of
from api.graphql.types import STATIC
from ontology.model import ClassDef, Ontology, PropertyDef, RelationshipDef, text

SYSTEM_FIELDS = ("uid", "className", "labels")
ROOT_FIELDS = (
    "twin",
    "search",
    "impact",
    "path",
    "aggregate",
    "history",
    "changes",
    "diff",
    "lineage",
    "auditLog",
    "scenarios",
    "scenarioRun",
    "alerts",  # the decisions fields (api/graphql/decisions.py)
    "proposals",
    "automations",
)
DECISION_TYPES = (  # the decisions types (api/graphql/decisions.py TYPES): no ontology class may take these names
    "DecisionAlert",
    "ProposedAction",
    "AutomationRule",
    "DecisionAlertPage",
    "ProposedActionPage",
    "AutomationRulePage",
    "AutomationChange",
    "DecisionEvent",
)


@dataclass(frozen=True)
class PropertyField:
    """A property as a GraphQL field: its ontology definition and scalar."""

    name: str  # GraphQL field name
    prop: PropertyDef
    scalar: str
    is_list: bool
    deprecated: str | None = None  # the reason, for a field kept one version under a property's former name

    @property
    def filterable(self) -> bool:
        """Whether `where` and `orderBy` may use it."""
        return not self.is_list and self.scalar in FILTERABLE


@dataclass(frozen=True)
class RelationField:
    """A relationship as a connection field, in one direction."""

    name: str  # GraphQL field name
    rel_type: str
    direction: str  # "out" | "in"
    node_class: str | None  # class name of the nodes at the other end; None = any twin
    edge_props: Mapping[str, PropertyField]
    connection: str  # GraphQL connection type name
    edge: str


@dataclass
class ClassPlan:
    """Everything the schema and the planner need to know about one class (or `Twin` when cls is None)."""

    cls: str | None
    type_name: str  # object type for direct instances
    interface_name: str | None  # interface named after the class when it has subclasses
    list_field: str | None
    where: str
    sort_field: str
    order_by: str
    connection: str
    edge: str
    properties: dict[str, PropertyField] = field(default_factory=dict)
    relations: dict[str, RelationField] = field(default_factory=dict)
    description: str = ""

    @property
    def position_type(self) -> str:
        """The GraphQL type of a field that holds twins of this class or its subclasses."""
        return self.interface_name or self.type_name


@dataclass
class SchemaPlan:
    """The generated schema's mapping back to ontology terms."""

    ontology: Ontology
    classes: dict[str, ClassPlan]  # class name -> plan
    twin: ClassPlan  # the plan for "any twin"
    by_object: dict[str, str]  # GraphQL object type name -> class name
    root_lists: dict[str, str]  # root field -> class name

    def plan_for(self, cls: str | None) -> ClassPlan:
        """The plan of class `cls` (None = any twin)."""
        return self.twin if cls is None else self.classes[cls]

    def object_type(self, cls: str) -> str | None:
        """The GraphQL object type of a twin whose class is `cls` (None for a class the schema does not know)."""
        plan = self.classes.get(cls)
        return plan.type_name if plan else None


_NAME = re.compile(r"[^_0-9A-Za-z]")


def graphql_name(raw: str) -> str:
    """`raw` as a valid GraphQL name (invalid characters become '_'; never starting with a digit or '__')."""
    name = _NAME.sub("_", raw) or "_"
    if name[0].isdigit():
        name = "_" + name
    while name.startswith("__"):
        name = name[1:]
    return name


def _upper_first(name: str) -> str:
    return name[:1].upper() + name[1:]


def _lower_first(name: str) -> str:
    match = re.match(r"^[A-Z]+", name)
    if not match:
        return name
    run = match.group(0)
    if len(run) == len(name) or len(run) == 1:
        return name[: len(run)].lower() + name[len(run) :]
    return run[:-1].lower() + name[len(run) - 1 :]


def plural(name: str) -> str:
    """An English plural good enough for field names (entities, processes, kpis)."""
    if re.search(r"[^aeiou]y$", name):
        return name[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", name):
        return name + "es"
    return name + "s"


def describe(display: Any, description: Any, extra: str = "") -> str:
    """A GraphQL description from an ontology display name or description, and an extra sentence."""
    parts = [p for p in (text(description) or text(display), extra) if p]
    return " ".join(parts)


class _Names:
    """Allocates unique GraphQL type names."""

    def __init__(self, reserved: Iterable[str]) -> None:
        self.used = set(reserved)

    def take(self, wanted: str) -> str:
        name = wanted
        for i in itertools.count(2):
            if name not in self.used:
                break
            name = f"{wanted}{i}"
        self.used.add(name)
        return name


def plan_schema(ontology: Ontology, renames: Mapping[str, Mapping[str, str]] | None = None) -> SchemaPlan:
    """Map every class, property and relationship of `ontology` to GraphQL names; `renames` ({class: {former name:
    property}}, from the migration that activated this version) keeps each former name one version as a deprecated
    field reading the renamed property."""
    names = _Names(
        [
            *STATIC,
            *DECISION_TYPES,
            "Query",
            "Mutation",
            "TwinClass",
            "RelationshipType",
            "TwinWhere",
            "TwinSortField",
            "TwinOrderBy",
            "TwinConnection",
            "TwinEdge",
        ]
    )
    defs: dict[str, ClassDef] = {}
    for cls in sorted(ontology.classes.values(), key=lambda c: c.name):
        if cls.name in defs:
            continue  # an ambiguous class name (two DTDL ids): the first one wins
        defs[cls.name] = cls
    has_children = {
        ontology.classes[p].name for c in ontology.classes.values() for p in c.parents if p in ontology.classes
    }
    classes: dict[str, ClassPlan] = {}
    by_object: dict[str, str] = {}
    twin = ClassPlan(
        None,
        "Twin",
        None,
        None,
        "TwinWhere",
        "TwinSortField",
        "TwinOrderBy",
        "TwinConnection",
        "TwinEdge",
        description="Any twin.",
    )
    root_names = set(ROOT_FIELDS)
    root_lists: dict[str, str] = {}
    for name, cls in defs.items():
        base = graphql_name(name)
        interface = names.take(base) if name in has_children else None
        type_name = names.take(f"{base}Twin" if interface else base)
        list_field = plural(_lower_first(base))
        while list_field in root_names:
            list_field += "List"
        root_names.add(list_field)
        plan = ClassPlan(
            cls=name,
            type_name=type_name,
            interface_name=interface,
            list_field=list_field,
            where=names.take(f"{base}Where"),
            sort_field=names.take(f"{base}SortField"),
            order_by=names.take(f"{base}OrderBy"),
            connection=names.take(f"{base}Connection"),
            edge=names.take(f"{base}Edge"),
            description=describe(cls.display_name, cls.description),
        )
        classes[name] = plan
        by_object[type_name] = name
        root_lists[list_field] = name
    connections: dict[tuple[str, str | None], tuple[str, str]] = {}  # (field, node class) -> (connection, edge)

    def connection_for(field_name: str, node_class: str | None) -> tuple[str, str]:
        key = (field_name, node_class)
        if key not in connections:
            base = _upper_first(graphql_name(field_name))
            if any(k[0] == field_name for k in connections):
                base += classes[node_class].type_name if node_class else "Twin"
            connections[key] = (names.take(f"{base}Connection"), names.take(f"{base}Edge"))
        return connections[key]

    rel_types = ontology.relationship_types()
    for name, plan in classes.items():
        cls = defs[name]
        for prop_name, prop in ontology.properties(cls.id).items():
            gname = graphql_name(prop_name)
            if gname in SYSTEM_FIELDS:
                continue
            scalar, is_list = scalar_of(prop.schema)
            plan.properties[gname] = PropertyField(gname, prop, scalar, is_list)
        for owner, renamed in (renames or {}).items():
            if owner not in ontology or not ontology.is_a(cls.id, owner):
                continue
            for former, current in renamed.items():
                field_ = plan.properties.get(graphql_name(current))
                if field_ is not None and graphql_name(former) not in plan.properties:
                    plan.properties[graphql_name(former)] = PropertyField(
                        graphql_name(former), field_.prop, field_.scalar, field_.is_list, f"Renamed to {current}."
                    )
        taken = set(plan.properties) | set(SYSTEM_FIELDS)
        for rel_name, rel in ontology.relationships(cls.id).items():
            gname = graphql_name(rel_name)
            if gname in taken:
                continue
            target = (
                ontology.classes[rel.target].name if rel.target is not None and rel.target in ontology.classes else None
            )
            props = _edge_props([rel])
            conn, edge = connection_for(gname, target)
            plan.relations[gname] = RelationField(gname, rel_name, "out", target, props, conn, edge)
            taken.add(gname)
        for rel_name, declared in sorted(rel_types.items()):
            sources = [
                (owner, rel)
                for owner, rel in declared
                if rel.target is None or (rel.target in ontology.classes and ontology.is_a(cls.id, rel.target))
            ]
            if not sources:
                continue
            inverses = {rel.inverse for _, rel in sources}
            only_inverse = inverses.pop() if len(inverses) == 1 else None
            wanted = graphql_name(only_inverse) if only_inverse is not None else None
            gname = wanted if wanted and wanted not in taken else graphql_name(f"{rel_name}Inverse")
            if gname in taken:
                continue
            node_class = _common_ancestor(ontology, [owner for owner, _ in sources])
            props = _edge_props([rel for _, rel in sources])
            conn, edge = connection_for(gname, node_class)
            plan.relations[gname] = RelationField(gname, rel_name, "in", node_class, props, conn, edge)
            taken.add(gname)
    return SchemaPlan(
        ontology=ontology,
        classes=classes,
        twin=twin,
        by_object=by_object,
        root_lists=root_lists,
    )


def _edge_props(rels: Sequence[RelationshipDef]) -> dict[str, PropertyField]:
    result: dict[str, PropertyField] = {}
    for rel in rels:
        for prop in rel.properties:
            gname = graphql_name(prop.name)
            if gname not in ("cursor", "node") and gname not in result:
                scalar, is_list = scalar_of(prop.schema)
                result[gname] = PropertyField(gname, prop, scalar, is_list)
    return result


def _common_ancestor(ontology: Ontology, class_ids: Sequence[str]) -> str | None:
    common: set[str] | None = None
    for cid in class_ids:
        line = {cid, *ontology.ancestors(cid)}
        common = line if common is None else common & line
    if not common:
        return None
    best = max(common, key=lambda c: (len(ontology.ancestors(c)), c))
    return ontology.classes[best].name
