"""The issue's "Must show" against a real trytond: stock below the reorder point -> a proposal appears -> a role that
may not approve is refused -> an approver approves -> exactly one purchase exists in Tryton (keyed by the proposal id
as its reference; running the action again finds it) -> the next sync brings it into the twin with lineage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from api.runtime import Runtime
from connectors.registry import ConnectorRegistry
from connectors.service import run_connector
from connectors.tryton import TrytonClient
from connectors.tryton_writeback import TrytonPurchaseParameters, TrytonPurchases, purchase_reference
from governance.decisions.approval import ApprovalRefused
from governance.identity import Subject
from graph.embedded import stop_embedded
from graph.model import Link, Twin
from tests.connectors.tryton_server import missing_tryton, running_server, template_database
from tests.decisions.conftest import settings_for

VIEWER = Subject(sub="vic", roles=frozenset({"viewer"}))
STEWARD = Subject(sub="ann", roles=frozenset({"data_steward"}))
EXECUTIVE = Subject(sub="bob", roles=frozenset({"executive"}))
SECRET_VARIABLE = "TWIN_TEST_TRYTON_PASSWORD"
REORDER = """\
automations:
  reorder-from-tryton:
    description: Order a Tryton product when the stock position that depends on it falls under its reorder point.
    role: data_steward
    trigger:
      change: {class: Material, properties: [stockLevel], kinds: [update]}
    neighbours: {hops: 2, via: [dependsOn, supplies]}
    condition: >-
      twin.stockLevel < 10.0 && neighbours.exists(n, n.cls == 'Product')
      && neighbours.exists(n, n.cls == 'Supplier')
    alert: {severity: warning, message: "'below reorder point: ' + twin.name"}
    action:
      type: tryton.purchase_order
      parameters:
        product: "neighbours.filter(n, n.cls == 'Product')[0].uid"
        supplier: "neighbours.filter(n, n.cls == 'Supplier')[0].uid"
        quantity: "100.0"
"""


@dataclass
class TrytonWorld:
    client: TrytonClient
    url: str
    database: str
    username: str
    product: int
    supplier: int


@pytest.fixture(scope="module")
def tryton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TrytonWorld, str]]:
    """A trytond of this module's own with a company, a supplier (with an address and a price) and a product."""
    reason = missing_tryton()
    if reason is not None:
        pytest.skip(reason)
    with running_server(tmp_path_factory.mktemp("tryton-writeback"), template_database()) as server:
        c = TrytonClient(server.url, server.database, server.username, server.password)
        c.login()
        currencies = c.search("currency.currency", [("code", "=", "EUR")])
        currency = (
            currencies[0]
            if currencies
            else c.create(
                "currency.currency",
                [{"name": "Euro", "code": "EUR", "symbol": "€", "digits": 2, "rounding": Decimal("0.01")}],
            )[0]
        )
        (company_party,) = c.create("party.party", [{"name": "Twin Decision Works"}])
        (company,) = c.create("company.company", [{"party": company_party, "currency": currency}])
        admin = c.search("res.user", [("login", "=", "admin")])[0]
        c.write("res.user", [admin], {"companies": [("add", [company])], "company": company})
        c.refresh_context()
        (supplier,) = c.create("party.party", [{"name": "Ore & Alloy GmbH"}])
        c.create("party.address", [{"party": supplier, "street": "Hüttenweg 3", "city": "Essen"}])
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
                    "products": [("create", [{"suffix_code": "AX-7"}])],
                }
            ],
        )
        (product,) = c.search("product.product", [("template", "=", template)])
        c.create(
            "purchase.product_supplier",
            [
                {
                    "template": template,
                    "product": product,
                    "party": supplier,
                    "prices": [("create", [{"quantity": 0.0, "unit_price": Decimal("61.50")}])],
                }
            ],
        )
        yield TrytonWorld(c, server.url, server.database, server.username, product, supplier), server.password
        c.close()


@pytest.fixture
def twin_over_tryton(
    tmp_path: Path, tryton: tuple[TrytonWorld, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Runtime, TrytonWorld]]:
    """A twin whose connectors.yaml points `tryton` at the test server (password from the environment)."""
    world, password = tryton
    monkeypatch.setenv(SECRET_VARIABLE, password)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "connectors.yaml").write_text(
        "connectors:\n"
        "  tryton:\n"
        "    mapping: mappings/tryton.yaml\n"
        f"    source: {{kind: tryton, url: {json.dumps(world.url)}, database: {world.database}, "
        f'username: {world.username}, password: "${{{SECRET_VARIABLE}}}"}}\n'
        "    schedule: off\n"
    )
    (data_dir / "automations.yaml").write_text(REORDER)
    runtime = Runtime(settings=settings_for(data_dir))
    try:
        yield runtime, world
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")


def _sync(runtime: Runtime) -> None:
    registry = ConnectorRegistry.load(
        runtime.ontology, data_dir=runtime.settings.data_dir, secrets={SECRET_VARIABLE: _password()}
    )
    report = run_connector(
        runtime.sync_engine("test"),
        registry.connector("tryton"),
        subject=runtime.operator(),
        policy=runtime.policy,
        audit=runtime.audit,
    )
    assert report is not None


def _password() -> str:
    import os

    return os.environ[SECRET_VARIABLE]


def test_stock_below_reorder_point_ends_in_exactly_one_tryton_purchase(
    twin_over_tryton: tuple[Runtime, TrytonWorld],
) -> None:
    runtime, world = twin_over_tryton
    c = world.client
    _sync(runtime)
    product_uid, supplier_uid = f"tryton:product:{world.product}", f"tryton:party:{world.supplier}"
    assert runtime.store.get(product_uid) is not None and runtime.store.get(supplier_uid) is not None
    # the stock position of the product, as a warehouse system reports it, depends on the Tryton product
    runtime.store.upsert_twins(
        [Twin("stock:AX-7", "Material", {"name": "Axle housings on hand", "stockLevel": 40.0})],
        actor="warehouse",
        source="test",
    )
    runtime.store.upsert_links([Link("dependsOn", "stock:AX-7", product_uid)], actor="warehouse", source="test")
    decisions = runtime.decision_runtime(holder="tryton-test")
    assert decisions is not None
    decisions.start()
    decisions.stop()  # driven step by step

    runtime.store.upsert_twins([Twin("stock:AX-7", "Material", {"stockLevel": 4.0})], actor="warehouse", source="t")
    decisions.step()
    service = runtime.decisions
    [proposal] = service.list_proposals(STEWARD, ["proposed"])
    assert proposal.action_type == "tryton.purchase_order"
    assert proposal.parameters == {
        "product": product_uid,
        "supplier": supplier_uid,
        "quantity": 100.0,
        "connector": "tryton",
    }

    # roles that may not approve tryton.purchase_order are refused; nothing is written to Tryton
    for refused in (VIEWER, STEWARD):
        with pytest.raises(ApprovalRefused, match="approver roles"):
            service.approve(refused, proposal.id)
    decisions.step()
    assert TrytonPurchases(c).find(proposal.id) == []

    approved = service.approve(EXECUTIVE, proposal.id, "reorder the housings")
    assert approved.state == "approved"
    decisions.step()
    done = service.proposals.require(proposal.id)
    assert done.state == "executed", done.result
    [purchase] = c.search("purchase.purchase", [("reference", "=", purchase_reference(proposal.id))])
    assert done.result == f"tryton:purchase:{purchase}"
    (row,) = c.read("purchase.purchase", [purchase], ["party", "state", "lines"])
    assert row["party"] == world.supplier and row["state"] == "draft"
    (line,) = c.read("purchase.line", row["lines"], ["product", "quantity", "unit_price"])
    assert line["product"] == world.product and line["quantity"] == 100.0 and line["unit_price"] == Decimal("61.50")

    # running the action again (a retry after a crash) finds the purchase it wrote: still exactly one
    params = TrytonPurchaseParameters.model_validate(done.parameters)
    assert TrytonPurchases(c).write(proposal.id, params) == done.result
    assert len(c.search("purchase.purchase", [("reference", "=", purchase_reference(proposal.id))])) == 1

    # the twin got the order at once; the next sync brings Tryton's values for it, with lineage
    order_uid = f"tryton:purchase:{purchase}"
    assert runtime.store.get(order_uid) is not None
    _sync(runtime)
    order = runtime.store.get(order_uid)
    assert order is not None and order.cls == "PurchaseOrder"
    assert order.properties["orderStatus"] == "open"
    lineage = runtime.lineage.where_from(order_uid)
    assert {r.property for r in lineage} >= {"name", "orderStatus"}
    assert {r.source_system for r in lineage} == {"tryton"}
    assert "purchases" in {r.source_object for r in lineage}  # the mapping's entity over purchase.purchase
    assert {r.record_key for r in lineage if r.source_object == "purchases"} == {str(purchase)}
    linked = runtime.store.query(
        "MATCH (o:Twin {uid: $o})-[:orders]->(p:Twin) MATCH (o)-[:placedWith]->(s:Twin) RETURN p.uid, s.uid",
        {"o": order_uid},
    )
    assert linked == [[product_uid, supplier_uid]]
    operations = [r.operation for r in runtime.audit.query(limit=100_000)]
    for transition in ("decision.proposed", "decision.approved", "decision.executed"):
        assert transition in operations


def test_an_unreachable_or_unconfigured_tryton_aborts_the_action_with_a_clear_error() -> None:
    from connectors.tryton_writeback import registry_client, tryton_purchase_action
    from governance.decisions.actions import WritebackFailed

    params = TrytonPurchaseParameters(product="tryton:product:1", supplier="tryton:party:2", quantity=5.0)
    down = tryton_purchase_action(
        registry_client(lambda name: {"url": "http://127.0.0.1:9", "database": "d", "username": "u", "password": "p"})
    )
    assert down.writeback is not None
    with pytest.raises(WritebackFailed, match="Tryton connector 'tryton' cannot be opened"):
        down.writeback("p1", params)
    unconfigured = tryton_purchase_action(registry_client(lambda name: {"url": "http://127.0.0.1:9"}))
    assert unconfigured.writeback is not None
    with pytest.raises(WritebackFailed, match="no database, username, password"):
        unconfigured.writeback("p1", params)
    with pytest.raises(ValueError, match="product"):
        TrytonPurchaseParameters.model_validate(
            {"product": "erp:material:1", "supplier": "tryton:party:2", "quantity": 1}
        )
