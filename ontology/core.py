"""The packaged Enterprise Twin core ontology (ontology/core.ttl), loaded once.

Its RDF (`core_graph`) and IRI live in ontology/owl.py, whose reader resolves an owl:imports of the core from them;
this module builds the shared in-memory model from that graph.
"""

from __future__ import annotations

from functools import cache

from ontology.model import Ontology
from ontology.owl import CORE_ONTOLOGY_IRI, core_graph, parse_owl_graph

__all__ = ["CORE_IRI", "core_graph", "load_core"]

CORE_IRI = CORE_ONTOLOGY_IRI
"""The core ontology's IRI; its terms live in CORE_IRI + '#'."""


@cache
def load_core() -> Ontology:
    """The core ontology as an in-memory model; cached and shared, so use merge() rather than add_class() on it."""
    return parse_owl_graph(core_graph(), source="ontology/core.ttl")
