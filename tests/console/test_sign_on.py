"""Single sign-on in the console against a real OpenID Connect provider started here (oidc-provider-mock: authlib's
authorization server behind a login form): Chromium signs in with the authorization-code flow and PKCE, sees its
role's view, and goes back to the sign-in page when the session expires."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from api.settings import Settings
from graph.embedded import stop_embedded
from tests.console.conftest import _free_port, _seed
from tests.waiting import wait_for

pytest.importorskip("oidc_provider_mock", reason="oidc-provider-mock (a test dependency) is not installed")
from playwright.sync_api import Page, expect  # noqa: E402

CLIENT_ID = "twin-console"
TOKEN_SECONDS = 20


@dataclass
class SignOnServer:
    """The twin's API with the console, trusting the provider at `issuer`."""

    url: str
    issuer: str


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """A real OIDC provider on a free port whose tokens live `TOKEN_SECONDS`; users get roles by a PUT."""
    import oidc_provider_mock

    with oidc_provider_mock.run_server_in_thread(
        access_token_max_age=timedelta(seconds=TOKEN_SECONDS), require_nonce=True
    ) as server:
        issuer = f"http://localhost:{server.server_port}"
        for sub, roles in {"erika@example.test": ["executive"], "carl@example.test": ["compliance"]}.items():
            response = httpx.put(f"{issuer}/users/{sub}", json={"email": sub, "roles": roles})
            assert response.status_code == 204, response.text
        yield issuer


@pytest.fixture(scope="module")
def sign_on_server(provider: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignOnServer]:
    """The real app over a seeded data dir, configured for the provider, served by uvicorn on a free port."""
    import uvicorn

    from api.http.app import create_app
    from api.runtime import Runtime

    data_dir = tmp_path_factory.mktemp("sign-on-twin")
    settings = Settings(
        data_dir=data_dir,
        graph_fsync="no",
        api_graphiql=False,
        oidc_issuer=provider,
        oidc_audience=CLIENT_ID,  # the provider's access tokens are opaque: the console sends the ID token
        oidc_console_client_id=CLIENT_ID,
        _env_file=None,
    )
    runtime = Runtime(settings)
    server = None
    thread = None
    try:
        _seed(runtime)
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(runtime), host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False
            )
        )
        thread = threading.Thread(target=server.run, name="sign-on-uvicorn", daemon=True)
        thread.start()
        assert wait_for(lambda: server.started, timeout=30), "the sign-on test server did not start"
        yield SignOnServer(f"http://127.0.0.1:{port}", provider)
    finally:
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=60)
        runtime.close()
        stop_embedded(data_dir / "graph")


def test_the_console_names_the_provider_and_allows_it_in_its_content_security_policy(
    sign_on_server: SignOnServer,
) -> None:
    config = httpx.get(f"{sign_on_server.url}/console/sign-on.json").json()
    assert config["issuer"] == sign_on_server.issuer and config["clientId"] == CLIENT_ID
    page = httpx.get(f"{sign_on_server.url}/console/")
    assert f"connect-src 'self' {sign_on_server.issuer}" in page.headers["content-security-policy"]


def _sign_on(page: Page, server: SignOnServer, sub: str) -> None:
    page.goto(f"{server.url}/console/")
    page.click("#sign-on")
    page.wait_for_url(f"{server.issuer}/**")  # the provider's own login page
    authorize = urlsplit(page.url)
    query = parse_qs(authorize.query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["client_id"] == [CLIENT_ID] and query["response_type"] == ["code"] and query["nonce"][0]
    page.fill("#subject-input", sub)
    page.click("form button[type=submit]:has-text('Authorize')")
    page.wait_for_url(f"{server.url}/console/**")


def test_an_executive_signs_in_through_the_provider_and_sees_the_executives_view(
    page: Page, sign_on_server: SignOnServer
) -> None:
    started = time.monotonic()
    _sign_on(page, sign_on_server, "erika@example.test")
    expect(page.locator("#whoami")).to_contain_text("erika@example.test")
    expect(page.locator("#whoami")).to_contain_text("executive")
    expect(page).to_have_url(f"{sign_on_server.url}/console/#/scenarios")  # the executive's home view
    assert "code=" not in page.url  # the code left the address bar
    token = page.evaluate("JSON.parse(sessionStorage.getItem('twin.console.session')).token")
    me = httpx.post(
        f"{sign_on_server.url}/graphql",
        json={"query": "{ aggregate(className: Skill) { metrics { value } } }"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert me.status_code == 200 and "errors" not in me.json(), me.text  # the API trusts the provider's token
    assert page.evaluate("sessionStorage.getItem('twin.console.signOn')") is None  # the PKCE verifier is gone
    # the session ends with the token: back to the sign-in page, with the reason
    remaining = TOKEN_SECONDS - (time.monotonic() - started) + 5
    expect(page.locator("#sign-on")).to_be_visible(timeout=max(remaining, 5) * 1000)
    expect(page.locator(".messages")).to_contain_text("session expired")


def test_a_forged_way_back_is_refused(page: Page, sign_on_server: SignOnServer) -> None:
    page.goto(f"{sign_on_server.url}/console/?code=stolen&state=not-ours")
    expect(page.locator(".messages")).to_contain_text("state mismatch")
    expect(page.locator("#sign-on")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('twin.console.session')") is None


def test_the_console_without_a_provider_offers_only_the_token_form(console_server, page: Page) -> None:
    page.goto(f"{console_server.url}/console/")
    expect(page.locator("#sign-in-token")).to_be_visible()
    assert page.locator("#sign-on").count() == 0
