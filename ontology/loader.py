"""Load ontologies from any mix of OWL and DTDL files and folders into one checked Ontology."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ontology.errors import OntologyError, Violation
from ontology.formats import DTDL_SUFFIXES, FOLDER_OWL_SUFFIXES, FORMATS_BY_SUFFIX
from ontology.model import Ontology

# Non-dependent references in DTDL's sense: a model stays valid when their target is not among the files read
# (a relationship may target an interface defined elsewhere). Dependent ones (extends, schemas, component
# schemas) are errors. The twin itself still needs every relationship target: `load_ontology` refuses both.
NON_DEPENDENT_RULES = frozenset({"dangling-target"})


@dataclass
class LoadReport:
    """What a load found: the merged ontology (possibly partial), counts, every error and every warning."""

    ontology: Ontology
    files: list[Path] = field(default_factory=list)
    interfaces: int = 0
    errors: list[Violation] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)

    @property
    def classes(self) -> int:
        """Number of classes in the merged ontology."""
        return len(self.ontology)

    @property
    def properties(self) -> int:
        """Number of properties and telemetry declared (not counting inherited copies)."""
        return sum(len(c.properties) for c in self.ontology.classes.values())

    @property
    def relationships(self) -> int:
        """Number of relationships declared (not counting inherited copies)."""
        return sum(len(c.relationships) for c in self.ontology.classes.values())

    def summary(self) -> dict[str, object]:
        """A JSON-able summary, as `twin ontology check --json` prints it."""
        return {
            "files": len(self.files),
            "interfaces": self.interfaces,
            "classes": self.classes,
            "properties": self.properties,
            "relationships": self.relationships,
            "errors": [_described(v) for v in self.errors],
            "warnings": [_described(v) for v in self.warnings],
        }


def _described(violation: Violation) -> dict[str, str]:
    """A violation as JSON: source file, path inside it, rule and message."""
    return {"source": violation.source, "path": violation.path, "rule": violation.rule, "message": violation.message}


def discover(paths: Iterable[Path | str]) -> tuple[list[Path], list[Path], list[Violation]]:
    """Split paths (files or folders, searched recursively) into OWL files and DTDL files."""
    owl: list[Path] = []
    dtdl: list[Path] = []
    problems: list[Violation] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(Violation(str(path), "missing-file", "no such file or folder", str(path)))
            continue
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        # a file named directly may have any OWL suffix; in a folder, .xml files are not taken for RDF
        owl_suffixes = FOLDER_OWL_SUFFIXES if path.is_dir() else FORMATS_BY_SUFFIX.keys() - DTDL_SUFFIXES
        for candidate in candidates:
            suffix = candidate.suffix.lower()
            if suffix in owl_suffixes:
                owl.append(candidate)
            elif suffix in DTDL_SUFFIXES:
                dtdl.append(candidate)
            elif not path.is_dir():
                problems.append(
                    Violation(
                        str(candidate),
                        "unknown-format",
                        f"cannot tell OWL or DTDL from suffix {suffix!r}",
                        str(candidate),
                    )
                )
    return owl, dtdl, problems


def load_report(paths: Iterable[Path | str], *, include_core: bool = False) -> LoadReport:
    """Read every OWL and DTDL file under `paths`, merge them (and the core ontology if asked), collect all errors."""
    # the readers are imported when a load runs (rdflib alone takes ~0.3 s): commands that read no ontology start faster
    from ontology.dtdl_reader import read_dtdl_report
    from ontology.owl import read_owl

    owl_files, dtdl_files, errors = discover(paths)
    parts: list[Ontology] = []
    if include_core:
        from ontology.core import load_core

        parts.append(load_core())
    for path in owl_files:
        try:
            parts.append(read_owl(path, FORMATS_BY_SUFFIX[path.suffix.lower()]))
        except OntologyError as exc:
            errors += exc.violations or [Violation(str(path), "owl", str(exc), str(path))]
    interfaces = 0
    if dtdl_files:
        dtdl = read_dtdl_report(dtdl_files)
        interfaces = dtdl.interfaces
        errors += dtdl.violations
        parts.append(dtdl.ontology)
    merged = Ontology()
    if parts:
        try:
            merged = parts[0].merge(*parts[1:])
        except OntologyError as exc:
            errors += exc.violations
            merged = parts[0]
    warnings: list[Violation] = []
    if not errors:
        for problem in merged.check():
            (warnings if problem.rule in NON_DEPENDENT_RULES else errors).append(problem)
    return LoadReport(
        ontology=merged, files=[*owl_files, *dtdl_files], interfaces=interfaces, errors=errors, warnings=warnings
    )


def load_ontology(paths: Iterable[Path | str] = (), *, include_core: bool = True) -> Ontology:
    """The core ontology merged with `paths`; raises OntologyError listing every problem (a twin cannot hold
    relationships to classes it does not know, so dangling targets are refused here too)."""
    report = load_report(paths, include_core=include_core)
    if report.errors or report.warnings:
        problems = report.errors + report.warnings
        raise OntologyError(f"{len(problems)} ontology error(s)", problems)
    return report.ontology
