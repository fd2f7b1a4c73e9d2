"""The web console in a real browser (Debian's Chromium via Playwright) against the real API server.

Each role sees what the policy lets it see: an architect explores and expands the graph and runs an impact analysis,
an executive runs a small study and sees its KPI charts, compliance follows a value back to its source record and
sync run and verifies the audit chain, a viewer sees masked fields labelled as masked. Screenshots of every view go
to tests/console/artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from api.console import CONTENT_SECURITY_POLICY
from api.console.bundled_specs import BUNDLED_DIR, EXPERIMENTS_DIR
from governance.tokens import LocalIssuer
from tests.console.conftest import ARTIFACTS, LINEAGE_RECORD_KEY, LINEAGE_TWIN, ConsoleServer

pytest.importorskip("playwright", reason="the playwright package is needed for console tests (pip install playwright)")
from playwright.sync_api import Page, expect  # noqa: E402

SMALL_STUDY = """\
name: console-small-study
description: A short castings outage, two KPIs, for the console test.
horizon_days: 30
replications: 2
seed: 11
kpis: [throughput, fill_rate]
scenarios:
  - name: castings outage
    interventions:
      - kind: supplier_outage
        target: {class: Supplier, where: [{field: name, op: contains, value: Castings}]}
        start_day: 5
        duration_days: 15
"""


def sign_in(page: Page, server: ConsoleServer, role: str, token: str | None = None) -> None:
    """Open the console, pick the role, paste its token and sign in."""
    page.goto(f"{server.url}/console/")
    page.select_option("#sign-in-role", role)
    expect(page.locator("#token-command")).to_have_text(f"twin token --role {role}")
    page.fill("#sign-in-token", token or server.token(role))
    page.click("#sign-in button[type=submit]")
    if token is None:
        expect(page.locator("#whoami")).to_contain_text(role)


def assert_governed_traffic(page: Page, server: ConsoleServer, role: str) -> None:
    """Every request went to the server itself, and every API request carried the role's bearer token."""
    origin = urlsplit(server.url)
    api_requests = 0
    for request in page.seen_requests:  # type: ignore[attr-defined]
        url = urlsplit(request.url)
        if url.scheme in ("data", "blob"):
            continue
        assert (url.scheme, url.netloc) == (origin.scheme, origin.netloc), f"request left the server: {request.url}"
        if url.path == "/graphql" or url.path.startswith("/operations/"):
            api_requests += 1
            assert request.headers.get("authorization") == f"Bearer {server.token(role)}", request.url
    assert api_requests > 0
    stored = page.evaluate("() => [sessionStorage.length, localStorage.length, document.cookie]")
    assert stored == [1, 0, ""], "the token must live in sessionStorage only"


def screenshot(page: Page, name: str) -> Path:
    """Save a full-viewport screenshot as an artefact and return its path."""
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, f"{path} looks blank"
    return path


def graphql(server: ConsoleServer, role: str, query: str, variables: dict | None = None) -> dict:
    """Ask the API directly (to compare with what the console shows)."""
    response = httpx.post(
        f"{server.url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {server.token(role)}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["data"]


def test_console_is_served_from_the_package_with_a_same_origin_policy(console_server: ConsoleServer) -> None:
    with httpx.Client(base_url=console_server.url, timeout=10) as client:
        redirect = client.get("/console")
        assert redirect.status_code == 307 and redirect.headers["location"] == "/console/"
        index = client.get("/console/")
        assert index.status_code == 200 and "text/html" in index.headers["content-type"]
        assert index.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "connect-src 'self'" in CONTENT_SECURITY_POLICY
        assets = re.findall(r'(?:src|href)="([^"]+)"', index.text)
        assert sorted(assets) == ["console.css", "console.js"]  # relative: nothing from elsewhere
        for asset in assets:
            response = client.get(f"/console/{asset}")
            assert response.status_code == 200 and len(response.content) > 1000, asset
        specs = client.get("/console/bundled-scenarios.json").json()
        bundled = [*BUNDLED_DIR.glob("*.yaml"), *EXPERIMENTS_DIR.glob("*.yaml")]
        assert sorted(s["file"] for s in specs) == sorted(p.name for p in bundled)
        assert "second_shift_size.yaml" in {s["file"] for s in specs}  # the bundled experiments come too
        assert all(s["text"].strip() and s["name"] for s in specs)
        assert client.get("/console/no-such-file.js").status_code == 404


def test_architect_searches_expands_filters_and_runs_an_impact_analysis(
    console_server: ConsoleServer, page: Page
) -> None:
    sign_in(page, console_server, "architect")
    expect(page).to_have_url(re.compile(r"#/graph$"))
    page.fill("#graph-search input", "Work centre 0")
    page.click("#graph-search button")
    page.click(".search-hit[data-uid='wc-0']")
    expect(page.locator("#twin-details h2")).to_have_text("Work centre 0")
    expect(page.locator("#twin-details tr[data-field='name'] td").first).to_have_text("Work centre 0")
    status = page.locator("#graph-status")
    expect(status).not_to_have_attribute("data-twins", re.compile(r"^[01]$"))
    first_count = int(status.get_attribute("data-twins") or 0)
    neighbours = graphql(console_server, "architect", '{ twin(uid: "wc-0") { uid } }')
    assert neighbours["twin"]["uid"] == "wc-0"

    # expand the site the work centre is located at: its other work centres and org units join the graph
    page.click("#twin-details .neighbour-expand[data-uid='site-plant-a']")
    expect(status).not_to_have_attribute("data-twins", str(first_count))
    expanded_count = int(status.get_attribute("data-twins") or 0)
    assert expanded_count > first_count

    # filter by relationship type: hiding locatedAt hides those edges, showing it brings them back
    links_before = int(status.get_attribute("data-links") or 0)
    located = page.locator("#rel-filter input[data-rel-type='locatedAt']")
    located.uncheck()
    expect(status).not_to_have_attribute("data-links", str(links_before))
    assert int(status.get_attribute("data-links") or 0) < links_before
    located.check()
    expect(status).to_have_attribute("data-links", str(links_before))

    # impact analysis of the first supplier: the console lists and highlights what the API reports
    page.fill("#graph-search input", "Supplier 0")
    page.click("#graph-search button")
    page.click(".search-hit[data-uid='sup-0']")
    expect(page.locator("#twin-details h2")).to_contain_text("Supplier 0")
    page.fill("#impact-depth", "3")
    page.click("#impact-run")
    expected = graphql(console_server, "architect", '{ impact(uid: "sup-0", maxDepth: 3) { twin { uid } } }')
    count = len(expected["impact"])
    assert count > 0
    expect(page.locator("#impact-count")).to_have_text(f"{count} twin{'s' if count != 1 else ''} affected")
    expect(page.locator(".impact-list li")).to_have_count(count)
    screenshot(page, "graph-explorer-architect")
    assert_governed_traffic(page, console_server, "architect")


def test_executive_runs_a_small_study_and_sees_its_chart(console_server: ConsoleServer, page: Page) -> None:
    sign_in(page, console_server, "executive")
    expect(page).to_have_url(re.compile(r"#/scenarios$"))
    bundled = sorted(p.name for p in [*BUNDLED_DIR.glob("*.yaml"), *EXPERIMENTS_DIR.glob("*.yaml")])
    expect(page.locator("#spec-bundled option")).to_have_count(len(bundled) + 1)
    page.select_option("#spec-bundled", "supplier-outage-30d")
    expect(page.locator("#spec-text")).to_have_value(re.compile(r"kind: supplier_outage"))

    page.set_input_files(
        "#spec-upload", files=[{"name": "small.yaml", "mimeType": "text/yaml", "buffer": SMALL_STUDY.encode()}]
    )
    expect(page.locator("#spec-text")).to_have_value(re.compile(r"name: console-small-study"))
    page.fill("#spec-replications", "3")
    page.click("#study-start")

    charts = page.locator("#kpi-charts figure")
    expect(charts).to_have_count(2, timeout=60_000)
    expect(page.locator("#kpi-charts figcaption")).to_have_text(["throughput", "fill_rate"])
    expect(page.locator("#summary-table tbody tr")).to_have_count(4)  # 2 scenarios x 2 KPIs
    expect(page.locator("#study-detail h2")).to_have_text("console-small-study")
    expect(page).to_have_url(re.compile(r"#/scenarios/[0-9a-f]{12}$"))
    drawn = page.evaluate("""() => [...document.querySelectorAll('#kpi-charts canvas')].map((c) => {
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let ink = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) ink += 1;
        return ink;
    })""")
    assert len(drawn) == 2 and all(ink > 500 for ink in drawn), drawn
    screenshot(page, "scenario-dashboard-executive")
    assert_governed_traffic(page, console_server, "executive")


def test_compliance_follows_a_value_to_its_source_and_verifies_the_audit_chain(
    console_server: ConsoleServer, page: Page
) -> None:
    sign_in(page, console_server, "compliance")
    expect(page).to_have_url(re.compile(r"#/audit$"))
    expect(page.locator("#audit-table tbody tr").first).to_be_visible()
    page.fill("#audit-filters input[name='subject']", "compliance-tester")
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#audit-table tbody")).to_have_attribute("data-subject", "compliance-tester")
    subjects = page.locator("#audit-table tbody tr td:nth-child(3)")
    expect(subjects.first).to_have_text("compliance-tester")
    assert set(subjects.all_inner_texts()) == {"compliance-tester"}
    page.click("#audit-verify")
    verification = page.locator("#audit-verification")
    expect(verification).to_have_attribute("data-ok", "true")
    expect(verification).to_contain_text("Chain verified")
    screenshot(page, "audit-compliance")

    # from the e-mail value of an employee (personal: compliance sees it hashed) to its lineage chain
    page.goto(f"{console_server.url}/console/#/graph/{LINEAGE_TWIN}")
    email = page.locator("#twin-details tr[data-field='email']")
    expect(email).to_have_attribute("data-mask", "hash")
    expect(email).to_contain_text("sha256:")
    expect(email).to_contain_text("masked: hashed")
    email.locator(".lineage-link").click()
    expect(page).to_have_url(re.compile(rf"#/lineage/{LINEAGE_TWIN}/email$"))
    chain = page.locator(".chain")
    expect(chain).to_have_count(1)
    expect(chain).to_have_attribute("data-run", console_server.sync_run_id)
    expect(chain.locator(".chain-source-record .chain-title")).to_have_text(LINEAGE_RECORD_KEY)
    expect(chain.locator(".chain-source-field .chain-title")).to_have_text("employees.work_email")
    expect(chain.locator(".chain-sync-run .chain-title")).to_have_text(console_server.sync_run_id)
    expect(chain.locator(".chain-mapping")).to_contain_text("lower")
    expect(chain.locator(".chain-value")).to_contain_text("masked: hashed")
    screenshot(page, "lineage-compliance")
    assert_governed_traffic(page, console_server, "compliance")


def test_viewer_sees_masked_fields_masked_and_no_people(console_server: ConsoleServer, page: Page) -> None:
    sign_in(page, console_server, "viewer")
    page.goto(f"{console_server.url}/console/#/graph/mach-0")
    expect(page.locator("#twin-details h2")).to_have_text("Machine 0")
    name = page.locator("#twin-details tr[data-field='name']")
    expect(name).to_have_attribute("data-mask", "")
    status = page.locator("#twin-details tr[data-field='status']")
    expect(status).to_have_attribute("data-mask", "null")
    expect(status).to_contain_text("masked: withheld")
    expect(status).not_to_contain_text("operational")
    masked = page.locator("#twin-details tr[data-mask='null']")
    assert masked.count() >= 2  # status and capacityPerDay at least
    assert "operational" not in page.locator("#twin-details").inner_text()
    screenshot(page, "graph-explorer-viewer-masked")

    page.fill("#graph-search input", "Employee")
    page.click("#graph-search button")
    expect(page.locator("#search-hits")).to_have_text("No twin matches.")
    page.goto(f"{console_server.url}/console/#/audit")
    expect(page.locator(".notice-error")).to_contain_text("compliance and admin")
    assert_governed_traffic(page, console_server, "viewer")


def test_a_token_the_server_does_not_trust_returns_to_sign_in(
    console_server: ConsoleServer, page: Page, tmp_path: Path
) -> None:
    foreign = LocalIssuer(tmp_path).issue_token("admin", sub="intruder")
    sign_in(page, console_server, "admin", token=foreign)
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#sign-in .notice-info")).to_contain_text("refused")
    assert page.evaluate("() => sessionStorage.length") == 0
    page.fill("#sign-in-token", "not a token")
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#sign-in .notice-error")).to_contain_text("not a bearer token")


def test_mount_console_is_idempotent_and_refuses_a_missing_build(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from api.console import ConsoleBuildMissing, mount_console

    app = FastAPI()
    mount_console(app)
    routes = len(app.router.routes)
    mount_console(app)
    assert len(app.router.routes) == routes
    with TestClient(app) as client:
        assert "console.js" in client.get("/console/").text
    with pytest.raises(ConsoleBuildMissing, match="npm ci && npm run build"):
        mount_console(FastAPI(), static_dir=tmp_path)


def test_bundled_specs_leave_out_files_that_are_not_specs(tmp_path: Path) -> None:
    from api.console.bundled_specs import bundled_specs

    (tmp_path / "a.yaml").write_text("name: alpha\ndescription: first\nhorizon_days: 10\n")
    (tmp_path / "b.yaml").write_text("- just\n- a list\n")
    (tmp_path / "c.yaml").write_text("name: [unclosed\n")
    (tmp_path / "d.yaml").write_text("horizon_days: 5\n")
    specs = bundled_specs(tmp_path)
    assert [(s.name, s.file, s.description) for s in specs] == [("alpha", "a.yaml", "first"), ("d", "d.yaml", "")]
