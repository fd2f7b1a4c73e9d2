"""Action types: what a proposal may do, with typed parameters. An action is an optional write-back to a source
system (run first; its failure aborts the action) and an optional change of the twin (a governed mutation: the same
policy checks a GraphQL mutation makes, as the approver).

`twin.edit` is built in; source-specific write-backs (the sample ERP's purchase orders: connectors/erp_writeback.py)
are registered by the runtime that knows the source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from governance.errors import GovernanceError, PolicyDenied
from governance.identity import Subject
from governance.policy import Policy
from graph.model import Link, Twin, WriteSummary
from graph.store import GraphStore


class ActionError(GovernanceError):
    """An action cannot be proposed or run: bad parameters, a refused twin change, a failed write-back."""


class WritebackFailed(ActionError):
    """The source system refused or could not take the write-back; the action is aborted, the twin untouched."""


@dataclass(frozen=True)
class TwinChange:
    """The change an action makes to the twin after its write-back: twins to upsert, then links."""

    twins: tuple[Twin, ...] = ()
    links: tuple[Link, ...] = ()


Writeback = Callable[[str, Any], str]
"""(proposal id, parameters) -> a reference to what the source now holds; idempotent by the proposal id."""
Effect = Callable[[str, Any, Subject], str]
"""(proposal id, parameters, the subject the action runs as) -> a reference to what it did (published an event,
called a webhook, ran a study); idempotent by the proposal id where the target allows it."""
TwinChangeOf = Callable[[str, Any, "str | None", GraphStore], TwinChange]
"""(proposal id, parameters, write-back reference, store) -> the twin change."""


@dataclass(frozen=True)
class ActionType:
    """A registered action type: its parameter model, and what running it does."""

    name: str
    parameters: type[BaseModel]
    description: str
    writeback: Writeback | None = None
    twin_change: TwinChangeOf | None = None
    effect: Effect | None = None  # runs as the action's subject, after the write-back; its failure aborts the action

    def check(self, values: Mapping[str, Any]) -> BaseModel:
        """The parameters typed and checked; ActionError naming the parameter and the problem."""
        from pydantic import ValidationError

        try:
            return self.parameters.model_validate(dict(values))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "parameters"
            raise ActionError(f"{self.name}: parameter {where}: {first['msg']}") from None


@dataclass
class ActionTypes:
    """The action types proposals may name."""

    types: dict[str, ActionType] = field(default_factory=dict)

    def register(self, action_type: ActionType) -> None:
        """Add (or replace) an action type."""
        self.types[action_type.name] = action_type

    def get(self, name: str) -> ActionType | None:
        """The type called `name`."""
        return self.types.get(name)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self.types)


class TwinEditParameters(BaseModel):
    """Set properties of one twin (a property set to null is removed)."""

    model_config = ConfigDict(extra="forbid")
    uid: str = Field(min_length=1, max_length=512)
    properties: dict[str, Any] = Field(min_length=1)


def _twin_edit(proposal_id: str, params: Any, reference: str | None, store: GraphStore) -> TwinChange:
    current = store.get(params.uid)
    if current is None:
        raise ActionError(f"twin.edit: no twin {params.uid[:80]!r}")
    return TwinChange(twins=(Twin(params.uid, current.cls, dict(params.properties)),))


TWIN_EDIT = ActionType(
    "twin.edit", TwinEditParameters, "Set properties of a twin (a governed mutation).", twin_change=_twin_edit
)


def default_action_types(extra: Iterable[ActionType] = ()) -> ActionTypes:
    """The built-in action types, with `extra` registered after them."""
    types = ActionTypes()
    types.register(TWIN_EDIT)
    for action_type in extra:
        types.register(action_type)
    return types


def apply_twin_change(
    store: GraphStore, policy: Policy, subject: Subject, change: TwinChange, source: str
) -> WriteSummary:
    """Write `change` as `subject` with the checks of a GraphQL mutation: each class needs `write`, no field the
    subject may not read is written, each twin must be one the subject sees (or would see once created)."""
    scope = policy.read_scope(subject)
    summary = WriteSummary()
    if change.twins:
        found = store.get_many([t.uid for t in change.twins])
        visible = store.get_many([t.uid for t in change.twins], scope)
        for twin in change.twins:
            policy.require(subject, "write", twin.cls)
            hidden = policy.unreadable(subject, twin.cls, twin.properties)
            if hidden:
                raise PolicyDenied(
                    f"denied: field(s) {sorted(hidden)} of {twin.cls} may not be written by {subject.sub}"
                )
            if twin.uid in found:
                if twin.uid not in visible:
                    raise PolicyDenied(f"denied: twin {twin.uid[:80]!r} is outside what {subject.sub} may see")
                policy.require(subject, "write", found[twin.uid].cls)
            elif not policy.sees_created(subject, twin.cls):
                raise PolicyDenied(f"denied: twin {twin.uid[:80]!r} would be outside what {subject.sub} may see")
        summary = summary + store.upsert_twins(list(change.twins), actor=subject.sub, source=source)
    if change.links:
        ends = {u for link in change.links for u in (link.source, link.target)}
        visible = store.get_many(sorted(ends), scope)
        for link in change.links:
            if link.source not in visible or link.target not in visible:
                raise PolicyDenied(
                    f"denied: link {link.type} {link.source[:60]!r} -> {link.target[:60]!r} joins a "
                    f"twin outside what {subject.sub} may see"
                )
            policy.require(subject, "write", visible[link.source].cls)
        summary = summary + store.upsert_links(list(change.links), actor=subject.sub, source=source)
    return summary
