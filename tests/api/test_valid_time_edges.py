"""`validAt` on the GraphQL root reads and `--valid-at` on the CLI (graph/valid_time.py): values as valid at a time by
the sources' effective dates, as known at `asOf`; the same policy (history.read); no valid time recorded, or a
malformed time, is a clear error."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.cli.app import app
from api.http.app import create_app
from api.runtime import Runtime
from api.settings import get_settings
from governance.tokens import LocalIssuer
from graph.embedded import stop_embedded
from graph.model import Link, Twin
from graph.store import GraphStore
from graph.valid_time import ValidTimes, ValidVersion
from tests.api.conftest import ApiHarness, _settings

runner = CliRunner()
EMPLOYEES = "query($v: DateTime) { employees(validAt: $v, first: 10) { totalCount nodes { uid jobTitle } } }"


def _later(days: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).isoformat()


def _dated(store: GraphStore) -> None:
    """Ada (an engineer) is made a manager effective next month; Cy is hired effective next month (with a link)."""
    store.upsert_twins(
        [
            Twin("u1", "OrgUnit", {"name": "Works"}),
            Twin("e1", "Employee", {"name": "Ada", "employeeId": "1", "jobTitle": "Engineer"}),
        ]
    )
    store.upsert_links([Link("worksIn", "e1", "u1")])
    time.sleep(0.01)
    before = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    store.upsert_twins(
        [
            Twin("e1", "Employee", {"jobTitle": "Manager"}),
            Twin("e3", "Employee", {"name": "Cy", "employeeId": "3", "jobTitle": "Analyst"}),
        ]
    )
    store.upsert_links([Link("worksIn", "e3", "u1")])
    next_month = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    assert store.history is not None
    ValidTimes.beside(store.history).record(
        [ValidVersion("e1", next_month, ("name", "employeeId", "jobTitle")), ValidVersion("e3", next_month, ("name",))],
        before,
        source="hr",
    )


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[ApiHarness]:
    runtime = Runtime(settings=_settings(tmp_path))
    try:
        with TestClient(create_app(runtime)) as client:
            yield ApiHarness(client, runtime, LocalIssuer(tmp_path))
    finally:
        runtime.close()
        stop_embedded(tmp_path / "graph")


def test_valid_at_on_graphql(harness: ApiHarness) -> None:
    harness.store.upsert_twins([Twin("e0", "Employee", {"name": "Zed", "employeeId": "0"})])
    status, body = harness.gql(EMPLOYEES, {"v": _later(0)})  # nothing dated yet
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "no valid time is recorded" in error["message"] and "valid_from" in error["message"]
    _dated(harness.store)
    live = {n["uid"]: n["jobTitle"] for n in harness.data(EMPLOYEES)["employees"]["nodes"]}
    assert live == {"e0": None, "e1": "Manager", "e3": "Analyst"}
    now = harness.data(EMPLOYEES, {"v": _later(0)})["employees"]
    assert now["totalCount"] == 2 and {n["uid"]: n["jobTitle"] for n in now["nodes"]} == {"e0": None, "e1": "Engineer"}
    then = harness.data(EMPLOYEES, {"v": _later(40)})["employees"]
    assert {n["uid"]: n["jobTitle"] for n in then["nodes"]} == live
    one = (
        'query($v: DateTime, $a: DateTime) { twin(uid: "e1", asOf: $a, validAt: $v) { ... on Employee { jobTitle } } }'
    )
    assert harness.data(one, {"v": _later(40), "a": _later(0)})["twin"] == {"jobTitle": "Manager"}
    status, body = harness.gql(EMPLOYEES, {"v": _later(0)}, role="executive")  # past values are history
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    status, body = harness.gql(EMPLOYEES, {"v": "next month"})
    assert "errors" in body and "DateTime" in body["errors"][0]["message"]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data = tmp_path / "twin"
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


def test_valid_at_on_the_cli(data_dir: Path) -> None:
    from ontology.core import load_core

    store = GraphStore.open(
        f"falkordb+embedded://{(data_dir / 'graph').resolve()}",
        load_core(),
        history_url=f"sqlite:///{(data_dir / 'twin.db').resolve()}",
    )
    try:
        store.upsert_twins([Twin("e0", "Employee", {"name": "Zed", "employeeId": "0"})])
    finally:
        store.close()
    refused = runner.invoke(app, ["graph", "stats", "--valid-at", _later(0)])
    assert refused.exit_code == 1 and "no valid time is recorded" in refused.output
    store = GraphStore.open(
        f"falkordb+embedded://{(data_dir / 'graph').resolve()}",
        load_core(),
        history_url=f"sqlite:///{(data_dir / 'twin.db').resolve()}",
    )
    try:
        _dated(store)
    finally:
        store.close()
    live = json.loads(runner.invoke(app, ["graph", "stats", "--json"]).output)
    now = runner.invoke(app, ["graph", "stats", "--json", "--valid-at", _later(0)])
    assert now.exit_code == 0, now.output
    valid = json.loads(now.output)
    assert (live["twins"], valid["twins"]) == (4, 3)  # Cy is not hired yet, nor linked
    assert (live["by_type"]["worksIn"], valid["by_type"]["worksIn"]) == (2, 1)
    rows = runner.invoke(
        app, ["graph", "query", "MATCH (n:Employee {uid: 'e1'}) RETURN n.jobTitle", "--valid-at", _later(40)]
    )
    assert rows.exit_code == 0 and rows.output.split() == ['["Manager"]']
    rows = runner.invoke(
        app, ["graph", "query", "MATCH (n:Employee {uid: 'e1'}) RETURN n.jobTitle", "--valid-at", _later(0)]
    )
    assert rows.exit_code == 0 and rows.output.split() == ['["Engineer"]']
    garbled = runner.invoke(app, ["graph", "stats", "--valid-at", "next month"])
    assert garbled.exit_code == 2 and "ISO 8601" in garbled.output and "--valid-at" in garbled.output
