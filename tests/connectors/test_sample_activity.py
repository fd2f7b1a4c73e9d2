"""The sample enterprise at work: the driver writes real orders and HR changes, at its rate, and incremental syncs
of the sample connectors carry them into the twin."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from connectors.registry import ConnectorRegistry
from connectors.sample.activity import KINDS, SampleActivity
from connectors.sample.enterprise import SampleEnterpriseError, generate_sample
from ontology.model import Ontology
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401


@pytest.fixture(scope="module")
def tiny_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sample enterprise, generated once; tests copy it before changing it."""
    out = tmp_path_factory.mktemp("sample") / "sample"
    generate_sample(out, "tiny", seed=7)
    return out


@pytest.fixture
def sample(tiny_sample: Path, tmp_path: Path) -> Path:
    target = tmp_path / "sample"
    shutil.copytree(tiny_sample, target)
    return target


def one(db: Path, sql: str, *params: object) -> tuple:
    with sqlite3.connect(db) as con:
        return con.execute(sql, params).fetchone()


def test_each_change_is_a_real_write_with_a_fresh_updated_at(sample: Path) -> None:
    hr, erp = sample / "hr.sqlite", sample / "erp.sqlite"
    (employees,) = one(hr, "SELECT COUNT(*) FROM employees")
    (orders,) = one(erp, "SELECT COUNT(*) FROM sales_orders")
    (newest_hr,) = one(hr, "SELECT MAX(updated_at) FROM employees")
    activity = SampleActivity(sample, every_seconds=1, seed=4)
    changes = {c.kind: c for c in (activity.step() for _ in KINDS)}
    assert set(changes) == set(KINDS)
    assert all(c.updated_at > newest_hr for c in changes.values())

    so = changes["sales order"]
    header = one(erp, "SELECT so_id, status, total_amount, updated_at FROM sales_orders WHERE so_number = ?", so.key)
    lines = one(
        erp,
        "SELECT COUNT(*), ROUND(SUM(quantity * unit_price), 2), MIN(updated_at) FROM sales_order_lines WHERE so_id = ?",
        header[0],
    )
    assert header[1] == "open" and header[3] == so.updated_at
    assert lines[0] >= 1 and lines[1] == pytest.approx(header[2]) and lines[2] == so.updated_at
    assert one(erp, "SELECT COUNT(*) FROM sales_orders")[0] == orders + 1
    po = changes["purchase order"]
    assert (
        one(
            erp,
            "SELECT COUNT(*) FROM purchase_order_lines l JOIN purchase_orders p USING (po_id) "
            "WHERE p.po_number = ? AND l.updated_at = ?",
            po.key,
            po.updated_at,
        )[0]
        == 1
    )

    hire = changes["hire"]
    assert one(hr, "SELECT COUNT(*) FROM employees")[0] == employees + 1
    assert one(
        hr,
        "SELECT status, hire_date IS NOT NULL, manager_id IS NOT NULL FROM employees WHERE employee_id = ?",
        hire.key,
    ) == ("active", 1, 1)
    leaver = changes["leaver"]
    assert one(
        hr, "SELECT status, termination_date IS NOT NULL, updated_at FROM employees WHERE employee_id = ?", leaver.key
    ) == ("terminated", 1, leaver.updated_at)
    transfer = changes["transfer"]
    unit = transfer.detail.rsplit("-> ", 1)[1]
    assert one(hr, "SELECT org_unit_id FROM employees WHERE employee_id = ?", transfer.key) == (unit,)
    rename = changes["rename"]
    assert (
        one(hr, "SELECT first_name || ' ' || last_name FROM employees WHERE employee_id = ?", rename.key)[0]
        == rename.detail.split(" is now ")[1]
    )
    assert one(hr, "SELECT COUNT(*) FROM employees WHERE updated_at >= ?", hire.updated_at)[0] >= 4


def test_it_writes_at_the_configured_rate_until_stopped(sample: Path) -> None:
    activity = SampleActivity(sample, every_seconds=0.2, seed=1)
    started = time.monotonic()
    activity.start()
    try:
        deadline = started + 20
        while len(activity.changes) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        activity.stop()
    elapsed = time.monotonic() - started
    made = len(activity.changes)
    assert made >= 4 and activity.errors == []
    assert made <= elapsed / 0.2 + 1  # never faster than one change per 0.2 s
    time.sleep(0.5)
    assert len(activity.changes) == made  # stopped means stopped


def test_a_missing_sample_or_a_frantic_rate_is_refused(tmp_path: Path, sample: Path) -> None:
    with pytest.raises(SampleEnterpriseError, match="hr.sqlite: no sample database"):
        SampleActivity(tmp_path / "nowhere")
    with pytest.raises(SampleEnterpriseError, match="at least"):
        SampleActivity(sample, every_seconds=0.01)


def test_an_incremental_sync_carries_the_changes_into_the_twin(
    core: Ontology,
    twin: TwinEnv,  # noqa: F811
    tiny_sample: Path,
) -> None:
    shutil.copytree(tiny_sample, twin.path / "sample")
    registry = ConnectorRegistry.load(core, data_dir=twin.path)
    engine = twin.engine()
    for name in ("sample-hr", "sample-erp"):
        engine.run(registry.connector(name), "full")
    activity = SampleActivity(twin.path / "sample", every_seconds=1, seed=9)
    changes = {c.kind: c for c in (activity.step() for _ in KINDS)}
    reports = {name: engine.run(registry.connector(name), "incremental") for name in ("sample-hr", "sample-erp")}
    assert reports["sample-hr"].counts["created"] >= 1 and reports["sample-hr"].counts["updated"] >= 2
    assert reports["sample-erp"].counts["created"] >= 2

    def prop(uid: str, name: str) -> object:
        rows = twin.store.query(f"MATCH (t {{uid: $uid}}) RETURN t.{name}", {"uid": uid})
        assert rows, f"no twin {uid}"
        return rows[0][0]

    assert prop(f"erp:so:{changes['sales order'].key}", "uid")
    assert prop(f"erp:po:{changes['purchase order'].key}", "uid")
    assert prop(f"hr:employee:{changes['hire'].key}", "name") == changes["hire"].detail.split(" joins ")[0]
    assert prop(f"hr:employee:{changes['rename'].key}", "name") == changes["rename"].detail.split(" is now ")[1]
