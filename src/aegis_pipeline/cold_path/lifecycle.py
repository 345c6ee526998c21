"""The end of a programme's life in the catalogue (docs/lifecycle.md), applied at the start of every cold-path run.

Three steps, in this order, each in batches of one short transaction (rows claimed with SKIP LOCKED, so a worker
scoring at the same time is never blocked for long):

1. **back**: a programme archived as `withdrawn` that a listing of its source has shown again since goes back to
   `pending_validation` and is scored as any record (one whose content changed comes back by the hot path, which
   resets the status of every changed record).
2. **closed**: an active or waiting programme whose application period ended before today (Korean date) less
   `ARCHIVE_AFTER_DAYS` is archived. Programmes with no end date, or a free-text one the collectors could not
   read as a date, stay until withdrawn.
3. **withdrawn**: an active or waiting programme that the last complete listing of its source did not show is
   archived (mark and sweep: the collectors mark each record a listing shows, `collected_records.last_listed_at`,
   and note when a listing that read the source to its end began, `collection_checkpoints.
   last_complete_listing_at`). A partial, failed or budget-stopped listing never completes one, so it never
   archives anything; nor does a board, which reads only its newest pages. A record the source listed after its
   application period ended is archived as `closed`, the better reason.

Each archiving sets `archived_at` and `archived_reason`, writes the status change to `audit_logs` and
`processing_history`, and enqueues a `policy.archived` event and a tombstone for the catalogue topic (the outbox)
in its transaction. The sync then removes
the programme from the vector and search targets; the graph keeps it, marked `archived` (`sync.targets`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from aegis_pipeline.common import metrics
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.domain.korean_time import korean_today
from aegis_pipeline.schemas.events import EventType
from aegis_pipeline.schemas.fact_events import Archiving, policy_archived_envelope
from aegis_pipeline.schemas.policy_state import LeftCatalogue
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import outbox, postgres
from aegis_pipeline.stores.catalogue import policy_state_events
from aegis_pipeline.stores.outbox import OutboxEvent

log = get_logger(__name__)
BATCH_SIZE = 1000

_RETURNING = """RETURNING p.id::text AS id, p.version, p.source_system, p.external_id, p.application_end_date,
          p.archived_at, p.archived_reason, chosen.previous_status"""
ARCHIVE_CLOSED_SQL = f"""
WITH chosen AS (
    SELECT id, status AS previous_status FROM policies
    WHERE status IN ('active', 'pending_validation') AND application_end_date < $1::date
      AND ($3::text IS NULL OR source_system = $3)
    ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE policies p SET status = 'archived', archived_reason = 'closed', archived_at = now(), updated_at = now()
FROM chosen WHERE p.id = chosen.id
{_RETURNING}
"""  # noqa: S608 (constants only)
# Listed before the last complete listing began and not shown by it (nor by any listing since).
ARCHIVE_WITHDRAWN_SQL = f"""
WITH chosen AS (
    SELECT p.id, p.status AS previous_status FROM policies p
    JOIN collection_checkpoints c ON c.source_system = p.source_system
    JOIN collected_records r ON r.source_system = p.source_system AND r.external_id = p.external_id
    WHERE p.status IN ('active', 'pending_validation') AND c.last_complete_listing_at IS NOT NULL
      AND r.first_seen_at < c.last_complete_listing_at
      AND (r.last_listed_at IS NULL OR r.last_listed_at < c.last_complete_listing_at)
      AND ($3::text IS NULL OR p.source_system = $3)
    ORDER BY p.id LIMIT $2 FOR UPDATE OF p SKIP LOCKED
)
UPDATE policies p SET status = 'archived', archived_at = now(), updated_at = now(),
       archived_reason = CASE WHEN p.application_end_date < $1::date THEN 'closed' ELSE 'withdrawn' END
FROM chosen WHERE p.id = chosen.id
{_RETURNING}
"""  # noqa: S608 (constants only)
BRING_BACK_SQL = """
WITH chosen AS (
    SELECT p.id FROM policies p
    JOIN collected_records r ON r.source_system = p.source_system AND r.external_id = p.external_id
    WHERE p.status = 'archived' AND p.archived_reason = 'withdrawn' AND r.last_listed_at > p.archived_at
      AND ($2::text IS NULL OR p.source_system = $2)
    ORDER BY p.id LIMIT $1 FOR UPDATE OF p SKIP LOCKED
)
UPDATE policies p SET status = 'pending_validation', archived_at = NULL, archived_reason = NULL,
       scored_version = NULL, scored_at = NULL, updated_at = now()
FROM chosen WHERE p.id = chosen.id
RETURNING p.id::text AS id, p.version
"""
INSERT_AUDIT_SQL = """
INSERT INTO audit_logs (entity_type, entity_id, action, actor, changes, metadata)
SELECT 'policy', a.id, 'status_changed', $2,
       jsonb_build_object('status', jsonb_build_object('from', a.previous_status, 'to', a.status)),
       jsonb_build_object('run_id', $3::text, 'reason', a.reason, 'version', a.version)
FROM jsonb_to_recordset($1::jsonb) AS a(id text, previous_status text, status text, reason text, version integer)
"""
INSERT_HISTORY_SQL = """
INSERT INTO processing_history (policy_id, processing_path, status, validation_errors, run_id)
SELECT a.id::uuid, 'cold', a.status, jsonb_build_object('reasons', jsonb_build_array(a.reason), 'version', a.version),
       $2
FROM jsonb_to_recordset($1::jsonb) AS a(id text, status text, reason text, version integer)
"""
RECORD_COUNTS_SQL = """
UPDATE pipeline_metadata SET metadata = coalesce(metadata, '{}'::jsonb) || jsonb_build_object('lifecycle', $2::jsonb)
WHERE pipeline_run_id = $1 AND processing_path = 'cold'
"""
READ_COUNTS_SQL = """
SELECT metadata->'lifecycle' FROM pipeline_metadata WHERE pipeline_run_id = $1 AND processing_path = 'cold'
"""


@dataclass(frozen=True)
class LifecycleCounts:
    """What one run's lifecycle step did: programmes archived per reason, and brought back."""

    closed: int = 0
    withdrawn: int = 0
    back: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"closed": self.closed, "withdrawn": self.withdrawn, "back": self.back}


def closed_before(today: date, archive_after_days: int) -> date:
    """The first end date that still keeps a programme: it ended `archive_after_days` or fewer days ago."""
    return today - timedelta(days=archive_after_days)


async def apply_lifecycle(pool: asyncpg.Pool, settings: Settings, run_id: str, *, now: datetime,
                          source: str | None = None) -> LifecycleCounts:
    """Bring back, then archive what closed, then what was withdrawn (module docstring), of every source or of
    `source` only; counts recorded on the run's `pipeline_metadata` row (`lifecycle_counts` reads them back)."""
    today = korean_today(now)
    actor = f"cold_path:{run_id}"
    back = await _in_batches(pool, lambda connection: _bring_back(connection, source, actor, run_id))
    closed = await _in_batches(pool, lambda connection: _archive(
        connection, ARCHIVE_CLOSED_SQL, closed_before(today, settings.archive_after_days), source, settings, actor,
        run_id))
    withdrawn = await _in_batches(pool, lambda connection: _archive(
        connection, ARCHIVE_WITHDRAWN_SQL, today, source, settings, actor, run_id))
    counts = LifecycleCounts(closed=closed.get("closed", 0) + withdrawn.get("closed", 0),
                             withdrawn=withdrawn.get("withdrawn", 0), back=back.get("back", 0))
    with postgres.translate_errors("record lifecycle counts"):
        await pool.execute(RECORD_COUNTS_SQL, run_id, json.dumps(counts.as_dict()))
    for reason in ("closed", "withdrawn"):
        metrics.policies_archived_total.labels(reason=reason).inc(getattr(counts, reason))
    if counts.closed or counts.withdrawn or counts.back:
        log.info("cold_path_lifecycle", run_id=run_id, **counts.as_dict())
    return counts


async def lifecycle_counts(pool: asyncpg.Pool, run_id: str) -> LifecycleCounts:
    """What `apply_lifecycle` recorded for run `run_id` (zeros when it has not run)."""
    with postgres.translate_errors("read lifecycle counts"):
        stored = await pool.fetchval(READ_COUNTS_SQL, run_id)
    return LifecycleCounts(**json.loads(stored)) if stored else LifecycleCounts()


async def _in_batches(pool: asyncpg.Pool, step: Any) -> dict[str, int]:
    """Run `step` (one batch in an open transaction; returns counts by reason) until a batch changes nothing."""
    totals: dict[str, int] = {}
    while True:
        with postgres.translate_errors("apply lifecycle"):
            async with pool.acquire() as connection, connection.transaction():
                counts: dict[str, int] = await step(connection)
        if not counts:
            return totals
        for reason, count in counts.items():
            totals[reason] = totals.get(reason, 0) + count


async def _bring_back(connection: asyncpg.Connection, source: str | None, actor: str,
                      run_id: str) -> dict[str, int]:
    rows = await connection.fetch(BRING_BACK_SQL, BATCH_SIZE, source)
    if not rows:
        return {}
    changes = [{"id": row["id"], "previous_status": "archived", "status": "pending_validation",
                "reason": "listed again by its source", "version": row["version"]} for row in rows]
    await connection.execute(INSERT_AUDIT_SQL, json.dumps(changes), actor, run_id)
    return {"back": len(rows)}


async def _archive(connection: asyncpg.Connection, sql: str, end_before: date, source: str | None,
                   settings: Settings, actor: str, run_id: str) -> dict[str, int]:
    rows = await connection.fetch(sql, end_before, BATCH_SIZE, source)
    if not rows:
        return {}
    changes = [{"id": row["id"], "previous_status": row["previous_status"], "status": "archived",
                "reason": row["archived_reason"], "version": row["version"]} for row in rows]
    await connection.execute(INSERT_AUDIT_SQL, json.dumps(changes), actor, run_id)
    await connection.execute(INSERT_HISTORY_SQL, json.dumps(changes), run_id)
    # The archiving's event, and a tombstone on the catalogue topic (late consumers, docs/events.md) for each.
    await outbox.enqueue(connection, [_archived_event(row, settings) for row in rows] + policy_state_events(
        settings, [LeftCatalogue(policy_id=row["id"], status="archived", left_at=row["archived_at"]) for row in rows]))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["archived_reason"]] = counts.get(row["archived_reason"], 0) + 1
    return counts


def _archived_event(row: asyncpg.Record, settings: Settings) -> OutboxEvent:
    archiving = Archiving(policy_id=row["id"], version=row["version"], reason=row["archived_reason"],
                          source_system=row["source_system"], external_id=row["external_id"],
                          application_end_date=row["application_end_date"], archived_at=row["archived_at"])
    envelope = policy_archived_envelope(archiving, producer=f"{settings.service_name}/{settings.service_version}")
    return OutboxEvent(event_id=envelope["event_id"], event_type=EventType.POLICY_ARCHIVED.value,
                       topic=settings.kafka_topic_policy_events, key=row["id"], envelope=envelope)
