"""Identity resolution within a sync page: which twin each record feeds, and how merged twins keep their values."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.identity import Resolution, candidate
from connectors.mapping import EntityMapping
from connectors.sync.mapper import MappedItem
from connectors.telemetry import Reading
from ontology.model import Ontology

if TYPE_CHECKING:
    from connectors.sync.context import RunContext
    from connectors.sync.stores import SyncStores


def winning_class(ontology: Ontology, incoming: str, current: str, authoritative: bool) -> str:
    """The class of a merged twin: the more specific of the two; for unrelated classes the authoritative one."""
    if current not in ontology:
        return incoming
    if ontology.is_a(incoming, current):
        return incoming
    if ontology.is_a(current, incoming):
        return current
    return incoming if authoritative else current


def resolve_identities(stores: SyncStores, ctx: RunContext, entity: EntityMapping, items: list[MappedItem]) -> None:
    """Point each item at the twin its identity resolves to; a non-authoritative source only fills gaps."""
    rule = entity.identity
    assert rule is not None
    identity = stores.identity
    system = ctx.connector.mapping.system
    candidates = []
    for item in items:
        fields = item.record.fields
        org = rule.fuzzy.organisation.render_or_none(fields) if rule.fuzzy and rule.fuzzy.organisation else None
        candidates.append(
            candidate(
                item.natural_uid,
                system,
                exact={p: item.props.get(p) for p in rule.exact},
                email=item.props.get(rule.email) if rule.email else None,
                plus_domains=rule.plus_domains,
                name=item.props.get(rule.fuzzy.name) if rule.fuzzy else None,
                organisation=org,
            )
        )
    resolutions: dict[str, Resolution] = identity.resolve(
        rule.domain, candidates, threshold=rule.fuzzy.threshold if rule.fuzzy else None, dry_run=ctx.dry_run
    )
    for item in items:
        item.uid = resolutions[item.natural_uid].canonical_uid
    merged = [item for item in items if resolutions[item.natural_uid].merged]
    if merged:
        ctx.has_merges = True
    # twins fed by more than one record: merged into another, or others merged into them
    shared_uids = {item.uid for item in merged} | identity.shared([item.uid for item in items])
    shared = [item for item in items if item.uid in shared_uids]
    if not shared:
        return
    existing = stores.graph.states_of(sorted(shared_uids))
    previous = (
        {}
        if rule.authoritative
        else stores.state.ledger(ctx.connector.name, entity.name, [item.record.key for item in shared])
    )
    report = ctx.report.entity(entity.name)
    ontology = stores.graph.ontology
    for item in shared:
        canonical = item.uid
        if item.natural_uid != canonical:
            item.links = [
                link.moved(canonical if link.source == item.natural_uid else link.source, link.target)
                for link in item.links
            ]
            item.readings = [Reading(canonical, r.metric, r.ts, r.value, r.source) for r in item.readings]
            report.example("merge", f"{item.natural_uid} -> {canonical} ({resolutions[item.natural_uid].rule})")
        state = existing.get(canonical)
        if state is None:
            continue
        if item.cls is not None:
            item.cls = winning_class(ontology, item.cls, state[0], rule.authoritative)
        if not rule.authoritative:
            # a non-authoritative source fills gaps: it never overwrites what another source gave the twin
            old = previous.get(item.record.key)
            owned = old.payload.get("p", {}) if old is not None and old.payload.get("u") == canonical else {}
            for prop in list(item.props):
                current = state[1].get(prop)
                if current is not None and current != item.props[prop] and owned.get(prop) != current:
                    del item.props[prop]


def canonical_links(stores: SyncStores, items: list[MappedItem]) -> None:
    """Point the items' links at the canonical uid of each merged identity."""
    endpoints = {uid for it in items for link in it.links for uid in (link.source, link.target)}
    canonical = stores.identity.canonical_of(endpoints)
    if not canonical:
        return
    for item in items:
        if not any(link.source in canonical or link.target in canonical for link in item.links):
            continue  # no merged endpoint: the links (and the payload digested at screening) stay as they are
        item.links = [
            link.moved(canonical.get(link.source, link.source), canonical.get(link.target, link.target))
            for link in item.links
        ]
        item.text = None  # the payload changed: digested again before the ledger compares it
