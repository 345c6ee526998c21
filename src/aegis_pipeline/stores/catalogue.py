"""The catalogue for late consumers: the compacted `policy-state` topic (KAFKA_TOPIC_POLICY_STATE), one key per
policy (its id), whose last value is the policy's current state (`policy.state`, schemas/policy_state.py) while it
is active, and a tombstone (null value) once it left the catalogue. docs/events.md, "The catalogue topic", is
the consumers' page.

Writing: `policy_state_events` builds, for policies whose status a transaction changes, the outbox events that
announce it (a document for each policy that is active after the change, a tombstone for each that is not). The
writer enqueues them in the transaction that changes the status (`outbox.enqueue`), so a state change is never
lost (a crash may send one twice, which changes nothing on a compacted topic). Writers: the cold path's decisions
(`cold_path/store.py`, `ClaimedBatch.write`), the archive sweep (`cold_path/lifecycle.py`) and the broker watch,
which writes the catalogue again after a broker lost it (`hot_path/broker_watch.py`).

Reading: `CatalogueReader.load` reads the topic from its beginning to the end offsets it found at the start and
keeps the last value of each key: the active policies, and the offsets to follow on from (`changes`, `follow`),
with no gap and no overlap between the two.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from aegis_pipeline.common.errors import StoreUnavailableError
from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS, PolicyContent, content_from_columns
from aegis_pipeline.schemas.events import EventType, validate_event
from aegis_pipeline.schemas.policy_state import (
    LeftCatalogue,
    PolicyState,
    policy_state_envelope,
    tombstone_envelope,
)
from aegis_pipeline.settings import CoreSettings, Settings
from aegis_pipeline.stores import kafka, outbox, postgres
from aegis_pipeline.stores.outbox import TOMBSTONE_SUFFIX, OutboxEvent

STATE_EVENT_TYPE = EventType.POLICY_STATE.value
TOMBSTONE_EVENT_TYPE = STATE_EVENT_TYPE + TOMBSTONE_SUFFIX  # the outbox rows that the relay sends as a null value

__all__ = ["Catalogue", "CatalogueReader", "LeftCatalogue", "PolicyState", "StateChange", "announce_catalogue",
           "policy_state_events", "read_catalogue"]

ANNOUNCE_BATCH_SIZE = 1000
FIRST_PAGE = "00000000-0000-0000-0000-000000000000"  # below every uuid: the first keyset page starts after it
# Every policy in the catalogue, as the cold path stored its decision (`cold_path/store.py`): active, its current
# version scored (an active policy changed by a writer that kept its status waits for its new score), its content
# then, its total score and the time of the decision. Keyset pages by id. FOR SHARE: a decision being written waits
# for the page's commit or is waited for, so its own state message never lands before the older one written here.
ACTIVE_POLICIES_SQL = f"""
SELECT id::text AS id, {", ".join(POLICY_CONTENT_COLUMNS)}, version, quality_score, scored_at
FROM policies
WHERE status = 'active' AND scored_version = version AND quality_score IS NOT NULL AND scored_at IS NOT NULL
  AND id > $1::uuid
ORDER BY id LIMIT $2
FOR SHARE
"""  # noqa: S608 (a constant column list, no input)


# --- writing ------------------------------------------------------------------------------------------------


def policy_state_events(settings: CoreSettings,
                        policies: Sequence[PolicyState | LeftCatalogue]) -> list[OutboxEvent]:
    """The catalogue topic's outbox events for `policies`, in their order: the `policy.state` document of each
    `PolicyState` (an active policy), a tombstone for each `LeftCatalogue` (a policy that is not active after the
    change: rejected, archived). Enqueue them in the transaction that stores the change.

    A tombstone for a policy that was never in the catalogue is harmless (a consumer deletes a key it does not
    have), so a writer need not know what the topic holds: it announces the status it stores."""
    producer = f"{settings.service_name}/{settings.service_version}"
    topic = settings.kafka_topic_policy_state
    events = []
    for policy in policies:
        if isinstance(policy, PolicyState):
            envelope, event_type = policy_state_envelope(policy, producer=producer), STATE_EVENT_TYPE
        else:
            envelope, event_type = tombstone_envelope(policy, producer=producer), TOMBSTONE_EVENT_TYPE
        events.append(OutboxEvent(event_id=envelope["event_id"], event_type=event_type, topic=topic,
                                  key=policy.policy_id, envelope=envelope))
    return events


async def announce_catalogue(pool: asyncpg.Pool, settings: Settings) -> int:
    """Write the state of every policy in the catalogue to the outbox again, one transaction per page; returns
    how many. Each document is the one its decision first sent (same function, same stored values, same id), but
    for a policy rescored since without a change (nothing announced then): its `updated_at` is the rescore's.

    For a topic that lost its messages (the broker watch, after a broker loss) and for a topic that never had them
    (`aegis-pipeline catalogue publish`, once, when the catalogue topic is first deployed). A policy whose content
    changed after it became active is left out: the topic's copy of its older version cannot be rebuilt (PostgreSQL
    keeps the current content only), and its next decision announces it."""
    after = FIRST_PAGE
    total = 0
    while True:
        with postgres.translate_errors("announce the catalogue"):
            async with pool.acquire() as connection, connection.transaction():
                rows = await connection.fetch(ACTIVE_POLICIES_SQL, after, ANNOUNCE_BATCH_SIZE)
                if not rows:
                    return total
                await outbox.enqueue(connection, policy_state_events(settings, [
                    PolicyState(policy_id=row["id"], version=row["version"],
                                policy=PolicyContent(**content_from_columns(row)),
                                quality_score=row["quality_score"], decided_at=row["scored_at"])
                    for row in rows]))
        total += len(rows)
        after = rows[-1]["id"]


# --- reading ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateChange:
    """One message of the catalogue topic, applied: `state` is the policy's `policy.state` data, None when it left
    the catalogue (a tombstone)."""

    policy_id: str
    state: dict[str, Any] | None
    partition: int
    offset: int


@dataclass
class Catalogue:
    """The active policies as the topic says, and where the reading stopped.

    `policies`: policy id -> the `data` of its latest `policy.state` document. `offsets`: partition -> offset of
    the next message to read; every message before it is applied, none after it. Store both together (one
    transaction of your own) to resume later with `CatalogueReader.resume`."""

    topic: str
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)

    def apply(self, record: ConsumerRecord, *, validate: bool = False) -> StateChange | None:
        """Apply one message: a document replaces the key's state, a tombstone deletes it. A document this code
        cannot read (another major version or event type: a tolerant reader skips it) changes nothing and
        returns None; the offset moves on either way. `validate`: check each document against its schema first
        (`EventSchemaError` when it breaks it)."""
        self.offsets[record.partition] = record.offset + 1
        policy_id = record.key.decode("utf-8")
        if record.value is None:
            self.policies.pop(policy_id, None)
            return StateChange(policy_id, None, record.partition, record.offset)
        document = orjson.loads(record.value)
        if document.get("event_type") != STATE_EVENT_TYPE or not str(document.get("schema_version")).startswith("1."):
            return None
        if validate:
            validate_event(document)
        self.policies[policy_id] = document["data"]
        return StateChange(policy_id, document["data"], record.partition, record.offset)

    def versions(self) -> dict[str, int]:
        """policy id -> version: what a consumer compares with its own copy."""
        return {policy_id: state["version"] for policy_id, state in self.policies.items()}


class CatalogueReader:
    """A consumer of no group on the catalogue topic: `load` the catalogue, then `changes` (or `follow`) from where
    it stopped. Use as `async with CatalogueReader(settings) as reader: ...`.

    It never resets its offsets by itself: when the broker no longer has the messages after them (it lost the topic,
    or they were compacted or deleted while a stored catalogue waited), reading raises, and the catalogue must be
    loaded again from the beginning (`load`)."""

    def __init__(self, settings: Settings, *, topic: str | None = None, load_timeout_seconds: float = 120.0,
                 validate: bool = False) -> None:
        self._settings = settings
        self.topic = topic or settings.kafka_topic_policy_state
        self._load_timeout_seconds = load_timeout_seconds
        self._validate = validate  # check every document against policy.state.v1.json (`Catalogue.apply`)
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []

    async def __aenter__(self) -> CatalogueReader:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        """Find the topic's partitions and start the consumer. Raises `StoreUnavailableError` when the broker does
        not answer or does not have the topic."""
        self._partitions = await _partitions(self._settings, self.topic)
        consumer = kafka.create_reader(self._settings, auto_offset_reset="none", isolation_level="read_committed",
                                       fetch_max_wait_ms=kafka.FETCH_MAX_WAIT_MS)
        with kafka.translate_errors("start catalogue reader"):
            await consumer.start()
        consumer.assign(self._partitions)
        self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    @property
    def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the catalogue reader is not started")
        return self._consumer

    async def load(self) -> Catalogue:
        """Read the topic from its beginning to the end offsets found now, keeping the last value of each key:
        the active policies. Messages past those ends that arrive in the same fetches are applied too (the
        offsets say so). Raises `StoreUnavailableError` when the ends are not reached within the timeout."""
        consumer = self._started
        catalogue = Catalogue(self.topic)
        with kafka.translate_errors("load the catalogue"):
            ends = await consumer.end_offsets(self._partitions)
            await consumer.seek_to_beginning(*self._partitions)
            for partition in self._partitions:
                catalogue.offsets[partition.partition] = await consumer.position(partition)
            deadline = time.monotonic() + self._load_timeout_seconds
            while behind := [partition for partition in self._partitions
                             if catalogue.offsets[partition.partition] < ends[partition]]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreUnavailableError(
                        f"catalogue topic {self.topic} not read to its end within {self._load_timeout_seconds} s",
                        store="kafka")
                fetched = await consumer.getmany(*behind, timeout_ms=int(min(remaining, 1.0) * 1000))
                for records in fetched.values():
                    for record in records:
                        catalogue.apply(record, validate=self._validate)
                for partition in behind:  # past control records and compacted gaps
                    catalogue.offsets[partition.partition] = await consumer.position(partition)
        return catalogue

    def resume(self, catalogue: Catalogue) -> None:
        """Go on from a catalogue loaded earlier (and stored with its offsets): the next `changes` read from there."""
        consumer = self._started
        for partition in self._partitions:
            consumer.seek(partition, catalogue.offsets.get(partition.partition, 0))

    async def changes(self, catalogue: Catalogue, *, timeout_seconds: float = 1.0) -> list[StateChange]:
        """The messages that arrived since, applied to `catalogue` in order (per partition); an empty list when
        none arrived within the timeout."""
        with kafka.translate_errors("read catalogue changes"):
            fetched = await self._started.getmany(timeout_ms=int(timeout_seconds * 1000))
        applied = []
        for partition in sorted(fetched, key=lambda partition: partition.partition):
            for record in fetched[partition]:
                change = catalogue.apply(record, validate=self._validate)
                if change is not None:
                    applied.append(change)
        return applied

    async def follow(self, catalogue: Catalogue) -> AsyncIterator[StateChange]:
        """Every change from now on, applied to `catalogue` before it is yielded; runs until the caller stops."""
        while True:
            for change in await self.changes(catalogue):
                yield change


async def read_catalogue(settings: Settings, *, topic: str | None = None) -> Catalogue:
    """The catalogue as the topic holds it now (`CatalogueReader.load` with a reader of its own)."""
    async with CatalogueReader(settings, topic=topic) as reader:
        return await reader.load()


async def _partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    """The topic's partitions, from the metadata of every topic: asking for the topic by name would create it on a
    broker that creates topics on demand (Tansu does), without its compaction."""
    admin = kafka.create_admin(settings)
    with kafka.translate_errors("describe the catalogue topic"):
        await admin.start()
        try:
            described = [found for found in await admin.describe_topics() if found["topic"] == topic]
        finally:
            await admin.close()
    if not described or not described[0]["partitions"]:
        raise StoreUnavailableError(f"kafka topic {topic} is not on the broker", store="kafka")
    return sorted(TopicPartition(topic, partition["partition"]) for partition in described[0]["partitions"])
