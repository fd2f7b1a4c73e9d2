"""`twin ontology ...`: inspect, check and export the ontology."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.settings import get_settings
from ontology.errors import OntologyError, UnknownTerm
from ontology.loader import load_ontology, load_report
from ontology.model import Ontology, text

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
