"""Session-wide checks and fixtures shared by every test folder (a fresh PostgreSQL database, server leaks)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from graph.relational import relational_engine
from tests.server_leaks import falkordb_processes_under

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_reason() -> str | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN, connect_timeout=3):
            return None
    except psycopg.OperationalError as error:
        return f"PostgreSQL is not reachable at 127.0.0.1:5432 ({str(error).splitlines()[0]})"


_PG_ABSENT = _postgres_reason()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server (random name), dropped afterwards."""
    if _PG_ABSENT:
        pytest.skip(_PG_ABSENT)
    name = f"twin_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        relational_engine(url).dispose()
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", autouse=True)
def no_orphaned_falkordb_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole session (set up first, so torn down after every other session fixture), fail if a FalkorDB
    server of a pytest temp dir is still running, and kill it."""
    yield
    leftovers = falkordb_processes_under(tmp_path_factory.getbasetemp())
    for process in leftovers:
        process.kill()
    assert not leftovers, f"orphaned FalkorDB servers after the test session: {[p.pid for p in leftovers]}"
