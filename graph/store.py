"""GraphStore: the one interface to the twin graph that every other layer uses, whatever the backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

from graph.as_of import TimeTravel
from graph.backends import CypherBackend, open_backend
from graph.errors import HistoryUnavailable, TwinNotFound
from graph.feed import ChangeFeed
from graph.history import ChangeContext, HistoryEntry, HistoryStore
from graph.lifecycle import State, Transition
from graph.model import Link, Rewrite, Twin, TwinRecord, WriteSummary
from graph.personal_values import PersonalValues
from graph.presence import existing_link_count, stored_classes, stored_states
from graph.reads import TwinReader
from graph.replay import GraphDelta
from graph.writes import TwinWriter
from ontology.errors import quoted
from ontology.model import Ontology


class GraphStore(TwinReader):
    """Validated writes, scoped reads and history of the twin graph over one Cypher backend."""

    def __init__(
        self, backend: CypherBackend, ontology: Ontology, history: HistoryStore | None = None, *, schema: bool = True
    ) -> None:
        super().__init__(backend, ontology)
        self.history = history
        self._writer = TwinWriter(backend, ontology, history)
        if schema:
            backend.ensure_schema()
            self.recover_history()

    @classmethod
    def open(
        cls,
        url: str,
        ontology: Ontology,
        *,
        history_url: str | None = None,
        graph_name: str = "twin",
        user: str | None = None,
        password: str | None = None,
        fsync: str = "always",
        threads: int | None = None,
        seal: PersonalValues | None = None,
    ) -> GraphStore:
        """Open the store a URL names, with history in the relational store at `history_url` (`threads`: query
        threads of an embedded server this opening starts; `seal`: seals the personal values history keeps)."""
        backend = open_backend(url, graph_name=graph_name, user=user, password=password, fsync=fsync, threads=threads)
        try:
            history = HistoryStore(history_url, seal) if history_url else None
            return cls(backend, ontology, history)
        except BaseException:
            backend.close()  # an embedded server started for this store must not outlive the failure
            raise

    @classmethod
    def load(
        cls,
        url: str,
        ontology: Ontology,
        twins: Sequence[Twin],
        links: Sequence[Link],
        *,
        history_url: str | None = None,
        graph_name: str = "twin",
        user: str | None = None,
        password: str | None = None,
        fsync: str = "always",
        threads: int | None = None,
        seal: PersonalValues | None = None,
        actor: str = "system",
        source: str | None = None,
        run_id: str | None = None,
        compact_history: bool = True,
    ) -> tuple[GraphStore, WriteSummary]:
        """Open a graph and write `twins`, then `links`, with the checks and history of upserts.

        A FalkorDB graph that does not exist yet is created in one bulk write (GRAPH.BULK), all or nothing, its
        history kept compact (one row per twin with the links from it; `compact_history=False`: one row per twin
        and per link, as upserts keep it); any other graph gets upserts (the twins, then the links, each all or
        nothing). Returns the open store.
        """
        backend = open_backend(url, graph_name=graph_name, user=user, password=password, fsync=fsync, threads=threads)
        try:
            store = cls(backend, ontology, HistoryStore(history_url, seal) if history_url else None, schema=False)
        except BaseException:
            backend.close()
            raise
        try:
            context = ChangeContext(actor, source, run_id)
            store.recover_history()  # an earlier load killed part-way left its history pending
            summary = store._writer.load_new(twins, links, context, compact_history)
            backend.ensure_schema()  # indexes and the uid constraint, over what the bulk write created
            if summary is None:
                summary = store._writer.upsert_twins(twins, context) + store._writer.upsert_links(links, context)
        except BaseException:
            store.close()
            raise
        return store, summary

    @property
    def url(self) -> str:
        """The backend URL."""
        return self.backend.url

    # ------------------------------------------------------------------ writes

    def upsert_twins(
        self, twins: Sequence[Twin], *, actor: str = "system", source: str | None = None, run_id: str | None = None
    ) -> WriteSummary:
        """Create or update twins (idempotent); rejects the whole batch on any ontology violation."""
        return self._writer.upsert_twins(twins, ChangeContext(actor, source, run_id))

    def rewrite_twins(
        self,
        rewrites: Sequence[Rewrite],
        *,
        actor: str = "system",
        source: str | None = None,
        validate: bool = True,
    ) -> int:
        """Replace the states of existing twins with UNWIND writes and history (an ontology migration); rejects the
        whole batch on any violation of this store's ontology (unless `validate` is False). Returns the twins
        written."""
        return self._writer.rewrite_twins(rewrites, ChangeContext(actor, source), validate)

    def upsert_links(
        self, links: Sequence[Link], *, actor: str = "system", source: str | None = None, run_id: str | None = None
    ) -> WriteSummary:
        """Create or update links (idempotent); rejects the whole batch on any ontology violation."""
        return self._writer.upsert_links(links, ChangeContext(actor, source, run_id))

    def delete_twins(
        self, uids: Iterable[str], *, actor: str = "system", source: str | None = None, run_id: str | None = None
    ) -> WriteSummary:
        """Delete twins with their relationships."""
        return self._writer.delete_twins(uids, ChangeContext(actor, source, run_id))

    def delete_links(
        self,
        links: Iterable[tuple[str, str, str]],
        *,
        actor: str = "system",
        source: str | None = None,
        run_id: str | None = None,
    ) -> WriteSummary:
        """Delete links given as (type, source uid, target uid)."""
        return self._writer.delete_links(links, ChangeContext(actor, source, run_id))

    def transition(
        self,
        states: dict[str, State],
        *,
        actor: str = "system",
        source: str | None = None,
        run_id: str | None = None,
        strict: bool = True,
    ) -> list[Transition]:
        """Move twins (uid -> state) along their lifecycle, all or none, recorded in history; LifecycleError for a
        transition not allowed (or, when `strict`, a twin already in its state), TwinNotFound for a missing twin."""
        return self._writer.transition(states, ChangeContext(actor, source, run_id), strict)

    # ------------------------------------------------------------------ history

    def recover_history(self) -> int:
        """Settle the history of writes a crashed or failed writer left pending (confirm what the graph holds, drop
        the rest); runs at open and at the start of each sync run. Returns the rows confirmed."""
        return self._writer.recover_history()

    def require(self, uid: str) -> TwinRecord:
        """The twin with this uid; TwinNotFound otherwise."""
        record = self.get(uid)
        if record is None:
            raise TwinNotFound(f"no twin with uid {quoted(uid)}")
        return record

    def history_of(self, uid: str, limit: int = 1000) -> list[HistoryEntry]:
        """Every recorded change of the twin and its links, oldest first."""
        return self._history().history(uid, limit)

    def as_of(self, uid: str, when: dt.datetime) -> dict[str, Any] | None:
        """The twin's recorded state at `when`, or None if it did not exist then."""
        return self._history().as_of(uid, when)

    @cached_property
    def time_travel(self) -> TimeTravel:
        """Readers of the whole graph as it was at past times (scratch graphs replayed from history, cached)."""
        return TimeTravel(self.backend, self.ontology, self.history, timeout_ms=self.timeout_ms)

    def at(self, when: dt.datetime | None, valid_at: dt.datetime | None = None) -> TwinReader:
        """The reader of the graph as it was at `when` (this store itself when both are None); with `valid_at`, as
        valid then by the sources' effective dates, as known at `when` (default: now; graph/valid_time.py)."""
        if valid_at is None:
            return self if when is None else self.time_travel.reader(when)
        return self.time_travel.reader(when or dt.datetime.now(dt.UTC), valid_at)

    def diff(self, start: dt.datetime, end: dt.datetime | None = None) -> list[GraphDelta]:
        """What changed in the graph between `start` and `end` (default: now), one entry per twin or link."""
        return self.time_travel.diff(start, end or dt.datetime.now(dt.UTC))

    @cached_property
    def feed(self) -> ChangeFeed:
        """The change feed: every confirmed change in one gap-free sequence (needs history)."""
        return ChangeFeed(self._history())

    def _history(self) -> HistoryStore:
        if self.history is None:
            raise HistoryUnavailable("this store keeps no history (open it with a history_url)")
        return self.history

    def clear(self) -> None:
        """Delete every twin and link (history is kept)."""
        self.backend.clear()
        self._writer.forget()
        self.backend.ensure_schema()

    def compact_log(self) -> bool:
        """Rewrite the graph server's append-only log from the current data, so overwritten values leave the disk
        (scratch graphs of past times are deleted first: they may hold values erased since)."""
        if "time_travel" in self.__dict__:
            self.time_travel.forget()
        return self.backend.compact_log()

    def release(self) -> None:
        """Release what this store holds of its own but not the backend (a second store over the same backend, e.g.
        with another ontology for a migration)."""
        self._writer.close()

    def close(self) -> None:
        """Release the backend connection (deleting the scratch graphs of past times)."""
        if "time_travel" in self.__dict__:
            self.time_travel.forget(lenient=True)
        self._writer.close()
        self.backend.close()

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ presence (what of a batch the graph holds)

    def classes_of(self, uids: Sequence[str]) -> dict[str, str]:
        """The class of each of these twins that exists."""
        return stored_classes(self.backend, uids)

    def states_of(self, uids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """The class and stored properties of each of these twins that exists."""
        return stored_states(self.backend, uids)

    def count_links(self, links: Sequence[tuple[str, str, str]]) -> int:
        """How many of these links (type, source uid, target uid) the graph holds."""
        return existing_link_count(self.backend, links)
