"""`twin forecast run | show | backtest | models | approve | promote | drift` on the sample's demand history, acting as
the local operator: a run stores forecasts with their champion version, `show` charts them, a self-approval and an
unapproved promotion are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from api.cli import forecast as forecast_cli
from api.cli.app import app
from api.cli.forecast import chart
from api.settings import get_settings
from connectors.sample.demand import DemandShape, generate_demand_history

runner = CliRunner()


@pytest.fixture
def twin_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data directory whose sample/ holds three years of demand of one product."""
    generate_demand_history(tmp_path / "sample", [("HP-1000", DemandShape(25.0))], seed=4, years=3)
    monkeypatch.setenv("TWIN_DATABASE_URL", f"sqlite:///{tmp_path / 'twin.db'}")
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(forecast_cli, "console", Console(width=200))  # tables unabridged
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_run_show_backtest_and_governed_promotion(twin_env: Path) -> None:
    result = runner.invoke(app, ["forecast", "run", "sample.demand/HP-1000/direct", "--json"])
    assert result.exit_code == 0, result.output
    (outcome,) = [json.loads(line) for line in result.output.strip().splitlines()]
    assert outcome["status"] == "stored" and outcome["model_version"] and outcome["kind"] == outcome["best_kind"]

    shown = runner.invoke(app, ["forecast", "show", "sample.demand/HP-1000/direct"])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())  # rich wraps long lines
    assert f"model version {outcome['model_version']}" in text and "input digest" in text
    assert "*" in shown.output and ":" in shown.output and "80 % high" in shown.output

    tested = runner.invoke(app, ["forecast", "backtest", "sample.demand/HP-1000/direct", "--json", "--windows", "2"])
    assert tested.exit_code == 0, tested.output
    found = json.loads(tested.output.strip().splitlines()[-1])
    assert set(found["backtests"]) == {"seasonal_naive", "mstl"}  # weekly with a yearly season: MSTL

    models = runner.invoke(app, ["forecast", "models", "sample.demand/HP-1000/direct"])
    assert models.exit_code == 0 and "champion" in models.output
    refused = runner.invoke(app, ["forecast", "approve", outcome["model_version"]])
    assert refused.exit_code == 1 and "may not approve it" in " ".join(refused.output.split())
    unapproved = runner.invoke(app, ["forecast", "promote", outcome["model_version"]])
    assert unapproved.exit_code == 1 and "champion already" in " ".join(unapproved.output.split())

    drift = runner.invoke(app, ["forecast", "drift", "sample.demand/HP-1000/direct"])
    assert drift.exit_code == 0, drift.output  # nothing realised since training: no report lines


def test_bad_input_gets_a_clear_error(twin_env: Path) -> None:
    missing = runner.invoke(app, ["forecast", "show", "sample.demand/NOPE"])
    assert missing.exit_code == 1 and "no stored forecast of series 'sample.demand/NOPE'" in " ".join(
        missing.output.split()
    )
    unknown = runner.invoke(app, ["forecast", "run", "nope"])
    assert unknown.exit_code == 1 and "no series 'nope'" in " ".join(unknown.output.split())
    bad = twin_env / "bad.yaml"
    bad.write_text("series:\n  - name: x\n    from: {twins: {class: Widget, time: t}}\n")
    refused = runner.invoke(app, ["forecast", "run", "x", "--file", str(bad)])
    text = " ".join(refused.output.split())
    assert refused.exit_code == 1 and "line 3" in text and "unknown class 'Widget'" in text


def test_chart_draws_history_forecast_and_band() -> None:
    lines = chart([1.0, 2.0, 3.0], [4.0, 5.0], [3.5, 4.0], [4.5, 6.0], height=6)
    assert len(lines) == 6 and lines[0].endswith(":") and "o" in lines[-1]
    assert sum(line.count("*") for line in lines) == 2


def test_retrain_by_hand_and_approve_retrain(twin_env: Path) -> None:
    assert runner.invoke(app, ["forecast", "run", "sample.demand/HP-1000/direct"]).exit_code == 0
    same = runner.invoke(app, ["forecast", "retrain", "sample.demand/HP-1000/direct"])
    assert same.exit_code == 0 and "no new version (nothing new to train on)" in " ".join(same.output.split())
    generate_demand_history(
        twin_env / "sample", [("HP-1000", DemandShape(25.0))], seed=4, years=3, as_of=date(2025, 8, 4)
    )
    newer = runner.invoke(app, ["forecast", "retrain", "sample.demand/HP-1000/direct"])
    text = " ".join(newer.output.split())
    assert newer.exit_code == 0 and "new version" in text and "a challenger to" in text, newer.output
    models = runner.invoke(app, ["forecast", "models", "sample.demand/HP-1000/direct"])
    assert models.output.count("challenger") == 1 and models.output.count("champion") == 1
    unknown = runner.invoke(app, ["forecast", "approve-retrain", "nope"])
    assert unknown.exit_code == 1 and "no model alert 'nope'" in " ".join(unknown.output.split())
