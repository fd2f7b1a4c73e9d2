"""The packaged Enterprise Twin core ontology (ontology/core.ttl), loaded once."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import rdflib

from ontology.model import Ontology
from ontology.owl import CORE_ONTOLOGY_IRI, parse_owl_graph

CORE_IRI = CORE_ONTOLOGY_IRI
"""The core ontology's IRI; its terms live in CORE_IRI + '#'."""


def core_graph() -> rdflib.Graph:
    """A fresh RDF graph of the packaged core.ttl (callers may modify it)."""
    resource = files("ontology").joinpath("core.ttl")
    return rdflib.Graph().parse(data=resource.read_text(encoding="utf-8"), format="turtle")


@cache
def load_core() -> Ontology:
    """The core ontology as an in-memory model; cached and shared, so use merge() rather than add_class() on it."""
    return parse_owl_graph(core_graph(), source="ontology/core.ttl")
