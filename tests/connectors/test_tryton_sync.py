"""Tryton end to end: records created through Tryton's own RPC API are synced with the packaged Tryton mapping,
changed and deleted in Tryton, synced again; the twin then matches Tryton exactly, with lineage for each value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.mapping import EntityMapping, load_mapping
from connectors.source import SourceObjectMissing
from connectors.sync import Connector, SyncEngine
from connectors.tryton import TrytonClient, TrytonSource, tryton_value
from governance.lineage import LineageStore
from ontology.model import Ontology
from tests.connectors.tryton_server import missing_tryton, running_server, template_database
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401

MAPPING = Path(__file__).resolve().parents[2] / "connectors" / "mappings" / "tryton.yaml"
STAGES = {
    "lead": "prospecting",
    "opportunity": "qualification",
    "converted": "closedWon",
    "won": "closedWon",
    "lost": "closedLost",
    "cancelled": "closedLost",
}
ORDER_STATES = {
    "draft": "open",
    "quotation": "open",
    "confirmed": "confirmed",
    "processing": "confirmed",
    "done": "delivered",
    "cancelled": "cancelled",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonClient]:
    """A trytond of this module's own (so "matches Tryton exactly" covers only what this module created)."""
    reason = missing_tryton()
    if reason is not None:
        pytest.skip(reason)
    with running_server(tmp_path_factory.mktemp("tryton-sync"), template_database()) as server:
        tryton = TrytonClient(server.url, server.database, server.username, server.password)
        tryton.login()
        yield tryton
        tryton.close()


def build_enterprise(c: TrytonClient) -> dict[str, Any]:
    """A small manufacturer created the way a Tryton client would."""
    currencies = c.search("currency.currency", [("code", "=", "EUR")])
    currency = (
        currencies[0]
        if currencies
        else c.create(
            "currency.currency",
            [{"name": "Euro", "code": "EUR", "symbol": "€", "digits": 2, "rounding": Decimal("0.01")}],
        )[0]
    )
    (company_party,) = c.create("party.party", [{"name": "Twin Sync Works"}])
    (company,) = c.create("company.company", [{"party": company_party, "currency": currency}])
    c.write(
        "res.user",
        [c.search("res.user", [("login", "=", "admin")])[0]],
        {"companies": [("add", [company])], "company": company},
    )
    c.refresh_context()
    people = c.create("party.party", [{"name": n} for n in ("Erin Chief", "Finn Fitter", "Gina Welder", "Hal Temp")])
    (chief,) = c.create("company.employee", [{"party": people[0], "company": company}])
    fitter, welder, temp = c.create(
        "company.employee", [{"party": p, "company": company, "supervisor": chief} for p in people[1:]]
    )
    supplier, customer = c.create("party.party", [{"name": "Ore & Alloy GmbH"}, {"name": "Rail Systems plc"}])
    (unit,) = c.search("product.uom", [("name", "=", "Unit")])
    (template,) = c.create(
        "product.template",
        [
            {
                "name": "Axle Housing",
                "type": "goods",
                "default_uom": unit,
                "list_price": Decimal("149.90"),
                "purchasable": True,
                "purchase_uom": unit,
                "salable": True,
                "sale_uom": unit,
                "producible": True,
                "products": [("create", [{"suffix_code": "AX-7"}])],
            }
        ],
    )
    (product,) = c.search("product.product", [("template", "=", template)])
    c.create("party.address", [{"party": supplier, "street": "Hüttenweg 3", "city": "Essen"}])
    (address,) = c.search("party.address", [("party", "=", supplier)])
    (purchase,) = c.create(
        "purchase.purchase",
        [
            {
                "company": company,
                "party": supplier,
                "invoice_address": address,
                "currency": currency,
                "purchase_date": dt.date(2025, 3, 1),
                "lines": [
                    (
                        "create",
                        [
                            {
                                "product": product,
                                "quantity": 40.0,
                                "unit": unit,
                                "unit_price": Decimal("60"),
                                "description": "Housings",
                            }
                        ],
                    )
                ],
            }
        ],
    )
    (opportunity,) = c.create(
        "sale.opportunity",
        [
            {
                "company": company,
                "party": customer,
                "description": "Bogie retrofit",
                "amount": Decimal("120000"),
                "currency": currency,
                "employee": fitter,
                "start_date": dt.date(2025, 4, 1),
                "conversion_probability": 0.3,
            }
        ],
    )
    (warehouse,) = c.search("stock.location", [("type", "=", "warehouse")], limit=1)
    (production_location,) = c.search("stock.location", [("type", "=", "production")], limit=1)
    (work_center,) = c.create(
        "production.work.center",
        [
            {
                "name": "Boring Mill 2",
                "company": company,
                "warehouse": warehouse,
                "cost_price": Decimal("55"),
                "cost_method": "cycle",
            }
        ],
    )
    (production,) = c.create(
        "production",
        [
            {
                "company": company,
                "warehouse": warehouse,
                "location": production_location,
                "product": product,
                "unit": unit,
                "quantity": 12.0,
                "work_center": work_center,
                "planned_date": dt.date(2025, 5, 1),
                "planned_start_date": dt.date(2025, 4, 28),
            }
        ],
    )
    (project,) = c.create(
        "project.work", [{"name": "Line 4 upgrade", "company": company, "type": "project", "timesheet_available": True}]
    )
    (timesheet_work,) = c.read("project.work", [project], ["timesheet_works"])[0]["timesheet_works"]
    c.create(
        "timesheet.line",
        [
            {
                "company": company,
                "employee": welder,
                "work": timesheet_work,
                "date": dt.date(2025, 4, 2),
                "duration": dt.timedelta(hours=6),
            }
        ],
    )
    (task,) = c.create(
        "project.work",
        [
            {
                "name": "Rewire cabinet",
                "company": company,
                "type": "task",
                "parent": project,
                "timesheet_available": True,
                "progress": 0.25,
                "effort_duration": dt.timedelta(hours=16),
            }
        ],
    )
    (task_work,) = c.read("project.work", [task], ["timesheet_works"])[0]["timesheet_works"]
    c.create(
        "timesheet.line",
        [
            {
                "company": company,
                "employee": fitter,
                "work": task_work,
                "date": dt.date(2025, 4, 3),
                "duration": dt.timedelta(hours=3),
            }
        ],
    )
    # a product without a code, and a supplier known only from its product supplier record (no purchase yet)
    (bolt_template,) = c.create(
        "product.template",
        [
            {
                "name": "Hex Bolt M12",
                "type": "goods",
                "default_uom": unit,
                "list_price": Decimal("0.40"),
                "purchasable": True,
                "purchase_uom": unit,
                "products": [("create", [{}])],
            }
        ],
    )
    (bolt,) = c.search("product.product", [("template", "=", bolt_template)])
    (fastener_supplier,) = c.create("party.party", [{"name": "Schrauben Łódź Sp. z o.o."}])
    c.create("purchase.product_supplier", [{"template": bolt_template, "product": bolt, "party": fastener_supplier}])
    return {
        "task": task,
        "bolt": bolt,
        "fastener_supplier": fastener_supplier,
        "company": company,
        "chief": chief,
        "fitter": fitter,
        "welder": welder,
        "temp": temp,
        "supplier": supplier,
        "customer": customer,
        "product": product,
        "purchase": purchase,
        "opportunity": opportunity,
        "work_center": work_center,
        "production": production,
        "project": project,
        "people": people,
    }


def tryton_connector(core: Ontology, client: TrytonClient) -> Connector:
    mapping = load_mapping(MAPPING, core)

    def open_source(entity: EntityMapping) -> TrytonSource:
        return TrytonSource(
            client,
            entity.source["model"],
            entity.source["fields"],
            entity.watermark or "write_date",
            domain=entity.source.get("domain"),
            overlap=dt.timedelta(seconds=1),
            name=f"tryton:{entity.name}",
        )

    return Connector("tryton", mapping, open_source)


def has_model(c: TrytonClient, model: str) -> bool:
    """Whether a module activated on the server defines `model`."""
    try:
        c.fields_get(model, ["id"])
    except SourceObjectMissing:
        return False
    return True


def expected_state(c: TrytonClient) -> tuple[dict[str, tuple[str, dict[str, Any]]], set[tuple[str, str, str]]]:
    """What the twin must hold, computed independently from Tryton's current records (purchase and production
    records only where those modules are activated)."""
    twins: dict[str, tuple[str, dict[str, Any]]] = {}
    links: set[tuple[str, str, str]] = set()
    ctx = {"active_test": False}
    for p in c.search_read("party.party", [], ["name", "code"], context=ctx):
        twins[f"tryton:party:{p['id']}"] = ("Organization", {"name": p["name"], "description": p["code"]})
    for e in c.search_read("company.employee", [], ["party", "supervisor", "supervisor.party"], context=ctx):
        uid = f"tryton:party:{e['party']}"  # an employee's party is the Employee twin
        twins[uid] = ("Employee", {**twins[uid][1], "employeeId": str(e["id"])})
        if e["supervisor"]:
            links.add(("reportsTo", uid, f"tryton:party:{e['supervisor.']['party']}"))
    for p in c.search_read("product.product", [], ["code", "template.name", "template.list_price"], context=ctx):
        twins[f"tryton:product:{p['id']}"] = (
            "Product",
            {
                "name": p["template."]["name"],
                "sku": p["code"] or f"TRYTON-{p['id']}",
                "unitPrice": float(p["template."]["list_price"]),
            },
        )
    if has_model(c, "purchase.product_supplier"):
        for s in c.search_read("purchase.product_supplier", [], ["party", "product"], context=ctx):
            twins[f"tryton:party:{s['party']}"] = ("Supplier", twins[f"tryton:party:{s['party']}"][1])
            if s["product"]:
                links.add(("supplies", f"tryton:party:{s['party']}", f"tryton:product:{s['product']}"))
    if has_model(c, "purchase.purchase"):
        for o in c.search_read(
            "purchase.purchase",
            [],
            ["party", "number", "rec_name", "state", "purchase_date", "total_amount"],
            context=ctx,
        ):
            twins[f"tryton:party:{o['party']}"] = ("Supplier", twins[f"tryton:party:{o['party']}"][1])
            props = {
                "name": o["rec_name"],
                "orderNumber": o["number"],
                "amount": float(o["total_amount"]),
                "orderStatus": ORDER_STATES[o["state"]],
                "orderDate": o["purchase_date"].isoformat() if o["purchase_date"] else None,
            }
            twins[f"tryton:purchase:{o['id']}"] = ("PurchaseOrder", {k: v for k, v in props.items() if v is not None})
            links.add(("placedWith", f"tryton:purchase:{o['id']}", f"tryton:party:{o['party']}"))
        for line in c.search_read("purchase.line", [("product", "!=", None)], ["purchase", "product"], context=ctx):
            links.add(("orders", f"tryton:purchase:{line['purchase']}", f"tryton:product:{line['product']}"))
    for o in c.search_read(
        "sale.opportunity",
        [],
        ["party", "description", "amount", "conversion_probability", "state", "end_date"],
        context=ctx,
    ):
        twins[f"tryton:party:{o['party']}"] = ("Customer", twins[f"tryton:party:{o['party']}"][1])
        props = {
            "name": o["description"],
            "expectedRevenue": float(o["amount"]) if o["amount"] is not None else None,
            "probability": o["conversion_probability"],
            "stage": STAGES[o["state"]],
            "closeDate": o["end_date"].isoformat() if o["end_date"] else None,
        }
        twins[f"tryton:opportunity:{o['id']}"] = ("Opportunity", {k: v for k, v in props.items() if v is not None})
        links.add(("forCustomer", f"tryton:opportunity:{o['id']}", f"tryton:party:{o['party']}"))
    if has_model(c, "production.work.center"):
        for w in c.search_read("production.work.center", [], ["name", "parent"], context=ctx):
            twins[f"tryton:work_center:{w['id']}"] = ("WorkCenter", {"name": w["name"]})
            if w["parent"]:
                links.add(("partOf", f"tryton:work_center:{w['id']}", f"tryton:work_center:{w['parent']}"))
        for p in c.search_read(
            "production", [], ["rec_name", "product", "quantity", "state", "work_center"], context=ctx
        ):
            uid = f"tryton:production:{p['id']}"
            twins[uid] = (
                "Process",
                {"name": p["rec_name"], "throughputPerDay": float(p["quantity"]), "description": p["state"]},
            )
            if p["product"]:
                links.add(("produces", uid, f"tryton:product:{p['product']}"))
            if p["work_center"]:
                links.add(("performs", f"tryton:work_center:{p['work_center']}", uid))
    for w in c.search_read("project.work", [], ["name", "type", "parent", "effort_duration", "progress"], context=ctx):
        props = {"name": w["name"], "progress": w["progress"], "effort": tryton_value(w["effort_duration"])}
        twins[f"tryton:project:{w['id']}"] = (
            "Project" if w["type"] == "project" else "Task",
            {k: v for k, v in props.items() if v is not None},
        )
        if w["parent"]:
            links.add(("partOf", f"tryton:project:{w['id']}", f"tryton:project:{w['parent']}"))
    for t in c.search_read("timesheet.line", [], ["employee.party", "work.origin"], context=ctx):
        origin = (t.get("work.") or {}).get("origin")
        if origin and origin.startswith("project.work,"):
            links.add(
                ("assignedTo", f"tryton:party:{t['employee.']['party']}", f"tryton:project:{origin.split(',')[1]}")
            )
    return twins, links


def twin_state(env: TwinEnv) -> tuple[dict[str, tuple[str, dict[str, Any]]], set[tuple[str, str, str]]]:
    twins = {}
    for uid, cls, props in env.store.backend.read(
        "MATCH (n:Twin) WHERE n.uid STARTS WITH 'tryton:' RETURN n.uid, n._class, properties(n)"
    ):
        props = {k: v for k, v in dict(props).items() if k not in ("uid", "_class")}
        twins[uid] = (cls, props)
    links = {
        tuple(row)
        for row in env.store.backend.read(
            "MATCH (a:Twin)-[r]->(b:Twin) WHERE a.uid STARTS WITH 'tryton:' RETURN type(r), a.uid, b.uid"
        )
    }
    return twins, links


def assert_matches_tryton(env: TwinEnv, client: TrytonClient) -> None:
    expected_twins, expected_links = expected_state(client)
    actual_twins, actual_links = twin_state(env)
    assert set(actual_twins) == set(expected_twins)
    for uid, (cls, props) in expected_twins.items():
        assert actual_twins[uid] == (cls, {k: v for k, v in props.items() if v is not None}), uid
    assert actual_links == expected_links
    lineage = LineageStore(env.state_url)
    for uid, (_, props) in actual_twins.items():  # every value has lineage back to its Tryton record
        recorded = {}
        for record in lineage.where_from(uid):
            recorded.setdefault(record.property, record)
        for prop, value in props.items():
            assert prop in recorded, f"{uid}.{prop} has no lineage"
            assert recorded[prop].source_system == "tryton" and recorded[prop].matches(value), f"{uid}.{prop}"


@pytest.mark.timeout(600)
def test_tryton_sync_end_to_end(core: Ontology, twin: TwinEnv, client: TrytonClient) -> None:
    c = client
    ids = build_enterprise(c)
    connector = tryton_connector(core, c)
    engine: SyncEngine = twin.engine()
    first = engine.run(connector, "full")
    assert first.status == "completed" and first.counts["quarantined"] == 0 and first.counts["pending_links"] == 0
    assert_matches_tryton(twin, c)
    welder = twin.store.require(f"tryton:party:{ids['people'][2]}")
    assert (welder.cls, welder.properties["name"]) == ("Employee", "Gina Welder")
    assert twin.store.require(f"tryton:product:{ids['bolt']}").properties["sku"] == f"TRYTON-{ids['bolt']}"
    assert twin.store.require(f"tryton:party:{ids['fastener_supplier']}").cls == "Supplier"
    assert twin.store.require(f"tryton:project:{ids['task']}").cls == "Task"
    (salary_like,) = LineageStore(twin.state_url).where_from(f"tryton:product:{ids['product']}", "unitPrice")
    assert (salary_like.source_object, salary_like.record_key, salary_like.source_field, salary_like.transform) == (
        "products",
        str(ids["product"]),
        "template.list_price",
        "cast:double",
    )
    assert salary_like.value == 149.9

    # change and delete records in Tryton, through its API
    c.write("party.party", [ids["people"][2]], {"name": "Gina Weldmaster"})
    c.write("company.employee", [ids["welder"]], {"supervisor": ids["fitter"]})
    c.write("sale.opportunity", [ids["opportunity"]], {"amount": Decimal("135000"), "conversion_probability": 0.6})
    c.write(
        "product.template",
        [c.read("product.product", [ids["product"]], ["template"])[0]["template"]],
        {"list_price": Decimal("155.00")},
    )
    c.delete("company.employee", [ids["temp"]])
    c.delete("party.party", [ids["people"][3]])  # the person left: their party goes too
    (second_opportunity,) = c.create(
        "sale.opportunity",
        [
            {
                "company": ids["company"],
                "party": ids["customer"],
                "description": "Spare wheelsets",
                "amount": Decimal("8000"),
                "employee": ids["chief"],
                "start_date": dt.date(2025, 6, 1),
            }
        ],
    )

    incremental = engine.run(connector, "incremental")
    # Gina's rename and new supervisor reach one twin (her party is her Employee twin), the opportunity its own
    assert incremental.counts["updated"] >= 3 and incremental.counts["created"] >= 1
    # incremental runs see deletions (the source's key list against the ledger): the person who left (employee and
    # party) is gone with their links, and the welder's old reportsTo link; the twin equals Tryton again
    assert twin.store.get(f"tryton:party:{ids['people'][3]}") is None and incremental.counts["deleted"] >= 2
    assert_matches_tryton(twin, c)
    c.execute("sale.opportunity", "cancel", [second_opportunity])
    c.delete("sale.opportunity", [second_opportunity])
    full = engine.run(connector, "full")
    assert full.entity("employees").deleted == 0 and full.entity("opportunities").deleted == 1
    assert_matches_tryton(twin, c)
    welder = twin.store.require(f"tryton:party:{ids['people'][2]}")
    assert welder.properties["name"] == "Gina Weldmaster"
    bosses = [
        n.uid for n in twin.store.neighbours(welder.uid, ["reportsTo"], "out", depth=1).nodes if n.uid != welder.uid
    ]
    assert bosses == [f"tryton:party:{ids['people'][1]}"]
    history = LineageStore(twin.state_url).where_from(f"tryton:opportunity:{ids['opportunity']}", "expectedRevenue")
    assert [h.value for h in history] == [135000.0, 120000.0]
    assert history[0].run_id == incremental.run_id
