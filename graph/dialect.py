"""The few places where FalkorDB's and Neo4j's Cypher differ, one small object per backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

TEXT_FIELDS = ("name", "description")


@dataclass(frozen=True)
class Dialect(ABC):
    """Cypher that differs between backends; everything else is shared."""

    name: str
    read_float_digits: int | None = None  # significant digits a double has when read back (None: all of them)

    def as_read(self, value: object) -> object:
        """`value` as the backend will read it back (a stored double may come back with fewer digits)."""
        digits = self.read_float_digits
        if digits is None:
            return value
        if type(value) is float:
            return float(f"{value:.{digits}g}")
        if type(value) is list:
            return [self.as_read(item) for item in value]
        return value

    @abstractmethod
    def schema_statements(self) -> list[str]:
        """Statements that create the uid uniqueness constraint, the class index and the full-text index."""

    @abstractmethod
    def fulltext_query(self) -> str:
        """A CALL clause yielding `node` and `score` for the text in $text."""

    @abstractmethod
    def shortest_path(self, types: str, max_depth: int, directed: bool) -> str:
        """A query returning one shortest path `p` from (a {uid:$source}) to (b {uid:$target}); it ends with `RETURN p`,
        which callers replace by what they return of the path."""


@dataclass(frozen=True)
class FalkorDialect(Dialect):
    """FalkorDB: its own constraint commands, db.idx.fulltext, shortestPath only in WITH/RETURN and directed."""

    name: str = "falkordb"
    read_float_digits: int | None = 15  # FalkorDB stores doubles exactly but replies with 15 significant digits

    def schema_statements(self) -> list[str]:
        """Range index on :Twin(uid); the unique constraint is a separate GRAPH.CONSTRAINT command.

        No index on _class: classes are labels, and FalkorDB would intersect a _class index with the uid index for
        `{uid: ...} WHERE n._class = ...`, which halves the speed of the guarded link writes.
        """
        return [
            "CREATE INDEX FOR (n:Twin) ON (n.uid)",
            f"CALL db.idx.fulltext.createNodeIndex('Twin', {', '.join(repr(f) for f in TEXT_FIELDS)})",
        ]

    def fulltext_query(self) -> str:
        """FalkorDB's full-text procedure over the Twin label."""
        return "CALL db.idx.fulltext.queryNodes('Twin', $text) YIELD node, score"

    def shortest_path(self, types: str, max_depth: int, directed: bool) -> str:
        """Directed shortestPath inside RETURN; undirected falls back to a bounded variable-length match."""
        rel = f"[{':' + types if types else ''}*1..{max_depth}]"
        if directed:
            return (
                "MATCH (a:Twin {uid: $source}), (b:Twin {uid: $target}) "
                f"WITH a, b WITH shortestPath((a)-{rel}->(b)) AS p WHERE p IS NOT NULL RETURN p"
            )
        return (
            f"MATCH p = (a:Twin {{uid: $source}})-{rel}-(b:Twin {{uid: $target}}) "
            "WITH p ORDER BY length(p) LIMIT 1 RETURN p"
        )


@dataclass(frozen=True)
class Neo4jDialect(Dialect):
    """Neo4j 5: CREATE CONSTRAINT ... REQUIRE, FULLTEXT INDEX, shortestPath in MATCH in either direction."""

    name: str = "neo4j"

    def schema_statements(self) -> list[str]:
        """Unique constraint on :Twin(uid) and a full-text index over names and descriptions (classes are labels)."""
        return [
            "CREATE CONSTRAINT twin_uid IF NOT EXISTS FOR (n:Twin) REQUIRE n.uid IS UNIQUE",
            "CREATE FULLTEXT INDEX twin_text IF NOT EXISTS FOR (n:Twin) ON EACH "
            f"[{', '.join('n.' + f for f in TEXT_FIELDS)}]",
        ]

    def fulltext_query(self) -> str:
        """Neo4j's full-text procedure over the twin_text index."""
        return "CALL db.index.fulltext.queryNodes('twin_text', $text) YIELD node, score"

    def shortest_path(self, types: str, max_depth: int, directed: bool) -> str:
        """Neo4j's shortestPath in a MATCH clause, directed or not."""
        rel = f"[{':' + types if types else ''}*1..{max_depth}]"
        arrow = "->" if directed else "-"
        return (
            "MATCH (a:Twin {uid: $source}), (b:Twin {uid: $target}) "
            f"MATCH p = shortestPath((a)-{rel}{arrow}(b)) RETURN p"
        )
