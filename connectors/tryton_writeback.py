"""Write-back to Tryton: `tryton.purchase_order` creates a draft purchase (`purchase.purchase`, one line) in a real
trytond over its JSON-RPC API (connectors/tryton.py), with the proposal id as its idempotency key — the purchase's
`reference` is `TW-<proposal id>`, so running the same proposal again finds the purchase it wrote instead of writing
a second one. Then the twin gets the PurchaseOrder `tryton:purchase:<id>` with its supplier and product links, under
the uids the Tryton mapping (connectors/mappings/tryton.yaml) gives them, so the next sync brings Tryton's own values
for it into the same twin with lineage.

The purchase is priced from the supplier's product supplier price when Tryton has one, else from the product's cost
price; it is left in `draft` for the buyer in Tryton to confirm. The executor claims a proposal for a lease before it
runs it (governance/decisions/execution.py), so one proposal is written by one worker at a time; a crash after the
create is found again by the `reference` search on the retry.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectors.errors import ConnectorError
from connectors.tryton import TrytonClient
from governance.decisions.actions import ActionType, TwinChange, WritebackFailed
from graph.model import Link, Twin
from graph.store import GraphStore

REFERENCE_PREFIX = "TW-"
ACTION_TYPE = "tryton.purchase_order"


class TrytonPurchaseParameters(BaseModel):
    """Order `quantity` of a Tryton product from a Tryton supplier (twins as the Tryton mapping names them)."""

    model_config = ConfigDict(extra="forbid")
    product: str = Field(pattern=r"^tryton:product:[0-9]{1,12}$")
    supplier: str = Field(pattern=r"^tryton:party:[0-9]{1,12}$")
    quantity: float = Field(gt=0, le=1_000_000)
    connector: str = Field(default="tryton", min_length=1, max_length=128)


def purchase_reference(proposal_id: str) -> str:
    """The Tryton purchase `reference` a proposal writes (its idempotency key in Tryton)."""
    return f"{REFERENCE_PREFIX}{proposal_id}"


def _id(uid: str) -> int:
    return int(uid.rsplit(":", 1)[1])


class TrytonPurchases:
    """Creates draft purchases in Tryton, once per proposal."""

    def __init__(self, client: TrytonClient) -> None:
        self.client = client

    def find(self, proposal_id: str) -> list[int]:
        """The purchases Tryton holds for a proposal (one once it ran)."""
        return self.client.search("purchase.purchase", [("reference", "=", purchase_reference(proposal_id))])

    def write(self, proposal_id: str, params: TrytonPurchaseParameters) -> str:
        """Create the purchase once (a second call finds it); the twin uid of the purchase. WritebackFailed when
        Tryton refuses or cannot be reached."""
        try:
            found = self.find(proposal_id)
            purchase = found[0] if found else self._create(proposal_id, params)
        except ConnectorError as exc:
            raise WritebackFailed(f"Tryton refused the purchase: {str(exc)[:300]}") from None
        return f"tryton:purchase:{purchase}"

    def _create(self, proposal_id: str, params: TrytonPurchaseParameters) -> int:
        c = self.client
        product, party = _id(params.product), _id(params.supplier)
        company = c.context.get("company")
        if not company:
            raise WritebackFailed("the Tryton user has no company: set one in its preferences")
        products = c.read("product.product", [product], ["template", "cost_price"])
        if not products:
            raise WritebackFailed(f"Tryton has no product {product}")
        (template,) = c.read("product.template", [products[0]["template"]], ["purchase_uom", "default_uom"])
        addresses = c.search("party.address", [("party", "=", party)], limit=1)
        if not addresses:
            raise WritebackFailed(f"the Tryton supplier {party} has no address to invoice")
        (currency,) = c.read("company.company", [company], ["currency"])
        row = products[0]
        price = self._price(row["template"], party) or Decimal(str(row.get("cost_price") or 0))
        (purchase,) = c.create(
            "purchase.purchase",
            [
                {
                    "company": company,
                    "party": party,
                    "invoice_address": addresses[0],
                    "currency": currency["currency"],
                    "reference": purchase_reference(proposal_id),
                    "comment": f"Proposed by the twin's decision {proposal_id}",
                    "lines": [
                        (
                            "create",
                            [
                                {
                                    "product": product,
                                    "quantity": params.quantity,
                                    "unit": template["purchase_uom"] or template["default_uom"],
                                    "unit_price": price,
                                    "description": f"Reorder ({purchase_reference(proposal_id)})",
                                }
                            ],
                        )
                    ],
                }
            ],
        )
        return int(purchase)

    def _price(self, template: int, party: int) -> Decimal | None:
        """The supplier's price for the product in Tryton (its first product supplier price), if any."""
        suppliers = self.client.search(
            "purchase.product_supplier", [("template", "=", template), ("party", "=", party)], limit=1
        )
        if not suppliers:
            return None
        (supplier,) = self.client.read("purchase.product_supplier", suppliers, ["prices"])
        if not supplier["prices"]:
            return None
        (first,) = self.client.read("purchase.product_supplier.price", supplier["prices"][:1], ["unit_price"])
        value = first["unit_price"]
        return value if isinstance(value, Decimal) else Decimal(str(value))


def tryton_purchase_action(open_client: Callable[[str], TrytonClient]) -> ActionType:
    """The `tryton.purchase_order` action type; `open_client(connector)` gives a logged-in client of the Tryton
    connector the parameters name (connectors.yaml; `tryton` by default), opened when the action runs."""
    clients: dict[str, TrytonClient] = {}

    def writeback(proposal_id: str, params: Any) -> str:
        try:
            client = clients.get(params.connector) or open_client(params.connector)
        except ConnectorError as exc:
            raise WritebackFailed(f"Tryton connector {params.connector!r} cannot be opened: {exc}") from None
        clients[params.connector] = client
        return TrytonPurchases(client).write(proposal_id, params)

    def twin_change(proposal_id: str, params: Any, reference: str | None, store: GraphStore) -> TwinChange:
        if reference is None:
            raise WritebackFailed("the Tryton write-back returned no purchase")
        return TwinChange(
            twins=(Twin(reference, "PurchaseOrder", {"name": purchase_reference(proposal_id), "orderStatus": "open"}),),
            links=(
                Link("placedWith", reference, params.supplier, {}),
                Link("orders", reference, params.product, {"quantity": params.quantity}),
            ),
        )

    return ActionType(
        ACTION_TYPE,
        TrytonPurchaseParameters,
        "Create a draft purchase in Tryton (idempotent by the proposal id, kept as the purchase's reference).",
        writeback=writeback,
        twin_change=twin_change,
    )


def registry_client(open_options: Callable[[str], dict[str, Any]]) -> Callable[[str], TrytonClient]:
    """`open_client` over the connection options of a Tryton connector (url, database, username, password)."""

    def open_client(connector: str) -> TrytonClient:
        options = open_options(connector)
        missing = [k for k in ("url", "database", "username", "password") if not options.get(k)]
        if missing:
            raise WritebackFailed(f"connector {connector!r} is not a Tryton connection: no {', '.join(missing)}")
        client = TrytonClient(options["url"], options["database"], options["username"], options["password"])
        client.login()
        return client

    return open_client
