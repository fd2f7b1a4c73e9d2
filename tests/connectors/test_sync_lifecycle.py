"""Connectors and the twin lifecycle: a mapping sets the state from a source field, a deletion in the source retires
the twin where the mapping says so (kept in history, back when the record returns), and a state the lifecycle does
not allow quarantines the record with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from connectors.mapping import MappingError, parse_mapping
from connectors.quarantine import QuarantineStore
from connectors.sql_source import SqlSource
from connectors.sync import Connector
from ontology.model import Ontology
from tests.connectors.test_sync_engine import plant
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401

MAPPING = """\
system: plant
entities:
  - name: machines
    class: Machine
    uid: "plant:machine:{code}"
    key: code
    watermark: updated_at
    properties:
      name: name
    lifecycle:
      field: state
      map: {planned: planned, operational: active, down: suspended, scrapped: retired}
    on_delete: retire
"""


def connector(core: Ontology, url: str, mapping: str = MAPPING) -> Connector:  # noqa: F811
    parsed = parse_mapping(mapping, core, "plant.yaml")
    return Connector(
        "plant", parsed, lambda e: SqlSource(url, table=e.name, key="code", watermark=e.watermark, name=e.name)
    )


def state(twin: TwinEnv, uid: str) -> str:  # noqa: F811
    return twin.store.require(uid).lifecycle


def test_the_source_field_sets_the_state_and_a_deletion_retires(core: Ontology, twin: TwinEnv, tmp_path: Path) -> None:  # noqa: F811
    url = plant(
        tmp_path,
        [
            ("M1", "Press", "1", "operational", None),
            ("M2", "Lathe", "1", "planned", None),
            ("M3", "Mill", "1", "down", None),
            ("M4", "Saw", "1", "mystery", None),  # a value the rule does not map, and no default
        ],
    )
    plant_connector = connector(core, url)
    engine = twin.engine()
    report = engine.run(plant_connector, "full")
    assert [state(twin, f"plant:machine:M{i}") for i in (1, 2, 3)] == ["active", "planned", "suspended"]
    quarantined = {q.record_key: q for q in QuarantineStore(twin.state_url).rows("plant")}
    assert quarantined["M4"].rule == "lifecycle" and "'mystery' maps to no state" in quarantined["M4"].message
    assert report.counts["quarantined"] == 1

    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE machines SET state = 'operational', updated_at = '2025-02-01' WHERE code = 'M2'"))
        conn.execute(text("UPDATE machines SET state = 'planned', updated_at = '2025-02-01' WHERE code = 'M3'"))
        conn.execute(text("DELETE FROM machines WHERE code = 'M1'"))
    engine.run(plant_connector, "full")
    assert state(twin, "plant:machine:M2") == "active"
    assert state(twin, "plant:machine:M1") == "retired"  # deleted in the source: retired, not deleted
    # suspended -> planned is not a lifecycle move: the record is quarantined, the twin stays as it was
    assert state(twin, "plant:machine:M3") == "suspended"
    m3 = [q for q in QuarantineStore(twin.state_url).rows("plant") if q.record_key == "M3"]
    assert m3 and "cannot go from suspended to planned" in m3[0].message

    with create_engine(url).begin() as conn:  # the record comes back
        conn.execute(
            text(
                "INSERT INTO machines (code, name, power, state, updated_at) "
                "VALUES ('M1', 'Press', '1', 'operational', '2025-03-01')"
            )
        )
    engine.run(plant_connector, "full")
    assert state(twin, "plant:machine:M1") == "active"


def test_bad_lifecycle_options_are_refused_at_load(core: Ontology) -> None:  # noqa: F811
    with pytest.raises(MappingError, match="unknown lifecycle state 'gone'"):
        parse_mapping(MAPPING.replace("scrapped: retired", "scrapped: gone"), core, "plant.yaml")
    with pytest.raises(MappingError, match="on_delete must be delete or retire"):
        parse_mapping(MAPPING.replace("on_delete: retire", "on_delete: archive"), core, "plant.yaml")
