"""Write-back to the sample ERP: `erp.purchase_order` creates a purchase order (header and one line) in the ERP
database, with the proposal id as its idempotency key — the order number is `TW-<proposal id>` (unique in the ERP),
so running the same proposal again finds the order it wrote instead of writing a second one. Then the twin gets the
PurchaseOrder with its supplier and material links, as the next ERP sync will bring it (with lineage).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from governance.decisions.actions import ActionType, TwinChange, WritebackFailed
from graph.model import Link, Twin
from graph.store import GraphStore

ORDER_PREFIX = "TW-"
_FIND_ORDER = "SELECT po_id FROM purchase_orders WHERE po_number = :n"
_SUPPLIER = "SELECT supplier_id, lead_time_days FROM suppliers WHERE supplier_code = :c"
_MATERIAL = "SELECT material_id, standard_cost FROM materials WHERE material_code = :c"
_OFFER = "SELECT unit_price, lead_time_days FROM supplier_materials WHERE supplier_id = :s AND material_id = :m"
_SITE = "SELECT site_id FROM sites WHERE site_code = :c"
_FIRST_PLANT = "SELECT site_id FROM sites WHERE kind = 'plant' ORDER BY site_id LIMIT 1"
_INSERT_ORDER = (
    "INSERT INTO purchase_orders (po_id, po_number, supplier_id, site_id, order_date, expected_date, "
    "received_date, status, total_amount, updated_at) VALUES (:id, :n, :s, :site, :d, :e, NULL, 'open', "
    ":total, :u)"
)
_INSERT_LINE = (
    "INSERT INTO purchase_order_lines (po_line_id, po_id, line_no, material_id, quantity, unit_price, "
    "updated_at) VALUES (:l, :id, 1, :m, :q, :p, :u)"
)


class PurchaseOrderParameters(BaseModel):
    """Order `quantity` of a material from a supplier (twins of the sample ERP), delivered to a plant."""

    model_config = ConfigDict(extra="forbid")
    material: str = Field(pattern=r"^erp:material:[A-Za-z0-9_.-]{1,40}$")
    supplier: str = Field(pattern=r"^erp:supplier:[A-Za-z0-9_.-]{1,40}$")
    quantity: float = Field(gt=0, le=1_000_000)
    site_code: str | None = Field(default=None, max_length=20)


def order_number(proposal_id: str) -> str:
    """The ERP order number a proposal writes (its idempotency key in the ERP)."""
    return f"{ORDER_PREFIX}{proposal_id}"


class ErpPurchaseOrders:
    """Creates purchase orders in the sample ERP database (an SQLAlchemy URL, e.g. sqlite:///…/erp.sqlite)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
        if url.startswith("sqlite"):
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            event.listen(self.engine, "connect", _no_pysqlite_begin)

    def write(self, proposal_id: str, params: PurchaseOrderParameters) -> str:
        """Create the order once (a second call finds it); its number. WritebackFailed when the ERP refuses."""
        number = order_number(proposal_id)
        try:
            with self.engine.begin() as conn:
                if conn.execute(text(_FIND_ORDER), {"n": number}).first() is None:
                    self._insert(conn, number, params)
        except IntegrityError:  # written by another worker an instant ago (the order number is unique)
            return number
        except DBAPIError as exc:
            raise WritebackFailed(
                f"the ERP refused the purchase order: {type(exc.orig).__name__}: {str(exc.orig)[:200]}"
            ) from None
        return number

    @staticmethod
    def _insert(conn: Connection, number: str, params: PurchaseOrderParameters) -> None:
        """The order's header and line, priced from the supplier's offer (else the material's standard cost)."""
        supplier_code, material_code = params.supplier.rsplit(":", 1)[1], params.material.rsplit(":", 1)[1]
        supplier = conn.execute(text(_SUPPLIER), {"c": supplier_code}).first()
        material = conn.execute(text(_MATERIAL), {"c": material_code}).first()
        if supplier is None or material is None:
            missing = [
                what
                for what, row in ((f"supplier {supplier_code}", supplier), (f"material {material_code}", material))
                if row is None
            ]
            raise WritebackFailed(f"the ERP has no {' and no '.join(missing)}")
        offer = conn.execute(text(_OFFER), {"s": supplier.supplier_id, "m": material.material_id}).first()
        site = conn.execute(text(_SITE if params.site_code else _FIRST_PLANT), {"c": params.site_code}).first()
        if site is None:
            raise WritebackFailed(f"the ERP has no site {params.site_code or '(no plant)'}")
        price = float(offer.unit_price if offer is not None else material.standard_cost)
        lead = int(offer.lead_time_days if offer is not None else supplier.lead_time_days)
        stamp = _stamp(conn)
        po_id = conn.execute(text("SELECT COALESCE(MAX(po_id), 0) + 1 FROM purchase_orders")).scalar_one()
        line_id = conn.execute(text("SELECT COALESCE(MAX(po_line_id), 0) + 1 FROM purchase_order_lines")).scalar_one()
        today = date.today()
        conn.execute(
            text(_INSERT_ORDER),
            {
                "id": po_id,
                "n": number,
                "s": supplier.supplier_id,
                "site": site.site_id,
                "d": today.isoformat(),
                "e": (today + timedelta(days=lead)).isoformat(),
                "total": round(price * params.quantity, 2),
                "u": stamp,
            },
        )
        conn.execute(
            text(_INSERT_LINE),
            {"l": line_id, "id": po_id, "m": material.material_id, "q": params.quantity, "p": price, "u": stamp},
        )

    def orders(self, proposal_id: str) -> int:
        """How many orders the ERP holds for a proposal (exactly one once it ran)."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT COUNT(*) FROM purchase_orders WHERE po_number = :n"), {"n": order_number(proposal_id)}
                ).scalar_one()
            )


def _no_pysqlite_begin(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's `begin` event issues BEGIN IMMEDIATE itself


def _stamp(conn: Connection) -> str:
    """Now (the sample's text format), never before the newest `updated_at` of the order tables (watermarks)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    newest = max(
        str(conn.execute(text(f"SELECT MAX(updated_at) FROM {t}")).scalar() or "")[:19]
        for t in ("purchase_orders", "purchase_order_lines")
    )
    return max(now, newest)


def purchase_order_action(url: str) -> ActionType:
    """The `erp.purchase_order` action type over the ERP database at `url`."""
    erp = ErpPurchaseOrders(url)

    def twin_change(
        proposal_id: str, params: PurchaseOrderParameters, reference: str | None, store: GraphStore
    ) -> TwinChange:
        number = reference or order_number(proposal_id)
        uid = f"erp:po:{number}"
        return TwinChange(
            twins=(
                Twin(
                    uid,
                    "PurchaseOrder",
                    {"name": number, "orderNumber": number, "orderStatus": "open", "currency": "EUR"},
                ),
            ),
            links=(
                Link("placedWith", uid, params.supplier, {}),
                Link("orders", uid, params.material, {"quantity": params.quantity}),
            ),
        )

    return ActionType(
        "erp.purchase_order",
        PurchaseOrderParameters,
        "Create a purchase order in the sample ERP (idempotent by the proposal id).",
        writeback=lambda pid, params: erp.write(pid, params),
        twin_change=twin_change,
    )
