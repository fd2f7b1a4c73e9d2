"""The lifecycle of a twin: planned → active → suspended → retired, and which transitions are allowed.

Every twin has a state (`active` unless set), stored as the system property `_lifecycle` beside `_class`; a twin
whose state was never set may take any state first (a source creates it planned), later moves follow `TRANSITIONS`.
Retired twins stay in the graph and in history, but the scope of a caller's read hides them unless the read opts in
(`ReadScope.including_retired`): lists, search, aggregates, impact, paths and simulation slices leave them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from graph.errors import GraphError
from ontology.errors import quoted

State = Literal["planned", "active", "suspended", "retired"]
STATES: tuple[State, ...] = get_args(State)
DEFAULT: State = "active"
PROPERTY = "_lifecycle"
HIDDEN: frozenset[State] = frozenset({"retired"})
"""States a read leaves out unless it asks for them."""

TRANSITIONS: dict[State, frozenset[State]] = {
    "planned": frozenset({"active", "retired"}),  # a plan is realised, or dropped
    "active": frozenset({"suspended", "retired"}),
    "suspended": frozenset({"active", "retired"}),
    "retired": frozenset({"active"}),  # brought back (a record that reappears in its source)
}


@dataclass(frozen=True)
class Transition:
    """One twin moved from one lifecycle state to another."""

    uid: str
    cls: str
    before: State
    after: State


class LifecycleError(GraphError):
    """An unknown lifecycle state, or a transition the lifecycle does not allow (`refused`: uid -> why, for each
    twin of a batch that may not move)."""

    def __init__(self, message: str, refused: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.refused = refused or {}


def state_of(value: object) -> State:
    """The lifecycle state `value` names; LifecycleError naming the states otherwise."""
    if isinstance(value, str) and value in STATES:
        return value
    raise LifecycleError(f"unknown lifecycle state {quoted(str(value))}; the states are {', '.join(STATES)}")


def stored_state(value: object) -> State:
    """The state a twin's stored `_lifecycle` value means (absent: active)."""
    return value if isinstance(value, str) and value in STATES else DEFAULT


def transition_problem(uid: str, current: State, target: State) -> str | None:
    """Why a twin in `current` may not go to `target` (naming where it may go), or None when it may."""
    if current == target:
        return f"twin {quoted(uid)} is already {target}"
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current]))
        return f"twin {quoted(uid)} cannot go from {current} to {target}; from {current} it may go to {allowed}"
    return None
