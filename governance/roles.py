"""The built-in roles and, in one line each, what a holder of the role may see (the policy refines this)."""

from __future__ import annotations

from dataclasses import dataclass

from governance.errors import GovernanceError


@dataclass(frozen=True)
class RoleDefinition:
    """A built-in role: its name as it appears in token claims and what it grants."""

    name: str
    description: str


BUILT_IN_ROLES: tuple[RoleDefinition, ...] = (
    RoleDefinition("admin", "Everything, including personal and restricted fields, policy and key administration."),
    RoleDefinition(
        "architect",
        "The whole model of the enterprise (assets, processes, systems, org structure); "
        "no personal or HR fields of people.",
    ),
    RoleDefinition(
        "executive",
        "Aggregates, KPIs, risks and scenario results across the enterprise; people only "
        "as counts and aggregates, no individual personal fields.",
    ),
    RoleDefinition(
        "analyst",
        "People and cost analytics as differentially private aggregates (noisy counts, sums and means within a "
        "privacy budget); no individual's row or personal value.",
    ),
    RoleDefinition(
        "compliance",
        "Audit log, lineage and provenance of every value, controls and regulations; "
        "personal fields masked unless the policy grants them for an investigation.",
    ),
    RoleDefinition(
        "hr",
        "People, positions, skills and org units of their own org-unit subtree, including "
        "personal fields; no access outside that subtree.",
    ),
    RoleDefinition(
        "data_steward",
        "Data sources, mappings, sync runs, rejected rows and lineage; values of personal fields masked.",
    ),
    RoleDefinition("viewer", "Public, non-classified fields of non-personal classes only; read only."),
)

ROLE_NAMES: frozenset[str] = frozenset(role.name for role in BUILT_IN_ROLES)


def role_description(name: str) -> str:
    """The one-line description of built-in role `name` (GovernanceError if it is not built in)."""
    for role in BUILT_IN_ROLES:
        if role.name == name:
            return role.description
    raise GovernanceError(f"{name!r} is not a built-in role; built-in roles are {', '.join(sorted(ROLE_NAMES))}")
