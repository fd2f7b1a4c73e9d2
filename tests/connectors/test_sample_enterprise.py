"""The sample enterprise generator: sizes, integrity inside and across systems, determinism, mutation."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter, defaultdict
from datetime import date, datetime
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, select

from connectors.sample.enterprise import (
    AS_OF,
    SIZE_PEOPLE,
    SampleEnterpriseError,
    SampleManifest,
    generate_sample,
    mutate_sample,
)
from connectors.sample.tables import SYSTEMS


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SampleManifest:
    return generate_sample(tmp_path_factory.mktemp("small"), "small", seed=7)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SampleManifest:
    return generate_sample(tmp_path_factory.mktemp("tiny"), "tiny", seed=7)


def query(manifest: SampleManifest, system: str, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(manifest.databases[system]) as con:
        return con.execute(sql, args).fetchall()


def dump(out_dir: Path) -> dict[str, list[str]]:
    """Every database as SQL text (schema + rows in rowid order)."""
    out = {}
    for system in SYSTEMS:
        with sqlite3.connect(out_dir / f"{system}.sqlite") as con:
            out[system] = list(con.iterdump())
    return out


def assert_integrity(manifest: SampleManifest) -> None:
    """Declared foreign keys hold in each database, and business keys across systems resolve."""
    for system in SYSTEMS:
        assert query(manifest, system, "PRAGMA foreign_key_check") == [], system
    emails = {e for (e,) in query(manifest, "hr", "SELECT work_email FROM employees")}
    sites = {s for (s,) in query(manifest, "erp", "SELECT site_code FROM sites")}
    skus = {s for (s,) in query(manifest, "erp", "SELECT sku FROM products")}
    lines = {s for (s,) in query(manifest, "erp", "SELECT DISTINCT product_line FROM products")}
    customers = dict(query(manifest, "erp", "SELECT customer_number, vat_id FROM customers"))
    assert {s for (s,) in query(manifest, "hr", "SELECT site_code FROM org_units")} <= sites
    for table in ("accounts", "opportunities", "cases"):
        owners = {e for (e,) in query(manifest, "crm", f"SELECT owner_email FROM {table}")}
        assert owners <= emails, table
    assert {s for (s,) in query(manifest, "crm", "SELECT product_sku FROM cases WHERE product_sku IS NOT NULL")} <= skus
    assert {s for (s,) in query(manifest, "crm", "SELECT product_line FROM opportunities")} <= lines
    techs = {
        e
        for (e,) in query(
            manifest, "erp", "SELECT technician_email FROM maintenance_logs WHERE technician_email IS NOT NULL"
        )
    }
    assert techs <= emails
    for number, vat in query(
        manifest, "crm", "SELECT account_number, vat_id FROM accounts WHERE account_number IS NOT NULL"
    ):
        assert customers[number] == vat  # same customer number and VAT in CRM and ERP


def test_named_sizes_scale_row_counts(tiny: SampleManifest, small: SampleManifest) -> None:
    assert tiny.row_counts["hr.employees"] == SIZE_PEOPLE["tiny"] == 50
    assert small.row_counts["hr.employees"] == SIZE_PEOPLE["small"] == 300
    for table in (
        "hr.employee_skills",
        "crm.accounts",
        "crm.contacts",
        "crm.opportunities",
        "crm.cases",
        "erp.sales_orders",
        "erp.sales_order_lines",
        "erp.purchase_orders",
        "erp.customers",
    ):
        assert small.row_counts[table] > 2.5 * tiny.row_counts[table], table
    for table in ("erp.work_centers", "erp.machines", "erp.maintenance_logs", "erp.products"):
        assert small.row_counts[table] > tiny.row_counts[table], table  # with floors for a minimal factory
    for table, n in small.row_counts.items():
        assert n > 0, table
        assert n == query(small, table.split(".")[0], f"SELECT COUNT(*) FROM {table.split('.')[1]}")[0][0]
    assert small.total_rows == sum(small.row_counts.values()) > 5 * 300


def test_integer_size_is_a_people_count(tmp_path: Path) -> None:
    manifest = generate_sample(tmp_path, 120, seed=3)
    assert manifest.size == "custom" and manifest.people == 120
    assert manifest.row_counts["hr.employees"] == 120
    assert manifest.row_counts["erp.sales_orders"] == 240


@pytest.mark.parametrize("size", ["huge", 10, -5, 3.5, True])
def test_bad_sizes_are_refused_with_the_input_named(tmp_path: Path, size: object) -> None:
    with pytest.raises(SampleEnterpriseError, match=str(size).replace(".", r"\.")):
        generate_sample(tmp_path, size, seed=1)  # type: ignore[arg-type]
    assert not (tmp_path / "hr.sqlite").exists()


def test_every_table_has_a_single_primary_key_and_a_watermark(small: SampleManifest) -> None:
    for system, path in small.databases.items():
        inspector = inspect(create_engine(f"sqlite:///{path}"))
        for table in inspector.get_table_names():
            assert len(inspector.get_pk_constraint(table)["constrained_columns"]) == 1, (system, table)
            columns = {c["name"]: c for c in inspector.get_columns(table)}
            assert "updated_at" in columns and not columns["updated_at"]["nullable"], (system, table)
            bad = query(
                small,
                system,
                f"SELECT COUNT(*) FROM {table} WHERE updated_at IS NULL OR updated_at > '{AS_OF.isoformat()} 00:00:00'",
            )
            assert bad == [(0,)], (system, table)


def assert_types(manifest: SampleManifest) -> None:
    """Every row reads back through the SQLAlchemy tables with the declared Python types and nullability."""
    for system, metadata in SYSTEMS.items():
        engine = create_engine(f"sqlite:///{manifest.databases[system]}")
        with engine.connect() as con:
            for table in metadata.sorted_tables:
                rows = con.execute(select(table)).mappings().all()
                assert rows, table.name
                for row in rows:
                    assert isinstance(row["updated_at"], datetime)
                    for column in table.columns:
                        value = row[column.name]
                        assert value is not None or column.nullable, (table.name, column.name)
                        if value is not None and column.type.python_type in (date, datetime, bool, int, float):
                            assert isinstance(value, column.type.python_type), (table.name, column.name, value)
        engine.dispose()


def test_tables_read_back_through_the_sqlalchemy_schema_with_python_types(small: SampleManifest) -> None:
    assert_types(small)


def test_referential_integrity_inside_and_across_systems(small: SampleManifest) -> None:
    assert_integrity(small)


def test_managers_form_one_tree_under_a_single_ceo(small: SampleManifest) -> None:
    rows = query(small, "hr", "SELECT employee_id, manager_id, status FROM employees")
    manager = {e: m for e, m, _ in rows}
    status = {e: s for e, _, s in rows}
    roots = [e for e, m in manager.items() if m is None]
    assert len(roots) == 1
    ceo_title = query(
        small, "hr", "SELECT p.title FROM employees e JOIN positions p USING (position_id) WHERE e.manager_id IS NULL"
    )
    assert ceo_title == [("Chief Executive Officer",)]
    assert all(e != m for e, m in manager.items())
    for employee in manager:  # every chain ends at the CEO without revisiting anyone
        seen, current = set(), employee
        while manager[current] is not None:
            assert current not in seen
            seen.add(current)
            current = manager[current]
        assert current == roots[0]
    assert all(status[m] == "active" for m in manager.values() if m is not None)  # leavers manage nobody


def test_org_units_are_a_tree_with_plants(small: SampleManifest) -> None:
    units = {
        u: (kind, parent, site)
        for u, kind, parent, site in query(small, "hr", "SELECT org_unit_id, kind, parent_id, site_code FROM org_units")
    }
    parent_kind = {"company": None, "division": "company", "department": "division", "team": "department"}
    for kind, parent, _ in units.values():
        assert (units[parent][0] if parent else None) == parent_kind[kind]
    names = dict(query(small, "hr", "SELECT name, site_code FROM org_units WHERE kind = 'department'"))
    assert names["Plant A"] == "PLANT-A" and names["Plant B"] == "PLANT-B"
    plants = dict(query(small, "erp", "SELECT site_code, name FROM sites WHERE kind = 'plant'"))
    assert plants["PLANT-A"] == "Plant A" and plants["PLANT-B"] == "Plant B"
    # every employee sits in an org unit; plants have maintenance teams (technicians for the machines)
    assert query(
        small,
        "hr",
        "SELECT COUNT(*) FROM org_units o JOIN org_units d ON o.parent_id = d.org_unit_id "
        "WHERE o.name = 'Maintenance' AND d.name IN ('Plant A', 'Plant B')",
    ) == [(2,)]


def test_employee_fields_are_plausible(small: SampleManifest) -> None:
    rows = query(
        small,
        "hr",
        "SELECT work_email, birth_date, hire_date, termination_date, salary, "
        "capacity_hours_per_week, status FROM employees",
    )
    for email, birth, hire, term, salary, capacity, status in rows:
        assert email == email.strip().lower() and email.endswith("@halvorsen-precision.example")
        assert date.fromisoformat(birth) < date.fromisoformat(hire) <= AS_OF
        assert (date.fromisoformat(hire) - date.fromisoformat(birth)).days >= 18 * 365
        assert (term is not None) == (status == "terminated")
        if term:
            assert date.fromisoformat(hire) < date.fromisoformat(term) <= AS_OF
        assert 20_000 < salary < 400_000 and 0 < capacity <= 40
    levels = {lvl for (lvl,) in query(small, "hr", "SELECT DISTINCT level FROM employee_skills")}
    assert levels <= {1, 2, 3, 4, 5} and len(levels) >= 4
    assert query(
        small, "hr", "SELECT MIN(c), MAX(c) FROM (SELECT COUNT(*) c FROM employee_skills GROUP BY employee_id)"
    ) == [(2, 5)]


def test_identity_overlap_between_crm_contacts_and_hr_employees(small: SampleManifest) -> None:
    employees = {e for (e,) in query(small, "hr", "SELECT work_email FROM employees")}
    contacts = [e for (e,) in query(small, "crm", "SELECT email FROM contacts")]
    matches = [e for e in contacts if e.strip().lower() in employees]
    assert len(matches) == small.identity_overlap >= 5
    assert any(e not in employees for e in matches)  # spelled differently (case, whitespace) in the CRM
    names = query(
        small, "crm", "SELECT c.first_name, c.last_name, c.email FROM contacts c WHERE c.account_id = 'ACC000001'"
    )
    hr_rows = query(small, "hr", "SELECT first_name, last_name, work_email FROM employees")
    hr_names = {e: (first, last) for first, last, e in hr_rows}
    assert all(hr_names[e.strip().lower()] == (first, last) for first, last, e in names)


def test_crm_records_are_plausible(small: SampleManifest) -> None:
    as_of = AS_OF.isoformat()
    assert query(
        small,
        "crm",
        "SELECT COUNT(*) FROM opportunities WHERE created_date > close_date "
        "OR created_date >= ? OR ABS(expected_revenue - amount * probability) > 0.01 "
        "OR (stage LIKE 'closed%') <> (close_date < ?)",
        as_of,
        as_of,
    ) == [(0,)]
    assert query(
        small,
        "crm",
        "SELECT COUNT(*) FROM cases WHERE opened_at >= ? OR (closed_at IS NULL) <> "
        "(status <> 'closed') OR closed_at < opened_at OR updated_at < opened_at",
        as_of,
    ) == [(0,)]
    # a case's contact works for the case's account
    assert query(
        small,
        "crm",
        "SELECT COUNT(*) FROM cases c JOIN contacts k USING (contact_id) WHERE k.account_id <> c.account_id",
    ) == [(0,)]
    kinds = dict(query(small, "crm", "SELECT account_type, COUNT(*) FROM accounts GROUP BY account_type"))
    assert kinds["internal"] == 1 and kinds["customer"] > kinds["prospect"] > 0


def test_single_sourced_material_exists_and_affects_only_its_line(small: SampleManifest) -> None:
    suppliers_per = dict(
        query(
            small,
            "erp",
            "SELECT m.material_code, COUNT(s.supplier_id) FROM materials m "
            "JOIN supplier_materials s USING (material_id) GROUP BY m.material_code",
        )
    )
    single = {code for code, n in suppliers_per.items() if n == 1}
    assert single == set(small.single_sourced_materials) and single
    assert set(suppliers_per.values()) == {1, 2}
    for code in single:
        (line,) = query(small, "erp", "SELECT product_line FROM materials WHERE material_code = ?", code)[0]
        consumers = query(
            small,
            "erp",
            """
            WITH RECURSIVE users(material_id) AS (
                SELECT material_id FROM materials WHERE material_code = ?
                UNION SELECT b.parent_material_id FROM bill_of_materials b JOIN users u
                    ON b.component_material_id = u.material_id WHERE b.parent_material_id IS NOT NULL)
            SELECT DISTINCT p.product_line FROM bill_of_materials b JOIN users u
                ON b.component_material_id = u.material_id JOIN products p ON p.product_id = b.parent_product_id""",
            code,
        )
        assert consumers == [(line,)], code  # used, and only by products of its own line
    # subassemblies are made, not bought
    assert query(
        small,
        "erp",
        "SELECT COUNT(*) FROM supplier_materials JOIN materials USING (material_id) WHERE category = 'subassembly'",
    ) == [(0,)]


def test_bill_of_materials_is_acyclic_with_one_parent_per_line(small: SampleManifest) -> None:
    rows = query(
        small,
        "erp",
        "SELECT parent_product_id, parent_material_id, component_material_id, quantity FROM bill_of_materials",
    )
    children: dict[int, list[int]] = defaultdict(list)
    for product, material, component, quantity in rows:
        assert (product is None) != (material is None)
        assert quantity > 0
        if material is not None:
            children[material].append(component)
    state: dict[int, int] = {}

    def visit(node: int) -> None:
        assert state.get(node) != 1, f"cycle through material {node}"
        if state.get(node) == 2:
            return
        state[node] = 1
        for child in children[node]:
            visit(child)
        state[node] = 2

    for node in list(children):
        visit(node)
    assert any(children.values())  # multi-level: subassemblies have their own bills
    assert query(
        small,
        "erp",
        "SELECT COUNT(*) FROM products p WHERE NOT EXISTS (SELECT 1 FROM bill_of_materials "
        "b WHERE b.parent_product_id = p.product_id)",
    ) == [(0,)]


def test_orders_are_consistent_with_master_data(small: SampleManifest) -> None:
    # each purchase-order line buys a material its supplier actually supplies
    assert query(
        small,
        "erp",
        """
        SELECT COUNT(*) FROM purchase_order_lines l JOIN purchase_orders o USING (po_id)
        WHERE NOT EXISTS (SELECT 1 FROM supplier_materials s
                          WHERE s.supplier_id = o.supplier_id AND s.material_id = l.material_id)""",
    ) == [(0,)]
    # totals match their lines; routings run at the product's plant
    for header, key, lines in (
        ("sales_orders", "so_id", "sales_order_lines"),
        ("purchase_orders", "po_id", "purchase_order_lines"),
    ):
        assert query(
            small,
            "erp",
            f"""
            SELECT COUNT(*) FROM {header} h WHERE ABS(h.total_amount -
                (SELECT SUM(quantity * unit_price) FROM {lines} l WHERE l.{key} = h.{key})) > 0.05""",
        ) == [(0,)]
    assert query(
        small,
        "erp",
        "SELECT COUNT(*) FROM routings r JOIN products p USING (product_id) "
        "JOIN work_centers w USING (work_center_id) WHERE w.site_id <> p.site_id",
    ) == [(0,)]
    statuses = dict(query(small, "erp", "SELECT status, COUNT(*) FROM sales_orders GROUP BY status"))
    assert set(statuses) == {"open", "shipped", "invoiced", "cancelled"}
    assert query(
        small,
        "erp",
        "SELECT COUNT(*) FROM sales_orders WHERE (shipped_date IS NULL) <> "
        "(status IN ('open', 'cancelled')) OR shipped_date < order_date",
    ) == [(0,)]
    # some ERP customers have no CRM account; every CRM customer account is an ERP customer
    crm_numbers = {
        n for (n,) in query(small, "crm", "SELECT account_number FROM accounts WHERE account_number IS NOT NULL")
    }
    erp_numbers = {n for (n,) in query(small, "erp", "SELECT customer_number FROM customers")}
    assert crm_numbers < erp_numbers


def test_demand_history_has_weekly_rhythm_and_line_seasonality(small: SampleManifest) -> None:
    rows = query(
        small,
        "erp",
        """
        SELECT o.order_date, p.product_line, l.quantity FROM sales_orders o
        JOIN sales_order_lines l USING (so_id) JOIN products p USING (product_id)""",
    )
    days = {date.fromisoformat(d) for d, _, _ in rows}
    assert min(days) >= date(AS_OF.year - 1, AS_OF.month, AS_OF.day) and max(days) < AS_OF
    weekday = Counter(date.fromisoformat(d).weekday() < 5 for d, _, _ in rows)
    assert weekday[True] > 10 * weekday[False]
    pumps = Counter(date.fromisoformat(d).month for d, line, _ in rows if line == "Hydraulic Pumps")
    assert pumps[4] + pumps[5] > 1.3 * (pumps[10] + pumps[11])  # spring peak, autumn trough


def test_maintenance_history_matches_mtbf_and_mttr(small: SampleManifest) -> None:
    machines = {
        m: (mtbf, mttr, status)
        for m, mtbf, mttr, status in query(
            small, "erp", "SELECT machine_id, mtbf_hours, mttr_hours, status FROM machines"
        )
    }
    logs = query(
        small,
        "erp",
        "SELECT machine_id, started_at, ended_at, downtime_hours FROM maintenance_logs ORDER BY machine_id, started_at",
    )
    expected = sum(24 * 365 / (mtbf + mttr) for mtbf, mttr, _ in machines.values())
    assert 0.8 * expected < len(logs) < 1.2 * expected
    repair_ratio = sum(h for _, _, _, h in logs if h) / sum(machines[m][1] for m, _, _, h in logs if h)
    assert 0.75 < repair_ratio < 1.3
    by_machine: dict[int, list[tuple[str, str | None]]] = defaultdict(list)
    for machine, start, end, _ in logs:
        by_machine[machine].append((start, end))
    for machine, events in by_machine.items():
        for (_s1, e1), (s2, _) in pairwise(events):
            assert e1 is not None and e1 <= s2  # no overlapping repairs; only the last may be open
        open_now = events[-1][1] is None
        assert (machines[machine][2] == "down") == open_now


def test_same_seed_same_tables_other_seed_other_tables(tmp_path: Path, tiny: SampleManifest) -> None:
    again = generate_sample(tmp_path / "again", "tiny", seed=7)
    other = generate_sample(tmp_path / "other", "tiny", seed=8)
    assert dump(again.out_dir) == dump(tiny.out_dir)
    assert again.to_json() == tiny.to_json()
    assert dump(other.out_dir)["hr"] != dump(tiny.out_dir)["hr"]
    assert pd.read_csv(again.files["erp_products.csv"]).equals(pd.read_csv(tiny.files["erp_products.csv"]))


def test_file_exports_mirror_the_databases(small: SampleManifest) -> None:
    products = pd.read_csv(small.files["erp_products.csv"])
    assert len(products) == small.row_counts["erp.products"] == small.file_rows["erp_products.csv"]
    assert products["sku"].is_unique and {"sku", "name", "unit_price", "product_line", "updated_at"} <= set(products)
    skills = json.loads(small.files["hr_skills.json"].read_text())
    assert {s["skill_id"] for s in skills} == {s for (s,) in query(small, "hr", "SELECT skill_id FROM skills")}
    if "crm_accounts.xlsx" in small.skipped_files:
        assert "openpyxl" in small.skipped_files["crm_accounts.xlsx"]
    else:
        accounts = pd.read_excel(small.files["crm_accounts.xlsx"], sheet_name="Accounts")
        assert list(accounts["account_id"]) == [
            a for (a,) in query(small, "crm", "SELECT account_id FROM accounts ORDER BY account_id")
        ]
    if "telemetry_sample.parquet" in small.skipped_files:
        assert "pyarrow" in small.skipped_files["telemetry_sample.parquet"]
    else:
        telemetry = pd.read_parquet(small.files["telemetry_sample.parquet"])
        assert telemetry["reading_id"].is_unique
        machine_ids = {m for (m,) in query(small, "erp", "SELECT machine_id FROM machines")}
        assert set(telemetry["machine_id"]) <= machine_ids
        assert set(telemetry["state"]) <= {"running", "idle", "down"}
    assert SampleManifest.read(small.out_dir) == small


def test_mutation_changes_about_the_fraction_and_bumps_watermarks(tmp_path: Path, small: SampleManifest) -> None:
    target = tmp_path / "mutated"
    shutil.copytree(small.out_dir, target)
    before = SampleManifest.read(target)
    old = {
        s: dict(
            query(
                before,
                s,
                "SELECT 'max', MAX(m) FROM ("
                + " UNION ALL ".join(f"SELECT MAX(updated_at) m FROM {t}" for t in SYSTEMS[s].tables)
                + ")",
            )
        )["max"]
        for s in SYSTEMS
    }
    summary = mutate_sample(target, fraction=0.05, seed=11)
    for system in SYSTEMS:
        assert 0.03 < summary.changed_fraction(system) < 0.1, system
        assert summary.watermarks[system] > old[system]
        parts = [t for name, t in summary.tables.items() if name.startswith(system)]
        assert sum(t.updated for t in parts) and sum(t.inserted for t in parts) and sum(t.deleted for t in parts)
        # exactly the changed rows carry the new watermark
        stamped = sum(
            query(before, system, f"SELECT COUNT(*) FROM {t} WHERE updated_at = ?", summary.watermarks[system])[0][0]
            for t in SYSTEMS[system].tables
        )
        assert stamped == sum(t.updated + t.inserted for t in parts)
    after = SampleManifest.read(target)
    for name, change in summary.tables.items():
        assert after.row_counts[name] == change.rows_before + change.inserted - change.deleted
        system, table = name.split(".")
        assert query(after, system, f"SELECT COUNT(*) FROM {table}") == [(after.row_counts[name],)]
    assert_integrity(after)
    assert_types(after)
    assert after.identity_overlap == len(
        [
            1
            for (e,) in query(after, "crm", "SELECT email FROM contacts")
            if e.strip().lower() in {w for (w,) in query(after, "hr", "SELECT work_email FROM employees")}
        ]
    )
    # a second round stamps a later watermark
    second = mutate_sample(target, fraction=0.01, seed=12)
    assert all(second.watermarks[s] > summary.watermarks[s] for s in SYSTEMS)


def test_mutation_is_deterministic(tmp_path: Path, tiny: SampleManifest) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny.out_dir, first)
    shutil.copytree(tiny.out_dir, second)
    a, b = mutate_sample(first, 0.1, seed=5), mutate_sample(second, 0.1, seed=5)
    assert a.tables == b.tables and a.watermarks == b.watermarks and a.changed_rows > 0
    assert dump(first) == dump(second) != dump(tiny.out_dir)


def test_mutation_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(SampleEnterpriseError, match="fraction 2"):
        mutate_sample(tmp_path, fraction=2)
    with pytest.raises(SampleEnterpriseError, match="no sample database"):
        mutate_sample(tmp_path / "nowhere", fraction=0.01)


@pytest.mark.slow
def test_medium_size_keeps_integrity_and_proportions(tmp_path: Path, small: SampleManifest) -> None:
    medium = generate_sample(tmp_path, "medium", seed=7)
    assert medium.row_counts["hr.employees"] == 5_000
    assert 80_000 < medium.total_rows < 120_000
    assert_integrity(medium)
    for table in ("crm.contacts", "erp.sales_orders", "erp.sales_order_lines", "hr.employee_skills"):
        ratio = medium.row_counts[table] / small.row_counts[table]
        assert 12 < ratio < 22, table  # 5,000 / 300 people
