"""FalkorDB's GRAPH.BULK wire format: a new graph's nodes and edges as binary streams, without a query per row.

A GRAPH.BULK command carries, after its counts, "tokens": one per label set (nodes) or relationship type (edges),
each a header (labels or type, the property names) followed by rows of typed values. Edges name their ends by node
id. In a graph that the command itself creates (BEGIN), ids are 0, 1, 2, ... in the order the nodes are sent, so the
caller can compute them; in any other graph FalkorDB may reuse the ids of deleted nodes, which is why
`FalkorBackend.bulk_create` only ever loads a graph that does not exist yet, in one MULTI/EXEC transaction.
"""

from __future__ import annotations

import gc
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from graph.errors import QueryError

TOKEN_BYTES = 16 * 2**20  # rows per token until this size
COMMAND_BYTES = 64 * 2**20  # tokens per command until this size

_NULL, _BOOL, _DOUBLE, _STRING, _LONG, _ARRAY = b"\x00", b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"
_double, _long, _count, _ends = (
    struct.Struct("<d").pack,
    struct.Struct("<q").pack,
    struct.Struct("<I").pack,
    struct.Struct("<QQ").pack,
)


@dataclass(frozen=True)
class NodeGroup:
    """Nodes with the same labels: property `columns`, and one row of values per node (None = no property)."""

    labels: tuple[str, ...]
    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class EdgeGroup:
    """Edges of one type: property `columns`, and per edge (source id, target id, *values)."""

    type: str
    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]]


@contextmanager
def collection_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a bulk build makes millions of objects that all stay alive: each
    collection would scan all of them for nothing (it tripled the time of an as-of build). Restored after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def edge_groups(by_type: dict[str, list[tuple[str, str, dict[str, Any]]]], ids: dict[str, int]) -> list[EdgeGroup]:
    """Links (source uid, target uid, properties) by type as edge groups between the node ids `ids` gives."""
    edges = []
    for rel_type, rows in by_type.items():
        columns = tuple(dict.fromkeys(key for _, _, props in rows for key in props))
        if columns:
            edges.append(
                EdgeGroup(rel_type, columns, [[ids[s], ids[t], *(p.get(key) for key in columns)] for s, t, p in rows])
            )
        else:  # most links have no properties: ends only
            edges.append(EdgeGroup(rel_type, (), [(ids[s], ids[t]) for s, t, _ in rows]))
    return edges


def bulk_commands(graph: str, nodes: Sequence[NodeGroup], edges: Sequence[EdgeGroup]) -> list[list[Any]]:
    """The GRAPH.BULK commands that create `nodes` (ids in the order given, from 0) then `edges` in a new graph."""
    tokens: list[tuple[bool, int, bytes]] = []
    for group in nodes:
        colons = [label for label in group.labels if ":" in label]
        if colons:  # the header separates labels with colons
            raise QueryError(f"labels with a colon cannot be bulk-loaded: {', '.join(colons)}")
        rows = ((1, b"".join(map(_value, row))) for row in group.rows)
        tokens += [
            (True, count, token) for count, token in _tokens(_header(":".join(group.labels), group.columns), rows)
        ]
    for edge_group in edges:
        edge_rows: Iterator[tuple[int, bytes]]
        if edge_group.columns:
            edge_rows = ((1, _ends(row[0], row[1]) + b"".join(map(_value, row[2:]))) for row in edge_group.rows)
        else:  # ends only: packed many edges a call
            edge_rows = _packed_ends(edge_group.rows)
        tokens += [
            (False, count, token) for count, token in _tokens(_header(edge_group.type, edge_group.columns), edge_rows)
        ]
    commands: list[list[Any]] = []
    batch: list[tuple[bool, int, bytes]] = []
    size = 0
    for token in tokens:  # a command's node tokens are loaded before its edge tokens, as sent here
        if batch and size + len(token[2]) > COMMAND_BYTES:
            commands.append(_command(graph, batch, begin=not commands))
            batch, size = [], 0
        batch.append(token)
        size += len(token[2])
    if batch:
        commands.append(_command(graph, batch, begin=not commands))
    return commands


def _command(graph: str, tokens: list[tuple[bool, int, bytes]], begin: bool) -> list[Any]:
    nodes = [t for t in tokens if t[0]]
    edges = [t for t in tokens if not t[0]]
    return [
        "GRAPH.BULK",
        graph,
        *(["BEGIN"] if begin else []),
        sum(t[1] for t in nodes),
        sum(t[1] for t in edges),
        len(nodes),
        len(edges),
        *(t[2] for t in nodes),
        *(t[2] for t in edges),
    ]


def _tokens(header: bytes, rows: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
    """Pieces of rows (row count, bytes) under `header`, cut into tokens of about TOKEN_BYTES; (row count, token)."""
    parts: list[bytes] = [header]
    size, count = len(header), 0
    for rows_in_piece, piece in rows:
        parts.append(piece)
        size += len(piece)
        count += rows_in_piece
        if size >= TOKEN_BYTES:
            yield count, b"".join(parts)
            parts, size, count = [header], len(header), 0
    if count:
        yield count, b"".join(parts)


def _packed_ends(rows: Sequence[Sequence[Any]]) -> Iterator[tuple[int, bytes]]:
    """(source id, target id) of edges without properties as 16-byte records, up to a token's size a piece."""
    step = max(1, TOKEN_BYTES // 16)
    for start in range(0, len(rows), step):
        piece = rows[start : start + step]
        yield len(piece), struct.pack(f"<{2 * len(piece)}Q", *(end for row in piece for end in (row[0], row[1])))


def _header(name: str, columns: Sequence[str]) -> bytes:
    return _text(name) + _count(len(columns)) + b"".join(_text(column) for column in columns)


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    if b"\x00" in data:
        raise QueryError(f"text with a NUL character cannot be stored in the graph: {value[:40]!r}")
    return data + b"\x00"


def _value(value: Any) -> bytes:
    kind = type(value)
    if kind is str:
        data: bytes = value.encode("utf-8")
        if b"\x00" in data:
            raise QueryError(f"text with a NUL character cannot be stored in the graph: {value[:40]!r}")
        return _STRING + data + b"\x00"
    if value is None:
        return _NULL
    if kind is bool:
        return _BOOL + (b"\x01" if value else b"\x00")
    if kind is int:
        if not -(2**63) <= value < 2**63:
            raise QueryError(f"{value} does not fit a 64-bit integer")
        return _LONG + _long(value)
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise QueryError(f"{value} cannot be stored in the graph")
        return _DOUBLE + _double(value)
    if kind is list or kind is tuple:
        return _ARRAY + _long(len(value)) + b"".join(_value(v) for v in value)
    raise QueryError(f"a {kind.__name__} value cannot be bulk-loaded into the graph")
