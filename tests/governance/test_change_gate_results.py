"""Study and forecast events on the change feed are results, not twin properties: the change gate shows them only to
roles that may read studies (scenario.read) or forecasts (forecast.read), whatever else the role may read."""

from __future__ import annotations

import datetime as dt

from governance.change_view import ChangeGate
from governance.identity import Subject
from governance.policy import load_policy
from graph.feed import FeedChange
from graph.model import TwinRecord
from ontology.core import load_core

ONTOLOGY = load_core()
POLICY = load_policy(ONTOLOGY)


class EveryRowReader:
    """A reader for roles that read every row of a class: the gate asks it for nothing (rows are not filtered)."""

    ontology = ONTOLOGY

    def get_many(self, uids: list[str], scope: object) -> dict[str, TwinRecord]:
        return {uid: TwinRecord(uid, "OrgUnit", ("OrgUnit",), {"name": uid}) for uid in uids}


def _event(seq: int, kind: str, after: dict[str, object]) -> FeedChange:
    return FeedChange(
        seq,
        "ou-plant-b",
        kind,
        "create",
        "OrgUnit",
        None,
        None,
        "exec",
        kind,
        None,
        dt.datetime.now(dt.UTC),
        None,
        after,
    )


STUDY = _event(1, "study", {"study_id": "s-1", "kpis": {"close": {"cost": {"mean": 1.2e6}}}, "runs": 30})
FORECAST = _event(2, "forecast", {"series": "headcount/ou-plant-b", "mean": [10.0, 11.0]})
UPDATE = _event(3, "twin", {"name": "Plant B"})


def _kinds(role: str) -> list[str]:
    subject = Subject(sub=f"{role}-1", roles=frozenset({role}))
    return [view.change.kind for view in ChangeGate(POLICY, subject, EveryRowReader()).view([STUDY, FORECAST, UPDATE])]


def test_study_events_need_scenario_read_and_forecast_events_forecast_read() -> None:
    assert not POLICY.decide(Subject(sub="s", roles=frozenset({"data_steward"})), "operation", "scenario.read").allowed
    assert _kinds("data_steward") == ["forecast", "twin"]  # reads OrgUnit and forecasts, not studies
    assert _kinds("architect") == ["study", "forecast", "twin"]
    assert _kinds("hr") == ["forecast", "twin"]
    assert _kinds("viewer") == ["twin"]  # neither
