"""Domain exceptions of the ontology layer."""

from __future__ import annotations

from dataclasses import dataclass

QUOTE_LIMIT = 40  # characters of an input an error message quotes


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """An input as an error message quotes it: its repr, cut to a prefix of `limit` characters when longer, so a
    1 MB uid or key is named, not echoed back whole (every layer's errors quote inputs through this)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit + 2 else f"{text[:limit]}... ({len(text)} characters)"


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (source file and JSON/property path), which rule, and what is wrong."""

    path: str
    rule: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.path}: [{self.rule}] {self.message}"


class OntologyError(Exception):
    """The ontology (or a model being read into it) is invalid; carries every violation found."""

    def __init__(self, message: str, violations: list[Violation] | None = None) -> None:
        self.violations: list[Violation] = list(violations or [])
        detail = "".join(f"\n  - {v}" for v in self.violations[:50])
        more = f"\n  ... and {len(self.violations) - 50} more" if len(self.violations) > 50 else ""
        super().__init__(f"{message}{detail}{more}")


class OntologyConflict(OntologyError):
    """Two sources define the same term incompatibly."""


class UnknownTerm(OntologyError):
    """A class, property or relationship that the ontology does not define."""


class ReasonerUnavailable(OntologyError):
    """The OWL reasoner cannot run here (usually: no Java runtime)."""
