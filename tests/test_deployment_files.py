"""The container image and compose file use only settings that the configuration model defines."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from api.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KNOWN = {f"TWIN_{name.upper()}" for name in Settings.model_fields}


def _twin_variables(text: str) -> set[str]:
    return set(re.findall(r"\bTWIN_[A-Z_]+\b", text))


def test_compose_settings_exist_in_the_configuration_model() -> None:
    compose = yaml.safe_load((ROOT / "api" / "deploy" / "compose.yaml").read_text())
    used = set(compose["services"]["api"]["environment"])
    assert used, "the api service configures nothing"
    assert used <= KNOWN, f"unknown settings in compose.yaml: {sorted(used - KNOWN)}"


def test_dockerfile_settings_exist_in_the_configuration_model() -> None:
    used = _twin_variables((ROOT / "api" / "deploy" / "Dockerfile").read_text())
    assert used and used <= KNOWN, f"unknown settings in the Dockerfile: {sorted(used - KNOWN)}"


def test_dockerfile_copies_every_top_level_package() -> None:
    text = (ROOT / "api" / "deploy" / "Dockerfile").read_text()
    for package in ("ontology", "graph", "connectors", "simulation", "governance", "api"):
        assert f"COPY {package} {package}" in text


def test_compose_graph_and_database_urls_use_supported_schemes() -> None:
    env = yaml.safe_load((ROOT / "api" / "deploy" / "compose.yaml").read_text())["services"]["api"]["environment"]
    settings = Settings(graph_url=env["TWIN_GRAPH_URL"], database_url="postgresql://x@y/z")
    assert settings.resolved_graph_url.startswith("neo4j://")
    assert env["TWIN_DATABASE_URL"].startswith("postgresql://")
