"""Recovering from a broker that lost what it had acknowledged.

The embedded broker (Tansu) keeps everything in memory: after a restart its topics, messages and committed
offsets are gone, and a real cluster can lose an under-replicated topic. PostgreSQL is the source of truth, so
what the broker lost is announced again from it:

- raw records it had acknowledged but the hot path had not stored: the collectors publish them again
  (`collectors.state.CollectorState.unstored`);
- events the outbox relay had sent (and deleted), of every type: this module.

How a loss is noticed: the hot path keeps a sentinel topic (`<events topic>.sentinel`, no messages) and a row
in `broker_sentinels` saying it created it. Every KAFKA_BROKER_CHECK_SECONDS (and at start) it lists the
broker's topics: a missing sentinel with a row means the broker lost its data; a missing sentinel without a
row is a first start. Either way the topics are created again. The sentinel is created last: a crash before
that repeats the recovery, never skips it.

After a loss, the events of what PostgreSQL holds within EVENT_REANNOUNCE_HORIZON_HOURS are written to the
outbox again, each built from the stored row by the function that built it the first time, so with the same
event id and the same content (a consumer that already had it drops the repeat), in this order:

1. `policy.validated` of the current version of every policy changed within the horizon
   (`processor.policy_validated_event`);
2. `data.quality_updated` of the current scoring of every policy scored within the horizon, when it scored the
   current version (`schemas.fact_events.quality_updated_envelope`). A scoring of an older version is not
   announced again, just as an older version's `policy.validated` is not: the version after it superseded it;
3. `data.sync_completed` of every sync run recorded within the horizon
   (`schemas.fact_events.sync_completed_envelope`);
4. on the catalogue topic, the state of every active policy, whatever its age: that topic is the whole catalogue
   for consumers that start from nothing, not a window of changes (`stores.catalogue.announce_catalogue`).

Each policy's events keep the order they were first produced in: its `policy.validated` before the
`data.quality_updated` of the same version (one key, one partition, outbox order).

May import: `common`, `schemas`, `stores`, `hot_path`, `settings`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson

from aegis_pipeline.common import metrics
from aegis_pipeline.common.errors import PipelineError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS
from aegis_pipeline.hot_path.processor import policy_validated_event
from aegis_pipeline.schemas.events import EventType
from aegis_pipeline.schemas.fact_events import (
    QUALITY_SCORE_FIELDS,
    QualityScoring,
    SyncRunRecord,
    quality_updated_envelope,
    sync_completed_envelope,
)
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import kafka, outbox, postgres
from aegis_pipeline.stores.catalogue import announce_catalogue
from aegis_pipeline.stores.outbox import OutboxEvent, OutboxRelay

log = get_logger(__name__)

REANNOUNCE_BATCH_SIZE = 2000
FIRST_PAGE = "00000000-0000-0000-0000-000000000000"  # below every uuid: the first keyset page starts after it

# Keyset pages of the stored facts within the horizon: each statement takes the horizon in seconds ($1), the
# last `id` of the page before ($2) and a page size ($3), and returns `id` (a uuid as text) in order.

# The current version of every policy changed within the horizon.
CHANGED_POLICIES_SQL = f"""
SELECT id::text AS id, {", ".join(POLICY_CONTENT_COLUMNS)}, content_hash,
       COALESCE(collected_at, created_at) AS collected_at, version, updated_at
FROM policies
WHERE updated_at >= now() - make_interval(secs => $1) AND id > $2::uuid
ORDER BY id LIMIT $3
"""  # noqa: S608 (a constant column list, no input)

# The current scoring of every policy scored within the horizon, as cold_path/store.py writes it: status, reasons
# and scored version on the policy, the scores in the quality_metrics row of the same time. Left out: a scoring of
# an older version (the hot path stored a newer one since: back to pending_validation), one a later writer undid
# (a duplicate re-queued: scored_at cleared) or a policy archived since.
SCORED_POLICIES_SQL = """
SELECT p.id::text AS id, p.scored_version, p.status, p.scored_at,
       ARRAY(SELECT jsonb_array_elements_text(p.status_reasons)) AS reasons,
       m.total_score, m.completeness, m.accuracy, m.consistency, m.timeliness
FROM policies p JOIN quality_metrics m ON m.policy_id = p.id AND m.calculated_at = p.scored_at
WHERE p.scored_at >= now() - make_interval(secs => $1) AND p.id > $2::uuid
  AND p.scored_version = p.version AND p.status IN ('active', 'rejected')
ORDER BY p.id LIMIT $3
"""

# Every sync run recorded within the horizon, as sync/run.py records it (one row per run, retries included).
SYNC_RUNS_SQL = """
SELECT id::text AS id, pipeline_run_id, metadata->'results' AS results, records_processed, completed_at
FROM pipeline_metadata
WHERE metadata->>'kind' = 'sync' AND completed_at >= now() - make_interval(secs => $1) AND id > $2::uuid
ORDER BY id LIMIT $3
"""


def sentinel_topic(settings: Settings) -> str:
    return f"{settings.kafka_topic_policy_events}.sentinel"


class BrokerWatch:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, relay: OutboxRelay) -> None:
        self._settings = settings
        self._pool = pool
        self._relay = relay
        self._producer_name = f"{settings.service_name}/{settings.service_version}"
        self.recoveries = 0

    async def check_once(self) -> int:
        """Check the sentinel; after a loss, announce again. Returns the events written to the outbox again.
        Raises `StoreUnavailableError` when the broker or the database cannot be reached (check again later)."""
        settings = self._settings
        sentinel = sentinel_topic(settings)
        if sentinel in await kafka.list_topics(settings):
            return 0
        # Replicas take turns on a lock and look again once they hold it: the first recovers, the others find
        # its sentinel. Without this, a replica that saw no sentinel just before another created it (with its
        # row) would take a first start for a loss and announce every policy again.
        # A session lock, not a transaction's: the row must commit before the sentinel topic is created.
        with postgres.translate_errors("check broker sentinel"):
            async with postgres.session_lock(self._pool, sentinel) as connection:
                if sentinel in await kafka.list_topics(settings):
                    return 0
                return await self._recover(connection, sentinel)

    async def _recover(self, connection: asyncpg.Connection, sentinel: str) -> int:
        """Create the topics again, announce again if the sentinel had been created before, record it, and
        create the sentinel last: a crash before that repeats the recovery, never skips it."""
        settings = self._settings
        created = await kafka.ensure_pipeline_topics(settings)
        lost = await connection.fetchval("SELECT true FROM broker_sentinels WHERE sentinel_topic = $1", sentinel)
        announced = await self._reannounce() if lost else 0
        await connection.execute(
            """
            INSERT INTO broker_sentinels (sentinel_topic) VALUES ($1)
            ON CONFLICT (sentinel_topic) DO UPDATE
            SET last_recovered_at = now(), recoveries = broker_sentinels.recoveries + 1
            """,
            sentinel,
        )
        await kafka.ensure_topics(settings, [sentinel], partitions=1)
        if lost:
            self.recoveries += 1
            metrics.broker_data_loss_recoveries_total.inc()
            log.warning("broker_data_loss_recovered", sentinel=sentinel, topics_created=created,
                        events_reannounced=announced)
        else:
            log.info("broker_sentinel_created", sentinel=sentinel, topics_created=created)
        return announced

    async def _reannounce(self) -> int:
        """Write the events of every fact stored within the horizon to the outbox again; returns how many. The
        policies' versions go first, so that each policy's scoring follows its version as it did the first time."""
        return (await self._reannounce_pages(EventType.POLICY_VALIDATED, CHANGED_POLICIES_SQL, self._validated)
                + await self._reannounce_pages(EventType.DATA_QUALITY_UPDATED, SCORED_POLICIES_SQL, self._scored)
                + await self._reannounce_pages(EventType.DATA_SYNC_COMPLETED, SYNC_RUNS_SQL, self._synced)
                + await self._reannounce_catalogue())

    async def _reannounce_catalogue(self) -> int:
        announced = await announce_catalogue(self._pool, self._settings)
        metrics.events_reannounced_total.labels(event_type=EventType.POLICY_STATE.value).inc(announced)
        return announced

    async def _reannounce_pages(self, event_type: EventType, sql: str,
                                event_of: Callable[[asyncpg.Record], OutboxEvent]) -> int:
        """Page through `sql` (one of the statements above), writing `event_of(row)` for each row to the outbox,
        one transaction per page."""
        horizon_seconds = self._settings.event_reannounce_horizon_hours * 3600
        after = FIRST_PAGE
        total = 0
        while True:
            with postgres.translate_errors("announce again"):
                async with self._pool.acquire() as connection, connection.transaction():
                    rows = await connection.fetch(sql, horizon_seconds, after, REANNOUNCE_BATCH_SIZE)
                    if not rows:
                        return total
                    events = [event_of(row) for row in rows]
                    await outbox.enqueue(connection, events)
            total += len(events)
            metrics.events_reannounced_total.labels(event_type=event_type.value).inc(len(events))
            after = rows[-1]["id"]

    # One row of each statement above -> its event, by the function that built the event the first time.

    def _validated(self, row: asyncpg.Record) -> OutboxEvent:
        return policy_validated_event(row["id"], row["version"], row.__getitem__, row["updated_at"],
                                      producer=self._producer_name, topic=self._settings.kafka_topic_policy_events)

    def _scored(self, row: asyncpg.Record) -> OutboxEvent:
        scoring = QualityScoring(policy_id=row["id"], version=row["scored_version"], status=row["status"],
                                 scores={name: row[name] for name in QUALITY_SCORE_FIELDS}, reasons=row["reasons"],
                                 scored_at=row["scored_at"])
        return self._outbox_event(quality_updated_envelope(scoring, producer=self._producer_name), key=row["id"])

    def _synced(self, row: asyncpg.Record) -> OutboxEvent:
        run = SyncRunRecord(sync_id=row["pipeline_run_id"], results=orjson.loads(row["results"]),
                            policies_synced=row["records_processed"], finished_at=row["completed_at"])
        return self._outbox_event(sync_completed_envelope(run, producer=self._producer_name), key=run.sync_id)

    def _outbox_event(self, envelope: dict[str, Any], *, key: str) -> OutboxEvent:
        return OutboxEvent(event_id=envelope["event_id"], event_type=envelope["event_type"],
                           topic=self._settings.kafka_topic_policy_events, key=key, envelope=envelope)

    async def run(self, stop: asyncio.Event) -> None:
        """Check at once, then every KAFKA_BROKER_CHECK_SECONDS until `stop`; what was announced again is sent
        right away (the relay loop would send it after its grace period)."""
        while not stop.is_set():
            try:
                if await self.check_once():
                    await self._relay.drain()
            except PipelineError as error:  # broker or database down: the next check tries again
                log.warning("broker_check_failed", reason=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.kafka_broker_check_seconds)
