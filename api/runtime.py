"""The running twin as the edge layers see it: settings, the loaded ontology and the opened stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from api.settings import Settings, get_settings
from graph.store import GraphStore
from ontology.loader import load_ontology
from ontology.model import Ontology


@dataclass
class Runtime:
    """Opens what a command or the API server needs, once, from the settings."""

    settings: Settings = field(default_factory=get_settings)

    @cached_property
    def ontology(self) -> Ontology:
        """The core ontology merged with the configured extra sources."""
        return load_ontology(self.settings.ontology_paths)

    @cached_property
    def store(self) -> GraphStore:
        """The twin graph, with history in the relational store."""
        s = self.settings
        return GraphStore.open(
            s.resolved_graph_url,
            self.ontology,
            history_url=s.resolved_database_url,
            graph_name=s.graph_name,
            user=s.graph_user,
            password=s.graph_password.get_secret_value() if s.graph_password else None,
            fsync=s.graph_fsync,
        )

    def close(self) -> None:
        """Release the graph connection (the last user of an embedded server stops it)."""
        if "store" in self.__dict__:
            self.store.close()
            del self.__dict__["store"]
