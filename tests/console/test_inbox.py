"""The decisions inbox in a real browser: an approver signs in, opens the inbox, sees the proposal with its evidence
(links into the graph explorer and the lineage view), approves it, and sees it executed — the purchase order written
to the sample ERP by the decisions runtime that runs beside the API. A role that may not approve sees no buttons.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from api.settings import Settings
from governance.identity import Subject
from governance.tokens import LocalIssuer
from graph.embedded import stop_embedded
from graph.model import Twin
from tests.console.conftest import ConsoleServer, _free_port
from tests.console.test_console import screenshot, sign_in
from tests.decisions.conftest import REORDER, sync_erp
from tests.graph.conftest import falkordb_processes_under

pytest.importorskip("playwright", reason="the playwright package is needed for console tests (pip install playwright)")
from playwright.sync_api import Page, expect  # noqa: E402


@dataclass
class InboxServer:
    """The console server with the sample ERP synced, the reorder automation running, and one open proposal."""

    console: ConsoleServer
    runtime: Any
    proposal: str
    material: str


@pytest.fixture(scope="module")
def inbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InboxServer]:
    """API + console + the decisions runtime over the tiny sample; a proposal approved once already (four eyes)."""
    import uvicorn

    from api.console import mount_console
    from api.http.app import create_app
    from api.runtime import Runtime
    from connectors.sample.enterprise import generate_sample

    data_dir = tmp_path_factory.mktemp("inbox-twin")
    sample = tmp_path_factory.mktemp("inbox-sample") / "sample"
    generate_sample(sample, "tiny")
    shutil.copytree(sample, data_dir / "sample")
    (data_dir / "automations.yaml").write_text(REORDER)
    runtime = Runtime(Settings(data_dir=data_dir, graph_fsync="no", api_graphiql=False, _env_file=None))
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    decisions = None
    try:
        sync_erp(runtime)
        decisions = runtime.decision_runtime(holder="inbox-test")
        assert decisions is not None
        decisions.start()
        supplier, material = runtime.store.query(
            "MATCH (s:Supplier)-[:supplies]->(m:Material) RETURN s.uid, m.uid ORDER BY m.uid LIMIT 1"
        )[0]
        runtime.store.upsert_twins([Twin(material, "Material", {"stockLevel": 1.0})], actor="test", source="test")
        deadline = time.monotonic() + 60
        proposals: list[Any] = []
        while not proposals and time.monotonic() < deadline:
            time.sleep(0.1)
            proposals = runtime.decisions.proposals.list(["proposed"])
        assert proposals, f"no proposal appeared: {decisions.status.errors}"
        proposal = proposals[0]
        # four eyes: a steward approved already; the executive's approval in the browser is the second
        runtime.decisions.approve(Subject(sub="ann", roles=frozenset({"data_steward"})), proposal.id, "low stock")
        app = create_app(runtime)
        mount_console(app)
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False)
        )
        thread = threading.Thread(target=server.run, name="inbox-uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the inbox test server did not start")
            time.sleep(0.05)
        console = ConsoleServer(f"http://127.0.0.1:{port}", data_dir, LocalIssuer(data_dir), "")
        yield InboxServer(console, runtime, proposal.id, material)
    finally:
        if decisions is not None:
            decisions.stop()
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=60)
        runtime.close()
        stop_embedded(data_dir / "graph")
        leftovers = falkordb_processes_under(data_dir)
        for process in leftovers:
            process.kill()
        assert not leftovers, f"embedded graph servers outlived the inbox tests: {[p.pid for p in leftovers]}"


def test_a_viewer_sees_the_proposal_but_no_buttons(page: Page, inbox_server: InboxServer) -> None:
    server = inbox_server.console
    sign_in(page, server, "viewer")
    page.goto(f"{server.url}/console/#/inbox")
    card = page.locator(f"[data-proposal='{inbox_server.proposal}']")
    expect(card).to_be_visible()
    expect(card.locator(".proposal-approve")).to_have_count(0)
    # the viewer may read Material but no Internal values: the evidence's stock level is masked
    expect(card.locator(".evidence [data-property='stockLevel'] .mask-badge")).to_be_visible()


def test_an_approver_opens_the_inbox_approves_and_sees_it_executed(page: Page, inbox_server: InboxServer) -> None:
    server, proposal = inbox_server.console, inbox_server.proposal
    sign_in(page, server, "executive")
    page.click("nav a[href='#/inbox']")
    card = page.locator(f"[data-proposal='{proposal}']")
    expect(card).to_have_attribute("data-state", "proposed", timeout=30_000)
    expect(card.locator(".approved-by")).to_have_text("Approved by ann")
    # evidence: the material with its stock level, linked into the graph explorer and the lineage view
    evidence = card.locator(f".evidence li[data-uid='{inbox_server.material}']").first
    expect(evidence.locator(".evidence-values [data-property='stockLevel'] code")).to_have_text("1")
    encoded = quote(inbox_server.material, safe="")
    expect(evidence.locator(f"a.twin-link[href='#/graph/{encoded}']")).to_be_visible()
    values = evidence.locator(".evidence-values")
    expect(values.locator("[data-property='stockLevel'] .lineage-link")).to_have_attribute(
        "href", f"#/lineage/{encoded}/stockLevel"
    )
    # a value a sync wrote names its source record (the ERP's materials table)
    expect(values.locator("[data-property='name'] .lineage-link")).to_contain_text("from erp materials")
    card.locator(".decision-reason").fill("stock is low, ordered")
    card.locator(".proposal-approve").click()
    expect(card).to_have_attribute("data-state", "executed", timeout=30_000)
    expect(card.locator(".proposal-result code")).to_have_text(f"TW-{proposal}")
    expect(card.locator(".proposal-approve")).to_have_count(0)
    screenshot(page, "inbox-executed")
    with sqlite3.connect(Path(server.data_dir) / "sample" / "erp.sqlite") as erp:
        count = erp.execute("SELECT COUNT(*) FROM purchase_orders WHERE po_number = ?", (f"TW-{proposal}",)).fetchone()
    assert count == (1,)
