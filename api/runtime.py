"""The running twin as the edge layers see it: settings, the loaded ontology and the opened stores."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.settings import Settings, get_settings
from governance.audit import AuditLog
from governance.digest_key import deployment_digest_key, owner_only_data_dir
from governance.identity import Subject
from governance.lineage import LineageStore
from governance.master_key import MASTER_KEY_FILE, EnvMasterKey, FileMasterKey, MasterKeyProvider
from governance.personal_seal import PersonalSeal, personal_properties
from governance.policy import Policy, load_policy
from governance.subject_keys import SubjectKeyRing
from graph.store import GraphStore
from ontology.loader import load_ontology
from ontology.model import Ontology

DECISIONS_LEASE = "decisions:automations"  # the lease of the runtime that evaluates the automations

if TYPE_CHECKING:  # the results store imports Mesa; commands that never read studies start without it
    from connectors.route_delivery import RouteRuntime
    from connectors.routes import Route
    from connectors.sync import SyncEngine
    from connectors.sync_runtime import SyncRuntime
    from governance.decisions.actions import ActionTypes
    from governance.decisions.automations import AutomationSet
    from governance.decisions.runtime import DecisionRuntime
    from governance.decisions.service import DecisionService
    from governance.privacy_budget import PrivacyBudgetLedger
    from simulation.forecast.retraining import RetrainRuntime
    from simulation.results import ResultsStore


def outdated_store(settings: Settings | None = None) -> str | None:
    """Why the relational store cannot be used by this code (older: the message names `twin db upgrade`), or None
    when it is current, empty or not created yet (reads only; creates nothing)."""
    from sqlalchemy.engine import make_url

    from graph.relational import relational_engine
    from graph.store_schema import StoreOutdated, refuse_outdated

    url = (settings or get_settings()).resolved_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and (not parsed.database or not Path(parsed.database).is_file()):
        return None
    try:
        refuse_outdated(relational_engine(url))
    except StoreOutdated as exc:
        return str(exc)
    return None


@dataclass
class Runtime:
    """Opens what a command or the API server needs, once, from the settings."""

    settings: Settings = field(default_factory=get_settings)
    schedule_every: dict[str, float] = field(default_factory=dict)
    """Connectors whose runtime schedule is replaced by 'every N seconds' (`twin demo` shortens the sample's)."""

    def __post_init__(self) -> None:
        owner_only_data_dir(self.settings.data_dir)

    @cached_property
    def digest_key(self) -> bytes:
        """The deployment's secret for keyed digests (`hash` masks, lineage value digests)."""
        return deployment_digest_key(self.settings.data_dir)

    @cached_property
    def subject_keys(self) -> SubjectKeyRing:
        """The per-subject data keys, wrapped by the master key (KeyMaterialError when it is wrong or missing)."""
        s = self.settings
        provider: MasterKeyProvider
        if s.master_key is not None:
            provider = EnvMasterKey("TWIN_MASTER_KEY", s.master_key.get_secret_value())
        else:
            provider = FileMasterKey(s.resolved_key_dir / MASTER_KEY_FILE)
        return SubjectKeyRing(s.resolved_subject_keys_url, provider)

    @cached_property
    def personal_seal(self) -> PersonalSeal:
        """Seals personal values kept outside the live graph under their subject's key."""
        return PersonalSeal(self.subject_keys, personal_properties(self.ontology), self.digest_key)

    @cached_property
    def ontology(self) -> Ontology:
        """The core ontology merged with the configured extra sources."""
        return load_ontology(self.settings.ontology_paths)

    @cached_property
    def store(self) -> GraphStore:
        """The twin graph, with history in the relational store."""
        return GraphStore.open(self.settings.resolved_graph_url, self.ontology, **self.graph_options())

    def graph_options(self) -> dict[str, Any]:
        """How the settings open the graph (history, graph name, credentials, fsync, server threads), for
        GraphStore.open/load."""
        s = self.settings
        return {
            "history_url": s.resolved_database_url,
            "graph_name": s.graph_name,
            "user": s.graph_user,
            "password": s.graph_password.get_secret_value() if s.graph_password else None,
            "fsync": s.graph_fsync,
            "threads": s.graph_threads,
            "seal": self.personal_seal,
        }

    @cached_property
    def results(self) -> ResultsStore:
        """Stored what-if studies in the relational store."""
        from simulation.results import ResultsStore

        return ResultsStore(self.settings.resolved_database_url)

    @cached_property
    def policy(self) -> Policy:
        """The access policy (bundled default, or TWIN_POLICY_PATH)."""
        return load_policy(self.ontology, self.settings.policy_path, self.digest_key)

    @cached_property
    def audit(self) -> AuditLog:
        """The tamper-evident audit log in the relational store."""
        return AuditLog(self.settings.resolved_database_url)

    @cached_property
    def privacy_budget(self) -> PrivacyBudgetLedger:
        """The epsilon each role's differentially private answers spent, per period, in the relational store."""
        from governance.privacy_budget import PrivacyBudgetLedger

        return PrivacyBudgetLedger(self.settings.resolved_database_url)

    @cached_property
    def lineage(self) -> LineageStore:
        """The lineage and provenance store in the relational store."""
        return LineageStore(self.settings.resolved_database_url, self.digest_key, self.personal_seal)

    def sync_engine(self, actor: str) -> SyncEngine:
        """A sync engine over the twin with the settings' size limits and mass-delete guard, recording as `actor`."""
        from connectors.limits import SizeLimits
        from connectors.sync import SyncEngine

        s = self.settings
        return SyncEngine(
            self.store,
            s.resolved_database_url,
            lineage=self.lineage,
            actor=actor,
            limits=SizeLimits(s.sync_max_value_bytes, s.sync_max_row_bytes, s.sync_max_file_bytes),
            deletion_limit=s.sync_max_delete_share,
            deletion_floor=s.sync_delete_floor,
            workers=s.sync_workers,
            parallel_min_rows=s.sync_parallel_min_rows,
        )

    def sync_runtime(self, only: list[str] | None = None) -> SyncRuntime:
        """The runtime that keeps the scheduled connectors in sync (not started; `only` limits it to some;
        `schedule_every` replaces the configured schedule of the connectors it names)."""
        import os

        from connectors.leases import LeaseStore
        from connectors.registry import ConnectorRegistry, RegistryError
        from connectors.schedule import Schedule
        from connectors.sync_runtime import SyncRuntime

        # secrets referenced as ${NAME} in connectors.yaml come from the process environment
        registry = ConnectorRegistry.load(self.ontology, data_dir=self.settings.data_dir, secrets=dict(os.environ))
        unknown = sorted(set(only or ()) - set(registry.names()))
        if unknown:
            raise RegistryError(
                f"no connector named {', '.join(map(repr, unknown))}; known: {', '.join(registry.names())}"
            )
        schedules = {name: registry.config(name).schedule for name in registry.names() if not only or name in only}
        for name, seconds in self.schedule_every.items():
            if name in schedules:
                schedules[name] = Schedule("every", seconds=seconds)
        url = self.settings.resolved_database_url
        return SyncRuntime(
            schedules,
            registry.connector,
            lambda: self.sync_engine("twin runtime"),
            LeaseStore(url),
            policy=self.policy,
            audit=self.audit,
            lease_seconds=self.settings.runtime_lease_seconds,
        )

    def routes(self) -> list[Route]:
        """The event routes of DATA_DIR/routes.yaml, checked (secrets from the process environment)."""
        from connectors.routes import load_routes

        return load_routes(self.settings.data_dir / "routes.yaml", self.ontology)

    def route_runtime(self, holder: str | None = None) -> RouteRuntime:
        """The runtime that delivers the change feed to every event route (not started)."""
        from connectors.leases import LeaseStore
        from connectors.route_delivery import RouteCursors, RouteRuntime
        from connectors.sync_runtime import runtime_holder

        url = self.settings.resolved_database_url
        return RouteRuntime(
            self.routes(),
            self.store,
            self.policy,
            RouteCursors(url),
            LeaseStore(url),
            source=self.settings.event_source,
            holder=holder or runtime_holder(),
            audit=self.audit,
            lease_seconds=self.settings.runtime_lease_seconds,
        )

    def retrain_runtime(self, holder: str | None = None) -> RetrainRuntime | None:
        """The runtime that retrains the forecast models of DATA_DIR/series.yaml on their `retrain:` schedules and on
        approved retrain alerts (not started), or None when there is no series.yaml."""
        path = self.settings.data_dir / "series.yaml"
        if not path.is_file():
            return None
        from connectors.leases import LeaseStore
        from connectors.sync_runtime import runtime_holder
        from governance.models import ModelRegistry
        from simulation.forecast.retraining import RetrainRuntime
        from simulation.forecast.series import read_series
        from simulation.forecast.service import ForecastContext
        from simulation.forecast.store import ForecastStore

        series = read_series(path, self.ontology)
        url = self.settings.resolved_database_url
        needs_graph = any(d.source.kind == "twins" for d in series.definitions.values())
        context = ForecastContext(
            ForecastStore(url),
            ModelRegistry(url, self.audit, self.policy),
            self.policy,
            self.audit,
            graph=self.store if needs_graph else None,
            database_url=url,
            data_dir=self.settings.data_dir,
        )
        return RetrainRuntime(
            series,
            context,
            LeaseStore(url),
            holder=holder or runtime_holder(),
            lease_seconds=self.settings.runtime_lease_seconds,
        )

    def action_types(self) -> ActionTypes:
        """The action types proposals may name: the built-in ones, Tryton purchases (over a Tryton connector of
        connectors.yaml, opened when one runs), events and webhooks over the routes of routes.yaml, bundled what-if
        studies, and the sample ERP's purchase orders when this data directory holds the sample
        (DATA_DIR/sample/erp.sqlite)."""
        from connectors.event_actions import event_actions
        from connectors.tryton_writeback import registry_client, tryton_purchase_action
        from governance.decisions.actions import default_action_types
        from simulation.study_action import scenario_study_action

        extra = [
            tryton_purchase_action(registry_client(self._source_options)),
            *event_actions(self.routes),
            scenario_study_action(self.store, lambda: self.results, self.policy, self.audit, self.lineage),
        ]
        erp = self.settings.data_dir / "sample" / "erp.sqlite"
        if erp.is_file():
            from connectors.erp_writeback import purchase_order_action

            extra.append(purchase_order_action(f"sqlite:///{erp.resolve()}"))
        return default_action_types(extra)

    def _source_options(self, connector: str) -> dict[str, Any]:
        """The filled source options of a connector of connectors.yaml (secrets from the environment)."""
        import os

        from connectors.registry import ConnectorRegistry

        registry = ConnectorRegistry.load(self.ontology, data_dir=self.settings.data_dir, secrets=dict(os.environ))
        return registry.source_options(connector)

    @cached_property
    def decisions(self) -> DecisionService:
        """Alerts and proposals, decided and audited (governance/decisions/service.py)."""
        from governance.decisions.alerts import AlertStore
        from governance.decisions.proposals import ProposalStore
        from governance.decisions.service import DecisionService

        url = self.settings.resolved_database_url
        return DecisionService(
            self.store, self.policy, self.audit, AlertStore(url), ProposalStore(url), self.action_types(), self.lineage
        )

    def automations(self) -> AutomationSet:
        """The automations of DATA_DIR/automations.yaml, checked (empty without the file); AutomationError naming
        file, line and term."""
        from governance.decisions.automations import load_automations

        return load_automations(
            self.settings.data_dir / "automations.yaml", self.ontology, self.policy, self.action_types()
        )

    def decision_runtime(self, holder: str | None = None) -> DecisionRuntime | None:
        """The runtime that evaluates DATA_DIR/automations.yaml over the change feed and executes approved proposals
        (not started), or None when there is no automations.yaml."""
        path = self.settings.data_dir / "automations.yaml"
        if not path.is_file():
            return None
        from connectors.leases import LeaseStore
        from connectors.sync_runtime import runtime_holder
        from connectors.telemetry import TelemetryStore
        from governance.decisions.automations import AutomationRegistry
        from governance.decisions.evaluation import Evaluator
        from governance.decisions.execution import Executor
        from governance.decisions.runtime import DecisionCursor, DecisionRuntime

        url = self.settings.resolved_database_url
        service = self.decisions
        registry = AutomationRegistry(path, self.ontology, self.policy, service.action_types)
        holder = holder or runtime_holder()
        leases, seconds = LeaseStore(url), self.settings.runtime_lease_seconds
        return DecisionRuntime(
            registry,
            self.store,
            Evaluator(self.store, self.policy, TelemetryStore(url)),
            service,
            Executor(
                service.proposals,
                service.action_types,
                self.store,
                self.policy,
                holder,
                on_outcome=service.executed,
            ),
            DecisionCursor(url),
            lease=lambda: leases.acquire(DECISIONS_LEASE, holder, seconds),
            release=lambda: _release(leases, holder),
        )

    @staticmethod
    def operator() -> Subject:
        """The subject of a local command: whoever can run `twin` on this data directory is its operator."""
        return Subject(sub=f"cli:{getpass.getuser()}", roles=frozenset({"admin"}))

    def close(self) -> None:
        """Release the graph connection (the last user of an embedded server stops it)."""
        if "store" in self.__dict__:
            self.store.close()
            del self.__dict__["store"]


def _release(leases: Any, holder: str) -> None:
    """Give the decisions lease up (a runtime that stops lets another take over at once)."""
    leases.release(DECISIONS_LEASE, holder)
