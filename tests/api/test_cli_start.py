"""The `twin` command line lists its commands without importing them, and its light commands stay light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.app import COMMANDS, app, load_command

HEAVY = ("mesa", "matplotlib", "scipy", "pandas", "dask", "networkx")
ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import contextlib, json, sys
from api.cli.app import app
with contextlib.suppress(SystemExit):
    app(sys.argv[1:], standalone_mode=False)
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


def imported_heavy(argv: list[str], data_dir: Path) -> tuple[list[str], str]:
    """Which heavy packages a fresh interpreter imported to run `twin ARGV`, and what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"TWIN_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    return json.loads(done.stderr.strip().splitlines()[-1]), done.stdout


@pytest.mark.parametrize(
    "argv", [["--help"], ["token", "--role", "viewer"], ["ontology", "show", "Employee"], ["graph", "stats", "--json"]]
)
def test_light_commands_import_no_simulation_or_dataframe_stack(argv: list[str], tmp_path: Path) -> None:
    heavy, output = imported_heavy(argv, tmp_path / "twin")
    assert heavy == [], f"`twin {' '.join(argv)}` imported {heavy}"
    assert output.strip(), f"`twin {' '.join(argv)}` printed nothing"


def test_help_lists_every_command_with_the_help_of_the_command_itself() -> None:
    listing = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert listing.exit_code == 0
    for name, entry in COMMANDS.items():
        real = load_command(name)
        first_paragraph = " ".join((real.help or "").split("\n\n")[0].split())
        assert entry.help == first_paragraph, f"`twin --help` says of {name!r} what the command no longer says"
        assert name in listing.output


def test_an_unknown_command_is_refused_by_name() -> None:
    result = CliRunner().invoke(app, ["nosuch"])
    assert result.exit_code == 2 and "No such command 'nosuch'" in result.output


def test_a_group_runs_its_subcommand_after_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.settings import get_settings

    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "twin"))
    get_settings.cache_clear()
    try:
        shown = CliRunner().invoke(app, ["ontology", "show", "Employee"], terminal_width=200)
    finally:
        get_settings.cache_clear()
    assert shown.exit_code == 0, shown.output
    assert "Person" in shown.output  # Employee's ancestor, read from the loaded ontology
