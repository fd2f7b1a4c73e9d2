"""Safe Cypher building shared by every backend: identifiers, label lists, and telling a write from a read."""

from __future__ import annotations

import re

from graph.errors import QueryError
from ontology.errors import quoted

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ident(name: str) -> str:
    """`name` quoted as a Cypher identifier (labels, relationship types, property keys); refuses odd names."""
    if not name or "`" in name or len(name) > 256:
        raise QueryError(f"{quoted(name)} is not a usable label, type or property name")
    return name if _IDENTIFIER.match(name) else f"`{name}`"


def labels_clause(labels: tuple[str, ...] | list[str]) -> str:
    """':Twin:A:B' for the given labels (Twin always first)."""
    return ":Twin" + "".join(f":{ident(label)}" for label in labels if label != "Twin")


_WRITE_WORDS = re.compile(
    r"\b(CREATE|MERGE|DELETE|DETACH|SET|REMOVE|DROP|LOAD\s+CSV|FOREACH)\b|\bCALL\s+(db\.idx|db\.create|dbms|apoc)",
    re.IGNORECASE,
)
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|//[^\n]*|/\*.*?\*/", re.DOTALL)


def looks_like_write(cypher: str) -> bool:
    """True when the query text (outside strings and comments) contains a clause that writes."""
    return bool(_WRITE_WORDS.search(_STRINGS.sub(" ", cypher)))
