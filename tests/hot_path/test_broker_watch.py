"""The broker watch on the real broker and PostgreSQL. With several hot-path replicas starting at once: a first
start is recovered by none of them, a broker that lost its data by exactly one (each replica has its own
connections, as separate processes do). After a loss: events of all three types are announced again, each the
very event first sent (same id, same envelope), built from what PostgreSQL stores."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from aegis_pipeline.cold_path.run import run_cold_path
from aegis_pipeline.devstack.fault_scenarios import read_events
from aegis_pipeline.devstack.synthetic import make_record
from aegis_pipeline.domain.cleaning import normalize_record
from aegis_pipeline.domain.records import RawPolicyData
from aegis_pipeline.hot_path.broker_watch import BrokerWatch, sentinel_topic
from aegis_pipeline.hot_path.processor import policy_validated_event
from aegis_pipeline.hot_path.store import PolicyStore, StoredPolicy
from aegis_pipeline.schemas.events import EventType
from aegis_pipeline.schemas.migrations import upgrade_to_head
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import kafka, outbox, postgres
from aegis_pipeline.stores.catalogue import read_catalogue
from aegis_pipeline.stores.outbox import OutboxEvent, OutboxRelay
from aegis_pipeline.sync.run import run_sync

pytestmark = pytest.mark.integration

REPLICAS = 5


async def replicas_checking_at_once(settings: Settings) -> list[BrokerWatch]:
    """`REPLICAS` watches, each with its own pool, checking the sentinel at the same moment."""
    pools = [await postgres.create_pool(settings) for _ in range(REPLICAS)]
    try:
        # check_once uses the relay only through `run`: none is needed to check.
        watches = [BrokerWatch(settings, pool, relay=None) for pool in pools]  # type: ignore[arg-type]
        await asyncio.gather(*(watch.check_once() for watch in watches))
        return watches
    finally:
        for pool in pools:
            await pool.close()


@pytest.fixture
async def fresh_topics(stack: Settings) -> AsyncIterator[Settings]:
    """Settings naming topics the broker does not have yet; the policies already stored are not announced again
    (horizon 0), so a recovery costs nothing here and is seen in `recoveries`."""
    token = uuid.uuid4().hex[:8]
    yield stack.model_copy(update={
        "kafka_topic_raw_policies": f"watch-raw-{token}", "kafka_topic_policy_events": f"watch-events-{token}",
        "kafka_topic_dlq": f"watch-dlq-{token}", "event_reannounce_horizon_hours": 0.0,
    })


async def test_replicas_starting_together_take_a_first_start_for_what_it_is(fresh_topics: Settings) -> None:
    watches = await replicas_checking_at_once(fresh_topics)

    assert [watch.recoveries for watch in watches] == [0] * REPLICAS  # nobody took another's new row for a loss
    topics = await kafka.list_topics(fresh_topics)
    assert {sentinel_topic(fresh_topics), fresh_topics.kafka_topic_raw_policies,
            fresh_topics.kafka_topic_policy_events, fresh_topics.kafka_topic_dlq} <= set(topics)
    async with postgres.connect(fresh_topics.postgres_dsn()) as connection:
        row = await connection.fetchrow("SELECT recoveries FROM broker_sentinels WHERE sentinel_topic = $1",
                                        sentinel_topic(fresh_topics))
    assert row is not None and row["recoveries"] == 0


async def test_a_lost_broker_is_recovered_by_one_replica_only(fresh_topics: Settings) -> None:
    sentinel = sentinel_topic(fresh_topics)
    async with postgres.connect(fresh_topics.postgres_dsn()) as connection:  # created once, then lost with the broker
        await connection.execute("INSERT INTO broker_sentinels (sentinel_topic) VALUES ($1)", sentinel)

    watches = await replicas_checking_at_once(fresh_topics)

    assert sorted(watch.recoveries for watch in watches) == [0] * (REPLICAS - 1) + [1]
    assert sentinel in await kafka.list_topics(fresh_topics)
    async with postgres.connect(fresh_topics.postgres_dsn()) as connection:
        assert await connection.fetchval("SELECT recoveries FROM broker_sentinels WHERE sentinel_topic = $1",
                                         sentinel) == 1


# --- every event type announced again ------------------------------------------------------------------------

SOURCE = "watch_test"
POLICIES = 6  # plus one copy of the first, which the cold path rejects as its duplicate (DP_2003, with a reason)
EVENT_TYPES = [event_type.value for event_type in EventType if event_type is not EventType.POLICY_STATE]  # events


@dataclass(frozen=True)
class AnnouncedTwice:
    first: dict[str, dict[str, Any]]  # event id -> envelope, as first sent (read back from the first topic)
    again: dict[str, dict[str, Any]]  # event id -> envelope, as announced after the loss (from the new topic)
    announced: int                    # what the recovery wrote to the outbox
    counted: dict[str, float]         # events_reannounced_total{event_type} added by the recovery
    catalogue_first: dict[str, dict[str, Any]]  # the catalogue topic as first written: policy id -> state
    catalogue_again: dict[str, dict[str, Any]]  # the catalogue topic as written again after the loss


def reannounced_total(event_type: str) -> float:
    return REGISTRY.get_sample_value("events_reannounced_total", {"event_type": event_type}) or 0.0


def copy_of(record: RawPolicyData, external_id: str) -> RawPolicyData:
    metadata = record.collection_metadata.model_copy(update={"external_id": external_id})
    return record.model_copy(update={"collection_metadata": metadata})


async def store_policies(settings: Settings) -> None:
    """The policies, each with its policy.validated in the outbox, as the hot path stores them."""
    records = [make_record(index, source=SOURCE) for index in range(POLICIES)]
    records.append(copy_of(records[0], "watch-copy"))

    def make_events(stored: list[StoredPolicy]) -> list[OutboxEvent]:
        validated_at = datetime.now(UTC)
        return [policy_validated_event(item.policy_id, item.version, functools.partial(getattr, item.policy),
                                       validated_at, producer=f"{settings.service_name}/{settings.service_version}",
                                       topic=settings.kafka_topic_policy_events) for item in stored]

    pool = await postgres.create_pool(settings)
    try:
        await PolicyStore(pool).store_batch([normalize_record(record) for record in records], make_events)
    finally:
        await pool.close()


@pytest.fixture(scope="module")
async def announced_twice(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AnnouncedTwice]:
    """A database of its own (so that the horizon holds only this test's facts) with policies, their scorings
    and two sync runs recorded under one run id (an Airflow retry), every event sent; then a broker loss, the
    recovery, and what it announced sent."""
    suffix = uuid.uuid4().hex[:8]
    server_dsn = stack.postgres_dsn(database="postgres")
    database = f"watch_{suffix}"
    await postgres.ensure_database(server_dsn, database)
    settings = stack.model_copy(update={
        "postgres_db": database, "graph_uri": str(Path(tmp_path_factory.mktemp("watch")) / "graph.lbug"),
        "event_reannounce_horizon_hours": 1.0,
    })
    try:
        await asyncio.to_thread(upgrade_to_head, settings)
        before_loss = await kafka.with_own_topics(settings, f"watch-first-{suffix}", partitions=3)
        await store_policies(before_loss)
        await run_cold_path(before_loss)
        for _ in range(2):  # the task and its retry: one run id, two recorded runs, two events
            await run_sync(before_loss, targets=["graph"], run_id=f"airflow:watch-{suffix}")
        await outbox.send_pending_events(before_loss)
        first = {event["event_id"]: event for event in await read_events(before_loss)}
        catalogue_first = (await read_catalogue(before_loss)).policies

        # The broker restarted empty: none of the topics is there, the sentinel's row is. (New topic names stand
        # for the same topics on the emptied broker: what is read back from them is what was sent after the loss.)
        after_loss = await kafka.with_own_topics(settings, f"watch-again-{suffix}", partitions=3)
        async with postgres.connect(after_loss.postgres_dsn()) as connection:
            await connection.execute("INSERT INTO broker_sentinels (sentinel_topic) VALUES ($1)",
                                     sentinel_topic(after_loss))
        counted_before = {event_type: reannounced_total(event_type) for event_type in EventType}
        pool = await postgres.create_pool(after_loss)
        producer = kafka.create_producer(after_loss)
        await producer.start()
        try:
            relay = OutboxRelay(pool, producer)
            watch = BrokerWatch(after_loss, pool, relay)
            announced = await watch.check_once()
            assert watch.recoveries == 1
            await relay.drain()
        finally:
            await producer.stop()
            await pool.close()
        counted = {event_type.value: reannounced_total(event_type) - counted_before[event_type]
                   for event_type in EventType if reannounced_total(event_type) > counted_before[event_type]}
        again = {event["event_id"]: event for event in await read_events(after_loss)}
        yield AnnouncedTwice(first=first, again=again, announced=announced, counted=counted,
                             catalogue_first=catalogue_first,
                             catalogue_again=(await read_catalogue(after_loss)).policies)
    finally:
        await postgres.drop_database(server_dsn, database)


def by_type(events: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = {event_type: set() for event_type in EVENT_TYPES}
    for event_id, event in events.items():
        ids[event["event_type"]].add(event_id)
    return ids


async def test_after_a_loss_every_event_type_is_announced_again_with_the_ids_first_sent(
        announced_twice: AnnouncedTwice) -> None:
    first, again = by_type(announced_twice.first), by_type(announced_twice.again)

    # What was sent first: a version of each policy, a scoring of each (one rejected as a duplicate, with its
    # reason), and both recorded runs of the retried sync (their ids differ: they finished at different times).
    assert {event_type: len(ids) for event_type, ids in first.items() if ids} == {
        "policy.validated": POLICIES + 1, "data.quality_updated": POLICIES + 1, "data.sync_completed": 2}
    scorings = [event["data"] for event in announced_twice.first.values()
                if event["event_type"] == "data.quality_updated"]
    assert Counter(data["status"] for data in scorings) == {"active": POLICIES, "rejected": 1}
    assert [data["reasons"][0][:7] for data in scorings if data["status"] == "rejected"] == ["DP_2003"]

    assert again == first  # every event again, with the id it was first sent with, and nothing else
    catalogue = announced_twice.catalogue_first
    assert announced_twice.announced == sum(len(ids) for ids in first.values()) + len(catalogue)
    assert announced_twice.counted == {**{event_type: len(ids) for event_type, ids in first.items() if ids},
                                       "policy.state": len(catalogue)}


async def test_after_a_loss_the_catalogue_topic_holds_every_active_policy_again(
        announced_twice: AnnouncedTwice) -> None:
    active = {event["data"]["policy_id"] for event in announced_twice.first.values()
              if event["event_type"] == "data.quality_updated" and event["data"]["status"] == "active"}
    assert set(announced_twice.catalogue_first) == active and len(active) == POLICIES
    # The same documents (content, version, score, time of the decision), rebuilt from the stored rows.
    assert announced_twice.catalogue_again == announced_twice.catalogue_first


async def test_an_event_rebuilt_from_the_stored_row_is_the_event_first_sent(announced_twice: AnnouncedTwice) -> None:
    # data.quality_updated and data.sync_completed: the whole envelope, occurred_at included (the fact's stored
    # time, not the send's), and producer (the same release sent both here).
    for event_id, event in announced_twice.first.items():
        if event["event_type"] != "policy.validated":
            assert announced_twice.again[event_id] == event, event["event_type"]
