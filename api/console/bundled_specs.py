"""The example study and experiment specs that ship with the simulation package, as the console's scenario dashboard
offers them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

import simulation

BUNDLED_DIR = Path(simulation.__file__).resolve().parent / "scenarios"
EXPERIMENTS_DIR = Path(simulation.__file__).resolve().parent / "experiments"


@dataclass(frozen=True)
class BundledSpec:
    """One bundled spec: its study name, file name, description and YAML text."""

    name: str
    file: str
    description: str
    text: str


def bundled_specs(*folders: Path) -> list[BundledSpec]:
    """Every `*.yaml` spec in `folders` (the bundled studies, then the bundled experiments), each folder sorted by file
    name (a file that is not a YAML mapping is left out)."""
    found = []
    for path in [p for folder in folders or (BUNDLED_DIR, EXPERIMENTS_DIR) for p in sorted(folder.glob("*.yaml"))]:
        text = path.read_text(encoding="utf-8")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        if not isinstance(data, dict):
            continue
        found.append(
            BundledSpec(str(data.get("name") or path.stem), path.name, str(data.get("description") or ""), text)
        )
    return found
