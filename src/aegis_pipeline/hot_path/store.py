"""The hot path's writes to PostgreSQL, one transaction per batch: the idempotent upsert into `policies`, the
`policy.validated` events into the outbox, and a `processing_history` row per stored policy (and an `audit_logs`
row per changed record that leaves the status the cold path gave it).

Idempotent: a record whose content hash equals the stored one changes nothing and emits no event, so a batch
delivered twice (after a crash before the offset commit) stores and announces each change once. A changed
record gets version + 1 and goes back to `pending_validation` for the cold path to score again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from aegis_pipeline.hot_path.cleaning import CleanPolicy
from aegis_pipeline.stores import outbox, postgres
from aegis_pipeline.stores.outbox import OutboxEvent

# One JSON parameter for the whole batch: jsonb_to_recordset turns it into rows (and JSON arrays into text[])
# on the server, a single round trip whatever the batch size. It is passed as the UTF-8 bytes orjson wrote
# (bytea): as text, Python would decode megabytes of JSON only for the driver to encode them again.
UPSERT_SQL = """
WITH incoming AS (
    SELECT * FROM jsonb_to_recordset(convert_from($1::bytea, 'UTF8')::jsonb) AS r(
        source_system text, external_id text, title text, content text, issuing_organization text,
        target_region text[], target_industry text[], funding_type text,
        application_start_date date, application_end_date date, original_url text,
        raw_data jsonb, content_hash text, collected_at timestamptz)
),
previous AS (  -- read in the statement's snapshot: the statuses before this upsert
    SELECT p.id, p.status FROM policies p JOIN incoming USING (source_system, external_id)
),
upserted AS (
INSERT INTO policies AS p (
    source_system, external_id, title, content, issuing_organization, target_region, target_industry,
    funding_type, application_start_date, application_end_date, original_url, raw_data, content_hash,
    status, collected_at)
SELECT source_system, external_id, title, content, issuing_organization, target_region, target_industry,
       funding_type, application_start_date, application_end_date, original_url, raw_data, content_hash,
       'pending_validation', collected_at
FROM incoming
ON CONFLICT (source_system, external_id) DO UPDATE SET
    title = EXCLUDED.title,
    content = EXCLUDED.content,
    issuing_organization = EXCLUDED.issuing_organization,
    target_region = EXCLUDED.target_region,
    target_industry = EXCLUDED.target_industry,
    funding_type = EXCLUDED.funding_type,
    application_start_date = EXCLUDED.application_start_date,
    application_end_date = EXCLUDED.application_end_date,
    original_url = EXCLUDED.original_url,
    raw_data = EXCLUDED.raw_data,
    content_hash = EXCLUDED.content_hash,
    collected_at = EXCLUDED.collected_at,
    status = 'pending_validation',
    quality_score = NULL,
    version = p.version + 1,
    updated_at = now()
WHERE p.content_hash IS DISTINCT FROM EXCLUDED.content_hash
RETURNING p.id, p.source_system, p.external_id, p.version, p.updated_at
),
audited AS (  -- a changed record leaves the status the cold path gave it: that is a status change to audit
    INSERT INTO audit_logs (entity_type, entity_id, action, actor, changes, metadata)
    SELECT 'policy', u.id::text, 'status_changed', 'hot_path',
           jsonb_build_object('status', jsonb_build_object('from', previous.status, 'to', 'pending_validation')),
           jsonb_build_object('reason', 'content changed', 'version', u.version)
    FROM upserted u JOIN previous USING (id)
    WHERE previous.status <> 'pending_validation'
)
SELECT id, source_system, external_id, version, updated_at FROM upserted
"""

HISTORY_SQL = """
INSERT INTO processing_history (policy_id, processing_path, status, processing_time_ms)
SELECT unnest($1::uuid[]), 'hot', 'pending_validation', $2::integer
"""


@dataclass(frozen=True)
class StoredPolicy:
    policy_id: str
    version: int
    policy: CleanPolicy


@dataclass(frozen=True)
class BatchOutcome:
    stored: list[StoredPolicy]  # inserted or changed: each has an event in the outbox
    unchanged: int              # same content as stored: nothing written, no event
    superseded: int             # an older message of a key that appears again later in the same batch
    events: list[OutboxEvent] = field(default_factory=list)  # committed with the data, for the writer to send


def _row(policy: CleanPolicy) -> dict[str, Any]:
    return {
        "source_system": policy.source_system,
        "external_id": policy.external_id,
        "title": policy.title,
        "content": policy.content,
        "issuing_organization": policy.issuing_organization,
        "target_region": list(policy.target_region),
        "target_industry": list(policy.target_industry),
        "funding_type": policy.funding_type,
        "application_start_date": policy.application_start_date,
        "application_end_date": policy.application_end_date,
        "original_url": policy.original_url,
        "raw_data": policy.raw_data,
        "content_hash": policy.content_hash,
        "collected_at": policy.collected_at,
    }


def _json(value: Any) -> bytes:
    # orjson: the batch's one JSON parameter is most of the encoding work per record (dates and datetimes
    # are written as ISO 8601, which PostgreSQL reads back as date and timestamptz).
    return orjson.dumps(value)


def latest_per_key(policies: Sequence[CleanPolicy]) -> list[CleanPolicy]:
    """One policy per (source, external id), the last one seen: a single INSERT .. ON CONFLICT cannot touch
    the same row twice, and the later message is the newer version."""
    latest: dict[tuple[str, str], CleanPolicy] = {}
    for policy in policies:
        latest[(policy.source_system, policy.external_id)] = policy
    return list(latest.values())


class PolicyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def store_batch(
        self,
        policies: Sequence[CleanPolicy],
        make_events: Callable[[list[StoredPolicy]], list[OutboxEvent]],
        *,
        started_at: datetime | None = None,
    ) -> BatchOutcome:
        """Upsert, then write the events `make_events` builds for the stored policies, in one transaction."""
        unique = latest_per_key(policies)
        if not unique:
            return BatchOutcome(stored=[], unchanged=0, superseded=0)
        by_key = {(policy.source_system, policy.external_id): policy for policy in unique}
        with postgres.translate_errors("store batch"):
            async with self._pool.acquire() as connection, connection.transaction():
                rows = await connection.fetch(UPSERT_SQL, _json([_row(policy) for policy in unique]))
                stored = [
                    StoredPolicy(str(row["id"]), row["version"], by_key[(row["source_system"], row["external_id"])])
                    for row in rows
                ]
                events = make_events(stored) if stored else []
                if stored:
                    await outbox.enqueue(connection, events)
                    elapsed_ms = int((datetime.now(UTC) - (started_at or datetime.now(UTC))).total_seconds() * 1000)
                    await connection.execute(HISTORY_SQL, [item.policy_id for item in stored], elapsed_ms)
        return BatchOutcome(stored=stored, unchanged=len(unique) - len(stored), superseded=len(policies) - len(unique),
                            events=events)
