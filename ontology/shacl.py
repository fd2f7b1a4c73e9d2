"""SHACL for twin data: shapes generated from an Ontology, twin records as RDF, and validation with pyshacl.

Shapes (`shapes_for`): one sh:NodeShape per class (sh:targetClass) holding the class's OWN properties and
relationships; inherited ones apply through rdfs:subClassOf, which `validate_instances` adds to the data
graph. Property shapes carry sh:datatype (sh:in for enums), sh:maxCount 1 (a twin property has one value;
arrays excepted), sh:minCount 1 when required. Relationship shapes carry sh:nodeKind sh:IRI, sh:class of the
target and sh:minCount / sh:maxCount from the multiplicity. One more shape per property or relationship IRI
(sh:targetSubjectsOf) checks the domain: only classes that declare it may use it.

Not checked here: properties carried by relationship edges (plain RDF triples have nowhere to put them) and
the value ranges that OWL datatype restrictions state (e.g. reliability in [0, 1]).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import pyshacl
import rdflib
from rdflib import BNode, Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import RDF, RDFS, SH, XSD
from rdflib.term import Node

from ontology.core import load_core
from ontology.errors import UnknownTerm
from ontology.model import ClassDef, Ontology, PropertyDef, RelationshipDef
from ontology.owl import KIND_XSD, local_name, property_iri, rdf_term, relationship_iri
from ontology.schema import Schema, check_value

TWIN_DATA_NS = "urn:enterprise-twin:twin:"
"""Prefix of the IRI of a twin in RDF data; the rest is its uid, percent-encoded."""

SHAPE_NS = "urn:enterprise-twin:shape:"
"""Prefix of generated shape IRIs."""


@dataclass
class TwinRecord:
    """A twin as plain data: its uid, class name, property values and outgoing (relationship, target uid) links."""

    uid: str
    class_name: str
    properties: dict[str, Any] = field(default_factory=dict)
    relationships: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ShaclIssue:
    """One SHACL finding in plain terms: which twin, which property or relationship, what is wrong."""

    focus: str  # the twin's uid
    path: str  # property or relationship name ("" for the twin as a whole)
    message: str
    severity: str = "Violation"  # "Violation" | "Warning" | "Info"

    def __str__(self) -> str:
        where = f"{self.focus}.{self.path}" if self.path else self.focus
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class ShaclReport:
    """The outcome of validating twin data against the ontology's shapes."""

    conforms: bool
    issues: tuple[ShaclIssue, ...] = ()

    def for_twin(self, uid: str) -> tuple[ShaclIssue, ...]:
        """The issues whose focus is the twin `uid`."""
        return tuple(i for i in self.issues if i.focus == uid)


def twin_iri(uid: str) -> URIRef:
    """The IRI of the twin `uid` in RDF data."""
    return URIRef(TWIN_DATA_NS + quote(uid, safe=""))


def twin_uid(node: Any) -> str:
    """The uid of a twin IRI made by `twin_iri` (other nodes: their text)."""
    text = str(node)
    return unquote(text[len(TWIN_DATA_NS) :]) if text.startswith(TWIN_DATA_NS) else text


# ===================================================================================================== shapes


def shapes_for(ontology: Ontology) -> rdflib.Graph:
    """The SHACL shapes graph that twin data of `ontology` must conform to."""
    g = rdflib.Graph()
    g.bind("sh", SH)
    g.bind("xsd", XSD)
    domains: dict[URIRef, tuple[str, list[ClassDef]]] = {}
    for cls in ontology.classes.values():
        shape = URIRef(SHAPE_NS + quote(cls.id, safe=""))
        g.add((shape, RDF.type, SH.NodeShape))
        g.add((shape, SH.targetClass, rdf_term(cls.id)))
        g.add((shape, RDFS.label, Literal(f"{cls.name} shape")))
        for prop in cls.properties:
            path = rdf_term(property_iri(cls, prop))
            _property_shape(g, shape, path, prop)
            domains.setdefault(path, (prop.name, []))[1].append(cls)
        for rel in cls.relationships:
            path = rdf_term(relationship_iri(cls, rel))
            _relationship_shape(g, shape, path, rel)
            domains.setdefault(path, (rel.name, []))[1].append(cls)
    for path, (name, owners) in domains.items():
        _domain_shape(g, path, name, owners)
    return g


def _property_shape(g: rdflib.Graph, shape: URIRef, path: URIRef, prop: PropertyDef) -> None:
    node = BNode()
    g.add((shape, SH.property, node))
    g.add((node, SH.path, path))
    g.add((node, SH.name, Literal(prop.name)))
    schema = prop.schema
    if schema.kind == "enum":
        items = BNode()
        Collection(g, items, [Literal(v.value) for v in schema.enum_values])
        g.add((node, SH["in"], items))
    elif schema.kind in KIND_XSD:
        g.add((node, SH.datatype, KIND_XSD[schema.kind]))
    else:
        g.add((node, SH.nodeKind, SH.Literal))
    if schema.kind != "array":
        g.add((node, SH.maxCount, Literal(1)))
    if prop.required:
        g.add((node, SH.minCount, Literal(1)))


def _relationship_shape(g: rdflib.Graph, shape: URIRef, path: URIRef, rel: RelationshipDef) -> None:
    node = BNode()
    g.add((shape, SH.property, node))
    g.add((node, SH.path, path))
    g.add((node, SH.name, Literal(rel.name)))
    g.add((node, SH.nodeKind, SH.IRI))
    if rel.target:
        g.add((node, SH["class"], rdf_term(rel.target)))
    if rel.min:
        g.add((node, SH.minCount, Literal(rel.min)))
    if rel.max is not None:
        g.add((node, SH.maxCount, Literal(rel.max)))


def _domain_shape(g: rdflib.Graph, path: URIRef, name: str, owners: list[ClassDef]) -> None:
    shape = URIRef(SHAPE_NS + "domain:" + quote(str(path), safe=""))
    g.add((shape, RDF.type, SH.NodeShape))
    g.add((shape, SH.targetSubjectsOf, path))
    g.add((shape, SH.name, Literal(name)))
    allowed = ", ".join(sorted(c.name for c in owners))
    g.add((shape, SH.message, Literal(f"{name!r} is only allowed on {allowed}")))
    if len(owners) == 1:
        g.add((shape, SH["class"], rdf_term(owners[0].id)))
        return
    alternatives = []
    for owner in owners:
        alternative = BNode()
        g.add((alternative, SH["class"], rdf_term(owner.id)))
        alternatives.append(alternative)
    items = BNode()
    Collection(g, items, list[Node](alternatives))
    g.add((shape, SH["or"], items))


# ===================================================================================================== data


def instance_graph(twins: Iterable[TwinRecord], ontology: Ontology | None = None) -> rdflib.Graph:
    """Twin records as RDF (typed by `ontology`, the core ontology by default); unknown terms raise UnknownTerm."""
    if ontology is None:
        ontology = load_core()
    members = _member_index(ontology)
    g = rdflib.Graph()
    for twin in twins:
        try:
            cls = ontology.get(twin.class_name)
        except UnknownTerm as exc:
            raise UnknownTerm(f"twin {twin.uid!r}: {exc}") from None
        node = twin_iri(twin.uid)
        g.add((node, RDF.type, rdf_term(cls.id)))
        for name, value in twin.properties.items():
            found = _lookup(ontology, members, cls, name, "property")
            if found is None:
                raise UnknownTerm(f"twin {twin.uid!r}: no class in the ontology has a property {name!r}")
            owner, prop = found
            if value is None:
                continue
            path = rdf_term(property_iri(owner, prop))
            values = value if prop.schema.kind == "array" and isinstance(value, (list, tuple)) else [value]
            element = prop.schema.element if prop.schema.kind == "array" and prop.schema.element else prop.schema
            for item in values:
                g.add((node, path, _literal(item, element)))
        for rel_type, target_uid in twin.relationships:
            found = _lookup(ontology, members, cls, rel_type, "relationship")
            if found is None:
                raise UnknownTerm(f"twin {twin.uid!r}: no class in the ontology has a relationship {rel_type!r}")
            owner, rel = found
            g.add((node, rdf_term(relationship_iri(owner, rel)), twin_iri(target_uid)))
    return g


def _member_index(ontology: Ontology) -> dict[tuple[str, str], list[tuple[ClassDef, Any]]]:
    """(kind, name) -> every (declaring class, definition)."""
    index: dict[tuple[str, str], list[tuple[ClassDef, Any]]] = {}
    for cls in ontology.classes.values():
        for prop in cls.properties:
            index.setdefault(("property", prop.name), []).append((cls, prop))
        for rel in cls.relationships:
            index.setdefault(("relationship", rel.name), []).append((cls, rel))
    return index


def _lookup(
    ontology: Ontology, index: dict[tuple[str, str], list[tuple[ClassDef, Any]]], cls: ClassDef, name: str, kind: str
) -> tuple[ClassDef, Any] | None:
    """The nearest definition of `name` for `cls`; else any class's (so SHACL reports the domain violation)."""
    candidates = index.get((kind, name), [])
    for ancestor in ontology.lineage(cls.id):
        for owner, definition in candidates:
            if owner.id == ancestor.id:
                return owner, definition
    return candidates[0] if candidates else None


def _literal(value: Any, schema: Schema) -> Literal:
    """The RDF literal for a value: typed by the schema when it fits, else as it is (so SHACL reports it)."""
    if check_value(value, schema):
        if isinstance(value, (dict, list, tuple)):
            return Literal(json.dumps(value, default=str))
        return Literal(value)
    kind = schema.kind
    if kind in ("double", "float", "decimal"):
        return Literal(float(value), datatype=KIND_XSD[kind])
    if kind == "bytes":
        text = base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
        return Literal(text, datatype=XSD.base64Binary)
    if kind in ("date", "dateTime", "time"):
        if isinstance(value, (dt.date, dt.time)):
            return Literal(value.isoformat(), datatype=KIND_XSD[kind])
        return Literal(value, datatype=KIND_XSD[kind])
    if kind == "duration" and isinstance(value, dt.timedelta):
        return Literal(value)
    if kind in KIND_XSD:
        return Literal(value, datatype=KIND_XSD[kind])
    if isinstance(value, (dict, list, tuple)):
        return Literal(json.dumps(value, default=str))
    return Literal(value)


# ===================================================================================================== validation


def validate_instances(ontology: Ontology, data_graph: rdflib.Graph) -> ShaclReport:
    """Validate RDF twin data against the ontology's SHACL shapes; findings come back in plain terms."""
    shapes = shapes_for(ontology)
    data = rdflib.Graph()
    data += data_graph
    for cls in ontology.classes.values():
        for parent in cls.parents:
            data.add((rdf_term(cls.id), RDFS.subClassOf, rdf_term(parent)))
    conforms, results, _text = pyshacl.validate(
        data, shacl_graph=shapes, inference="none", allow_warnings=True, advanced=False
    )
    names = _names_by_iri(ontology)
    issues = [
        _issue(results, shapes, data, result, names) for result in results.subjects(RDF.type, SH.ValidationResult)
    ]
    return ShaclReport(
        conforms=bool(conforms), issues=tuple(sorted(set(issues), key=lambda i: (i.focus, i.path, i.message)))
    )


def _names_by_iri(ontology: Ontology) -> dict[Any, str]:
    names: dict[Any, str] = {}
    for cls in ontology.classes.values():
        names[rdf_term(cls.id)] = cls.name
        for prop in cls.properties:
            names[rdf_term(property_iri(cls, prop))] = prop.name
        for rel in cls.relationships:
            names[rdf_term(relationship_iri(cls, rel))] = rel.name
    return names


def _issue(
    results: rdflib.Graph, shapes: rdflib.Graph, data: rdflib.Graph, result: Any, names: dict[Any, str]
) -> ShaclIssue:
    """One pyshacl validation result as a ShaclIssue with a plain message."""
    focus = results.value(result, SH.focusNode)
    path = results.value(result, SH.resultPath)
    value = results.value(result, SH.value)
    component = local_name(str(results.value(result, SH.sourceConstraintComponent)))
    source = results.value(result, SH.sourceShape)
    severity = local_name(str(results.value(result, SH.resultSeverity) or SH.Violation))

    def name(node: Any) -> str:
        return names.get(node) or local_name(str(node))

    if path is None and source is not None:
        path = shapes.value(source, SH.targetSubjectsOf)
    path_name = name(path) if path is not None else ""
    if component == "MinCountConstraintComponent":
        low = int(shapes.value(source, SH.minCount))
        message = f"{path_name!r} is required" if low == 1 else f"at least {low} {path_name!r} required"
    elif component == "MaxCountConstraintComponent":
        high = int(shapes.value(source, SH.maxCount))
        count = len(list(data.objects(focus, path)))
        message = f"at most {high} {path_name!r} allowed, got {count}"
    elif component == "DatatypeConstraintComponent":
        expected = local_name(str(shapes.value(source, SH.datatype)))
        got = local_name(str(value.datatype)) if isinstance(value, Literal) and value.datatype else "string"
        message = f"{path_name!r} must be {expected}, got {_shown(value)} ({got})"
    elif component == "InConstraintComponent":
        allowed = [str(v) for v in Collection(shapes, shapes.value(source, SH["in"]))]
        message = f"{_shown(value)} is not one of {allowed}"
    elif component == "ClassConstraintComponent" and results.value(result, SH.resultPath) is not None:
        expected = name(shapes.value(source, SH["class"]))
        actual = sorted(name(t) for t in data.objects(value, RDF.type)) or ["untyped (not in the data)"]
        message = f"{path_name!r} must point to a {expected}, not {twin_uid(value)} ({', '.join(actual)})"
    elif component in ("ClassConstraintComponent", "OrConstraintComponent"):
        actual = sorted(name(t) for t in data.objects(focus, RDF.type))
        message = f"{', '.join(actual) or 'this twin'} may not have {path_name!r}: {shapes.value(source, SH.message)}"
    elif component == "NodeKindConstraintComponent":
        message = f"{path_name!r} has the wrong kind of value: {_shown(value)}"
    else:
        message = str(results.value(result, SH.resultMessage) or component)
    return ShaclIssue(focus=twin_uid(focus), path=path_name, message=message, severity=severity)


def _shown(value: Any) -> str:
    if isinstance(value, Literal):
        return repr(str(value))
    return twin_uid(value) if value is not None else "?"
