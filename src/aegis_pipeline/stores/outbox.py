"""The transactional outbox (table `event_outbox`): write events in the data's own transaction, relay them to
Kafka afterwards.

`enqueue` runs inside the caller's transaction, so an event exists exactly when its data committed. Then:

- the writer sends the events it just committed itself (`send_committed`): no second read of the rows, and
  the event leaves as soon as its data is durable;
- the relay loop (`run`) picks up what a writer left behind (a failed send, a crash), once a row is older than
  `grace_seconds`, so it does not race the writer's own send; `drain` sends everything unsent.

Either way an event is deleted only after the broker acknowledged it (cheaper for PostgreSQL than marking it
sent); a crash in between sends it again with the same `event_id` (consumers de-duplicate on it). Several
relays may run at once (one per replica, the DAGs' events tasks): they take turns, one batch at a time, on an
advisory lock (`RELAY_LOCK_KEY`), and claim rows in `id` order. So a key's rows leave in the order they were
committed whoever relays them: two rows of one policy are written by transactions that both lock the policy's row,
so the second takes its `id` after the first committed. That order matters on a compacted topic (the last message
of a key is the one kept); a writer's own `send_committed` is not serialised with the relays, so events of a
compacted topic are left to the relays. Across writers of `policy-events`, the event's `version` says which is
newer.

A row whose `event_type` ends in `.tombstone` (`TOMBSTONE_SUFFIX`) is sent as a tombstone: its key with a null
value, which a compacted topic reads as "this key is deleted" (the `policy-state` topic, `stores/catalogue.py`).
Its envelope stays in the row for bookkeeping only (which policy left and when, for whoever reads the table), so
tombstones need no column of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from aegis_pipeline.common import metrics
from aegis_pipeline.common.logging import get_logger
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import kafka, postgres

log = get_logger(__name__)

TOMBSTONE_SUFFIX = ".tombstone"


def is_tombstone(event_type: str) -> bool:
    """Whether a row of this event type is sent as a tombstone (a null value)."""
    return event_type.endswith(TOMBSTONE_SUFFIX)


@dataclass(frozen=True)
class OutboxEvent:
    event_id: str
    event_type: str
    topic: str
    key: str
    envelope: dict[str, Any]

    @cached_property
    def payload(self) -> bytes:
        """The envelope as JSON, serialised once: the same bytes are stored in the outbox and sent."""
        return orjson.dumps(self.envelope)

    @property
    def value(self) -> bytes | None:
        """The Kafka value: the payload, or None (a tombstone) for a tombstone's row."""
        return None if is_tombstone(self.event_type) else self.payload


# One array per column: PostgreSQL takes the batch in one round trip; each envelope is stored as the bytes that
# are sent (bytea: no decoding to text in Python, no second UTF-8 check in PostgreSQL).
ENQUEUE_SQL = """
INSERT INTO event_outbox (event_id, event_type, topic, message_key, envelope)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[])
ON CONFLICT (event_id) DO NOTHING
"""

RELAY_LOCK_KEY = 0x61656769735F6F72  # "aegis_or": relays take turns (per-key order across relays, module docstring)
# Rows in `id` order up to the newest row older than the grace period ($2), not every row older than it:
# `created_at` is its transaction's start, so of two rows of one key the later one can be the older by that clock
# (its transaction started first, then waited for the first's lock). The newest such row is found by walking the
# primary key back from the end, past the recent rows only.
CLAIM_SQL = """
SELECT id, topic, message_key, envelope, event_type,
       convert_from(envelope, 'UTF8')::jsonb->'data'->>'collected_at' AS collected_at
FROM event_outbox
WHERE id <= (SELECT id FROM event_outbox WHERE created_at <= now() - make_interval(secs => $2)
             ORDER BY id DESC LIMIT 1)
ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""


async def enqueue(connection: asyncpg.Connection, events: Sequence[OutboxEvent]) -> None:
    """Add events inside the caller's open transaction."""
    if not events:
        return
    await connection.execute(
        ENQUEUE_SQL, [event.event_id for event in events], [event.event_type for event in events],
        [event.topic for event in events], [event.key for event in events],
        [event.payload for event in events],
    )


@dataclass(frozen=True)
class SentEvent:
    """What metrics need of a delivered event, without parsing it again."""

    event_type: str
    collected_at: str | None  # data.collected_at, for events about a collected record


SentCallback = Callable[[list[SentEvent]], None]


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, *, batch_size: int = 2000,
                 grace_seconds: float = 10.0, on_sent: SentCallback | None = None) -> None:
        self._pool = pool
        self._producer = producer
        self._batch_size = batch_size
        self._grace_seconds = grace_seconds
        self._on_sent = on_sent
        self.sent_total = 0  # events this relay delivered since it was made

    async def send_committed(self, events: Sequence[OutboxEvent]) -> int:
        """Send events whose transaction has just committed, then delete their rows.

        Raises like `relay_once` when the broker or the database fails: the rows stay, and the relay loop sends
        them once they are older than the grace period.
        """
        if not events:
            return 0
        with kafka.translate_errors("send events"):
            await kafka.send_all(self._producer,
                                 ((event.topic, event.key.encode("utf-8"), event.value) for event in events))
        with postgres.translate_errors("mark events sent"):
            async with self._pool.acquire() as connection:
                await connection.execute("DELETE FROM event_outbox WHERE event_id = ANY($1::uuid[])",
                                         [event.event_id for event in events])
        self._sent([SentEvent(event.event_type, event.envelope["data"].get("collected_at")) for event in events])
        return len(events)

    async def relay_once(self, *, include_recent: bool = True) -> int:
        """Send one batch of unsent events; returns how many were sent. `include_recent=False` leaves rows younger
        than the grace period to the writer that is sending them."""
        min_age_seconds = 0.0 if include_recent else self._grace_seconds
        with postgres.translate_errors("relay events"):
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", RELAY_LOCK_KEY)
                rows = await connection.fetch(CLAIM_SQL, self._batch_size, min_age_seconds)
                if not rows:
                    return 0
                with kafka.translate_errors("send events"):
                    await kafka.send_all(self._producer, (
                        (row["topic"], row["message_key"].encode("utf-8"),
                         None if is_tombstone(row["event_type"]) else row["envelope"])
                        for row in rows
                    ))
                await connection.execute("DELETE FROM event_outbox WHERE id = ANY($1::bigint[])",
                                         [row["id"] for row in rows])
        self._sent([SentEvent(row["event_type"], row["collected_at"]) for row in rows])
        return len(rows)

    def _sent(self, events: list[SentEvent]) -> None:
        self.sent_total += len(events)
        for event_type, count in Counter(event.event_type for event in events).items():
            metrics.outbox_events_sent_total.labels(event_type=event_type).inc(count)
        if self._on_sent is not None:
            self._on_sent(events)

    async def drain(self) -> int:
        """Relay until nothing is left unsent."""
        total = 0
        while sent := await self.relay_once():
            total += sent
        return total

    async def run(self, stop: asyncio.Event, *, idle_poll_seconds: float = 1.0) -> None:
        """Until `stop`, send what writers left behind (rows older than the grace period)."""
        while not stop.is_set():
            try:
                sent = await self.relay_once(include_recent=False)
            except Exception as error:  # a relay failure only delays events: they stay in the outbox
                log.warning("outbox_relay_failed", error=str(error), error_type=type(error).__name__)
                sent = 0
            if sent == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle_poll_seconds)


async def send_pending_events(settings: Settings) -> int:
    """Send every event waiting in the outbox to Kafka, with connections of its own; returns how many. For batch
    commands and tasks (cold path, sync), which may run with no hot path beside them to relay their events; when
    one runs, whichever claims a row first sends it."""
    pool = await postgres.create_pool(settings)
    producer = kafka.create_producer(settings)
    try:
        with kafka.translate_errors("start producer"):
            await producer.start()
        return await OutboxRelay(pool, producer).drain()
    finally:
        await producer.stop()
        await pool.close()
