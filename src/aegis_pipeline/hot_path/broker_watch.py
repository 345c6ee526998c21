"""Recovering from a broker that lost what it had acknowledged.

The embedded broker (Tansu) keeps everything in memory: after a restart its topics, messages and committed
offsets are gone, and a real cluster can lose an under-replicated topic. PostgreSQL is the source of truth, so
what the broker lost is announced again from it:

- raw records it had acknowledged but the hot path had not stored: the collectors publish them again
  (`collectors.state.CollectorState.unstored`);
- `policy.validated` events the outbox relay had sent (and deleted): this module.

How a loss is noticed: the hot path keeps a sentinel topic (`<events topic>.sentinel`, no messages) and a row
in `broker_sentinels` saying it created it. Every KAFKA_BROKER_CHECK_SECONDS (and at start) it lists the
broker's topics: a missing sentinel with a row means the broker lost its data; a missing sentinel without a
row is a first start. Either way the topics are created again; after a loss, every policy changed within
EVENT_REANNOUNCE_HORIZON_HOURS gets its `policy.validated` written to the outbox again, with the event id of
that version (`processor.policy_validated_event_id`), so a consumer that already had it drops the repeat.
The sentinel is created last: a crash before that repeats the recovery, never skips it.

May import: `common`, `schemas`, `stores`, `hot_path`, `settings`.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from aegis_pipeline.common import metrics
from aegis_pipeline.common.errors import PipelineError
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS
from aegis_pipeline.hot_path.processor import policy_validated_event
from aegis_pipeline.schemas.events import EventType
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import kafka, outbox, postgres
from aegis_pipeline.stores.outbox import OutboxRelay

log = get_logger(__name__)

REANNOUNCE_BATCH_SIZE = 2000

# Keyset pages over the policies changed within the horizon, oldest id first.
CHANGED_POLICIES_SQL = f"""
SELECT id::text AS policy_id, {", ".join(POLICY_CONTENT_COLUMNS)}, content_hash,
       COALESCE(collected_at, created_at) AS collected_at, version, updated_at
FROM policies
WHERE updated_at >= now() - make_interval(secs => $1) AND id > $2::uuid
ORDER BY id LIMIT $3
"""  # noqa: S608 (a constant column list, no input)


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
        if sentinel in await kafka.list_topics(settings.kafka_bootstrap_servers):
            return 0
        # Replicas take turns on a lock and look again once they hold it: the first recovers, the others find
        # its sentinel. Without this, a replica that saw no sentinel just before another created it (with its
        # row) would take a first start for a loss and announce every policy again.
        # A session lock, not a transaction's: the row must commit before the sentinel topic is created.
        with postgres.translate_errors("check broker sentinel"):
            async with postgres.session_lock(self._pool, sentinel) as connection:
                if sentinel in await kafka.list_topics(settings.kafka_bootstrap_servers):
                    return 0
                return await self._recover(connection, sentinel)

    async def _recover(self, connection: asyncpg.Connection, sentinel: str) -> int:
        """Create the topics again, announce again if the sentinel had been created before, record it, and
        create the sentinel last: a crash before that repeats the recovery, never skips it."""
        settings = self._settings
        topics = [settings.kafka_topic_raw_policies, settings.kafka_topic_policy_events, settings.kafka_topic_dlq]
        created = await kafka.ensure_topics(settings.kafka_bootstrap_servers, topics,
                                            partitions=settings.kafka_topic_partitions)
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
        await kafka.ensure_topics(settings.kafka_bootstrap_servers, [sentinel], partitions=1)
        if lost:
            self.recoveries += 1
            metrics.broker_data_loss_recoveries_total.inc()
            log.warning("broker_data_loss_recovered", sentinel=sentinel, topics_created=created,
                        events_reannounced=announced)
        else:
            log.info("broker_sentinel_created", sentinel=sentinel, topics_created=created)
        return announced

    async def _reannounce(self) -> int:
        """Write `policy.validated` of every policy changed within the horizon to the outbox, in batches."""
        horizon_seconds = self._settings.event_reannounce_horizon_hours * 3600
        after = "00000000-0000-0000-0000-000000000000"
        total = 0
        while True:
            with postgres.translate_errors("announce again"):
                async with self._pool.acquire() as connection, connection.transaction():
                    rows = await connection.fetch(CHANGED_POLICIES_SQL, horizon_seconds, after,
                                                  REANNOUNCE_BATCH_SIZE)
                    if not rows:
                        return total
                    events = [policy_validated_event(row["policy_id"], row["version"], row.__getitem__,
                                                     row["updated_at"], producer=self._producer_name,
                                                     topic=self._settings.kafka_topic_policy_events)
                              for row in rows]
                    await outbox.enqueue(connection, events)
            total += len(events)
            metrics.events_reannounced_total.labels(event_type=EventType.POLICY_VALIDATED.value).inc(len(events))
            after = rows[-1]["policy_id"]

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
