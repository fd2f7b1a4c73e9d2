"""Right to erasure: remove a person's personal data from the twin, its history and its lineage values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from governance.audit import AuditEvent, AuditLog
from governance.identity import Subject
from governance.lineage import LineageStore
from governance.policy import Policy
from governance.subject_keys import SubjectKeyRing
from graph.errors import TwinNotFound
from graph.model import Twin
from graph.store import GraphStore

PERSONAL = "PII"


@dataclass(frozen=True)
class ErasureReport:
    """What an erasure removed."""

    uid: str
    fields: tuple[str, ...]
    history_entries: int
    lineage_values: int
    other_copies: int = 0  # sync ledger payloads, identity match keys and other holders' copies blanked
    graph_log_compacted: bool = False
    key_destroyed: bool = False  # the subject's data key: every sealed copy, backups included, is now unreadable


class PersonalDataHolder(Protocol):
    """A store that keeps copies of twin values elsewhere (the sync ledger, identity match keys, ...)."""

    def erase_personal(self, uid: str, fields: Sequence[str], values: Sequence[Any]) -> int:
        """Blank the copies of `fields` (whose values were `values`) held for twin `uid`; returns how many."""
        ...


def erase_personal_data(
    uid: str,
    *,
    store: GraphStore,
    lineage: LineageStore,
    audit: AuditLog,
    policy: Policy,
    subject: Subject,
    holders: Sequence[PersonalDataHolder] = (),
    keys: SubjectKeyRing | None = None,
) -> ErasureReport:
    """Blank every PII property of twin `uid` in the graph, its recorded history, stored lineage values and the copies
    `holders` keep; then rewrite the graph server's append-only log so the old values leave the disk.

    With `keys`, the subject's data key is destroyed last (crypto-shredding): every copy sealed under it — history
    states, change-feed payloads, lineage values, ledger payloads, name match keys, in this deployment's stores
    and in any dump or copy of them made before — can no longer be opened. The blanking above still runs, so the
    stores themselves hold nothing of the subject either way.

    Digests in lineage and the audit chain stay, so provenance and tamper evidence still verify; the erasure itself
    is recorded in the audit log.
    """
    policy.require(subject, "operation", "erase")
    twin = store.get(uid)
    if twin is not None:
        cls = twin.cls
    else:  # deleted from the live graph: its history, lineage and other copies may still hold personal values
        recorded = store.history.classes_until([uid], datetime.now(UTC)) if store.history is not None else {}
        if uid not in recorded:
            raise TwinNotFound(f"no twin with uid {uid!r} to erase (neither in the graph nor in its history)")
        cls = recorded[uid]
    every_personal = sorted(
        name for name, prop in store.ontology.properties(cls).items() if prop.classification == PERSONAL
    )
    held = twin.properties if twin is not None else {}
    personal = tuple(name for name in every_personal if name in held)  # what the twin holds now
    values = [held[name] for name in personal]
    if personal:
        store.upsert_twins([Twin(uid, cls, dict.fromkeys(personal))], actor=subject.sub, source="erasure")
    # history may hold personal values the twin no longer has (cleared earlier, or erased before)
    history_entries = store.history.erase_values(uid, every_personal) if store.history is not None else 0
    lineage_values = lineage.erase_values(uid)
    other_copies = sum(holder.erase_personal(uid, every_personal, values) for holder in holders)
    compacted = store.compact_log()
    destroyed = keys.destroy(uid) if keys is not None else False
    audit.append(
        AuditEvent.for_subject(
            subject,
            "erase",
            "allow",
            variables={"uid": uid},
            policy_version=policy.version,
            rows_returned=len(personal),
            detail=f"erased fields: {', '.join(personal) or 'none'}" + ("; subject key destroyed" if destroyed else ""),
        )
    )
    return ErasureReport(uid, personal, history_entries, lineage_values, other_copies, compacted, destroyed)
