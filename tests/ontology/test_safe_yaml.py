"""Issue 22 item 5: every user-supplied YAML (scenarios, mappings, policies, the connector registry) is read with
alias expansion bounded, a size limit and a depth limit, through one loader (ontology/safe_yaml.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ontology.safe_yaml import MAX_NODES, YamlLimitError, load_yaml


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The classic 'billion laughs': each level a list of `width` aliases of the one before."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_by_name() -> None:
    with pytest.raises(YamlLimitError, match="alias") as caught:
        load_yaml(alias_bomb(), "spec.yaml")
    assert "spec.yaml" in str(caught.value)


def test_a_moderate_use_of_aliases_still_loads() -> None:
    assert load_yaml("base: &b {x: 1}\nother: *b\nthird: *b\n", "ok.yaml") == {
        "base": {"x": 1},
        "other": {"x": 1},
        "third": {"x": 1},
    }
    assert MAX_NODES >= 10_000


def test_oversized_and_overdeep_yaml_is_refused() -> None:
    with pytest.raises(YamlLimitError, match="larger than"):
        load_yaml("x: " + "a" * 2_000_000, "big.yaml")
    with pytest.raises(YamlLimitError, match="deep"):
        load_yaml("[" * 5_000 + "]" * 5_000, "deep.yaml")
    with pytest.raises(YamlLimitError, match="alias"):
        load_yaml("a: &a [*a]\n", "cycle.yaml")


def test_scenario_specs_refuse_the_bomb() -> None:
    from simulation.errors import SimulationError
    from simulation.scenario import parse_spec

    spec = alias_bomb(6, 10) + "name: bomb\nhorizon_days: 1\n"
    with pytest.raises(SimulationError, match="alias"):
        parse_spec(spec, "bomb.yaml")


def test_mappings_refuse_the_bomb() -> None:
    from connectors.mapping import MappingError, parse_mapping
    from ontology.core import load_core

    with pytest.raises(MappingError, match="alias"):
        parse_mapping(alias_bomb(6, 10), load_core(), "bomb-mapping.yaml")


def test_policies_refuse_the_bomb(tmp_path: Path) -> None:
    from governance.policy import PolicyError, load_policy
    from ontology.core import load_core

    path = tmp_path / "policy.yaml"
    path.write_text(alias_bomb(6, 10), encoding="utf-8")
    with pytest.raises(PolicyError, match="alias"):
        load_policy(load_core(), path)


def test_connector_registry_refuses_the_bomb(tmp_path: Path) -> None:
    from connectors.registry import RegistryError, _read_registry

    path = tmp_path / "connectors.yaml"
    path.write_text(alias_bomb(6, 10), encoding="utf-8")
    with pytest.raises(RegistryError, match="alias"):
        _read_registry(path)
