"""The generated schema of the core ontology is pinned; TWIN_UPDATE_SNAPSHOTS=1 regenerates the snapshot."""

from __future__ import annotations

import os
from pathlib import Path

from api.graphql.builder import build_schema
from ontology.core import load_core

SNAPSHOT = Path(__file__).parent / "snapshots" / "schema.graphql"


def test_schema_matches_the_snapshot() -> None:
    sdl = build_schema(load_core()).sdl()
    if os.environ.get("TWIN_UPDATE_SNAPSHOTS") == "1" or not SNAPSHOT.exists():
        SNAPSHOT.write_text(sdl, encoding="utf-8")
    expected = SNAPSHOT.read_text(encoding="utf-8")
    assert sdl == expected, (
        "the GraphQL schema changed; if intended, rerun with TWIN_UPDATE_SNAPSHOTS=1 and review the diff"
    )


def test_schema_shape_follows_the_ontology() -> None:
    sdl = build_schema(load_core()).sdl()
    assert "type Employee implements Person & Entity & Twin {" in sdl
    assert "type Facility implements Asset & Location & Entity & Twin {" in sdl
    assert "interface Asset implements Entity & Twin {" in sdl and "type AssetTwin implements Asset" in sdl
    assert (
        "hasMember(where: PersonWhere, orderBy: [PersonOrderBy!], first: Int, after: String): HasMemberConnection!"
        in sdl
    )
    assert "type HasSkillEdge {" in sdl and "  level: Int\n" in sdl
    assert "  salary: Float\n" in sdl and "  hireDate: Date\n" in sdl
