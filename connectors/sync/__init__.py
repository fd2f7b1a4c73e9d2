"""The sync engine: reads a connector's sources, maps records through its mapping, resolves identities, and writes
validated twins and links to the graph with property-level lineage, quarantining what it cannot take.

The package, by concept: engine.py (SyncEngine, the run loop), screening.py (a record's checks and mapping, the same
in the run's process and in a worker), workers.py (worker processes that read, screen and map a large source's key
ranges while the run stays the one writer), mapper.py (record -> twin and MappedLinks),
identities.py (identity resolution in a page), writer.py (graph upserts, offending items split out, the dry-run plan,
pending links), committer.py (the background batch committer), deletions.py (deletion detection, the mass-deletion
guard), report.py (Connector, SyncReport), stores.py (the stores, wired once), context.py (one run's state),
side_queries.py (the process's few threads for side queries: a source's count beside a write, the ledger's side
of a deletion check).

Guarantees (see also connectors/sync_state.py):

* **Full and incremental runs.** A full run reads every record; an incremental run reads records changed at or
  after the entity's committed watermark. A full run also writes unchanged records again (repairing the graph
  after outside edits) but records lineage only for values that changed.
* **Idempotent, resumable.** Each page of records is one batch: graph writes first (idempotent upserts), then —
  in one relational transaction — its lineage, ledger entries, pending links, quarantine rows and telemetry. (When
  the lineage store lives in another database its records are stored just before that transaction, under a batch
  journal entry.) Batches are committed in order on a background thread while the next page is mapped and written
  to the graph; the watermark is committed only after the entity's last batch is durable. A process killed
  anywhere loses nothing (the watermark was not advanced, so the records are read again) and duplicates nothing
  (twins and links are upserts by uid; the ledger recognises records already written; lineage commits with the
  ledger, or — in another database — a batch whose lineage became durable before a crash is found in the batch
  journal and the lineage store, and its lineage is not written twice).
* **Acknowledged only when durable.** A source whose server keeps what was read until told (MQTT QoS 1;
  connectors.source.AcknowledgingSource) is told each page is safe by the committer, after that page's transaction
  committed, and never in a dry run; a failed commit or a crash leaves the page with the server for the next run.
* **Deletions** are detected on every run: ledger keys the source no longer has (a full run: the keys it did not
  read; an incremental run: the keys missing from the source's key list, for sources that list keys cheaply — SQL,
  Tryton, files; see connectors.source.lists_keys; a count shows first whether any key can be missing, and a
  large integer-keyed table is then compared by key ranges, listing only ranges whose counts differ or that hold a
  key new this run), and records a source marks deleted. Rule: the twin a deleted
  record fed is deleted only when no other ledger entry (of any connector or entity) still feeds it; otherwise only
  the links that record produced are removed and the twin stays, with the values other sources gave it. Association
  records (``link:`` entities) delete their link.
* **Quarantine.** A record is quarantined with its key, field, rule, message and raw content when its key is empty
  or repeated, a transform refuses a value, its uid rule cannot be filled, or the graph refuses it
  (graph.errors.BatchRejected: the offending items are split out by their violation paths and the rest of the
  batch is retried). Links whose endpoint twin does not exist yet wait in a pending table and are retried at the
  end of every run.
* **Dry run** computes the same plan (would create / update / delete, with examples) and writes nothing.
* **Counts** (created / updated / unchanged / deleted) count twins and links as the graph took them, not records:
  two records feeding one twin create it once, and a record whose twin another record still feeds deletes nothing.
"""

from connectors.errors import MassDeletion, SyncError
from connectors.sync.engine import SyncEngine
from connectors.sync.mapper import MappedLink
from connectors.sync.report import Connector, EntityReport, Mode, SyncReport
from connectors.sync.stores import SyncStores

__all__ = [
    "Connector",
    "EntityReport",
    "MappedLink",
    "MassDeletion",
    "Mode",
    "SyncEngine",
    "SyncError",
    "SyncReport",
    "SyncStores",
]
