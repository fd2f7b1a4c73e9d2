"""Which file suffix holds which RDF serialisation (rdflib's format names), for readers and the loader."""

from __future__ import annotations

FORMATS_BY_SUFFIX = {
    ".ttl": "turtle",
    ".turtle": "turtle",
    ".owl": "xml",
    ".rdf": "xml",
    ".xml": "xml",
    ".jsonld": "json-ld",
    ".json": "json-ld",
    ".nt": "nt",
    ".n3": "n3",
}
"""Every suffix an OWL file may have when it is named directly."""

DTDL_SUFFIXES = frozenset({".json"})
"""Suffixes of DTDL model files: in a folder, a .json file is read as DTDL."""

FOLDER_OWL_SUFFIXES = {s: f for s, f in FORMATS_BY_SUFFIX.items() if s not in DTDL_SUFFIXES and s != ".xml"}
"""The suffixes read as OWL when a folder is loaded (.xml is too common to read every such file as RDF)."""
