"""`twin ontology ...`: inspect, check and export the ontology."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.settings import get_settings
from ontology.errors import OntologyError, UnknownTerm
from ontology.loader import load_ontology, load_report
from ontology.model import Ontology, text

if TYPE_CHECKING:
    from graph.ontology_versions import OntologyVersions

app = typer.Typer(help="Inspect, check and export the ontology.", no_args_is_help=True)
console = Console()


class ExportFormat(StrEnum):
    """Formats `twin ontology export` writes."""

    ttl = "ttl"
    jsonld = "jsonld"
    rdfxml = "rdfxml"
    dtdl = "dtdl"
    shacl = "shacl"


def current_ontology(extra: list[Path] | None = None) -> Ontology:
    """The core ontology merged with configured and given extra sources."""
    return load_ontology([*get_settings().ontology_paths, *(extra or [])])


@app.command()
def show(
    cls: Annotated[str | None, typer.Argument(help="Class name or id; omit to list every class.")] = None,
    path: Annotated[list[Path] | None, typer.Option("--path", "-p", help="Extra OWL/DTDL file or folder.")] = None,
) -> None:
    """List the classes, or show one class with its ancestors, properties and relationships."""
    try:
        onto = current_ontology(path)
        if cls is None:
            _print_classes(onto)
        else:
            _print_class(onto, cls)
    except (OntologyError, UnknownTerm) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _print_classes(onto: Ontology) -> None:
    table = Table(title=f"{len(onto)} classes")
    for column in ("class", "parents", "properties", "relationships"):
        table.add_column(column)
    for c in sorted(onto.classes.values(), key=lambda c: c.name):
        parents = ", ".join(onto.classes[p].name if p in onto.classes else p for p in c.parents)
        table.add_row(c.name, parents, str(len(onto.properties(c.id))), str(len(onto.relationships(c.id))))
    console.print(table)


def _print_class(onto: Ontology, name: str) -> None:
    c = onto.get(name)
    console.print(f"[bold]{c.name}[/bold]  {c.id}")
    if text(c.description):
        console.print(text(c.description))
    console.print("ancestors: " + (" → ".join(onto.classes[a].name for a in onto.ancestors(c.id)) or "none"))
    props = Table(title="properties")
    for column in ("name", "type", "kind", "classification", "required", "unit"):
        props.add_column(column)
    for p in onto.properties(c.id).values():
        props.add_row(
            p.name, p.schema.describe(), p.kind, p.classification or "", "yes" if p.required else "", p.unit or ""
        )
    console.print(props)
    rels = Table(title="relationships")
    for column in ("name", "target", "multiplicity", "characteristics"):
        rels.add_column(column)
    for r in onto.relationships(c.id).values():
        target = (
            onto.classes[r.target].name if r.target is not None and r.target in onto.classes else (r.target or "any")
        )
        mult = f"{r.min if r.min is not None else 0}..{r.max if r.max is not None else '*'}"
        rels.add_row(r.name, target, mult, ", ".join(sorted(r.characteristics)))
    console.print(rels)


@app.command()
def check(
    paths: Annotated[list[Path], typer.Argument(help="OWL and/or DTDL files and folders.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary object.")] = False,
) -> None:
    """Read OWL/DTDL sources, report counts, every error and every warning; exit code 1 when there are errors.

    As the DTDL specification says, a dangling dependent reference (extends, a schema, a component's schema) is an
    error, and a dangling non-dependent one (a relationship's target) is a warning: the files are valid, but the
    twin loads them only beside a model that defines the target.
    """
    report = load_report(paths)
    if as_json:
        typer.echo(json.dumps(report.summary(), ensure_ascii=False))
    else:
        console.print(
            f"{len(report.files)} files: {report.classes} classes ({report.interfaces} DTDL interfaces), "
            f"{report.properties} properties, {report.relationships} relationships, {len(report.errors)} errors, "
            f"{len(report.warnings)} warnings",
            markup=False,
            highlight=False,
        )
        for violation in report.errors:
            console.print(f"✗ {violation}", style="red", markup=False, highlight=False)
        for violation in report.warnings:
            console.print(f"! {violation}", style="yellow", markup=False, highlight=False)
    if report.errors:
        raise typer.Exit(1)


@app.command()
def export(
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = ExportFormat.ttl,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; default stdout.")] = None,
    path: Annotated[list[Path] | None, typer.Option("--path", "-p", help="Extra OWL/DTDL file or folder.")] = None,
) -> None:
    """Export the ontology as Turtle, JSON-LD, RDF/XML, DTDL v3 or SHACL shapes."""
    try:
        onto = current_ontology(path)
    except OntologyError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    rendered = render(onto, fmt)
    if output is None:
        typer.echo(rendered)
    else:
        output.write_text(rendered, encoding="utf-8")
        console.print(f"wrote {output}")


def render(onto: Ontology, fmt: ExportFormat) -> str:
    """The ontology serialised in `fmt`."""
    if fmt is ExportFormat.dtdl:
        from ontology.dtdl_writer import write_dtdl

        return json.dumps(write_dtdl(onto), indent=2, ensure_ascii=False)
    if fmt is ExportFormat.shacl:
        from ontology.shacl import shapes_for

        return shapes_for(onto).serialize(format="turtle")
    from ontology.owl import write_owl

    return write_owl(onto, {"ttl": "turtle", "jsonld": "json-ld", "rdfxml": "xml"}[fmt.value])


def _versions() -> OntologyVersions:
    from graph.ontology_versions import OntologyVersions

    return OntologyVersions(get_settings().resolved_database_url)


def _terms(ref: str, core: bool) -> tuple[str, dict[str, Any]]:
    """A version id (digits) or OWL/DTDL files: its name and terms."""
    from graph.ontology_versions import terms_of

    if ref.isdigit():
        version = _versions().get(int(ref))
        return f"version {version.id} ({version.digest[:12]})", version.terms
    return ref, terms_of(load_ontology([Path(ref)], include_core=core))


@app.command()
def diff(
    old: Annotated[str, typer.Argument(help="The old version: a recorded version id or OWL/DTDL files.")],
    new: Annotated[str, typer.Argument(help="The new version: a recorded version id or OWL/DTDL files.")],
    core: Annotated[bool, typer.Option(help="Merge the core ontology into files given.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Classify every change between two ontology versions as compatible or breaking; exit code 1 when breaking."""
    from graph.ontology_versions import compare

    try:
        old_name, old_terms = _terms(old, core)
        new_name, new_terms = _terms(new, core)
    except OntologyError as exc:
        console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    found = compare(old_terms, new_terms)
    if as_json:
        for change in found.changes:
            typer.echo(json.dumps({"path": change.path, "kind": change.kind, "breaking": change.breaking}))
    else:
        table = Table(title=f"{old_name} → {new_name}: {len(found.changes)} changes, {len(found.breaking)} breaking")
        for column in ("change", "where", "", "what"):
            table.add_column(column)
        for change in found.changes:
            table.add_row(change.kind, change.path, "breaking" if change.breaking else "compatible", change.message)
        console.print(table)
    if not found.compatible:
        raise typer.Exit(1)


@app.command()
def versions(as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False) -> None:
    """List the recorded ontology versions (digest, time, who, active, breaking, migration)."""
    rows = _versions().all()
    for v in rows:
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "id": v.id,
                        "digest": v.digest,
                        "at": v.at.isoformat(),
                        "actor": v.actor,
                        "active": v.active,
                        "breaking": v.breaking,
                        "migration": v.migration,
                    }
                )
            )
        else:
            console.print(
                f"{v.id:>3} {'*' if v.active else ' '} {v.digest[:12]} {v.at:%Y-%m-%d %H:%M} {v.actor}"
                f"{' breaking' if v.breaking else ''}{f' migration {v.migration}' if v.migration else ''}",
                markup=False,
                highlight=False,
            )


@app.command()
def activate() -> None:
    """Record the configured ontology as a version and make it the active one (refused when it breaks the active
    version: run `twin ontology migrate` instead)."""
    from api.runtime import Runtime
    from governance.audit import AuditEvent

    runtime = Runtime()
    try:
        operator = runtime.operator()
        version = _versions().activate(
            runtime.ontology, operator.sub, [str(p) for p in runtime.settings.ontology_paths]
        )
        runtime.audit.append(
            AuditEvent.for_subject(
                operator, "ontology.activate", "allow", policy_version=runtime.policy.version, detail=version.digest
            )
        )
        console.print(f"version {version.id} ({version.digest[:12]}) is active", markup=False, highlight=False)
    except OntologyError as exc:
        console.print(f"error: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        for violation in exc.violations:
            console.print(f"  ✗ {violation.message}", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    finally:
        runtime.close()


@app.command()
def migrate(
    migration_file: Annotated[Path, typer.Argument(help="The migration (YAML).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change and fail; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Migrate the twins from the active ontology version to the configured one, then activate it; failures are
    quarantined with reasons, migrated twins checked against the SHACL shapes."""
    from api.runtime import Runtime
    from governance.audit import AuditEvent
    from governance.lineage import PropertyRename
    from graph.ontology_migration import MigrationQuarantine, Migrator, mapping_references, read_migration, shacl_issues
    from graph.ontology_versions import ontology_of

    runtime = Runtime()
    try:
        versions = _versions()
        active = versions.active()
        if active is None:
            raise OntologyError(
                "no ontology version is active yet: record the current one with `twin ontology activate`"
            )
        migration = read_migration(migration_file)
        migrator = Migrator(migration, ontology_of(active.terms), runtime.ontology)
        store = runtime.store
        lineage_renamed = 0
        if dry_run:
            report, _ = migrator.plan(store)
        else:
            report = migrator.apply(store, MigrationQuarantine(runtime.settings.resolved_database_url), shacl_issues)
            # each renamed value's lineage follows it, so it still leads to its source record
            lineage_renamed = runtime.lineage.rename_properties([PropertyRename(*r) for r in report.renamed])
            operator = runtime.operator()
            version = versions.activate(
                runtime.ontology,
                operator.sub,
                [str(p) for p in runtime.settings.ontology_paths],
                migration=migration.name,
                renames=migration.renames(),
            )
            runtime.audit.append(
                AuditEvent.for_subject(
                    operator,
                    "ontology.migrate",
                    "allow",
                    policy_version=runtime.policy.version,
                    rows_returned=report.changed,
                    detail=f"{migration.name}: {report.changed} migrated, {len(report.failures)} quarantined; "
                    f"version {version.digest[:12]} active",
                )
            )
        mappings = [
            *Path(__file__).resolve().parents[2].joinpath("connectors", "mappings").glob("*.yaml"),
            *runtime.settings.data_dir.glob("*.yaml"),
            *runtime.settings.data_dir.glob("mappings/*.yaml"),
        ]
        references = mapping_references(mappings, migration, ontology_of(active.terms))
        if as_json:
            summary = report.summary()
            summary["mapping_references"] = [{"file": f, "line": n, "what": w} for f, n, w in references]
            summary["lineage_renamed"] = lineage_renamed
            typer.echo(json.dumps(summary, default=str))
        else:
            console.print(
                f"{'dry run: ' if dry_run else ''}{report.examined} twins examined, {report.changed} "
                f"{'would change' if dry_run else 'migrated'}, {report.unchanged} unchanged, "
                f"{len(report.failures)} {'would fail' if dry_run else 'quarantined'}",
                markup=False,
                highlight=False,
            )
            for step, count in sorted(report.by_step.items()):
                console.print(f"  {step}: {count}", markup=False, highlight=False)
            if lineage_renamed:
                console.print(f"  lineage of {lineage_renamed} values renamed with them", markup=False, highlight=False)
            for failure in report.failures:
                console.print(f"  ✗ {failure.uid} {failure.property or ''}: {failure.reason}", markup=False)
            for issue in report.shacl_issues:
                console.print(f"  SHACL: {issue}", style="yellow", markup=False)
            for file, line, what in references:
                console.print(f"  mapping {file}:{line}: {what}", style="yellow", markup=False, highlight=False)
    except OntologyError as exc:
        console.print(f"error: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
