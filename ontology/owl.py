"""OWL 2 in and out: read Turtle / RDF/XML / JSON-LD / N-Triples into the Ontology model, write any Ontology as OWL.

Reading (`read_owl`, `parse_owl_graph`):

* owl:Class (named) -> ClassDef(id=IRI, name=local name); named rdfs:subClassOf targets -> parents.
* owl:DatatypeProperty with an rdfs:domain (a class or an owl:unionOf of classes) -> a PropertyDef on each
  domain class; the XSD range gives the Schema (string, integer, long, double, boolean, date, dateTime,
  time, duration, bytes; owl:oneOf -> enum; a datatype restriction -> its base type). A property without
  a range is a string. twin:classification -> classification (absent = None, which means "Internal").
  An owl:minCardinality >= 1 (or someValuesFrom / exact cardinality) restriction on the class -> required.
* owl:ObjectProperty with an rdfs:domain -> a RelationshipDef on each domain class. The target is the range
  class; for a union range it is the nearest common superclass of the members (None when they have no
  single nearest one). Types owl:TransitiveProperty etc. and twin:impact values -> characteristics.
  owl:FunctionalProperty -> max 1; cardinality restrictions on the class -> min/max (and onClass /
  allValuesFrom -> target); twin:minLinks / twin:maxLinks on a (transitive) property -> min/max.
  A restriction on a class outside the property's domain gives that class its own, narrowed definition.
* Datatype properties with twin:appliesToRelationship (or named by an object property's
  twin:relationshipProperty) are the properties of that relationship's edges.
* An object property without a domain (e.g. an inverse name such as hasPart) belongs to no class.
* Names: twin:modelName when present, else the IRI's local name. Members are ordered by name unless the
  class carries twin:declarationOrder.

Writing (`write_owl`, `ontology_graph`) is lossless for any Ontology, DTDL-sourced ones included: things
OWL has no construct for (commands, components, complex/named schemas, enum display names, member order,
non-IRI ids) travel as twin: annotation properties whose values are JSON text, so reading the output gives
back an equal model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

import rdflib
from rdflib import BNode, Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import OWL, RDF, RDFS, XSD
from rdflib.term import Node

from ontology.errors import OntologyError, Violation
from ontology.formats import FORMATS_BY_SUFFIX
from ontology.model import ClassDef, CommandDef, ComponentDef, LangText, Ontology, PropertyDef, RelationshipDef
from ontology.schema import EnumValue, Schema
from ontology.schema_codec import enum_value_kind, lang_from_json, lang_to_json, schema_from_json, schema_to_json

TWIN = rdflib.Namespace("https://enterprise-twin.dev/ontology/core#")
"""The core ontology's namespace; also holds the annotation properties the writer uses."""

CORE_ONTOLOGY_IRI = "https://enterprise-twin.dev/ontology/core"
"""IRI of the core ontology (ontology/core.ttl)."""


def core_graph() -> rdflib.Graph:
    """A fresh RDF graph of the packaged core.ttl (callers may modify it): what an owl:imports of the core reads."""
    resource = files("ontology").joinpath("core.ttl")
    return rdflib.Graph().parse(data=resource.read_text(encoding="utf-8"), format="turtle")


_WRITE_FORMATS = {
    "turtle": "turtle",
    "ttl": "turtle",
    "json-ld": "json-ld",
    "jsonld": "json-ld",
    "xml": "xml",
    "rdfxml": "xml",
    "rdf/xml": "xml",
    "nt": "nt",
    "ntriples": "nt",
}

_XSD_KINDS: dict[URIRef, str] = {
    XSD.string: "string",
    XSD.normalizedString: "string",
    XSD.token: "string",
    XSD.language: "string",
    XSD.Name: "string",
    XSD.NCName: "string",
    XSD.anyURI: "string",
    RDF.langString: "string",
    RDF.PlainLiteral: "string",
    RDFS.Literal: "string",
    XSD.integer: "integer",
    XSD.int: "integer",
    XSD.long: "long",
    XSD.short: "short",
    XSD.byte: "byte",
    XSD.nonNegativeInteger: "long",
    XSD.positiveInteger: "long",
    XSD.nonPositiveInteger: "long",
    XSD.negativeInteger: "long",
    XSD.unsignedByte: "unsignedByte",
    XSD.unsignedShort: "unsignedShort",
    XSD.unsignedInt: "unsignedInteger",
    XSD.unsignedLong: "unsignedLong",
    XSD.double: "double",
    XSD.float: "double",
    XSD.decimal: "double",
    XSD.boolean: "boolean",
    XSD.date: "date",
    XSD.dateTime: "dateTime",
    XSD.dateTimeStamp: "dateTime",
    XSD.time: "time",
    XSD.duration: "duration",
    XSD.dayTimeDuration: "duration",
    XSD.yearMonthDuration: "duration",
    XSD.base64Binary: "bytes",
    XSD.hexBinary: "bytes",
}
KIND_XSD: dict[str, URIRef] = {
    # the XSD datatype of each primitive schema kind (OWL ranges, SHACL sh:datatype, typed literals)
    "string": XSD.string,
    "integer": XSD.integer,
    "long": XSD.long,
    "short": XSD.short,
    "byte": XSD.byte,
    "unsignedByte": XSD.unsignedByte,
    "unsignedShort": XSD.unsignedShort,
    "unsignedInteger": XSD.unsignedInt,
    "unsignedLong": XSD.unsignedLong,
    "double": XSD.double,
    "float": XSD.float,
    "decimal": XSD.decimal,
    "boolean": XSD.boolean,
    "date": XSD.date,
    "dateTime": XSD.dateTime,
    "time": XSD.time,
    "duration": XSD.duration,
    "bytes": XSD.base64Binary,
}
_CHARACTERISTIC_TYPES: dict[URIRef, str] = {
    OWL.TransitiveProperty: "transitive",
    OWL.FunctionalProperty: "functional",
    OWL.InverseFunctionalProperty: "inverseFunctional",
    OWL.SymmetricProperty: "symmetric",
    OWL.AsymmetricProperty: "asymmetric",
    OWL.ReflexiveProperty: "reflexive",
    OWL.IrreflexiveProperty: "irreflexive",
}
_TYPE_OF_CHARACTERISTIC = {name: iri for iri, name in _CHARACTERISTIC_TYPES.items()}
IMPACT_VALUES = ("dependency", "supports")
"""Values of twin:impact, which become RelationshipDef characteristics."""

# Annotation properties of the writer's lossless encoding (documented in the module docstring).
_ANNOTATIONS = (
    "classification", "impact", "relationshipProperty", "appliesToRelationship", "modelName", "modelId",
    "unitOfMeasure", "maxLinks", "minLinks", "schema", "schemas", "commands", "components", "semanticTypes",
    "declarationOrder", "writable", "kind", "characteristic", "mintedIri",
)  # fmt: skip
_ABSOLUTE_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]*$")
_MINT_PREFIX = "urn:enterprise-twin:term:"


# ===================================================================================================== names


def local_name(iri: str) -> str:
    """The last segment of an IRI: after '#', else after '/', else after ':'."""
    for sep in ("#", "/", ":"):
        if sep in iri:
            tail = iri.rsplit(sep, 1)[1]
            if tail:
                return tail
    return iri


def property_iri(owner: ClassDef, prop: PropertyDef) -> str:
    """The IRI of a class's property in OWL and RDF data: its own IRI, else one minted from the class id."""
    return prop.iri or _member_iri(owner.id, prop.name)


def relationship_iri(owner: ClassDef, rel: RelationshipDef) -> str:
    """The IRI of a class's relationship in OWL and RDF data: its own IRI, else one minted from the class id."""
    return rel.iri or _member_iri(owner.id, rel.name)


def edge_property_iri(rel_iri: str, prop: PropertyDef) -> str:
    """The IRI of a property carried by a relationship's edges."""
    return prop.iri or f"{rel_iri}-{prop.name}"


def _member_iri(class_id: str, name: str) -> str:
    return f"{class_id}_{name}" if "#" in class_id else f"{class_id}#{name}"


def _sibling_iri(iri: str, name: str) -> str:
    for sep in ("#", "/", ":"):
        if sep in iri and iri.rsplit(sep, 1)[1]:
            return iri.rsplit(sep, 1)[0] + sep + name
    return name


def rdf_term(model_id: str) -> URIRef:
    """The RDF IRI for a model id: itself when it is an absolute IRI, else a urn minted from it."""
    if _ABSOLUTE_IRI.match(model_id):
        return URIRef(model_id)
    return URIRef(_MINT_PREFIX + quote(model_id, safe=""))


# ===================================================================================================== reading


def read_owl(source: Path | str, format: str | None = None) -> Ontology:
    """Read an OWL file (Turtle, RDF/XML, JSON-LD, N-Triples; format guessed from the extension)."""
    path = Path(source)
    if not path.is_file():
        raise OntologyError(f"{path}: no such OWL file")
    fmt = format or FORMATS_BY_SUFFIX.get(path.suffix.lower()) or rdflib.util.guess_format(str(path))
    if fmt is None:
        raise OntologyError(
            f"{path}: cannot tell the RDF format from the extension {path.suffix!r}; pass format= "
            f"(one of {', '.join(sorted(set(FORMATS_BY_SUFFIX.values())))})"
        )
    graph = rdflib.Graph()
    try:
        graph.parse(path, format=fmt)
    except Exception as exc:  # rdflib raises parser-specific exceptions (BadSyntax, SAXParseException, ...)
        raise OntologyError(f"{path}: not valid {fmt}: {exc}") from exc
    return parse_owl_graph(graph, source=str(path))


def parse_owl_graph(graph: rdflib.Graph, source: str = "") -> Ontology:
    """Map an RDF graph holding an OWL ontology onto the in-memory Ontology model.

    owl:imports of the core ontology (its IRI or version IRI) are resolved from the packaged core.ttl, so an
    extension may subclass core classes; other imports are not followed.
    """
    imports = {str(o) for o in graph.objects(None, OWL.imports)}
    if imports & {CORE_ONTOLOGY_IRI, f"{CORE_ONTOLOGY_IRI}/1.0.0"}:
        graph = graph + core_graph()
    return _OwlReader(graph, source or "<graph>").read()


@dataclass
class _Restriction:
    min: int | None = None
    max: int | None = None
    target: str | None = None

    def narrow(self, other: _Restriction) -> None:
        """Combine with another restriction on the same class and property (the tighter bound wins)."""
        if other.min is not None:
            self.min = other.min if self.min is None else max(self.min, other.min)
        if other.max is not None:
            self.max = other.max if self.max is None else min(self.max, other.max)
        self.target = other.target or self.target


class _OwlReader:
    """One pass over an RDF graph, collecting every problem before raising."""

    def __init__(self, graph: rdflib.Graph, source: str) -> None:
        self.g = graph
        self.source = source
        self.problems: list[Violation] = []
        self.classes: set[URIRef] = {
            s
            for kind in (OWL.Class, RDFS.Class)
            for s in graph.subjects(RDF.type, kind)
            if isinstance(s, URIRef) and s not in (OWL.Thing, OWL.Nothing)
        }

    def problem(self, where: Any, rule: str, message: str) -> None:
        self.problems.append(Violation(str(where), rule, message, self.source))

    # ----------------------------------------------------------------- small readers

    def name(self, node: URIRef) -> str:
        value = self.g.value(node, TWIN.modelName)
        return str(value) if value is not None else local_name(str(node))

    def model_id(self, node: URIRef) -> str:
        value = self.g.value(node, TWIN.modelId)
        return str(value) if value is not None else str(node)

    def term_iri(self, node: URIRef) -> str | None:
        """A property's own IRI for the model; None when the writer minted it."""
        return None if self.g.value(node, TWIN.mintedIri) is not None else self.model_id(node)

    def lang_text(self, node: URIRef, predicate: URIRef) -> LangText:
        found: dict[str, str] = {}
        for lit in self.g.objects(node, predicate):
            if isinstance(lit, Literal):
                found.setdefault(lit.language or "en", str(lit))
        return tuple(sorted(found.items(), key=lambda kv: (kv[0] != "en", kv[0])))

    def json(self, node: Any, predicate: URIRef) -> Any:
        value = self.g.value(node, predicate)
        if value is None:
            return None
        try:
            return json.loads(str(value))
        except ValueError as exc:
            self.problem(node, "annotation", f"{_short(predicate)} is not valid JSON: {exc}")
            return None

    def members(self, node: Any) -> list[Any]:
        """The members of an RDF list (owl:unionOf, owl:oneOf)."""
        return list(Collection(self.g, node))

    def class_set(self, node: Any, where: URIRef, what: str) -> list[URIRef]:
        """Named classes of a domain or range: one class, or an owl:unionOf of classes."""
        if node is None or node == OWL.Thing:
            return []
        if isinstance(node, URIRef):
            if node not in self.classes:
                self.problem(where, f"dangling-{what}", f"{what} {node} is not a class defined in this ontology")
                return []
            return [node]
        union = self.g.value(node, OWL.unionOf)
        if union is None:
            self.problem(where, "unsupported", f"{what} must be a named class or an owl:unionOf of classes")
            return []
        result: list[URIRef] = []
        for member in self.members(union):
            result += self.class_set(member, where, what)
        return result

    # ----------------------------------------------------------------- schemas

    def schema(self, prop: URIRef) -> Schema:
        encoded = self.json(prop, TWIN.schema)
        if encoded is not None:
            try:
                return schema_from_json(encoded)
            except (KeyError, TypeError, ValueError) as exc:
                self.problem(prop, "annotation", f"twin:schema does not describe a schema: {exc}")
        ranges = list(self.g.objects(prop, RDFS.range))
        if not ranges:
            return Schema(kind="string")
        return self.range_schema(ranges[0], prop, set())

    def schemas(self, node: Any) -> list[Schema]:
        """The named schemas a twin:schemas annotation of `node` holds (an annotation problem for each bad one)."""
        found = []
        for encoded in self.json(node, TWIN.schemas) or ():
            try:
                found.append(schema_from_json(encoded))
            except (KeyError, TypeError, ValueError) as exc:
                self.problem(node, "annotation", f"twin:schemas holds something that is not a schema: {exc}")
        return found

    def range_schema(self, node: Any, prop: URIRef, seen: set[Any]) -> Schema:
        if node in seen:
            self.problem(prop, "range", f"datatype {node} is defined in terms of itself")
            return Schema(kind="string")
        seen = seen | {node}
        if isinstance(node, URIRef):
            if node in _XSD_KINDS:
                return Schema(kind=_XSD_KINDS[node])
            definition = self.g.value(node, OWL.equivalentClass)
            if definition is not None:
                schema = self.range_schema(definition, prop, seen)
                return replace(schema, id=str(node)) if schema.kind == "enum" else schema
            self.problem(prop, "range", f"range {node} is not a known XSD datatype")
            return Schema(kind="string")
        one_of = self.g.value(node, OWL.oneOf)
        if one_of is not None:
            values = [lit.toPython() for lit in self.members(one_of) if isinstance(lit, Literal)]
            kind = enum_value_kind(values)
            members = tuple(EnumValue(name=str(v), value=v if kind == "integer" else str(v)) for v in values)
            return Schema(kind="enum", enum_value_kind=kind, enum_values=members)
        base = self.g.value(node, OWL.onDatatype)
        if base is not None:
            return self.range_schema(base, prop, seen)
        union = self.g.value(node, OWL.unionOf)
        if union is not None:
            kinds = {self.range_schema(m, prop, seen).kind for m in self.members(union)}
            if len(kinds) == 1:
                return Schema(kind=kinds.pop())
            self.problem(prop, "range", f"a union of different datatypes ({', '.join(sorted(kinds))}) has no schema")
            return Schema(kind="string")
        self.problem(prop, "range", "range is neither an XSD datatype, owl:oneOf, a datatype restriction nor a union")
        return Schema(kind="string")

    # ----------------------------------------------------------------- restrictions

    def restrictions(self) -> dict[tuple[URIRef, URIRef], _Restriction]:
        """Cardinality/value restrictions by (class, property)."""
        found: dict[tuple[URIRef, URIRef], _Restriction] = {}
        for cls in self.classes:
            for node in self.g.objects(cls, RDFS.subClassOf):
                if isinstance(node, URIRef):
                    continue
                prop = self.g.value(node, OWL.onProperty)
                if not isinstance(prop, URIRef):
                    continue
                found.setdefault((cls, prop), _Restriction()).narrow(self.restriction(node))
        return found

    def restriction(self, node: Any) -> _Restriction:
        def number(*predicates: URIRef) -> int | None:
            for predicate in predicates:
                value = self.g.value(node, predicate)
                if value is not None:
                    return int(value)
            return None

        result = _Restriction()
        exact = number(OWL.cardinality, OWL.qualifiedCardinality)
        result.min = exact if exact is not None else number(OWL.minCardinality, OWL.minQualifiedCardinality)
        result.max = exact if exact is not None else number(OWL.maxCardinality, OWL.maxQualifiedCardinality)
        some = self.g.value(node, OWL.someValuesFrom)
        if some is not None:
            result.min = max(result.min or 0, 1)
        for predicate in (OWL.onClass, OWL.allValuesFrom, OWL.someValuesFrom):
            target = self.g.value(node, predicate)
            if isinstance(target, URIRef) and target in self.classes:
                result.target = self.model_id(target)
                break
        return result

    # ----------------------------------------------------------------- properties

    def datatype_properties(self) -> Iterator[URIRef]:
        yield from sorted(s for s in self.g.subjects(RDF.type, OWL.DatatypeProperty) if isinstance(s, URIRef))

    def object_properties(self) -> Iterator[URIRef]:
        """Declared object properties, and properties typed only by a characteristic (not datatype ones)."""
        other = {s for k in (OWL.DatatypeProperty, OWL.AnnotationProperty) for s in self.g.subjects(RDF.type, k)}
        kinds = (OWL.ObjectProperty, *_CHARACTERISTIC_TYPES)
        found = {s for k in kinds for s in self.g.subjects(RDF.type, k) if isinstance(s, URIRef)}
        yield from sorted(s for s in found if s not in other or (s, RDF.type, OWL.ObjectProperty) in self.g)

    def property_def(self, prop: URIRef) -> PropertyDef:
        classification = self.g.value(prop, TWIN.classification)
        unit = self.g.value(prop, TWIN.unitOfMeasure)
        kind = self.g.value(prop, TWIN.kind)
        return PropertyDef(
            name=self.name(prop),
            schema=self.schema(prop),
            kind=str(kind) if kind is not None else "property",
            writable=_flag(self.g.value(prop, TWIN.writable)),
            classification=str(classification) if classification is not None else None,
            unit=str(unit) if unit is not None else None,
            semantic_types=tuple(self.json(prop, TWIN.semanticTypes) or ()),
            iri=self.term_iri(prop),
            display_name=self.lang_text(prop, RDFS.label),
            description=self.lang_text(prop, RDFS.comment),
        )

    def edge_properties(self) -> dict[URIRef, list[URIRef]]:
        """Datatype properties carried by each object property's edges."""
        result: dict[URIRef, set[URIRef]] = {}
        for dp, op in self.g.subject_objects(TWIN.appliesToRelationship):
            if isinstance(dp, URIRef) and isinstance(op, URIRef):
                result.setdefault(op, set()).add(dp)
        for op, dp in self.g.subject_objects(TWIN.relationshipProperty):
            if isinstance(dp, URIRef) and isinstance(op, URIRef):
                result.setdefault(op, set()).add(dp)
        return {op: sorted(dps) for op, dps in result.items()}

    def inverse_name(self, prop: URIRef) -> str | None:
        candidates = {o for o in self.g.objects(prop, OWL.inverseOf) if isinstance(o, URIRef)}
        candidates |= {s for s in self.g.subjects(OWL.inverseOf, prop) if isinstance(s, URIRef)}
        if len(candidates) > 1:
            candidates.discard(prop)
        return self.name(sorted(candidates)[0]) if candidates else None

    def characteristics(self, prop: URIRef) -> frozenset[str]:
        found = {name for iri, name in _CHARACTERISTIC_TYPES.items() if (prop, RDF.type, iri) in self.g}
        found |= {str(v) for v in self.g.objects(prop, TWIN.impact)}
        found |= {str(v) for v in self.g.objects(prop, TWIN.characteristic)}
        return frozenset(found)

    # ----------------------------------------------------------------- hierarchy

    def nearest_common_superclass(self, members: list[URIRef], parents: dict[URIRef, list[URIRef]]) -> str | None:
        def up(cls: URIRef) -> set[URIRef]:
            seen: set[URIRef] = set()
            stack = [cls]
            while stack:
                current = stack.pop()
                if current not in seen:
                    seen.add(current)
                    stack.extend(parents.get(current, []))
            return seen

        common = set.intersection(*(up(m) for m in members))
        nearest = [c for c in common if not any(o != c and c in up(o) for o in common)]
        return self.model_id(nearest[0]) if len(nearest) == 1 else None

    # ----------------------------------------------------------------- assembly

    def read(self) -> Ontology:
        g = self.g
        ontology_node = next(
            iter(sorted(g.subjects(RDF.type, OWL.Ontology), key=lambda n: (isinstance(n, BNode), str(n)))), None
        )
        parents: dict[URIRef, list[URIRef]] = {}
        for cls in sorted(self.classes):
            parents[cls] = []
            for parent in g.objects(cls, RDFS.subClassOf):
                if not isinstance(parent, URIRef) or parent == OWL.Thing:
                    continue
                if parent not in self.classes:
                    self.problem(
                        cls,
                        "dangling-subclassof",
                        f"rdfs:subClassOf names {parent}, which is not a class defined here "
                        "(owl:imports are followed only for the core ontology)",
                    )
                    continue
                parents[cls].append(parent)
        restrictions = self.restrictions()

        props: dict[URIRef, list[PropertyDef]] = {c: [] for c in self.classes}
        for dp in self.datatype_properties():
            definition = self.property_def(dp)
            domain = self.class_set(g.value(dp, RDFS.domain), dp, "domain")
            restricted = [c for (c, p) in restrictions if p == dp]
            for cls in dict.fromkeys([*domain, *restricted]):
                rule = restrictions.get((cls, dp), _Restriction())
                props[cls].append(replace(definition, required=bool(rule.min and rule.min >= 1)))

        edge_props = self.edge_properties()
        rels: dict[URIRef, list[RelationshipDef]] = {c: [] for c in self.classes}
        for op in self.object_properties():
            domain = self.class_set(g.value(op, RDFS.domain), op, "domain")
            restricted = [c for (c, p) in restrictions if p == op]
            if not domain and not restricted:
                continue
            range_classes = self.class_set(g.value(op, RDFS.range), op, "range")
            target: str | None
            if len(range_classes) == 1:
                target = self.model_id(range_classes[0])
            elif range_classes:
                target = self.nearest_common_superclass(range_classes, parents)
            else:
                target = None
            characteristics = self.characteristics(op)
            min_links = g.value(op, TWIN.minLinks)
            max_links = g.value(op, TWIN.maxLinks)
            base = RelationshipDef(
                name=self.name(op),
                target=target,
                min=_count(min_links),
                max=1 if "functional" in characteristics else _count(max_links),
                properties=tuple(self.property_def(dp) for dp in edge_props.get(op, [])),
                writable=_flag(g.value(op, TWIN.writable)),
                inverse=self.inverse_name(op),
                characteristics=characteristics,
                iri=self.term_iri(op),
                display_name=self.lang_text(op, RDFS.label),
                description=self.lang_text(op, RDFS.comment),
            )
            for cls in dict.fromkeys([*domain, *restricted]):
                link_rule = restrictions.get((cls, op))
                if link_rule is None:
                    rels[cls].append(base)
                    continue
                upper = [m for m in (base.max, link_rule.max) if m is not None]
                rels[cls].append(
                    replace(
                        base,
                        target=link_rule.target or base.target,
                        min=link_rule.min if link_rule.min is not None else base.min,
                        max=min(upper) if upper else None,
                    )
                )

        classes = [self.class_def(cls, parents[cls], props[cls], rels[cls]) for cls in sorted(self.classes)]
        schemas = self.schemas(ontology_node) if ontology_node else []
        if self.problems:
            raise OntologyError(f"{self.source}: the OWL ontology has {len(self.problems)} problem(s)", self.problems)
        version = g.value(ontology_node, OWL.versionInfo) if ontology_node is not None else None
        try:
            return Ontology(
                classes,
                iri=str(ontology_node) if isinstance(ontology_node, URIRef) else None,
                version=str(version) if version is not None else None,
                schemas=schemas,
            )
        except OntologyError as exc:
            raise OntologyError(f"{self.source}: {exc}", exc.violations) from exc

    def class_def(
        self, cls: URIRef, parents: list[URIRef], props: list[PropertyDef], rels: list[RelationshipDef]
    ) -> ClassDef:
        order = self.json(cls, TWIN.declarationOrder) or {}
        parent_ids = _ordered([self.model_id(p) for p in parents], lambda p: p, order.get("parents"))
        return ClassDef(
            id=self.model_id(cls),
            name=self.name(cls),
            parents=tuple(parent_ids),
            properties=tuple(_ordered(props, lambda p: p.name, order.get("properties"))),
            relationships=tuple(_ordered(rels, lambda r: r.name, order.get("relationships"))),
            commands=tuple(command_from_json(c) for c in self.json(cls, TWIN.commands) or ()),
            components=tuple(component_from_json(c) for c in self.json(cls, TWIN.components) or ()),
            schemas=tuple(self.schemas(cls)),
            display_name=self.lang_text(cls, RDFS.label),
            description=self.lang_text(cls, RDFS.comment),
            semantic_types=tuple(self.json(cls, TWIN.semanticTypes) or ()),
            source=self.source,
        )


def _flag(node: Node | None) -> bool:
    """A boolean literal's value (absent or not a literal: false)."""
    return bool(node.toPython()) if isinstance(node, Literal) else False


def _count(node: Node | None) -> int | None:
    """An integer literal's value (absent: None)."""
    return int(node.toPython()) if isinstance(node, Literal) else None


def _ordered(items: list[Any], key: Any, order: list[str] | None) -> list[Any]:
    """Items sorted by key, or in the recorded declaration order (unlisted ones last, by key)."""
    rank = {k: i for i, k in enumerate(order or [])}
    return sorted(items, key=lambda item: (rank.get(key(item), len(rank)), key(item)))


def _short(iri: Any) -> str:
    return f"twin:{iri[len(str(TWIN)) :]}" if str(iri).startswith(str(TWIN)) else str(iri)


# ===================================================================================================== JSON codecs


def _payload_json(payload: tuple[str, Schema] | None) -> Any:
    return None if payload is None else {"name": payload[0], "schema": schema_to_json(payload[1])}


def _payload_from(data: Any) -> tuple[str, Schema] | None:
    return None if data is None else (data["name"], schema_from_json(data["schema"]))


def command_to_json(command: CommandDef) -> dict[str, Any]:
    """A JSON-ready description of a DTDL command."""
    return {
        "name": command.name,
        "request": _payload_json(command.request),
        "response": _payload_json(command.response),
        "displayName": lang_to_json(command.display_name),
        "description": lang_to_json(command.description),
    }


def command_from_json(data: dict[str, Any]) -> CommandDef:
    """The CommandDef described by `command_to_json` output."""
    return CommandDef(
        name=data["name"],
        request=_payload_from(data.get("request")),
        response=_payload_from(data.get("response")),
        display_name=lang_from_json(data.get("displayName")),
        description=lang_from_json(data.get("description")),
    )


def component_to_json(component: ComponentDef) -> dict[str, Any]:
    """A JSON-ready description of a DTDL component."""
    return {
        "name": component.name,
        "schema": component.schema,
        "displayName": lang_to_json(component.display_name),
        "description": lang_to_json(component.description),
    }


def component_from_json(data: dict[str, Any]) -> ComponentDef:
    """The ComponentDef described by `component_to_json` output."""
    return ComponentDef(
        name=data["name"],
        schema=data["schema"],
        display_name=lang_from_json(data.get("displayName")),
        description=lang_from_json(data.get("description")),
    )


# ===================================================================================================== writing


def write_owl(ontology: Ontology, format: str = "turtle") -> str:
    """Serialise any Ontology as OWL 2 ("turtle", "json-ld", "xml" or "nt"); reading it back gives an equal model."""
    rdf_format = _WRITE_FORMATS.get(format.lower())
    if rdf_format is None:
        raise OntologyError(f"cannot write OWL as {format!r}; use one of {', '.join(sorted(_WRITE_FORMATS))}")
    return ontology_graph(ontology).serialize(format=rdf_format)


def ontology_graph(ontology: Ontology) -> rdflib.Graph:
    """The OWL 2 RDF graph of an Ontology (what `write_owl` serialises)."""
    return _OwlWriter(ontology).graph()


def _json_literal(value: Any) -> Literal:
    return Literal(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _reads_back_exactly(schema: Schema) -> bool:
    """True when the XSD range written for `schema` reads back as an equal Schema, so no twin:schema is needed."""
    if schema.display_name or schema.description:
        return False
    if schema.kind in KIND_XSD:
        return _XSD_KINDS[KIND_XSD[schema.kind]] == schema.kind
    if schema.kind != "enum" or schema.id or not schema.enum_values:
        return False
    values = [v.value for v in schema.enum_values]
    expected_kind = enum_value_kind(values)
    integer = expected_kind == "integer"
    return (
        schema.enum_value_kind == expected_kind
        and (integer or all(isinstance(v, str) for v in values))
        and all(v.name == str(v.value) and not v.display_name and not v.description for v in schema.enum_values)
        and len(set(values)) == len(values)
    )


class _OwlWriter:
    """Builds the OWL graph of one Ontology."""

    def __init__(self, ontology: Ontology) -> None:
        self.ontology = ontology
        self.g = rdflib.Graph()
        for prefix, ns in (("twin", TWIN), ("owl", OWL), ("rdfs", RDFS), ("xsd", XSD)):
            self.g.bind(prefix, ns)

    def graph(self) -> rdflib.Graph:
        g, onto = self.g, self.ontology
        head: URIRef | BNode = rdf_term(onto.iri) if onto.iri else BNode()
        g.add((head, RDF.type, OWL.Ontology))
        if onto.version:
            g.add((head, OWL.versionInfo, Literal(onto.version)))
            if onto.iri:
                g.add((head, OWL.versionIRI, URIRef(f"{onto.iri}/{onto.version}")))
        declared = {s.id for cls in onto.classes.values() for s in cls.schemas}
        free = [schema_to_json(s) for sid, s in sorted(onto.schemas.items()) if sid not in declared]
        if free:
            g.add((head, TWIN.schemas, _json_literal(free)))
        for name in _ANNOTATIONS:
            g.add((TWIN[name], RDF.type, OWL.AnnotationProperty))
        for cls in onto.classes.values():
            self.write_class(cls)
        self.write_properties()
        self.write_relationships()
        return g

    def names(self, node: URIRef, model_id: str | None, name: str) -> None:
        """Record the model id (None: minted by the writer) and name when the IRI alone would not give them back."""
        if model_id is None:
            self.g.add((node, TWIN.mintedIri, Literal(True)))
        elif str(node) != model_id:
            self.g.add((node, TWIN.modelId, Literal(model_id)))
        if local_name(str(node)) != name:
            self.g.add((node, TWIN.modelName, Literal(name)))

    def texts(self, node: URIRef, display_name: LangText, description: LangText) -> None:
        for lang, value in display_name:
            self.g.add((node, RDFS.label, Literal(value, lang=lang)))
        for lang, value in description:
            self.g.add((node, RDFS.comment, Literal(value, lang=lang)))

    def write_class(self, cls: ClassDef) -> None:
        g, node = self.g, rdf_term(cls.id)
        g.add((node, RDF.type, OWL.Class))
        self.names(node, cls.id, cls.name)
        self.texts(node, cls.display_name, cls.description)
        for parent in cls.parents:
            g.add((node, RDFS.subClassOf, rdf_term(parent)))
        if cls.semantic_types:
            g.add((node, TWIN.semanticTypes, _json_literal(list(cls.semantic_types))))
        if cls.commands:
            g.add((node, TWIN.commands, _json_literal([command_to_json(c) for c in cls.commands])))
        if cls.components:
            g.add((node, TWIN.components, _json_literal([component_to_json(c) for c in cls.components])))
        if cls.schemas:
            g.add((node, TWIN.schemas, _json_literal([schema_to_json(s) for s in cls.schemas])))
        order: dict[str, list[str]] = {}
        for key, values in (
            ("parents", list(cls.parents)),
            ("properties", [p.name for p in cls.properties]),
            ("relationships", [r.name for r in cls.relationships]),
        ):
            if values != sorted(values):
                order[key] = values
        if order:
            g.add((node, TWIN.declarationOrder, _json_literal(order)))

    def restriction(self, cls: ClassDef, prop: URIRef, **facts: Any) -> None:
        node = BNode()
        self.g.add((rdf_term(cls.id), RDFS.subClassOf, node))
        self.g.add((node, RDF.type, OWL.Restriction))
        self.g.add((node, OWL.onProperty, prop))
        for predicate, value in facts.items():
            obj = value if isinstance(value, URIRef) else Literal(value, datatype=XSD.nonNegativeInteger)
            self.g.add((node, OWL[predicate], obj))

    def domain(self, node: URIRef, owners: list[ClassDef]) -> None:
        if len(owners) == 1:
            self.g.add((node, RDFS.domain, rdf_term(owners[0].id)))
        else:
            self.g.add((node, RDFS.domain, self.union([rdf_term(c.id) for c in owners])))

    def union(self, members: list[URIRef]) -> BNode:
        node, items = BNode(), BNode()
        Collection(self.g, items, list[Node](members))
        self.g.add((node, RDF.type, OWL.Class))
        self.g.add((node, OWL.unionOf, items))
        return node

    def datatype_property(self, node: URIRef, prop: PropertyDef) -> None:
        """The class-independent triples of a datatype property."""
        g = self.g
        g.add((node, RDF.type, OWL.DatatypeProperty))
        self.names(node, prop.iri, prop.name)
        self.texts(node, prop.display_name, prop.description)
        schema = prop.schema
        if schema.kind == "enum" and _reads_back_exactly(schema):
            datatype, items = BNode(), BNode()
            Collection(g, items, [Literal(v.value) for v in schema.enum_values])
            g.add((datatype, RDF.type, RDFS.Datatype))
            g.add((datatype, OWL.oneOf, items))
            g.add((node, RDFS.range, datatype))
        else:
            g.add((node, RDFS.range, KIND_XSD.get(schema.kind, XSD.string)))
            if not _reads_back_exactly(schema):
                g.add((node, TWIN.schema, _json_literal(schema_to_json(schema))))
        if prop.classification:
            g.add((node, TWIN.classification, Literal(prop.classification)))
        if prop.unit:
            g.add((node, TWIN.unitOfMeasure, Literal(prop.unit)))
        if prop.kind != "property":
            g.add((node, TWIN.kind, Literal(prop.kind)))
        if prop.writable:
            g.add((node, TWIN.writable, Literal(True)))
        if prop.semantic_types:
            g.add((node, TWIN.semanticTypes, _json_literal(list(prop.semantic_types))))

    def write_properties(self) -> None:
        groups: dict[str, list[tuple[ClassDef, PropertyDef]]] = {}
        for cls in self.ontology.classes.values():
            for prop in cls.properties:
                groups.setdefault(property_iri(cls, prop), []).append((cls, prop))
        for iri, members in groups.items():
            shared = {replace(p, required=False) for _, p in members}
            if len(shared) > 1:
                owners = ", ".join(c.id for c, _ in members)
                raise OntologyError(
                    f"property {iri} is defined differently by {owners}; OWL needs one definition per IRI"
                )
            node = rdf_term(iri)
            self.datatype_property(node, members[0][1])
            self.domain(node, [c for c, _ in members])
            for cls, prop in members:
                if prop.required:
                    self.restriction(cls, node, minCardinality=1)

    def write_relationships(self) -> None:
        g = self.g
        groups: dict[str, list[tuple[ClassDef, RelationshipDef]]] = {}
        for cls in self.ontology.classes.values():
            for rel in cls.relationships:
                groups.setdefault(relationship_iri(cls, rel), []).append((cls, rel))
        for iri, members in groups.items():
            shared = {replace(r, target=None, min=None, max=None) for _, r in members}
            if len(shared) > 1:
                owners = ", ".join(c.id for c, _ in members)
                raise OntologyError(
                    f"relationship {iri} is defined differently by {owners}; OWL needs one definition per IRI"
                )
            rel = members[0][1]
            node = rdf_term(iri)
            g.add((node, RDF.type, OWL.ObjectProperty))
            self.names(node, rel.iri, rel.name)
            self.texts(node, rel.display_name, rel.description)
            for characteristic in sorted(rel.characteristics):
                if characteristic in _TYPE_OF_CHARACTERISTIC:
                    g.add((node, RDF.type, _TYPE_OF_CHARACTERISTIC[characteristic]))
                elif characteristic in IMPACT_VALUES:
                    g.add((node, TWIN.impact, Literal(characteristic)))
                else:
                    g.add((node, TWIN.characteristic, Literal(characteristic)))
            if rel.writable:
                g.add((node, TWIN.writable, Literal(True)))
            if rel.inverse:
                inverse = URIRef(_sibling_iri(str(node), rel.inverse))
                g.add((inverse, RDF.type, OWL.ObjectProperty))
                g.add((inverse, OWL.inverseOf, node))
                if local_name(str(inverse)) != rel.inverse:
                    g.add((inverse, TWIN.modelName, Literal(rel.inverse)))
            for prop in rel.properties:
                edge = rdf_term(edge_property_iri(iri, prop))
                self.datatype_property(edge, prop)
                g.add((edge, TWIN.appliesToRelationship, node))
                g.add((node, TWIN.relationshipProperty, edge))
            self.domain(node, [c for c, _ in members])
            targets = {r.target for _, r in members}
            common_target = targets.pop() if len(targets) == 1 else None
            if common_target:
                g.add((node, RDFS.range, rdf_term(common_target)))
            self.multiplicity(node, rel, members, common_target)

    def multiplicity(
        self,
        node: URIRef,
        rel: RelationshipDef,
        members: list[tuple[ClassDef, RelationshipDef]],
        common_target: str | None,
    ) -> None:
        functional = "functional" in rel.characteristics
        bounds = {(r.min, r.max) for _, r in members}
        if rel.transitive and len(bounds) == 1:
            low, high = bounds.pop()
            if low is not None:
                self.g.add((node, TWIN.minLinks, Literal(low)))
            if high is not None:
                self.g.add((node, TWIN.maxLinks, Literal(high)))
            bounds_written = True
        else:
            bounds_written = False
        for cls, r in members:
            on_class = {"onClass": rdf_term(r.target)} if r.target else {}
            if r.target and r.target != common_target:
                self.restriction(cls, node, allValuesFrom=rdf_term(r.target))
            if bounds_written:
                continue
            high = None if (functional and r.max == 1) else r.max
            if r.min is not None and r.min == r.max:
                exact = "qualifiedCardinality" if r.target else "cardinality"
                self.restriction(cls, node, **{exact: r.min}, **on_class)
                continue
            qualified = "Qualified" if r.target else ""
            if r.min is not None:
                self.restriction(cls, node, **{f"min{qualified}Cardinality": r.min}, **on_class)
            if high is not None:
                self.restriction(cls, node, **{f"max{qualified}Cardinality": high}, **on_class)
