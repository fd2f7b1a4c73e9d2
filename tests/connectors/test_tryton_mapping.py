"""The bundled Tryton mapping on a plain Tryton (company, party, product, sale_opportunity, project, timesheet:
no purchase, no production), optional entities, and clear errors for a wrong database, a server that is down and
an unknown field after a dot."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.cli.app import app
from api.settings import get_settings
from connectors.mapping import parse_mapping
from connectors.source import SourceError, SourceObjectMissing
from connectors.sync import Connector, SyncError
from connectors.tryton import TrytonAuthenticationError, TrytonClient, TrytonSource, TrytonUnavailableError
from ontology.model import Ontology
from tests.connectors.test_tryton_sync import assert_matches_tryton, tryton_connector
from tests.connectors.tryton_server import TrytonServer
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401
from tests.server_leaks import falkordb_processes_under

OPTIONAL = {
    "product_suppliers",
    "purchase_suppliers",
    "purchases",
    "purchase_lines",
    "work_centers",
    "productions",
    "production_work_centers",
}


@pytest.fixture(scope="module")
def plain(plain_tryton_server: TrytonServer) -> Iterator[TrytonClient]:
    """A client of the plain Tryton, logged in as admin."""
    with TrytonClient(
        plain_tryton_server.url,
        plain_tryton_server.database,
        plain_tryton_server.username,
        plain_tryton_server.password,
    ) as client:
        client.login()
        yield client


@pytest.fixture(scope="module")
def plain_enterprise(plain: TrytonClient) -> dict[str, Any]:
    """A small services company in the plain Tryton: employees, a customer, products with and without a code,
    an opportunity, a project with a task and timesheet lines on both."""
    c = plain
    (currency,) = c.create(
        "currency.currency",
        [{"name": "Złoty", "code": "PLN", "symbol": "zł", "digits": 2, "rounding": Decimal("0.01")}],
    )
    (company_party,) = c.create("party.party", [{"name": "Łódź Services"}])
    (company,) = c.create("company.company", [{"party": company_party, "currency": currency}])
    c.write(
        "res.user",
        [c.search("res.user", [("login", "=", "admin")])[0]],
        {"companies": [("add", [company])], "company": company},
    )
    c.refresh_context()
    people = c.create("party.party", [{"name": n} for n in ("Łucja Kierownik", "Paweł Monter")])
    (lead,) = c.create("company.employee", [{"party": people[0], "company": company}])
    (fitter,) = c.create("company.employee", [{"party": people[1], "company": company, "supervisor": lead}])
    (customer,) = c.create("party.party", [{"name": "Koleje Śląskie"}])
    (unit,) = c.search("product.uom", [("name", "=", "Unit")])
    coded, plain_template = c.create(
        "product.template",
        [
            {
                "name": "Inspection",
                "type": "service",
                "default_uom": unit,
                "list_price": Decimal("90"),
                "products": [("create", [{"suffix_code": "INS-1"}])],
            },
            {
                "name": "Site visit",
                "type": "service",
                "default_uom": unit,
                "list_price": Decimal("40"),
                "products": [("create", [{}])],
            },
        ],
    )
    (uncoded,) = c.search("product.product", [("template", "=", plain_template)])
    c.create(
        "sale.opportunity",
        [
            {
                "company": company,
                "party": customer,
                "description": "Depot inspections",
                "amount": Decimal("20000"),
                "currency": currency,
                "employee": fitter,
                "start_date": dt.date(2025, 4, 1),
            }
        ],
    )
    (project,) = c.create(
        "project.work",
        [
            {
                "name": "Depot audit",
                "company": company,
                "type": "project",
                "timesheet_available": True,
                "effort_duration": dt.timedelta(hours=80),
            }
        ],
    )
    (task,) = c.create(
        "project.work",
        [
            {
                "name": "Brake check",
                "company": company,
                "type": "task",
                "parent": project,
                "timesheet_available": True,
                "progress": 0.5,
            }
        ],
    )
    for work, employee in ((project, lead), (task, fitter)):
        (timesheet_work,) = c.read("project.work", [work], ["timesheet_works"])[0]["timesheet_works"]
        c.create(
            "timesheet.line",
            [
                {
                    "company": company,
                    "employee": employee,
                    "work": timesheet_work,
                    "date": dt.date(2025, 4, 2),
                    "duration": dt.timedelta(hours=4),
                }
            ],
        )
    return {
        "people": people,
        "lead": lead,
        "fitter": fitter,
        "customer": customer,
        "uncoded": uncoded,
        "project": project,
        "task": task,
        "company_party": company_party,
    }


def test_bundled_mapping_syncs_a_tryton_without_purchase_and_production(
    core: Ontology, twin: TwinEnv, plain: TrytonClient, plain_enterprise: dict[str, Any]
) -> None:
    ids = plain_enterprise
    connector = tryton_connector(core, plain)
    engine = twin.engine()
    report = engine.run(connector, "full")
    assert report.status == "completed"
    assert report.counts["quarantined"] == 0 and report.counts["pending_links"] == 0
    skipped = {e.entity: e.skipped for e in report.entities if e.skipped}
    assert set(skipped) == OPTIONAL
    assert "unknown model 'purchase.purchase'" in skipped["purchases"]
    assert_matches_tryton(twin, plain)
    # employees' parties are their Employee twins, not Organizations
    lead = twin.store.require(f"tryton:party:{ids['people'][0]}")
    assert (lead.cls, lead.properties["name"], lead.properties["employeeId"]) == (
        "Employee",
        "Łucja Kierownik",
        str(ids["lead"]),
    )
    assert twin.store.require(f"tryton:party:{ids['customer']}").cls == "Customer"
    assert twin.store.require(f"tryton:party:{ids['company_party']}").cls == "Organization"
    # a product without a code gets the stable fallback sku instead of being quarantined
    assert twin.store.require(f"tryton:product:{ids['uncoded']}").properties["sku"] == f"TRYTON-{ids['uncoded']}"
    task = twin.store.require(f"tryton:project:{ids['task']}")
    assert (task.cls, task.properties["progress"]) == ("Task", 0.5)
    assert twin.store.require(f"tryton:project:{ids['project']}").properties["effort"] == "P3DT8H"

    again = engine.run(connector, "incremental")
    assert again.status == "completed" and again.counts["quarantined"] == 0
    assert {e.entity for e in again.entities if e.skipped} == OPTIONAL
    assert_matches_tryton(twin, plain)

    # a party first synced as an Organization becomes an Employee twin when it is hired
    (recruit,) = plain.create("party.party", [{"name": "Zofia Źrebięta"}])
    engine.run(connector, "incremental")
    assert twin.store.require(f"tryton:party:{recruit}").cls == "Organization"
    company = plain.read("company.employee", [ids["lead"]], ["company"])[0]["company"]
    (hired,) = plain.create("company.employee", [{"party": recruit, "company": company, "supervisor": ids["lead"]}])
    hiring = engine.run(connector, "incremental")
    assert hiring.status == "completed" and hiring.counts["quarantined"] == 0
    assert_matches_tryton(twin, plain)
    recruit_twin = twin.store.require(f"tryton:party:{recruit}")
    assert (recruit_twin.cls, recruit_twin.properties["employeeId"]) == ("Employee", str(hired))


MISSING_REQUIRED = """
system: tryton
entities:
  - name: purchases
    class: PurchaseOrder
    uid: "tryton:purchase:{id}"
    watermark: write_date
    source: {model: purchase.purchase, fields: [id, rec_name]}
    properties:
      name: rec_name
  - name: customers
    class: Organization
    uid: "tryton:party:{id}"
    watermark: write_date
    source: {model: party.party, fields: [id, name]}
    properties:
      name: name
"""


def mapped_connector(core: Ontology, client: TrytonClient, text: str, file: str) -> Connector:
    """A connector for a mapping written in the test."""
    mapping = parse_mapping(text, core, file)
    return Connector("tryton", mapping, lambda e: TrytonSource(client, e.source["model"], e.source["fields"]))


def test_a_missing_required_model_fails_the_run_after_the_other_entities(
    core: Ontology, twin: TwinEnv, plain: TrytonClient, plain_enterprise: dict[str, Any]
) -> None:
    engine = twin.engine()
    with pytest.raises(
        SyncError,
        match=r"purchases \(purchase\.purchase\.fields_get: unknown model "
        r"'purchase\.purchase'.*mark an entity `optional: true`|"
        r"mark an entity `optional: true`.*purchases",
    ):
        engine.run(mapped_connector(core, plain, MISSING_REQUIRED, "required.yaml"), "full")
    # the entity after the missing one was still synced
    assert twin.store.require(f"tryton:party:{plain_enterprise['customer']}").properties["name"] == "Koleje Śląskie"


DOTTED_TYPO = """
system: tryton
entities:
  - name: staff
    class: Employee
    uid: "tryton:party:{party}"
    source: {model: company.employee, fields: [party, party.name, party.nosuch]}
    properties:
      name: party.name
      employeeId: {field: party, cast: string}
      jobTitle: party.nosuch
"""


def test_unknown_field_after_a_dot_names_entity_line_and_field(
    core: Ontology, twin: TwinEnv, plain: TrytonClient, plain_enterprise: dict[str, Any]
) -> None:
    with pytest.raises(SyncError) as caught:
        twin.engine().run(mapped_connector(core, plain, DOTTED_TYPO, "staff.yaml"), "full")
    message = str(caught.value)
    assert "tryton/staff: staff.yaml:11:" in message  # the line of `jobTitle: party.nosuch`
    assert "'party.nosuch'" in message and "unknown field 'nosuch' of party.party" in message


def read_all(source: TrytonSource) -> list[Any]:
    """Every record of a source (to trigger its checks)."""
    return [record for batch in source.read(None) for record in batch]


def test_wrong_database_is_reported_as_such_not_as_an_unknown_model(plain_tryton_server: TrytonServer) -> None:
    server = plain_tryton_server
    with (
        TrytonClient(server.url, "no_such_db", server.username, server.password) as client,
        pytest.raises(TrytonUnavailableError) as caught,
    ):
        read_all(TrytonSource(client, "party.party", ["name"]))
    assert "database 'no_such_db' not found" in str(caught.value)
    assert "cannot describe" not in str(caught.value) and server.password not in str(caught.value)


def test_server_down_is_reported_as_such_not_as_an_unknown_model() -> None:
    with (
        TrytonClient("http://127.0.0.1:9", "twin", "admin", "pw-4711", timeout=2.0) as client,
        pytest.raises(TrytonUnavailableError) as caught,
    ):
        read_all(TrytonSource(client, "party.party", ["name"]))
    assert "cannot reach Tryton at http://127.0.0.1:9" in str(caught.value)
    assert "cannot describe" not in str(caught.value) and "pw-4711" not in str(caught.value)


def test_wrong_password_is_reported_as_such_when_reading(plain_tryton_server: TrytonServer) -> None:
    server = plain_tryton_server
    with (
        TrytonClient(server.url, server.database, server.username, "wrong-pw-1") as client,
        pytest.raises(TrytonAuthenticationError, match="refused the login of user 'admin'"),
    ):
        read_all(TrytonSource(client, "party.party", ["name"]))


def test_unknown_model_is_a_missing_source_object(plain: TrytonClient) -> None:
    with pytest.raises(SourceObjectMissing, match=r"unknown model 'production': no module activated on database"):
        read_all(TrytonSource(plain, "production", ["rec_name"]))
    with pytest.raises(SourceError, match=r"unknown field\(s\) shoe_size") as caught:
        read_all(TrytonSource(plain, "party.party", ["name", "shoe_size"]))
    assert not isinstance(caught.value, SourceObjectMissing)


def test_connect_run_reports_the_skipped_entities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plain_tryton_server: TrytonServer, plain_enterprise: dict[str, Any]
) -> None:
    server = plain_tryton_server
    data = tmp_path / "twin"
    data.mkdir()
    (data / "connectors.yaml").write_text(
        "connectors:\n  tryton:\n    mapping: mappings/tryton.yaml\n"
        f'    source: {{kind: tryton, url: "{server.url}", database: {server.database}, '
        f'username: {server.username}, password: "${{TRYTON_PASSWORD}}"}}\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    monkeypatch.setenv("TRYTON_PASSWORD", server.password)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["connect", "run", "tryton", "--full"], env={"COLUMNS": "200"})
        as_json = CliRunner().invoke(app, ["connect", "run", "tryton", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "quarantined 0" in result.output
    assert "purchases skipped: purchase.purchase.fields_get: unknown model 'purchase.purchase'" in result.output
    assert as_json.exit_code == 0, as_json.output
    entities = json.loads(as_json.output)["entities"]
    assert {name for name, counts in entities.items() if counts["skipped"]} == OPTIONAL
    assert entities["employees"]["skipped"] is None
    assert falkordb_processes_under(tmp_path) == [], "a command left the embedded server running"
