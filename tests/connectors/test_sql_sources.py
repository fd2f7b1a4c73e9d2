"""SqlSource on SQLite, the running PostgreSQL and MariaDB: keyset pages, composite keys, watermarks, queries, and a
sync through each."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    insert,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from connectors.mapping import parse_mapping
from connectors.source import Source, SourceError, Watermark
from connectors.sql_source import SqlSource, dispose_source_engine
from connectors.sync import Connector
from governance.lineage import LineageStore
from ontology.model import Ontology
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test"


def _fresh_database(server_url: str, kind: str) -> Iterator[str]:
    name = f"twin_src_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except OperationalError as exc:
        pytest.skip(f"{kind} is not reachable at {make_url(server_url).host}: {exc.orig}")
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_source_engine(url)
        with admin.connect() as conn:
            if kind == "PostgreSQL":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'source.sqlite'}"
    elif request.param == "postgresql":
        yield from _fresh_database(POSTGRES, "PostgreSQL")
    else:
        yield from _fresh_database(MARIADB, "MariaDB")


metadata = MetaData()
machines = Table(
    "machines",
    metadata,
    Column("plant", String(8), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("name", String(40), nullable=False),
    Column("power", Numeric(10, 2)),
    Column("bought", Date),
    Column("updated_at", DateTime, nullable=False),
)
BASE = dt.datetime(2025, 1, 1, 12, 0, 0)


def fill(url: str, count: int = 25) -> None:
    engine = create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(machines),
            [
                {
                    "plant": "A" if i % 2 else "B",
                    "number": i,
                    "name": f"Machine {i}",
                    "power": f"{i}.50",
                    "bought": dt.date(2020, 1, 1) + dt.timedelta(days=i),
                    "updated_at": BASE + dt.timedelta(minutes=i // 5),
                }
                for i in range(count)
            ],
        )
    engine.dispose()


def read_all(source: Source, since: Watermark | None = None) -> tuple[list[int], dict[str, dict]]:
    sizes, records = [], {}
    for page in source.read(since):
        sizes.append(len(page))
        for record in page:
            assert record.key not in records
            records[record.key] = record
    return sizes, records


def test_table_pages_by_composite_key_with_plain_values(database_url: str) -> None:
    fill(database_url)
    source = SqlSource(database_url, table="machines", key=["plant", "number"], watermark="updated_at", page_size=7)
    assert isinstance(source, Source)
    sizes, records = read_all(source)
    assert sizes == [7, 7, 7, 4]
    assert set(records) == {f"{'A' if i % 2 else 'B'}|{i}" for i in range(25)} == source.all_keys()
    assert list(records)[:2] == ["A|1", "A|3"]  # key order
    fields = records["B|4"].fields
    assert fields["name"] == "Machine 4" and fields["power"] == "4.50" and fields["bought"] == "2020-01-05"
    assert fields["updated_at"] == "2025-01-01 12:00:00"
    assert records["B|4"].watermark == dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert source.count() == 25


def test_incremental_read_is_inclusive_at_the_watermark(database_url: str) -> None:
    fill(database_url)
    source = SqlSource(
        database_url,
        table="machines",
        key=["plant", "number"],
        watermark="updated_at",
        page_size=4,
        overlap=dt.timedelta(0),
    )
    since = Watermark(dt.datetime(2025, 1, 1, 12, 3, tzinfo=dt.UTC))
    _, records = read_all(source, since)
    assert sorted(int(k.split("|")[1]) for k in records) == list(range(15, 25))  # minutes 3 and 4, boundary included
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            update(machines)
            .where(machines.c.number == 2)
            .values(name="Renamed", updated_at=BASE + dt.timedelta(hours=1))
        )
    engine.dispose()
    _, changed = read_all(source, Watermark(dt.datetime(2025, 1, 1, 12, 30, tzinfo=dt.UTC)))
    assert list(changed) == ["B|2"] and changed["B|2"].fields["name"] == "Renamed"
    assert source.count(Watermark(dt.datetime(2025, 1, 1, 12, 30, tzinfo=dt.UTC))) == 1


def test_query_source_and_errors_name_the_table(database_url: str) -> None:
    fill(database_url, 6)
    source = SqlSource(
        database_url,
        query="SELECT plant, number, name, updated_at FROM machines WHERE plant = 'A'",
        key="number",
        watermark="updated_at",
        page_size=2,
    )
    sizes, records = read_all(source)
    assert sizes == [2, 1] and set(records) == {"1", "3", "5"}
    _, later = read_all(source, Watermark(dt.datetime(2025, 1, 1, 12, 1, tzinfo=dt.UTC)))
    assert set(later) == {"5"}
    with pytest.raises(SourceError, match="'nothing_here' does not exist"):
        read_all(SqlSource(database_url, table="nothing_here", key="id"))
    with pytest.raises(SourceError, match=r"unknown column\(s\) code"):
        read_all(SqlSource(database_url, table="machines", key="code"))


MAPPING = """\
system: plant
entities:
  - name: machines
    class: Machine
    uid: "plant:{plant}:{number}"
    key: [plant, number]
    watermark: updated_at
    properties:
      name: name
      powerKw: power
      acquisitionDate: bought
"""


def test_sync_from_each_backend(core: Ontology, twin: TwinEnv, database_url: str) -> None:
    fill(database_url, 12)
    connector = Connector(
        "plant",
        parse_mapping(MAPPING, core, "plant.yaml"),
        lambda e: SqlSource(database_url, table="machines", key=list(e.key), watermark=e.watermark, page_size=5),
    )
    engine = twin.engine()
    report = engine.run(connector, "full")
    assert report.counts["created"] == 12
    machine = twin.store.require("plant:B:4")
    assert machine.properties == {"name": "Machine 4", "powerKw": 4.5, "acquisitionDate": "2020-01-05"}
    (prov,) = LineageStore(twin.state_url).where_from("plant:B:4", "powerKw")
    assert (prov.record_key, prov.source_field, prov.value) == ("B|4", "power", 4.5)
    db = create_engine(database_url)
    with db.begin() as conn:
        conn.execute(
            update(machines).where(machines.c.number == 4).values(power="9.25", updated_at=BASE + dt.timedelta(days=1))
        )
        conn.execute(machines.delete().where(machines.c.number == 7))
    db.dispose()
    incremental = engine.run(connector, "incremental")
    assert incremental.counts["updated"] == 1 and incremental.counts["read"] < 12
    assert twin.store.require("plant:B:4").properties["powerKw"] == 9.25
    # the incremental run saw the deletion too (key list against the ledger), without reading every row
    assert incremental.counts["deleted"] == 1 and twin.store.get("plant:A:7") is None
    full = engine.run(connector, "full")
    assert full.counts["deleted"] == 0 and full.counts["unchanged"] == 11


def test_a_malformed_source_url_is_refused_by_name_without_its_password() -> None:
    from connectors.source import SourceError
    from connectors.sql_source import source_engine

    with pytest.raises(SourceError, match="not valid") as refused:
        source_engine("postgresql://reader:s3cret@db:notaport/hr")
    assert "s3cret" not in str(refused.value) and "db:notaport" in str(refused.value)
