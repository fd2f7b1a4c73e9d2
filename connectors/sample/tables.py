"""Table definitions of the sample enterprise's three source systems (HR, CRM, ERP) as SQLAlchemy metadata.

Each system is its own SQLite database, so foreign keys are declared only inside a system. References across
systems are plain business-key columns, as in a real landscape:

- hr.org_units.site_code            -> erp.sites.site_code
- crm.accounts.account_number       -> erp.customers.customer_number (customers only; prospects have none)
- crm.accounts/opportunities/cases.owner_email -> hr.employees.work_email
- crm.contacts.email                -> hr.employees.work_email for internal contacts (case/whitespace may differ)
- crm.opportunities.product_line    -> erp.products.product_line
- crm.cases.product_sku             -> erp.products.sku
- erp.maintenance_logs.technician_email -> hr.employees.work_email

Every table has a single-column primary key and an indexed, non-null `updated_at` change watermark
(text 'YYYY-MM-DD HH:MM:SS', UTC). Money is in EUR, rounded to cents.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.schema import SchemaItem

HR = MetaData()
CRM = MetaData()
ERP = MetaData()

SYSTEMS: dict[str, MetaData] = {"hr": HR, "crm": CRM, "erp": ERP}
"""System name -> its metadata; the database file of a system is `<name>.sqlite`."""


def _table(name: str, metadata: MetaData, *items: SchemaItem) -> Table:
    """A table with the watermark column every sample table carries."""
    return Table(name, metadata, *items, Column("updated_at", DateTime, nullable=False, index=True))


# --------------------------------------------------------------------------------------------------- HR
org_units = _table(
    "org_units",
    HR,
    Column("org_unit_id", String(12), primary_key=True),
    Column("name", String(120), nullable=False),
    Column("kind", String(20), nullable=False),  # company | division | department | team
    Column("parent_id", String(12), ForeignKey("org_units.org_unit_id"), index=True),
    Column("site_code", String(20), nullable=False),
    Column("cost_center", String(12), nullable=False),
    CheckConstraint("kind IN ('company', 'division', 'department', 'team')", name="ck_org_units_kind"),
)

positions = _table(
    "positions",
    HR,
    Column("position_id", String(8), primary_key=True),
    Column("title", String(80), nullable=False, unique=True),
    Column("job_family", String(40), nullable=False),
    Column("grade", Integer, nullable=False),
    Column("is_manager", Boolean, nullable=False),
)

employees = _table(
    "employees",
    HR,
    Column("employee_id", String(12), primary_key=True),
    Column("first_name", String(60), nullable=False),
    Column("last_name", String(60), nullable=False),
    Column("work_email", String(160), nullable=False, unique=True),
    Column("phone", String(30), nullable=False),
    Column("birth_date", Date, nullable=False),
    Column("hire_date", Date, nullable=False),
    Column("termination_date", Date),
    Column("salary", Float, nullable=False),  # yearly gross, EUR
    Column("org_unit_id", String(12), ForeignKey("org_units.org_unit_id"), nullable=False, index=True),
    Column("position_id", String(8), ForeignKey("positions.position_id"), nullable=False, index=True),
    Column("manager_id", String(12), ForeignKey("employees.employee_id"), index=True),
    Column("capacity_hours_per_week", Float, nullable=False),
    Column("status", String(12), nullable=False),
    CheckConstraint("status IN ('active', 'terminated')", name="ck_employees_status"),
)

skills = _table(
    "skills",
    HR,
    Column("skill_id", String(8), primary_key=True),
    Column("name", String(80), nullable=False, unique=True),
    Column("category", String(40), nullable=False),
)

employee_skills = _table(
    "employee_skills",
    HR,
    Column("employee_skill_id", Integer, primary_key=True),
    Column("employee_id", String(12), ForeignKey("employees.employee_id"), nullable=False, index=True),
    Column("skill_id", String(8), ForeignKey("skills.skill_id"), nullable=False, index=True),
    Column("level", Integer, nullable=False),
    Column("certified", Boolean, nullable=False),
    UniqueConstraint("employee_id", "skill_id", name="uq_employee_skills_pair"),
    CheckConstraint("level BETWEEN 1 AND 5", name="ck_employee_skills_level"),
)

# -------------------------------------------------------------------------------------------------- CRM
accounts = _table(
    "accounts",
    CRM,
    Column("account_id", String(12), primary_key=True),
    Column("name", String(160), nullable=False),
    Column("account_number", String(12), unique=True),  # = erp.customers.customer_number for customers
    Column("vat_id", String(20), unique=True),
    Column("account_type", String(12), nullable=False),  # internal | customer | prospect | partner
    Column("industry", String(40), nullable=False),
    Column("country", String(2), nullable=False),
    Column("city", String(60), nullable=False),
    Column("annual_revenue", Float),
    Column("owner_email", String(160), nullable=False),
)

contacts = _table(
    "contacts",
    CRM,
    Column("contact_id", String(12), primary_key=True),
    Column("account_id", String(12), ForeignKey("accounts.account_id"), nullable=False, index=True),
    Column("first_name", String(60), nullable=False),
    Column("last_name", String(60), nullable=False),
    Column("email", String(160), nullable=False),  # internal contacts: an employee's work email, unnormalised
    Column("phone", String(30), nullable=False),
    Column("title", String(80), nullable=False),
)

opportunities = _table(
    "opportunities",
    CRM,
    Column("opportunity_id", String(12), primary_key=True),
    Column("account_id", String(12), ForeignKey("accounts.account_id"), nullable=False, index=True),
    Column("name", String(240), nullable=False),
    Column("product_line", String(40), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("amount", Float, nullable=False),
    Column("probability", Float, nullable=False),
    Column("expected_revenue", Float, nullable=False),  # amount * probability
    Column("created_date", Date, nullable=False),
    Column("close_date", Date, nullable=False),
    Column("owner_email", String(160), nullable=False),
    CheckConstraint(
        "stage IN ('prospecting', 'qualification', 'proposal', 'negotiation', 'closed_won', 'closed_lost')",
        name="ck_opportunities_stage",
    ),
)

cases = _table(
    "cases",
    CRM,
    Column("case_id", String(12), primary_key=True),
    Column("account_id", String(12), ForeignKey("accounts.account_id"), nullable=False, index=True),
    Column("contact_id", String(12), ForeignKey("contacts.contact_id"), index=True),
    Column("subject", String(240), nullable=False),
    Column("product_sku", String(20)),
    Column("priority", String(10), nullable=False),  # low | medium | high | critical
    Column("status", String(10), nullable=False),  # new | open | pending | closed
    Column("opened_at", DateTime, nullable=False),
    Column("closed_at", DateTime),
    Column("owner_email", String(160), nullable=False),
)

# -------------------------------------------------------------------------------------------------- ERP
sites = _table(
    "sites",
    ERP,
    Column("site_id", Integer, primary_key=True),
    Column("site_code", String(20), nullable=False, unique=True),
    Column("name", String(80), nullable=False),
    Column("kind", String(16), nullable=False),  # headquarters | plant | warehouse
    Column("city", String(60), nullable=False),
    Column("country", String(2), nullable=False),
    Column("latitude", Float, nullable=False),
    Column("longitude", Float, nullable=False),
)

work_centers = _table(
    "work_centers",
    ERP,
    Column("work_center_id", Integer, primary_key=True),
    Column("code", String(20), nullable=False, unique=True),
    Column("site_id", Integer, ForeignKey("sites.site_id"), nullable=False, index=True),
    Column("name", String(80), nullable=False),
    Column("kind", String(20), nullable=False),  # Machining | Assembly | Testing | Packaging | Welding | Painting
    Column("shift_count", Integer, nullable=False),
    Column("hours_per_shift", Float, nullable=False),
    Column("capacity_hours_per_day", Float, nullable=False),  # shifts * hours * machines * efficiency
    Column("cost_rate_per_hour", Float, nullable=False),
)

machines = _table(
    "machines",
    ERP,
    Column("machine_id", Integer, primary_key=True),
    Column("asset_tag", String(20), nullable=False, unique=True),
    Column("work_center_id", Integer, ForeignKey("work_centers.work_center_id"), nullable=False, index=True),
    Column("name", String(80), nullable=False),
    Column("machine_type", String(40), nullable=False),
    Column("manufacturer", String(60), nullable=False),
    Column("serial_number", String(30), nullable=False, unique=True),
    Column("mtbf_hours", Float, nullable=False),
    Column("mttr_hours", Float, nullable=False),
    Column("acquisition_cost", Float, nullable=False),
    Column("acquisition_date", Date, nullable=False),
    Column("status", String(12), nullable=False),  # operational | down (an open failure in maintenance_logs)
)

products = _table(
    "products",
    ERP,
    Column("product_id", Integer, primary_key=True),
    Column("sku", String(20), nullable=False, unique=True),
    Column("name", String(120), nullable=False),
    Column("product_line", String(40), nullable=False, index=True),
    Column("unit_price", Float, nullable=False),
    Column("unit_cost", Float, nullable=False),
    Column("weight_kg", Float, nullable=False),
    Column("site_id", Integer, ForeignKey("sites.site_id"), nullable=False, index=True),  # producing plant
    Column("is_active", Boolean, nullable=False),
)

materials = _table(
    "materials",
    ERP,
    Column("material_id", Integer, primary_key=True),
    Column("material_code", String(20), nullable=False, unique=True),
    Column("name", String(120), nullable=False),
    Column("category", String(12), nullable=False),  # raw | component | subassembly (made in-house)
    Column("product_line", String(40)),  # None for common raw materials
    Column("unit_of_measure", String(6), nullable=False),
    Column("standard_cost", Float, nullable=False),
    Column("safety_stock", Float, nullable=False),
)

bill_of_materials = _table(
    "bill_of_materials",
    ERP,
    Column("bom_line_id", Integer, primary_key=True),
    Column("parent_product_id", Integer, ForeignKey("products.product_id"), index=True),
    Column("parent_material_id", Integer, ForeignKey("materials.material_id"), index=True),
    Column("component_material_id", Integer, ForeignKey("materials.material_id"), nullable=False, index=True),
    Column("quantity", Float, nullable=False),
    CheckConstraint("(parent_product_id IS NULL) <> (parent_material_id IS NULL)", name="ck_bom_exactly_one_parent"),
)

suppliers = _table(
    "suppliers",
    ERP,
    Column("supplier_id", Integer, primary_key=True),
    Column("supplier_code", String(20), nullable=False, unique=True),
    Column("name", String(160), nullable=False),
    Column("category", String(12), nullable=False),  # raw | component
    Column("country", String(2), nullable=False),
    Column("vat_id", String(20), nullable=False, unique=True),
    Column("reliability", Float, nullable=False),  # probability of an on-time delivery, 0..1
    Column("lead_time_days", Integer, nullable=False),
    Column("payment_terms_days", Integer, nullable=False),
    CheckConstraint("reliability BETWEEN 0 AND 1", name="ck_suppliers_reliability"),
)

supplier_materials = _table(
    "supplier_materials",
    ERP,
    Column("supplier_material_id", Integer, primary_key=True),
    Column("supplier_id", Integer, ForeignKey("suppliers.supplier_id"), nullable=False, index=True),
    Column("material_id", Integer, ForeignKey("materials.material_id"), nullable=False, index=True),
    Column("unit_price", Float, nullable=False),
    Column("lead_time_days", Integer, nullable=False),
    Column("min_order_qty", Float, nullable=False),
    Column("is_preferred", Boolean, nullable=False),
    UniqueConstraint("supplier_id", "material_id", name="uq_supplier_materials_pair"),
)

routings = _table(
    "routings",
    ERP,
    Column("routing_step_id", Integer, primary_key=True),
    Column("product_id", Integer, ForeignKey("products.product_id"), nullable=False, index=True),
    Column("step_no", Integer, nullable=False),
    Column("work_center_id", Integer, ForeignKey("work_centers.work_center_id"), nullable=False, index=True),
    Column("minutes_per_unit", Float, nullable=False),
    Column("setup_minutes", Float, nullable=False),
    UniqueConstraint("product_id", "step_no", name="uq_routings_step"),
)

customers = _table(
    "customers",
    ERP,
    Column("customer_id", Integer, primary_key=True),
    Column("customer_number", String(12), nullable=False, unique=True),  # = crm.accounts.account_number
    Column("name", String(160), nullable=False),  # legal name; the CRM name may omit the legal form
    Column("vat_id", String(20), nullable=False, unique=True),
    Column("country", String(2), nullable=False),
    Column("city", String(60), nullable=False),
    Column("payment_terms_days", Integer, nullable=False),
    Column("credit_limit", Float, nullable=False),
)

purchase_orders = _table(
    "purchase_orders",
    ERP,
    Column("po_id", Integer, primary_key=True),
    Column("po_number", String(16), nullable=False, unique=True),
    Column("supplier_id", Integer, ForeignKey("suppliers.supplier_id"), nullable=False, index=True),
    Column("site_id", Integer, ForeignKey("sites.site_id"), nullable=False, index=True),
    Column("order_date", Date, nullable=False),
    Column("expected_date", Date, nullable=False),
    Column("received_date", Date),
    Column("status", String(12), nullable=False),  # open | received | cancelled
    Column("total_amount", Float, nullable=False),
)

purchase_order_lines = _table(
    "purchase_order_lines",
    ERP,
    Column("po_line_id", Integer, primary_key=True),
    Column("po_id", Integer, ForeignKey("purchase_orders.po_id"), nullable=False, index=True),
    Column("line_no", Integer, nullable=False),
    Column("material_id", Integer, ForeignKey("materials.material_id"), nullable=False, index=True),
    Column("quantity", Float, nullable=False),
    Column("unit_price", Float, nullable=False),
)

sales_orders = _table(
    "sales_orders",
    ERP,
    Column("so_id", Integer, primary_key=True),
    Column("so_number", String(16), nullable=False, unique=True),
    Column("customer_number", String(12), ForeignKey("customers.customer_number"), nullable=False, index=True),
    Column("site_id", Integer, ForeignKey("sites.site_id"), nullable=False, index=True),  # shipping plant
    Column("order_date", Date, nullable=False, index=True),
    Column("requested_date", Date, nullable=False),
    Column("shipped_date", Date),
    Column("status", String(12), nullable=False),  # open | shipped | invoiced | cancelled
    Column("total_amount", Float, nullable=False),
    Column("currency", String(3), nullable=False),
)

sales_order_lines = _table(
    "sales_order_lines",
    ERP,
    Column("so_line_id", Integer, primary_key=True),
    Column("so_id", Integer, ForeignKey("sales_orders.so_id"), nullable=False, index=True),
    Column("line_no", Integer, nullable=False),
    Column("product_id", Integer, ForeignKey("products.product_id"), nullable=False, index=True),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Float, nullable=False),  # after the customer's discount
)

maintenance_logs = _table(
    "maintenance_logs",
    ERP,
    Column("log_id", Integer, primary_key=True),
    Column("machine_id", Integer, ForeignKey("machines.machine_id"), nullable=False, index=True),
    Column("kind", String(12), nullable=False),  # corrective (a failure)
    Column("failure_mode", String(40), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("ended_at", DateTime),  # None while the repair is still open (machine status 'down')
    Column("downtime_hours", Float),
    Column("technician_email", String(160)),
)
