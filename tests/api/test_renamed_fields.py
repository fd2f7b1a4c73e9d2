"""After a migration renamed `email` to `workEmail`, the GraphQL schema serves the former name one more version as a
deprecated field reading the new property."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api.graphql.builder import build_schema
from api.http.app import create_app
from api.runtime import Runtime
from governance.tokens import LocalIssuer
from graph.embedded import stop_embedded
from graph.ontology_migration import Migrator, parse_migration
from graph.ontology_versions import OntologyVersions
from tests.api.conftest import ApiHarness, _settings, sample_twins
from tests.graph.test_ontology_migration import new_ontology, old_ontology


def test_the_schema_marks_the_former_name_deprecated() -> None:
    sdl = build_schema(new_ontology(), renames={"Person": {"email": "workEmail"}}).sdl()
    assert 'email: String @deprecated(reason: "Renamed to workEmail.")' in sdl
    assert "workEmail: String" in sdl
    assert "email: String @deprecated" not in build_schema(new_ontology()).sdl()


def test_a_migrated_graph_serves_the_former_name_deprecated(tmp_path: Path) -> None:
    runtime = Runtime(settings=_settings(tmp_path))
    try:
        runtime.__dict__["ontology"] = old_ontology()
        twins, links = sample_twins()
        runtime.store.upsert_twins(twins)
        runtime.store.upsert_links(links)
        versions = OntologyVersions(runtime.settings.resolved_database_url)
        versions.activate(old_ontology(), "test")
        migration = parse_migration(
            "name: work-email\nsteps:\n  - rename_property: {class: Person, from: email, to: workEmail}\n"
        )
        Migrator(migration, old_ontology(), new_ontology()).apply(runtime.store)
        versions.activate(new_ontology(), "test", migration=migration.name, renames=migration.renames())
        runtime.store.close()
        runtime.__dict__.pop("store")
        runtime.__dict__["ontology"] = new_ontology()
        with TestClient(create_app(runtime)) as client:
            api = ApiHarness(client, runtime, LocalIssuer(tmp_path))
            nodes = api.data('{ employees(where: {uid: {eq: "emp-03"}}) { nodes { email workEmail } } }')
            assert nodes["employees"]["nodes"] == [
                {"email": "person3@example.test", "workEmail": "person3@example.test"}
            ]
    finally:
        runtime.close()
        stop_embedded(tmp_path / "graph")
