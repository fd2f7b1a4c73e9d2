"""OWL 2 DL reasoning (HermiT through owlready2): consistency, unsatisfiable classes, inferred hierarchy.

Only HermiT is offered: the Pellet jars bundled with owlready2 0.51 are compiled for Java 25 and fail on Java 17.
HermiT is run with ignore_unsupported_datatypes, because xsd:date and xsd:duration (used by the core ontology)
are outside the OWL 2 datatype map; values of those types are then not reasoned about.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import owlready2
import rdflib
from rdflib.namespace import OWL, RDF

from ontology.errors import OntologyError, ReasonerUnavailable
from ontology.formats import FORMATS_BY_SUFFIX
from ontology.model import Ontology
from ontology.owl import ontology_graph

REASONERS = ("hermit",)
"""Reasoners that run here (through owlready2, on Java)."""

_ANONYMOUS_IRI = "urn:enterprise-twin:anonymous-ontology#"


@dataclass(frozen=True)
class ReasonerReport:
    """What a DL reasoner concluded about an ontology."""

    consistent: bool
    unsatisfiable: tuple[str, ...] = ()  # IRIs of classes that can have no instance (equivalent to owl:Nothing)
    inferred_subclasses: tuple[tuple[str, str], ...] = ()  # (subclass IRI, superclass IRI) entailed, not asserted
    reasoner: str = "hermit"
    message: str = ""  # the reasoner's explanation when the ontology is inconsistent

    @property
    def ok(self) -> bool:
        """True when the ontology is consistent and every class can have instances."""
        return self.consistent and not self.unsatisfiable


def check_consistency(ontology_or_path: Ontology | Path | str, reasoner: str = "hermit") -> ReasonerReport:
    """Run a DL reasoner over an Ontology or an OWL file and report consistency and classification results."""
    if reasoner not in REASONERS:
        raise OntologyError(f"unknown reasoner {reasoner!r}; use one of {', '.join(REASONERS)}")
    java = owlready2.JAVA_EXE
    if shutil.which(java) is None:
        raise ReasonerUnavailable(
            f"the {reasoner} OWL reasoner needs a Java runtime, but {java!r} was not found on PATH; "
            "install Java 11+ (e.g. apt-get install openjdk-17-jre-headless) or set owlready2.JAVA_EXE"
        )
    graph, label = _graph_of(ontology_or_path)
    heads = sorted(str(s) for s in graph.subjects(RDF.type, OWL.Ontology) if isinstance(s, rdflib.URIRef))
    data = graph.serialize(format="nt", encoding="utf-8")

    world = owlready2.World()
    base = heads[0] if heads else _ANONYMOUS_IRI
    try:
        onto = world.get_ontology(base).load(fileobj=io.BytesIO(data), format="ntriples")
    except Exception as exc:  # owlready2's parser raises plain exceptions with the offending triple
        raise OntologyError(f"{label}: owlready2 cannot load the ontology: {exc}") from exc
    before = _subclass_pairs(world)
    try:
        with onto:
            owlready2.sync_reasoner_hermit(
                world, infer_property_values=False, debug=0, ignore_unsupported_datatypes=True
            )
    except owlready2.OwlReadyInconsistentOntologyError as exc:
        return ReasonerReport(consistent=False, reasoner=reasoner, message=str(exc).strip() or "inconsistent")
    except owlready2.OwlReadyJavaError as exc:
        raise OntologyError(f"{label}: the {reasoner} reasoner failed: {exc}") from exc
    unsatisfiable = tuple(
        sorted(c.iri for c in world.inconsistent_classes() if hasattr(c, "iri") and c is not owlready2.Nothing)
    )
    after = _subclass_pairs(world, exclude=frozenset(unsatisfiable))
    return ReasonerReport(
        consistent=True,
        unsatisfiable=unsatisfiable,
        inferred_subclasses=tuple(sorted(after - before)),
        reasoner=reasoner,
    )


def _graph_of(ontology_or_path: Ontology | Path | str) -> tuple[rdflib.Graph, str]:
    """The RDF graph to reason over, and a name for it in messages."""
    if isinstance(ontology_or_path, Ontology):
        return ontology_graph(ontology_or_path), repr(ontology_or_path)
    path = Path(ontology_or_path)
    if not path.is_file():
        raise OntologyError(f"{path}: no such OWL file")
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower()) or rdflib.util.guess_format(str(path)) or "xml"
    try:
        return rdflib.Graph().parse(path, format=fmt), str(path)
    except Exception as exc:  # rdflib raises parser-specific exceptions
        raise OntologyError(f"{path}: not valid {fmt}: {exc}") from exc


def _subclass_pairs(world: owlready2.World, exclude: frozenset[str] = frozenset()) -> set[tuple[str, str]]:
    """Every (class, named ancestor) pair between named classes, owl:Thing left out."""
    pairs: set[tuple[str, str]] = set()
    for cls in world.classes():
        if cls.iri in exclude:
            continue
        for ancestor in cls.ancestors(include_self=False):
            if ancestor is not owlready2.Thing and hasattr(ancestor, "iri"):
                pairs.add((cls.iri, ancestor.iri))
    return pairs
