"""Fixtures for console tests: the real API (with the console) on a free port over a small enterprise, and Chromium.

The server runs uvicorn in a thread of the test process over a data directory in tmp: embedded FalkorDB graph,
SQLite audit/lineage/results. The browser is Debian's Chromium driven by Playwright (never a downloaded browser).
Nothing outlives the session: the server thread is stopped, the runtime closed, the embedded graph server stopped,
and the session fails if a FalkorDB or Chromium process started here is still running.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from api.settings import Settings
from governance.lineage import DatasetRef, ProvenanceRecord, RunKind, RunStatus
from governance.tokens import LocalIssuer
from graph.embedded import stop_embedded
from graph.model import Twin
from tests.graph.conftest import falkordb_processes_under
from tests.simulation.enterprise_graph import build_enterprise, load_enterprise

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
VIEWPORT = {"width": 1280, "height": 800}

LINEAGE_TWIN = "emp-0"
LINEAGE_EMAIL = "ada.lovelace@halvorsen-precision.example"
LINEAGE_RECORD_KEY = "E00000"


@dataclass
class ConsoleServer:
    """A running API with the console: its base URL, data directory, the lineage fixtures it holds, and its runtime
    (for tests that prepare what only the CLI makes, such as stored forecasts, through the same services)."""

    url: str
    data_dir: Path
    issuer: LocalIssuer
    sync_run_id: str
    tokens: dict[str, str] = field(default_factory=dict)
    runtime: Any = None

    def token(self, role: str) -> str:
        """A development token for `role` (what `twin token --role ROLE` prints), one per role."""
        if role not in self.tokens:
            self.tokens[role] = self.issuer.issue_token(role, sub=f"{role}-tester")
        return self.tokens[role]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seed(runtime) -> str:  # type: ignore[no-untyped-def]
    """Load the enterprise, give one employee an e-mail as an HR sync would, and record that sync's lineage."""
    load_enterprise(runtime.store, build_enterprise())
    run = runtime.lineage.start_run(
        RunKind.CONNECTOR,
        "hr-employees",
        inputs=[DatasetRef("sqlite:///hr.sqlite", "employees")],
        outputs=[DatasetRef("twin-graph", "Employee")],
    )
    runtime.store.upsert_twins(
        [
            Twin(
                LINEAGE_TWIN,
                "Employee",
                {"name": "Employee 0", "email": LINEAGE_EMAIL, "salary": 61000.0, "employeeId": "E00000"},
            )
        ],
        actor="connector:hr",
        source="hr",
        run_id=run.run_id,
    )
    common = {
        "source_system": "hr",
        "source_object": "employees",
        "record_key": LINEAGE_RECORD_KEY,
        "run_id": run.run_id,
        "mapping_rule": "hr.employees -> Employee",
    }
    runtime.lineage.record(
        [
            ProvenanceRecord.of(
                LINEAGE_TWIN, "email", LINEAGE_EMAIL, source_field="work_email", transform="lower", **common
            ),
            ProvenanceRecord.of(LINEAGE_TWIN, "name", "Employee 0", source_field="full_name", **common),
        ]
    )
    runtime.lineage.finish_run(run.run_id, RunStatus.COMPLETED, counts={"rows": 1, "twins": 1})
    return run.run_id


@pytest.fixture(scope="session")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """The real app (create_app + mount_console) served by uvicorn on a free port over a seeded data dir."""
    import uvicorn

    from api.console import mount_console
    from api.http.app import create_app
    from api.runtime import Runtime

    data_dir = tmp_path_factory.mktemp("console-twin")
    settings = Settings(data_dir=data_dir, graph_fsync="no", api_graphiql=False, _env_file=None)
    runtime = Runtime(settings)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    try:
        run_id = _seed(runtime)
        app = create_app(runtime)
        mount_console(app)
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
        )
        thread = threading.Thread(target=server.run, name="console-uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the console test server did not start")
            time.sleep(0.05)
        yield ConsoleServer(f"http://127.0.0.1:{port}", data_dir, LocalIssuer(data_dir), run_id, runtime=runtime)
    finally:
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=60)
        runtime.close()
        stop_embedded(data_dir / "graph")
        leftovers = falkordb_processes_under(data_dir)
        for process in leftovers:
            process.kill()
        assert not leftovers, f"embedded graph servers outlived the console tests: {[p.pid for p in leftovers]}"
        assert thread is None or not thread.is_alive(), "the console test server did not stop"


def _chromium_children() -> list[psutil.Process]:
    """Chromium processes started by this test process (directly or through Playwright's driver)."""
    me = psutil.Process(os.getpid())
    found = []
    for process in me.children(recursive=True):
        try:
            if "chrom" in process.name():
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless, launched by Playwright; closed (and checked gone) after the session."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
    time.sleep(0.2)
    leftovers = [p for p in _chromium_children() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for process in leftovers:
        process.kill()
    assert not leftovers, f"Chromium processes outlived the console tests: {[p.pid for p in leftovers]}"


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh browser context at 1280×800 whose requests are recorded in `page.seen_requests`."""
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    seen: list[object] = []
    opened.on("request", lambda request: seen.append(request))
    opened.seen_requests = seen  # type: ignore[attr-defined]
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        context.close()
