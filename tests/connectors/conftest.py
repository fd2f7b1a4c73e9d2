"""Fixtures for connector tests: a real trytond server for the session, and a client logged in to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.tryton import TrytonClient
from tests.connectors.tryton_server import (
    PLAIN_MODULES,
    TrytonServer,
    missing_tryton,
    running_server,
    template_database,
)


@pytest.fixture(scope="session")
def tryton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonServer]:
    """A trytond serving a fresh copy of the cached template database (companies ... timesheets activated)."""
    reason = missing_tryton()
    if reason is not None:
        pytest.skip(reason)
    template = template_database()
    with running_server(tmp_path_factory.mktemp("tryton"), template) as server:
        yield server


@pytest.fixture(scope="session")
def tryton_client(tryton_server: TrytonServer) -> Iterator[TrytonClient]:
    """A TrytonClient logged in as the server's admin."""
    client = TrytonClient(tryton_server.url, tryton_server.database, tryton_server.username, tryton_server.password)
    client.login()
    yield client
    client.close()


@pytest.fixture(scope="session")
def plain_tryton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonServer]:
    """A trytond with only company, party, product, sale_opportunity, project and timesheet activated."""
    reason = missing_tryton(PLAIN_MODULES)
    if reason is not None:
        pytest.skip(reason)
    with running_server(tmp_path_factory.mktemp("tryton-plain"), template_database(PLAIN_MODULES)) as server:
        yield server
