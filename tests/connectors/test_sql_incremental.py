"""A SQL source whose queries join tables, on PostgreSQL, incremental runs only: a joined row renamed, a row
re-parented, deleted, inserted, a second-level joined row changed; after every run the twin equals the database,
record by record (uids, names, values, links)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from connectors.mapping import EntityMapping, MappingError, parse_mapping
from connectors.source import SourceError
from connectors.sql_source import SqlSource, dispose_source_engine
from connectors.sync import Connector, SyncReport
from ontology.model import Ontology
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401

MACHINES_QUERY = (
    "SELECT m.*, s.code AS site_code, s.name AS site_name, r.name AS region_name, s.updated_at AS site_updated_at, "
    "r.updated_at AS region_updated_at FROM machines m JOIN sites s ON s.site_id = m.site_id "
    "JOIN regions r ON r.region_id = s.region_id"
)
MAPPING = f"""\
system: plant
entities:
  - name: sites
    class: Site
    uid: "plant:site:{{code}}"
    key: site_id
    watermark: updated_at
    source:
      query: "SELECT s.*, r.name AS region_name, r.updated_at AS region_updated_at FROM sites s
        JOIN regions r ON r.region_id = s.region_id"
      related_watermarks: [region_updated_at]
    properties:
      name: name
      description: region_name
  - name: machines
    class: Machine
    uid: "plant:machine:{{asset_tag}}"
    key: machine_id
    watermark: updated_at
    source:
      query: "{MACHINES_QUERY}"
      related_watermarks: [site_updated_at, region_updated_at]
    properties:
      name: name
      description: {{template: "{{site_name}}, {{region_name}}"}}
    links:
      - type: locatedAt
        target: "plant:site:{{site_code}}"
        target_class: Site
"""
BASE = dt.datetime(2025, 1, 1, 8, 0, 0)

Twins = dict[str, tuple[str, dict[str, Any]]]
Links = set[tuple[str, str, str]]


def build(url: str) -> None:
    """Two regions, three sites, four machines."""
    with create_engine(url).begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE regions (region_id integer PRIMARY KEY, name text NOT NULL, "
                "updated_at timestamp NOT NULL)"
            )
        )
        conn.execute(
            text(
                "CREATE TABLE sites (site_id integer PRIMARY KEY, code text NOT NULL, name text NOT NULL, "
                "region_id integer NOT NULL REFERENCES regions, updated_at timestamp NOT NULL)"
            )
        )
        conn.execute(
            text(
                "CREATE TABLE machines (machine_id integer PRIMARY KEY, asset_tag text NOT NULL, "
                "name text NOT NULL, site_id integer NOT NULL REFERENCES sites, "
                "updated_at timestamp NOT NULL)"
            )
        )
        conn.execute(text("INSERT INTO regions VALUES (1, 'North', :t), (2, 'South', :t)"), {"t": BASE})
        conn.execute(
            text(
                "INSERT INTO sites VALUES (1, 'S1', 'Gdańsk Yard', 1, :t), (2, 'S2', 'Oslo Dock', 1, :t), "
                "(3, 'S3', 'Porto Works', 2, :t)"
            ),
            {"t": BASE},
        )
        conn.execute(
            text(
                "INSERT INTO machines VALUES (1, 'M1', 'Press', 1, :t), (2, 'M2', 'Lathe', 1, :t), "
                "(3, 'M3', 'Saw', 2, :t), (4, 'M4', 'Drill', 3, :t)"
            ),
            {"t": BASE},
        )


def change(url: str, statement: str, **params: Any) -> None:
    with create_engine(url).begin() as conn:
        conn.execute(text(statement), params)


def expected_state(url: str) -> tuple[Twins, Links]:
    """What the twin must hold, read from the database's tables (not through the mapping's queries)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        regions = dict(conn.execute(text("SELECT region_id, name FROM regions")).all())
        sites = {
            sid: (code, name, region)
            for sid, code, name, region in conn.execute(text("SELECT site_id, code, name, region_id FROM sites"))
        }
        machines = conn.execute(text("SELECT asset_tag, name, site_id FROM machines")).all()
    engine.dispose()
    twins: Twins = {
        f"plant:site:{code}": ("Site", {"name": name, "description": regions[region]})
        for code, name, region in sites.values()
    }
    links: Links = set()
    for tag, name, site in machines:
        code, site_name, region = sites[site]
        twins[f"plant:machine:{tag}"] = ("Machine", {"name": name, "description": f"{site_name}, {regions[region]}"})
        links.add(("locatedAt", f"plant:machine:{tag}", f"plant:site:{code}"))
    return twins, links


def differences(env: TwinEnv, url: str) -> list[str]:
    """Every way the twin differs from the database, record by record (empty when they are equal)."""
    want_twins, want_links = expected_state(url)
    have_twins: Twins = {
        uid: (cls, {k: v for k, v in dict(props).items() if k not in ("uid", "_class")})
        for uid, cls, props in env.store.backend.read(
            "MATCH (n:Twin) WHERE n.uid STARTS WITH 'plant:' RETURN n.uid, n._class, properties(n)"
        )
    }
    have_links = {
        (t, a, b)
        for t, a, b in env.store.backend.read(
            "MATCH (a:Twin)-[r]->(b:Twin) WHERE a.uid STARTS WITH 'plant:' RETURN type(r), a.uid, b.uid"
        )
    }
    found = [f"missing twin {uid}" for uid in sorted(set(want_twins) - set(have_twins))]
    found += [f"extra twin {uid}" for uid in sorted(set(have_twins) - set(want_twins))]
    found += [
        f"{uid}: twin {have_twins[uid]} but source {want}"
        for uid, want in sorted(want_twins.items())
        if uid in have_twins and have_twins[uid] != want
    ]
    found += [f"missing link {link}" for link in sorted(want_links - have_links)]
    found += [f"extra link {link}" for link in sorted(have_links - want_links)]
    return found


@pytest.mark.parametrize("key_table", [False, True], ids=["keys-from-query", "keys-from-key-table"])
def test_incremental_runs_follow_joined_tables_on_postgresql(
    core: Ontology, twin: TwinEnv, postgres_url: str, key_table: bool
) -> None:
    """With `key_table` declared (each query has one row per row of its base table), deletion checks count and list
    keys on the base table: the twin must still equal the database after every incremental run."""
    url = postgres_url
    build(url)
    mapping = parse_mapping(MAPPING, core, "plant.yaml")

    def open_source(entity: EntityMapping) -> SqlSource:
        return SqlSource(
            url,
            query=entity.source["query"],
            key=list(entity.key),
            watermark=entity.watermark,
            related_watermarks=entity.source["related_watermarks"],
            name=f"plant:{entity.name}",
            key_table=entity.name if key_table else None,
        )

    connector = Connector("plant", mapping, open_source)
    engine = twin.engine()
    clock = iter(BASE + dt.timedelta(hours=h) for h in range(1, 100))

    def incremental() -> SyncReport:
        report = engine.run(connector, "incremental")
        assert report.status == "completed" and report.counts["quarantined"] == 0
        assert differences(twin, url) == []
        return report

    try:
        first = incremental()
        assert (first.counts["read"], first.counts["created"]) == (7, 7 + 4)  # 7 twins, 4 links

        # re-parented: M2 moves to S3 (the machines' watermark moves past the other machines' own change times)
        change(url, "UPDATE machines SET site_id = 3, updated_at = :t WHERE machine_id = 2", t=next(clock))
        moved = incremental()
        assert (
            moved.entity("machines").created,
            moved.entity("machines").updated,
            moved.entity("machines").deleted,
        ) == (1, 1, 1)  # the new link, the description, the old link

        # a joined row renamed: M1 shows its site's name; its own row is unchanged
        change(url, "UPDATE sites SET name = 'Gdańsk Shipyard', updated_at = :t WHERE site_id = 1", t=next(clock))
        renamed = incremental()
        assert renamed.entity("machines").updated == 1
        assert twin.store.require("plant:machine:M1").properties["description"] == "Gdańsk Shipyard, North"

        # deleted, without a full run
        change(url, "DELETE FROM machines WHERE machine_id = 4")
        gone = incremental()
        assert gone.entity("machines").deleted == 1 and twin.store.get("plant:machine:M4") is None

        # inserted
        change(url, "INSERT INTO machines VALUES (5, 'M5', 'Mill', 2, :t)", t=next(clock))
        added = incremental()
        assert added.entity("machines").created == 2  # the twin and its link

        # a second-level joined row changed: machine -> site -> region
        change(url, "UPDATE regions SET name = 'Nord', updated_at = :t WHERE region_id = 1", t=next(clock))
        second = incremental()
        assert second.entity("sites").updated == 2 and second.entity("machines").updated == 3  # M1, M3, M5
        assert twin.store.require("plant:machine:M5").properties["description"] == "Oslo Dock, Nord"
    finally:
        dispose_source_engine(url)


def test_a_join_without_the_joined_tables_change_times_is_refused_at_load(core: Ontology) -> None:
    """An incremental run could not see changes to the joined table, so the mapping says so instead of drifting."""
    plain = MAPPING.replace("      related_watermarks: [site_updated_at, region_updated_at]\n", "")
    with pytest.raises(MappingError) as refused:
        parse_mapping(plain, core, "plant.yaml")
    (problem,) = refused.value.problems
    assert problem.term == "machines.source.query" and "related_watermarks" in problem.message
    assert problem.line == 20  # the machines entity's source


def test_a_rule_reading_a_field_the_source_does_not_fetch_is_refused(core: Ontology) -> None:
    """`jobTitle: party.code` with `party.code` not in the Tryton fields came out empty for every employee."""
    mapping = """\
system: tryton
entities:
  - name: employees
    class: Employee
    uid: "tryton:employee:{id}"
    source: {model: company.employee, fields: [id, party.name]}
    properties:
      name: party.name
      employeeId: {field: id, cast: string}
      jobTitle: party.code
"""
    with pytest.raises(MappingError) as refused:
        parse_mapping(mapping, core, "tryton.yaml")
    (problem,) = refused.value.problems
    assert (problem.line, problem.term) == (10, "employees.jobTitle")
    assert "reads 'party.code' but source.fields does not fetch it" in problem.message
    assert "the rule reads: party.code" in problem.message
    parse_mapping(mapping.replace("fields: [id, party.name]", "fields: [id, party.name, party.code]"), core)


def test_an_incremental_run_finds_a_deletion_a_new_quarantined_row_hides_from_the_counts(
    core: Ontology, twin: TwinEnv, tmp_path: Path
) -> None:
    """1,000 machines; one is deleted and a new one that cannot be mapped is inserted, so the table still has
    1,000 rows: the run must not take equal counts for "nothing deleted"."""
    url = f"sqlite:///{tmp_path / 'plant.sqlite'}"
    with create_engine(url).begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE machines (machine_id integer PRIMARY KEY, asset_tag text, name text, "
                "updated_at timestamp NOT NULL)"
            )
        )
        conn.execute(
            text("INSERT INTO machines VALUES (:i, :tag, :name, :t)"),
            [{"i": i, "tag": f"M{i}", "name": f"Machine {i}", "t": BASE.isoformat(sep=" ")} for i in range(1, 1001)],
        )
    mapping = parse_mapping(
        """\
system: plant
entities:
  - name: machines
    class: Machine
    uid: "plant:machine:{asset_tag}"
    key: machine_id
    watermark: updated_at
    source: {table: machines}
    properties: {name: name}
""",
        core,
        "plant.yaml",
    )
    connector = Connector(
        "plant", mapping, lambda e: SqlSource(url, table="machines", key="machine_id", watermark="updated_at")
    )
    engine = twin.engine()
    try:
        assert engine.run(connector, "incremental").counts["created"] == 1000
        with create_engine(url).begin() as conn:
            conn.execute(text("DELETE FROM machines WHERE machine_id = 500"))
            conn.execute(
                text("INSERT INTO machines VALUES (1001, NULL, 'No tag', :t)"),
                {"t": (BASE + dt.timedelta(hours=1)).isoformat(sep=" ")},
            )  # no asset tag: no uid, quarantined
        run = engine.run(connector, "incremental")
        assert (run.counts["quarantined"], run.counts["deleted"]) == (1, 1)
        assert twin.store.get("plant:machine:M500") is None and twin.store.get("plant:machine:M499") is not None
        assert twin.store.stats().by_class == {"Machine": 999}
        # the next run: the quarantined row is still there (open), another row goes
        with create_engine(url).begin() as conn:
            conn.execute(text("DELETE FROM machines WHERE machine_id = 7"))
        again = engine.run(connector, "incremental")
        assert again.counts["deleted"] == 1 and twin.store.stats().by_class == {"Machine": 998}
    finally:
        dispose_source_engine(url)


def test_a_wrong_key_table_is_refused_naming_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plant.sqlite'}"
    with create_engine(url).begin() as conn:
        conn.execute(text("CREATE TABLE machines (machine_id integer PRIMARY KEY, name text)"))
        conn.execute(text("CREATE TABLE sites (site_id integer PRIMARY KEY, name text)"))
    query = "SELECT m.* FROM machines m"
    try:
        with pytest.raises(SourceError, match="key_table 'nosuch' does not exist"):
            SqlSource(url, query=query, key="machine_id", key_table="nosuch").all_keys()
        with pytest.raises(SourceError, match="key_table 'sites' has no key column"):
            SqlSource(url, query=query, key="machine_id", key_table="sites").count()
        with pytest.raises(SourceError, match="key_table 'machines' goes with a query"):
            SqlSource(url, table="machines", key="machine_id", key_table="machines")
    finally:
        dispose_source_engine(url)
