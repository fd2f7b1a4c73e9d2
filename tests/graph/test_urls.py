"""Credentials never reach messages: backend and store URLs are redacted in every error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from graph.backends import open_backend
from graph.errors import GraphError, GraphUnavailable
from graph.relational import relational_engine
from graph.store import GraphStore
from graph.urls import redact_url, url_without_credentials
from tests.graph.contract_ontology import contract_ontology
from tests.server_leaks import falkordb_processes_under


def test_redaction_keeps_what_helps_and_drops_the_password() -> None:
    assert redact_url("postgresql://twin:s3cret@db:5432/twin?sslpassword=x") == "postgresql://twin:***@db:5432/twin"
    assert redact_url("neo4j://neo4j@graph:7687") == "neo4j://neo4j@graph:7687"
    assert redact_url("sqlite:///var/lib/twin.db") == "sqlite:///var/lib/twin.db"
    assert url_without_credentials("postgresql://twin:s3cret@db/twin") == "postgresql://db/twin"


def test_errors_name_the_backend_but_not_its_password() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(GraphUnavailable) as unreachable:
        open_backend(f"falkordb://twin:s3cret@127.0.0.1:{port}")
    assert "s3cret" not in str(unreachable.value) and "127.0.0.1" in str(unreachable.value)
    with pytest.raises(GraphError) as malformed:
        relational_engine("postgresql://twin:s3cret@:bad:/x")
    assert "s3cret" not in str(malformed.value) and "***" in str(malformed.value)
    with pytest.raises(GraphError) as scheme:
        open_backend("mongodb://twin:s3cret@db/x")
    assert "s3cret" not in str(scheme.value)


def test_a_store_that_fails_to_open_leaves_no_server_behind(tmp_path: Path) -> None:
    with pytest.raises(GraphError):
        GraphStore.open(
            f"falkordb+embedded://{tmp_path / 'graph'}",
            contract_ontology(),
            history_url="postgresql://twin:s3cret@:bad:/x",
        )
    assert falkordb_processes_under(tmp_path) == []
