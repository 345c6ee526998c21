"""The hot path's writes to PostgreSQL, one transaction per batch: the idempotent upsert into `policies`, the
`policy.validated` events into the outbox, and a `processing_history` row per stored policy (and an `audit_logs`
row per changed record that leaves the status the cold path gave it).

What is stored was cleaned (masked, normalised) right before, by `domain.cleaning`: records are cleaned once,
here in the hot path and nowhere else, because the raw topic is the trust boundary (anything published there, by
our collectors or any other producer, passes the hot path before storage) and this is the last stop before
storage. The columns written are the policy's content columns (`domain.policy.POLICY_CONTENT_COLUMNS`) and the
hot path's own (`raw_data`, `content_hash`, `published_hash`, `collected_at`).

Idempotent: a record whose content hash equals the stored one changes nothing and emits no event, so a batch
delivered twice (after a crash before the offset commit) stores and announces each change once. A changed
record gets version + 1 and goes back to `pending_validation` for the cold path to score again.

`published_hash` is the content hash of the record as published, before cleaning (`domain.hashing`): what the
collector that published it remembers, so that it can tell a record the broker lost from one that was stored
(`collectors.state.CollectorState.unstored`). It is kept current even when the cleaned content is unchanged (a
record published again that cleans to the same policy): then only that column changes, by a second statement in
the same transaction for those records only (no version, no event, no status change). Most batches have no
such record (collectors publish changed records only), and then run the one upsert statement as before.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import orjson

from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS, CleanPolicy, PolicyContent, content_values
from aegis_pipeline.stores import outbox, postgres
from aegis_pipeline.stores.outbox import OutboxEvent

# The hot path's own columns, with their PostgreSQL types.
_OWN_COLUMN_TYPES = {
    "raw_data": "jsonb", "content_hash": "text", "published_hash": "text", "collected_at": "timestamptz",
}
# Every column the hot path writes: the policy's content, then its own. The key is (source_system, external_id).
_STORED_COLUMNS = (*POLICY_CONTENT_COLUMNS, *_OWN_COLUMN_TYPES)
_STORED = ", ".join(_STORED_COLUMNS)
_REPLACED = ",\n    ".join(f"{name} = EXCLUDED.{name}" for name in _STORED_COLUMNS
                           if name not in ("source_system", "external_id"))
_SQL_TYPES = {str: "text", date: "date"}  # of a content field's Python type; tuple[str, ...] is text[]


def _sql_type(kind: Any) -> str:
    """The PostgreSQL type of a content column, from its field's type in `PolicyContent` (a new type must be
    added to `_SQL_TYPES`: importing this module fails until it is)."""
    if isinstance(kind, types.UnionType):  # X | None: every column here takes NULL
        (kind,) = (member for member in typing.get_args(kind) if member is not type(None))
    if typing.get_origin(kind) is tuple and typing.get_args(kind) == (str, ...):
        return "text[]"
    return _SQL_TYPES[kind]


# The JSON's columns and their types: the content columns by their fields' types, then the hot path's own.
_INCOMING_COLUMNS = ", ".join(
    [f"{name} {_sql_type(kind)}" for name, kind in typing.get_type_hints(PolicyContent).items()]
    + [f"{name} {kind}" for name, kind in _OWN_COLUMN_TYPES.items()])

# One JSON parameter for the whole batch: jsonb_to_recordset turns it into rows (and JSON arrays into text[]) on
# the server, a single round trip whatever the batch size. It is passed as the UTF-8 bytes orjson wrote (bytea):
# as text, Python would decode megabytes of JSON only for the driver to encode them again.
UPSERT_SQL = f"""
WITH incoming AS (
    SELECT * FROM jsonb_to_recordset(convert_from($1::bytea, 'UTF8')::jsonb) AS r({_INCOMING_COLUMNS})
),
previous AS (  -- read in the statement's snapshot: the statuses before this upsert
    SELECT p.id, p.status FROM policies p JOIN incoming USING (source_system, external_id)
),
upserted AS (
INSERT INTO policies AS p ({_STORED}, status)
SELECT {_STORED}, 'pending_validation'
FROM incoming
ON CONFLICT (source_system, external_id) DO UPDATE SET
    {_REPLACED},
    status = 'pending_validation',
    quality_score = NULL,
    archived_at = NULL,  -- an archived programme its source changed comes back through the normal path
    archived_reason = NULL,
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
"""  # noqa: S608 (column names from code, values bound)

# The records whose cleaned content was unchanged (the upsert left them, locked, until commit): their published
# hash only. A separate statement, since one statement cannot write a row its INSERT .. ON CONFLICT also visits.
PUBLISHED_HASH_SQL = """
UPDATE policies p SET published_hash = u.published_hash
FROM unnest($1::text[], $2::text[], $3::text[]) AS u(source_system, external_id, published_hash)
WHERE p.source_system = u.source_system AND p.external_id = u.external_id
  AND p.published_hash IS DISTINCT FROM u.published_hash
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
    unchanged: int              # same content as stored: no new version, no event (published hash kept current)
    superseded: int             # an older message of a key that appears again later in the same batch
    events: list[OutboxEvent] = field(default_factory=list)  # committed with the data, for the writer to send


def _row(policy: CleanPolicy) -> dict[str, Any]:
    row = dict(zip(POLICY_CONTENT_COLUMNS, content_values(policy), strict=True))
    row["raw_data"] = policy.raw_data
    row["content_hash"] = policy.content_hash
    row["published_hash"] = policy.published_hash
    row["collected_at"] = policy.collected_at
    return row


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
                if len(rows) < len(unique):  # some unchanged: keep their published hash current
                    written = {(row["source_system"], row["external_id"]) for row in rows}
                    unchanged = [policy for key, policy in by_key.items() if key not in written]
                    await connection.execute(PUBLISHED_HASH_SQL, [policy.source_system for policy in unchanged],
                                             [policy.external_id for policy in unchanged],
                                             [policy.published_hash for policy in unchanged])
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
