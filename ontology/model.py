"""The in-memory ontology: classes, properties, relationships and enums, whatever the source (OWL or DTDL)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from ontology.errors import OntologyConflict, OntologyError, UnknownTerm, Violation
from ontology.schema import Schema, check_value

CLASSIFICATIONS = ("Public", "Internal", "Confidential", "PII")
"""Allowed values of a property's classification (twin:classification, DTDL metadata), least to most sensitive."""

DEFAULT_CLASSIFICATION = "Internal"
"""The classification of a property that has none (PropertyDef.classification is None)."""

LangText = tuple[tuple[str, str], ...]
"""Localised text as ((language, text), ...), e.g. (("en", "Employee"),)."""


def text(lang_text: LangText, lang: str = "en") -> str:
    """The text for `lang`, else the first one available, else ''."""
    for code, value in lang_text:
        if code == lang:
            return value
    return lang_text[0][1] if lang_text else ""


@dataclass(frozen=True)
class PropertyDef:
    """A typed attribute of a class (DTDL Property or Telemetry; OWL datatype property)."""

    name: str
    schema: Schema
    kind: str = "property"  # "property" | "telemetry"
    writable: bool = False
    required: bool = False
    classification: str | None = None  # e.g. "PII", "Confidential"; drives governance field rules
    unit: str | None = None
    semantic_types: tuple[str, ...] = ()
    iri: str | None = None
    display_name: LangText = ()
    description: LangText = ()


@dataclass(frozen=True)
class RelationshipDef:
    """A typed link from the owning class to a target class, with multiplicity and its own properties."""

    name: str
    target: str | None = None  # class id; None means any class
    min: int | None = None
    max: int | None = None
    properties: tuple[PropertyDef, ...] = ()
    writable: bool = False
    inverse: str | None = None
    # "transitive", "functional", "symmetric"; and for impact analysis "dependency" (the source depends on the
    # target, e.g. Process requires Machine) or "supports" (the target depends on the source, e.g. Supplier
    # supplies Material).
    characteristics: frozenset[str] = frozenset()
    iri: str | None = None
    display_name: LangText = ()
    description: LangText = ()

    @property
    def transitive(self) -> bool:
        """True when chains of this relationship imply it (partOf, reportsTo)."""
        return "transitive" in self.characteristics

    @property
    def dependency(self) -> bool:
        """True when the source depends on the target: impact analysis follows these edges backwards."""
        return "dependency" in self.characteristics

    @property
    def supports(self) -> bool:
        """True when the target depends on the source: impact analysis follows these edges forwards."""
        return "supports" in self.characteristics

    def property(self, name: str) -> PropertyDef | None:
        """The relationship's own property called `name`, if any."""
        return next((p for p in self.properties if p.name == name), None)


@dataclass(frozen=True)
class CommandDef:
    """A DTDL command: a named operation with an optional request and response payload."""

    name: str
    request: tuple[str, Schema] | None = None
    response: tuple[str, Schema] | None = None
    display_name: LangText = ()
    description: LangText = ()


@dataclass(frozen=True)
class ComponentDef:
    """A DTDL component: a named part whose contents are another interface."""

    name: str
    schema: str  # interface id
    display_name: LangText = ()
    description: LangText = ()


@dataclass(frozen=True)
class ClassDef:
    """A class of twin (OWL class or DTDL interface) with its own (not inherited) contents."""

    id: str
    name: str
    parents: tuple[str, ...] = ()
    properties: tuple[PropertyDef, ...] = ()
    relationships: tuple[RelationshipDef, ...] = ()
    commands: tuple[CommandDef, ...] = ()
    components: tuple[ComponentDef, ...] = ()
    schemas: tuple[Schema, ...] = ()  # named complex schemas declared by this interface
    display_name: LangText = ()
    description: LangText = ()
    semantic_types: tuple[str, ...] = ()
    source: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """The English display name, falling back to the class name."""
        return text(self.display_name) or self.name

    def members(self) -> tuple[PropertyDef | RelationshipDef | CommandDef | ComponentDef, ...]:
        """Everything the class itself defines by name: properties, relationships, commands, components."""
        return (*self.properties, *self.relationships, *self.commands, *self.components)


class Ontology:
    """A set of classes with inheritance, typed properties and relationships; validates twin data."""

    def __init__(
        self,
        classes: Iterable[ClassDef] = (),
        *,
        iri: str | None = None,
        version: str | None = None,
        schemas: Iterable[Schema] = (),
    ) -> None:
        self.iri = iri
        self.version = version
        self._classes: dict[str, ClassDef] = {}
        self._schemas: dict[str, Schema] = {}
        self._memo: dict[tuple[str, str], Any] = {}  # (what, class) -> derived value; cleared on change
        for schema in schemas:
            self.add_schema(schema)
        for cls in classes:
            self.add_class(cls)

    # ----------------------------------------------------------------- building

    def add_class(self, cls: ClassDef) -> None:
        """Add a class; an existing class with the same id must be identical."""
        existing = self._classes.get(cls.id)
        if existing is not None and existing != cls:
            raise OntologyConflict(
                f"class {cls.id} is defined twice, differently",
                [Violation(cls.id, "conflict", f"defined in {existing.source or '?'} and {cls.source or '?'}")],
            )
        self._classes[cls.id] = cls
        for schema in cls.schemas:
            if schema.id:
                self.add_schema(schema)
        self._invalidate()

    def add_schema(self, schema: Schema) -> None:
        """Register a named complex schema (enum/object/map/array) so classes can refer to it."""
        if not schema.id:
            raise OntologyError("a named schema needs an id")
        existing = self._schemas.get(schema.id)
        if existing is not None and existing != schema:
            raise OntologyConflict(f"schema {schema.id} is defined twice, differently")
        self._schemas[schema.id] = schema

    def merge(self, *others: Ontology) -> Ontology:
        """A new ontology holding this one and `others`; identical duplicates are fine, conflicts raise."""
        merged = Ontology(self._classes.values(), iri=self.iri, version=self.version, schemas=self._schemas.values())
        conflicts: list[Violation] = []
        for other in others:
            for schema in other.schemas.values():
                merged.add_schema(schema)
            for cls in other.classes.values():
                try:
                    merged.add_class(cls)
                except OntologyConflict as exc:
                    conflicts += exc.violations
        if conflicts:
            raise OntologyConflict("ontologies conflict", conflicts)
        return merged

    def _invalidate(self) -> None:
        for attr in ("_by_name", "_children", "_ancestors"):
            self.__dict__.pop(attr, None)
        self._memo = {}

    # ----------------------------------------------------------------- lookups

    @property
    def classes(self) -> Mapping[str, ClassDef]:
        """All classes by id."""
        return self._classes

    @property
    def schemas(self) -> Mapping[str, Schema]:
        """Named complex schemas by id."""
        return self._schemas

    def __len__(self) -> int:
        return len(self._classes)

    def __contains__(self, name_or_id: object) -> bool:
        if not isinstance(name_or_id, str):
            return False
        return name_or_id in self._classes or len(self._by_name.get(name_or_id, ())) == 1

    @cached_property
    def _by_name(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for cls in self._classes.values():
            index.setdefault(cls.name, []).append(cls.id)
        return index

    def get(self, name_or_id: str) -> ClassDef:
        """The class with this id, or the only class with this name; UnknownTerm otherwise."""
        cls = self._classes.get(name_or_id)
        if cls is not None:
            return cls
        ids = self._by_name.get(name_or_id, [])
        if len(ids) == 1:
            return self._classes[ids[0]]
        if len(ids) > 1:
            raise UnknownTerm(f"class name {name_or_id!r} is ambiguous: {', '.join(sorted(ids))}; use the id")
        raise UnknownTerm(f"unknown class {name_or_id!r}")

    def schema(self, schema_id: str) -> Schema:
        """The named schema with this id; UnknownTerm otherwise."""
        try:
            return self._schemas[schema_id]
        except KeyError:
            raise UnknownTerm(f"unknown schema {schema_id!r}") from None

    @cached_property
    def _children(self) -> dict[str, list[str]]:
        children: dict[str, list[str]] = {cid: [] for cid in self._classes}
        for cls in self._classes.values():
            for parent in cls.parents:
                children.setdefault(parent, []).append(cls.id)
        return children

    @cached_property
    def _ancestors(self) -> dict[str, tuple[str, ...]]:
        result: dict[str, tuple[str, ...]] = {}

        def visit(cid: str, trail: tuple[str, ...]) -> tuple[str, ...]:
            if cid in result:
                return result[cid]
            if cid in trail:
                cycle = " -> ".join(trail[trail.index(cid) :] + (cid,))
                raise OntologyError("inheritance cycle", [Violation(cid, "extends-cycle", cycle)])
            cls = self._classes.get(cid)
            order: list[str] = []
            for parent in cls.parents if cls else ():
                if parent not in self._classes:
                    continue  # reported by check(); an unknown parent contributes nothing
                for anc in (parent, *visit(parent, trail + (cid,))):
                    if anc not in order:
                        order.append(anc)
            result[cid] = tuple(order)
            return result[cid]

        for cid in self._classes:
            visit(cid, ())
        return result

    def ancestors(self, name_or_id: str) -> tuple[str, ...]:
        """Ids of every superclass (multiple inheritance), nearest first, without the class itself."""
        return self._ancestors[self.get(name_or_id).id]

    def descendants(self, name_or_id: str) -> tuple[str, ...]:
        """Ids of every subclass, transitively, without the class itself."""
        start = self.get(name_or_id).id
        seen: list[str] = []
        stack = list(self._children.get(start, []))
        while stack:
            cid = stack.pop()
            if cid not in seen:
                seen.append(cid)
                stack.extend(self._children.get(cid, []))
        return tuple(seen)

    def is_a(self, name_or_id: str, ancestor: str) -> bool:
        """True when the class is `ancestor` or inherits from it."""
        cls = self.get(name_or_id)
        anc = self.get(ancestor)
        return cls.id == anc.id or anc.id in self._ancestors[cls.id]

    def lineage(self, name_or_id: str) -> tuple[ClassDef, ...]:
        """The class followed by its ancestors, as ClassDefs."""
        cls = self.get(name_or_id)
        return (cls, *(self._classes[a] for a in self._ancestors[cls.id]))

    def labels(self, name_or_id: str) -> tuple[str, ...]:
        """Graph labels for a twin of this class: its name and every ancestor's name."""
        key = ("labels", name_or_id)
        if key not in self._memo:
            self._memo[key] = self._labels(name_or_id)
        return self._memo[key]  # type: ignore[no-any-return]

    def _labels(self, name_or_id: str) -> tuple[str, ...]:
        names: list[str] = []
        for cls in self.lineage(name_or_id):
            if cls.name not in names:
                names.append(cls.name)
        return tuple(names)

    def properties(self, name_or_id: str) -> Mapping[str, PropertyDef]:
        """Every property of the class, inherited ones included (the nearest definition wins)."""
        key = ("properties", name_or_id)
        if key not in self._memo:
            self._memo[key] = MappingProxyType(self._properties(name_or_id))
        return self._memo[key]  # type: ignore[no-any-return]

    def _properties(self, name_or_id: str) -> dict[str, PropertyDef]:
        result: dict[str, PropertyDef] = {}
        for cls in self.lineage(name_or_id):
            for prop in cls.properties:
                result.setdefault(prop.name, prop)
        return result

    def relationships(self, name_or_id: str) -> Mapping[str, RelationshipDef]:
        """Every relationship the class may have as source, inherited ones included."""
        key = ("relationships", name_or_id)
        if key not in self._memo:
            self._memo[key] = MappingProxyType(self._relationships(name_or_id))
        return self._memo[key]  # type: ignore[no-any-return]

    def _relationships(self, name_or_id: str) -> dict[str, RelationshipDef]:
        result: dict[str, RelationshipDef] = {}
        for cls in self.lineage(name_or_id):
            for rel in cls.relationships:
                result.setdefault(rel.name, rel)
        return result

    def relationship_types(self) -> Mapping[str, list[tuple[str, RelationshipDef]]]:
        """Every relationship name with the (class id, definition) pairs that declare it."""
        key = ("relationship_types", "")
        if key not in self._memo:
            self._memo[key] = MappingProxyType(self._relationship_types())
        return self._memo[key]  # type: ignore[no-any-return]

    def _relationship_types(self) -> dict[str, list[tuple[str, RelationshipDef]]]:
        result: dict[str, list[tuple[str, RelationshipDef]]] = {}
        for cls in self._classes.values():
            for rel in cls.relationships:
                result.setdefault(rel.name, []).append((cls.id, rel))
        return result

    # ----------------------------------------------------------------- checks

    def check(self) -> list[Violation]:
        """Every structural problem: unknown parents or targets, inheritance cycles, duplicate names."""
        problems: list[Violation] = []
        for cls in self._classes.values():
            for parent in cls.parents:
                if parent not in self._classes:
                    problems.append(Violation(cls.id, "dangling-extends", f"extends unknown {parent}", cls.source))
            for prop in cls.properties:  # an unknown one would match no field rule and be shown to every role
                if prop.classification is not None and prop.classification not in CLASSIFICATIONS:
                    problems.append(
                        Violation(
                            f"{cls.id}/{prop.name}",
                            "classification",
                            f"unknown classification {prop.classification!r} (use {', '.join(CLASSIFICATIONS)})",
                            cls.source,
                        )
                    )
            for rel in cls.relationships:
                if rel.target and rel.target not in self._classes:
                    problems.append(
                        Violation(
                            f"{cls.id}/{rel.name}", "dangling-target", f"targets unknown {rel.target}", cls.source
                        )
                    )
                if rel.min is not None and rel.max is not None and rel.min > rel.max:
                    problems.append(
                        Violation(f"{cls.id}/{rel.name}", "multiplicity", f"min {rel.min} > max {rel.max}", cls.source)
                    )
        try:
            _ = self._ancestors
        except OntologyError as exc:
            problems += exc.violations
            return problems
        for cid in self._classes:
            seen: dict[str, str] = {}
            for cls in self.lineage(cid):
                for item in cls.members():
                    owner = seen.get(item.name)
                    if owner is not None and owner != cls.id and self._conflicting(item.name, owner, cls.id):
                        problems.append(
                            Violation(
                                f"{cid}/{item.name}",
                                "duplicate-name",
                                f"{item.name!r} is defined by both {owner} and {cls.id}",
                                self._classes[cid].source,
                            )
                        )
                    seen.setdefault(item.name, cls.id)
        return problems

    def _conflicting(self, name: str, first: str, second: str) -> bool:
        """True when two classes of one lineage define the member `name` differently."""
        a, b = (self._member(owner, name) for owner in (first, second))
        return bool(a != b)

    def _member(self, class_id: str, name: str) -> Any:
        cls = self._classes[class_id]
        return next(i for i in cls.members() if i.name == name)

    def validate(self, name_or_id: str, properties: Mapping[str, Any], path: str = "") -> list[Violation]:
        """Every violation of the class's property types and required properties by `properties`."""
        try:
            cls = self.get(name_or_id)
        except UnknownTerm as exc:
            return [Violation(path or str(name_or_id), "unknown-class", str(exc))]
        defs = self.properties(cls.id)
        prefix = f"{path}." if path else ""
        problems: list[Violation] = []
        for key, value in properties.items():
            prop = defs.get(key)
            if value is None:  # removes a value; of a property the class lacks, one a former class left (class change)
                continue
            if prop is None:
                problems.append(Violation(f"{prefix}{key}", "unknown-property", f"{cls.name} has no property {key!r}"))
                continue
            for where, message in check_value(value, prop.schema, f"{prefix}{key}"):
                problems.append(Violation(where, "type", message))
        for prop in defs.values():
            if prop.required and properties.get(prop.name) is None:
                problems.append(Violation(f"{prefix}{prop.name}", "required", f"{cls.name} requires {prop.name!r}"))
        return problems

    def validate_relationship(
        self,
        rel_type: str,
        source_class: str,
        target_class: str,
        properties: Mapping[str, Any] | None = None,
        path: str = "",
    ) -> list[Violation]:
        """Every violation of domain, range and relationship property types by one relationship."""
        where = path or f"{source_class}-[{rel_type}]->{target_class}"
        problems: list[Violation] = []
        try:
            source = self.get(source_class)
        except UnknownTerm as exc:
            return [Violation(where, "unknown-class", str(exc))]
        try:
            target = self.get(target_class)
        except UnknownTerm as exc:
            return [Violation(where, "unknown-class", str(exc))]
        rel = self.relationships(source.id).get(rel_type)
        if rel is None:
            if rel_type in self.relationship_types():
                return [Violation(where, "domain", f"{source.name} may not have relationship {rel_type!r}")]
            return [Violation(where, "unknown-relationship", f"unknown relationship {rel_type!r}")]
        if rel.target and rel.target in self._classes and not self.is_a(target.id, rel.target):
            problems.append(
                Violation(
                    where, "range", f"{rel_type} must point to a {self._classes[rel.target].name}, not a {target.name}"
                )
            )
        for key, value in (properties or {}).items():
            prop = rel.property(key)
            if prop is None:
                problems.append(Violation(f"{where}.{key}", "unknown-property", f"{rel_type} has no property {key!r}"))
            elif value is not None:
                problems += [Violation(w, "type", m) for w, m in check_value(value, prop.schema, f"{where}.{key}")]
        return problems

    def validate_multiplicity(self, rel_type: str, source_class: str, count: int, path: str = "") -> list[Violation]:
        """A violation when a twin of `source_class` would have `count` outgoing `rel_type` links."""
        rel = self.relationships(source_class).get(rel_type)
        if rel is None:
            return []
        where = path or f"{source_class}.{rel_type}"
        if rel.max is not None and count > rel.max:
            return [Violation(where, "multiplicity", f"at most {rel.max} {rel_type} allowed, got {count}")]
        if rel.min is not None and count < rel.min:
            return [Violation(where, "multiplicity", f"at least {rel.min} {rel_type} required, got {count}")]
        return []

    def __repr__(self) -> str:
        return f"<Ontology {self.iri or ''} {len(self._classes)} classes>"
