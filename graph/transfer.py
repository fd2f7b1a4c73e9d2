"""A twin graph as JSON Lines, to move it between backends or keep a copy: one twin or link per line.

    {"twin": {"uid": "hr:employee:E1", "class": "Employee", "properties": {"name": "Ada", ...}}}
    {"link": {"type": "worksIn", "source": "hr:employee:E1", "target": "hr:org_unit:7", "properties": {}}}

Twins come first, so a file can be read back in one pass. Values are the ontology's (decoded), so the file goes
through the same validation as any other write when it is imported (`GraphStore.load`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from graph.errors import GraphError
from graph.model import Link, Twin
from graph.reads import TwinReader
from graph.values import decode
from ontology.errors import UnknownTerm

PAGE = 10_000  # node ids per read


class TransferError(GraphError):
    """A graph file that cannot be read: the line and what is wrong with it."""


@dataclass(frozen=True)
class Transferred:
    """How many twins and links a file holds or received."""

    twins: int
    links: int


def export_graph(reader: TwinReader, out: TextIO) -> Transferred:
    """Write every twin, then every link, of the graph `reader` reads as JSON Lines (not a snapshot: run it while
    nothing writes, for a consistent copy)."""
    twins = links = 0
    for uid, cls, properties in _twins(reader):
        out.write(json.dumps({"twin": {"uid": uid, "class": cls, "properties": properties}}, default=str) + "\n")
        twins += 1
    for rel_type, source, target, properties in _links(reader):
        out.write(
            json.dumps(
                {"link": {"type": rel_type, "source": source, "target": target, "properties": properties}}, default=str
            )
            + "\n"
        )
        links += 1
    return Transferred(twins, links)


def read_graph_file(path: Path) -> tuple[list[Twin], list[Link]]:
    """The twins and links of a JSON Lines graph file; TransferError names the first bad line."""
    twins: list[Twin] = []
    links: list[Link] = []
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                item = _parse(line, f"{path.name}:{number}")
                if "twin" in item:
                    twins.append(Twin(*_fields(item["twin"], ("uid", "class"), f"{path.name}:{number}")))
                else:
                    links.append(Link(*_fields(item["link"], ("type", "source", "target"), f"{path.name}:{number}")))
    except OSError as exc:
        raise TransferError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TransferError(f"{path.name} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    return twins, links


def _parse(line: str, where: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TransferError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(item, dict) or len(item) != 1 or not ({"twin", "link"} & item.keys()):
        raise TransferError(f'{where}: expected {{"twin": ...}} or {{"link": ...}}')
    return item


def _fields(record: Any, names: tuple[str, ...], where: str) -> list[Any]:
    if not isinstance(record, dict):
        raise TransferError(f"{where}: expected an object")
    missing = [name for name in names if not isinstance(record.get(name), str) or not record[name]]
    if missing:
        raise TransferError(f"{where}: {', '.join(missing)} must be non-empty text")
    properties = record.get("properties", {})
    if not isinstance(properties, dict):
        raise TransferError(f"{where}: properties must be an object")
    return [*(record[name] for name in names), properties]


def _windows(reader: TwinReader) -> Iterator[tuple[int, int]]:
    rows = reader.backend.read("MATCH (n:Twin) RETURN max(id(n))", {})
    top = rows[0][0] if rows and rows[0][0] is not None else -1
    for low in range(0, top + 1, PAGE):
        yield low, low + PAGE


def _twins(reader: TwinReader) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for low, high in _windows(reader):
        for uid, labels, props in reader.backend.read(
            "MATCH (n:Twin) WHERE id(n) >= $low AND id(n) < $high RETURN n.uid, labels(n), properties(n)",
            {"low": low, "high": high},
        ):
            record = reader.record(uid, labels, dict(props))
            yield record.uid, record.cls, record.properties


def _links(reader: TwinReader) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    ontology = reader.ontology
    for low, high in _windows(reader):
        for source, cls, rel_type, target, props in reader.backend.read(
            "MATCH (a:Twin)-[e]->(b:Twin) WHERE id(a) >= $low AND id(a) < $high "
            "RETURN a.uid, a._class, type(e), b.uid, properties(e)",
            {"low": low, "high": high},
        ):
            try:
                rel = ontology.relationships(cls).get(rel_type)
            except UnknownTerm:  # a class the ontology no longer has: its values go out as stored
                rel = None
            values = {
                k: decode(v, edge_property.schema if rel and (edge_property := rel.property(k)) else None)
                for k, v in dict(props).items()
            }
            yield rel_type, source, target, values
