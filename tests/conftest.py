"""Session-wide checks shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server_leaks import falkordb_processes_under


@pytest.fixture(scope="session", autouse=True)
def no_orphaned_falkordb_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole session (set up first, so torn down after every other session fixture), fail if a FalkorDB
    server of a pytest temp dir is still running, and kill it."""
    yield
    leftovers = falkordb_processes_under(tmp_path_factory.getbasetemp())
    for process in leftovers:
        process.kill()
    assert not leftovers, f"orphaned FalkorDB servers after the test session: {[p.pid for p in leftovers]}"
