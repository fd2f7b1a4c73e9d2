"""The sample enterprise at work: a small driver that keeps writing business changes into its source databases.

While `twin demo` serves, `SampleActivity` makes one change every `every_seconds` in the sample's SQLite systems,
taking turns: a new sales order and a new purchase order in the ERP database, and a hire, a transfer, a leaver or
a rename in the HR database. Each is a real SQL write whose rows get a fresh `updated_at` (never older than the
newest in their table), so the connectors' incremental syncs pick it up on their next run.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from connectors.sample.enterprise import FIRST_NAMES, LAST_NAMES, SampleEnterpriseError

KINDS = ("sales order", "hire", "purchase order", "transfer", "rename", "leaver")
"""The changes the driver makes, in the order it takes turns."""
MIN_EVERY_SECONDS = 0.1

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActivityChange:
    """One change the driver wrote: which system and table, the row's key, and what happened."""

    kind: str
    system: str
    table: str
    key: str
    updated_at: str
    detail: str


class SampleActivity:
    """Writes a gentle stream of business changes into the sample enterprise's HR and ERP databases."""

    def __init__(self, sample_dir: Path, every_seconds: float = 3.0, seed: int | None = None) -> None:
        if every_seconds < MIN_EVERY_SECONDS:
            raise SampleEnterpriseError(f"activity every {every_seconds} s: must be at least {MIN_EVERY_SECONDS} s")
        self.sample_dir = Path(sample_dir)
        for system in ("hr", "erp"):
            if not (self.sample_dir / f"{system}.sqlite").is_file():
                raise SampleEnterpriseError(
                    f"{self.sample_dir / f'{system}.sqlite'}: no sample database here; run generate_sample first"
                )
        self.every_seconds = every_seconds
        self.changes: list[ActivityChange] = []
        self.errors: list[str] = []
        self._rng = random.Random(seed)
        self._turn = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start writing in a background thread (one change every `every_seconds`); returns at once."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sample-activity", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop writing; a change being written is finished first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            try:
                self.step()
            except (sqlite3.Error, SampleEnterpriseError) as exc:  # a locked or changed database: try next turn
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                logger.warning("sample activity: %s", self.errors[-1])

    # ------------------------------------------------------------------------------------------- changes
    def step(self) -> ActivityChange:
        """Make the next change in turn and return it."""
        kind = KINDS[self._turn % len(KINDS)]
        self._turn += 1
        system = "erp" if kind in ("sales order", "purchase order") else "hr"
        con = sqlite3.connect(self.sample_dir / f"{system}.sqlite", timeout=10)
        try:
            with con:
                change = _WRITERS[kind](self, con)
        finally:
            con.close()
        self.changes.append(change)
        return change

    def _stamp(self, con: sqlite3.Connection, *tables: str) -> str:
        """Now (UTC, the sample's text format), but never before the newest `updated_at` already in `tables`."""
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        newest = max((con.execute(f"SELECT MAX(updated_at) FROM {t}").fetchone()[0] or "")[:19] for t in tables)
        return max(now, newest)

    def _pick(self, con: sqlite3.Connection, sql: str, what: str, params: tuple = ()) -> tuple:
        """One row of `sql`'s answer, at random."""
        rows = con.execute(sql, params).fetchall()
        if not rows:
            raise SampleEnterpriseError(f"the sample has no {what} to change")
        return rows[self._rng.randrange(len(rows))]

    def _sales_order(self, con: sqlite3.Connection) -> ActivityChange:
        stamp = self._stamp(con, "sales_orders", "sales_order_lines")
        (customer,) = self._pick(con, "SELECT customer_number FROM customers", "customer")
        (site,) = self._pick(con, "SELECT site_id FROM sites WHERE kind = 'plant'", "plant")
        so_id = con.execute("SELECT COALESCE(MAX(so_id), 0) + 1 FROM sales_orders").fetchone()[0]
        line_id = con.execute("SELECT COALESCE(MAX(so_line_id), 0) FROM sales_order_lines").fetchone()[0]
        products = con.execute("SELECT product_id, unit_price FROM products WHERE is_active = 1").fetchall()
        if not products:
            raise SampleEnterpriseError("the sample has no active product to sell")
        lines = [
            (line_id + n + 1, so_id, n + 1, product, self._rng.randint(1, 20), round(price, 2))
            for n, (product, price) in enumerate(
                self._rng.sample(products, min(len(products), self._rng.randint(1, 3)))
            )
        ]
        total = round(sum(q * p for *_, q, p in lines), 2)
        today = date.today()
        number = f"SO-{so_id:07d}"
        con.execute(
            "INSERT INTO sales_orders (so_id, so_number, customer_number, site_id, order_date, requested_date,"
            " shipped_date, status, total_amount, currency, updated_at) VALUES (?, ?, ?, ?, ?, ?, NULL, 'open',"
            " ?, 'EUR', ?)",
            (so_id, number, customer, site, today.isoformat(), (today + timedelta(days=14)).isoformat(), total, stamp),
        )
        con.executemany(
            "INSERT INTO sales_order_lines (so_line_id, so_id, line_no, product_id, quantity, unit_price,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*line, stamp) for line in lines],
        )
        return ActivityChange(
            "sales order",
            "erp",
            "sales_orders",
            number,
            stamp,
            f"{number} for {customer}: {len(lines)} lines, {total:.2f} EUR",
        )

    def _purchase_order(self, con: sqlite3.Connection) -> ActivityChange:
        stamp = self._stamp(con, "purchase_orders", "purchase_order_lines")
        supplier, material, price, lead, minimum = self._pick(
            con,
            "SELECT supplier_id, material_id, unit_price, lead_time_days, min_order_qty FROM supplier_materials",
            "supplier material",
        )
        (site,) = self._pick(con, "SELECT site_id FROM sites WHERE kind = 'plant'", "plant")
        po_id = con.execute("SELECT COALESCE(MAX(po_id), 0) + 1 FROM purchase_orders").fetchone()[0]
        line_id = con.execute("SELECT COALESCE(MAX(po_line_id), 0) + 1 FROM purchase_order_lines").fetchone()[0]
        quantity = float(minimum * self._rng.randint(1, 4))
        total = round(quantity * price, 2)
        today = date.today()
        number = f"PO-{po_id:07d}"
        con.execute(
            "INSERT INTO purchase_orders (po_id, po_number, supplier_id, site_id, order_date, expected_date,"
            " received_date, status, total_amount, updated_at) VALUES (?, ?, ?, ?, ?, ?, NULL, 'open', ?, ?)",
            (
                po_id,
                number,
                supplier,
                site,
                today.isoformat(),
                (today + timedelta(days=int(lead))).isoformat(),
                total,
                stamp,
            ),
        )
        con.execute(
            "INSERT INTO purchase_order_lines (po_line_id, po_id, line_no, material_id, quantity, unit_price,"
            " updated_at) VALUES (?, ?, 1, ?, ?, ?, ?)",
            (line_id, po_id, material, quantity, price, stamp),
        )
        return ActivityChange(
            "purchase order",
            "erp",
            "purchase_orders",
            number,
            stamp,
            f"{number} to supplier {supplier}: {quantity:g} of material {material}",
        )

    def _hire(self, con: sqlite3.Connection) -> ActivityChange:
        stamp = self._stamp(con, "employees")
        unit, position, manager, hours, salary = self._pick(
            con,
            "SELECT org_unit_id, position_id, manager_id, capacity_hours_per_week, salary FROM employees "
            "WHERE status = 'active' AND manager_id IS NOT NULL",
            "employee with a manager",
        )
        number = con.execute("SELECT MAX(CAST(SUBSTR(employee_id, 2) AS INTEGER)) FROM employees").fetchone()[0] + 1
        employee = f"E{number:06d}"
        first, last = self._rng.choice(FIRST_NAMES), self._rng.choice(LAST_NAMES)
        email = self._free_email(con, first, last)
        phone = f"+1 {self._rng.randint(200, 989)} 555 {self._rng.randint(0, 9999):04d}"
        birth = date.today() - timedelta(days=self._rng.randint(22 * 365, 55 * 365))
        con.execute(
            "INSERT INTO employees (employee_id, first_name, last_name, work_email, phone, birth_date, "
            "hire_date, termination_date, salary, org_unit_id, position_id, manager_id, "
            "capacity_hours_per_week, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, "
            "'active', ?)",
            (
                employee,
                first,
                last,
                email,
                phone,
                birth.isoformat(),
                date.today().isoformat(),
                round(salary, -2),
                unit,
                position,
                manager,
                hours,
                stamp,
            ),
        )
        return ActivityChange("hire", "hr", "employees", employee, stamp, f"{first} {last} joins {unit}")

    def _free_email(self, con: sqlite3.Connection, first: str, last: str) -> str:
        domain = con.execute("SELECT work_email FROM employees LIMIT 1").fetchone()[0].split("@")[1]
        local, n = f"{first}.{last}".lower(), 1
        email = f"{local}@{domain}"
        while con.execute("SELECT 1 FROM employees WHERE work_email = ?", (email,)).fetchone():
            n += 1
            email = f"{local}{n}@{domain}"
        return email

    def _transfer(self, con: sqlite3.Connection) -> ActivityChange:
        stamp = self._stamp(con, "employees")
        employee, unit = self._pick(
            con,
            "SELECT e.employee_id, e.org_unit_id FROM employees e WHERE e.status = 'active' AND "
            "e.manager_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM employees r WHERE r.manager_id = "
            "e.employee_id)",
            "employee without reports",
        )
        target, manager = self._pick(
            con,
            "SELECT e.org_unit_id, e.manager_id FROM employees e WHERE e.status = 'active' AND e.manager_id IS "
            "NOT NULL AND e.org_unit_id <> ? AND e.manager_id <> ?",
            "other unit",
            (unit, employee),
        )
        con.execute(
            "UPDATE employees SET org_unit_id = ?, manager_id = ?, updated_at = ? WHERE employee_id = ?",
            (target, manager, stamp, employee),
        )
        return ActivityChange("transfer", "hr", "employees", employee, stamp, f"{employee} moves {unit} -> {target}")

    def _rename(self, con: sqlite3.Connection) -> ActivityChange:
        stamp = self._stamp(con, "employees")
        employee, first, last = self._pick(
            con, "SELECT employee_id, first_name, last_name FROM employees WHERE status = 'active'", "employee"
        )
        new_last = self._rng.choice([n for n in LAST_NAMES if n != last])
        con.execute(
            "UPDATE employees SET last_name = ?, updated_at = ? WHERE employee_id = ?", (new_last, stamp, employee)
        )
        return ActivityChange("rename", "hr", "employees", employee, stamp, f"{first} {last} is now {first} {new_last}")

    def _leaver(self, con: sqlite3.Connection) -> ActivityChange:
        stamp = self._stamp(con, "employees")
        employee, first, last = self._pick(
            con,
            "SELECT e.employee_id, e.first_name, e.last_name FROM employees e WHERE e.status = 'active' AND "
            "e.manager_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM employees r WHERE r.manager_id = "
            "e.employee_id AND r.status = 'active')",
            "employee without reports",
        )
        con.execute(
            "UPDATE employees SET status = 'terminated', termination_date = ?, updated_at = ? WHERE employee_id = ?",
            (date.today().isoformat(), stamp, employee),
        )
        return ActivityChange("leaver", "hr", "employees", employee, stamp, f"{first} {last} leaves")


_WRITERS = {
    "sales order": SampleActivity._sales_order,
    "purchase order": SampleActivity._purchase_order,
    "hire": SampleActivity._hire,
    "transfer": SampleActivity._transfer,
    "rename": SampleActivity._rename,
    "leaver": SampleActivity._leaver,
}

__all__ = ["ActivityChange", "KINDS", "SampleActivity"]
