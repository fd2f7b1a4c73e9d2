"""The living demo in a real browser: the console's Activity view shows a change made in the sample HR database
within seconds (fed by the GraphQL subscription), and the connectors' status with lag (from /ready).

The server here is what `twin demo` serves: the tiny sample enterprise synced by the demo, then the API with the
connector runtime running, the sample HR connector on a 1-second schedule (Runtime.schedule_every, as `twin demo`
shortens it with TWIN_DEMO_SYNC_SECONDS).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from api.settings import Settings
from governance.tokens import LocalIssuer
from graph.embedded import stop_embedded
from tests.console.conftest import ConsoleServer, _free_port
from tests.console.test_console import screenshot, sign_in
from tests.graph.conftest import falkordb_processes_under

pytest.importorskip("playwright", reason="the playwright package is needed for console tests (pip install playwright)")
from playwright.sync_api import Page, expect  # noqa: E402


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """`twin demo --size tiny` served: sample synced, connector runtime live with sample-hr every second."""
    import uvicorn

    from api.cli.demo_run import run_demo
    from api.console import mount_console
    from api.http.app import create_app
    from api.runtime import Runtime

    data_dir = tmp_path_factory.mktemp("demo-twin")
    runtime = Runtime(Settings(data_dir=data_dir, graph_fsync="no", api_graphiql=False, _env_file=None))
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    try:
        run_demo(runtime, "tiny")
        # as `twin demo` schedules the sample connectors (connectors.yaml keeps them off), HR every second
        runtime.schedule_every.update({"sample-hr": 1.0, "sample-crm": 30.0, "sample-erp": 30.0})
        app = create_app(runtime, live=True)
        mount_console(app)
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
        )
        thread = threading.Thread(target=server.run, name="demo-uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo test server did not start")
            time.sleep(0.05)
        yield ConsoleServer(f"http://127.0.0.1:{port}", data_dir, LocalIssuer(data_dir), "")
    finally:
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=60)
        runtime.close()
        stop_embedded(data_dir / "graph")
        leftovers = falkordb_processes_under(data_dir)
        for process in leftovers:
            process.kill()
        assert not leftovers, f"embedded graph servers outlived the activity tests: {[p.pid for p in leftovers]}"


def rename_in_hr(sample: Path, last_name: str) -> str:
    """A test-side write to the sample HR database: an employee changes their last name; returns the twin's uid."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    with sqlite3.connect(sample / "hr.sqlite") as con:
        (employee,) = con.execute(
            "SELECT employee_id FROM employees WHERE status = 'active' ORDER BY employee_id DESC LIMIT 1"
        ).fetchone()
        con.execute(
            "UPDATE employees SET last_name = ?, updated_at = MAX(updated_at, ?) WHERE employee_id = ?",
            (last_name, stamp, employee),
        )
    return f"hr:employee:{employee}"


def test_the_activity_feed_shows_an_hr_change_within_five_seconds(demo_server: ConsoleServer, page: Page) -> None:
    sign_in(page, demo_server, "admin")
    page.goto(f"{demo_server.url}/console/#/activity")
    expect(page.locator("#activity-state")).to_have_text("live")
    status = page.locator("#connector-status tr[data-connector=sample-hr]")
    expect(status).to_contain_text("every 1 s")
    expect(page.locator("#connector-status tr[data-connector=sample-erp]")).to_be_visible()

    uid = rename_in_hr(demo_server.data_dir / "sample", "Livewright")
    change = page.locator(f"#activity-feed li[data-uid='{uid}']")
    expect(change).to_contain_text("Livewright", timeout=5_000)
    expect(change).to_contain_text("update")
    expect(change).to_contain_text("Employee")
    # the runs and lag shown are those /ready reports
    ready = httpx.get(f"{demo_server.url}/ready", timeout=10).json()["connectors"]["sample-hr"]
    assert ready["runs"] >= 2 and ready["failures"] == 0 and ready["lagSeconds"] < 10
    expect(status).to_have_attribute("data-runs", re.compile(r"^([2-9]|\d\d+)$"))  # the panel follows /ready
    expect(status.locator("td").nth(4)).to_have_text(re.compile(r"^\d+\.\d s$"))
    screenshot(page, "activity")


def test_a_role_without_history_read_is_told_the_feed_is_not_for_it(demo_server: ConsoleServer, page: Page) -> None:
    sign_in(page, demo_server, "viewer")
    page.goto(f"{demo_server.url}/console/#/activity")
    state = page.locator("#activity-state")
    expect(state).to_have_class(re.compile("pill-deny"))
    expect(state).to_contain_text("history.read")
    expect(page.locator("#activity-feed li")).to_have_count(0)
    expect(page.locator("#connector-status tr[data-connector=sample-hr]")).to_be_visible()
