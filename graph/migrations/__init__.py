"""The Alembic environment of the twin's relational stores: one revision history for every store's tables.

`STORE_MODULES` names the modules that define store tables (a module-level `metadata`); the schema test compares the
revisions against their tables, and `twin db revision` writes a new revision from the difference. The modules are
named, not imported, so that the lower layers' stores can use graph/ without an import cycle.
"""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

STORE_MODULES = (
    "graph.history",
    "governance.audit",
    "governance.lineage",
    "governance.decisions.alerts",
    "governance.decisions.proposals",
    "governance.decisions.runtime",
    "governance.models",
    "governance.privacy_budget",
    "connectors.identity",
    "connectors.leases",
    "connectors.quarantine",
    "connectors.route_delivery",
    "connectors.sync_state",
    "connectors.telemetry",
    "simulation.results",
    "simulation.forecast.store",
    "graph.ontology_versions",
    "graph.ontology_migration",
    "graph.valid_time",
)


def store_metadata() -> MetaData:
    """Every store's tables in one MetaData (what the newest revision must create)."""
    merged = MetaData()
    for name in STORE_MODULES:
        module_metadata = importlib.import_module(name).metadata
        if not isinstance(module_metadata, MetaData):
            raise TypeError(f"{name}.metadata is not a SQLAlchemy MetaData")
        for table in module_metadata.sorted_tables:
            if table.name not in merged.tables:
                table.to_metadata(merged)
    return merged
