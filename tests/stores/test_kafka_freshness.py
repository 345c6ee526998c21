"""The hot path's freshness as the broker tells it (`GroupFreshnessProbe`), on the real broker: per partition, how
long the oldest record the consumer group has not committed has waited (its broker timestamp, set here by the
producer), from the partition's beginning when the group never committed there; 0 when the group is caught up.
The group's members are not asked: no consumer of the group runs in these tests, as when the hot path is stopped."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from aegis_pipeline.common.errors import StoreUnavailableError
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores.kafka import GroupFreshnessProbe

pytestmark = pytest.mark.integration

PARTITIONS = 3
TOLERANCE_SECONDS = 5.0  # between stamping the records and reading their age


@pytest.fixture
async def raw_topic(own_topics: Callable[..., Awaitable[Settings]]) -> Settings:
    return await own_topics(partitions=PARTITIONS)


@pytest.fixture
async def probe(raw_topic: Settings) -> AsyncIterator[GroupFreshnessProbe]:
    probe = GroupFreshnessProbe(raw_topic, raw_topic.kafka_topic_raw_policies,
                                f"freshness-{uuid.uuid4().hex[:8]}")
    await probe.start()
    yield probe
    await probe.stop()


async def publish_aged(settings: Settings, ages: dict[int, list[float]]) -> None:
    """Records on the given partitions, in order, with broker timestamps that many seconds ago."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        now_ms = int(time.time() * 1000)
        for partition, seconds in ages.items():
            for age in seconds:
                await producer.send_and_wait(settings.kafka_topic_raw_policies, b"{}", key=b"k", partition=partition,
                                             timestamp_ms=now_ms - int(age * 1000))
    finally:
        await producer.stop()


async def commit(settings: Settings, group_id: str, offsets: dict[int, int]) -> None:
    """What the hot path does after storing a batch: the group's offsets committed (the next record to read)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = {partition: TopicPartition(settings.kafka_topic_raw_policies, partition) for partition in offsets}
        consumer.assign(list(partitions.values()))
        await consumer.commit({partitions[partition]: offset for partition, offset in offsets.items()})
    finally:
        await consumer.stop()


def assert_ages(actual: dict[int, float], expected: dict[int, float]) -> None:
    assert actual.keys() == expected.keys()
    for partition, age in expected.items():
        if age == 0:
            assert actual[partition] == 0, (partition, actual)
        else:
            assert age <= actual[partition] < age + TOLERANCE_SECONDS, (partition, actual)


async def test_an_empty_topic_is_caught_up(probe: GroupFreshnessProbe) -> None:
    assert await probe.uncommitted_ages() == dict.fromkeys(range(PARTITIONS), 0.0)
    assert await probe.oldest_uncommitted_age() == 0.0


async def test_a_group_that_never_committed_waits_since_each_partitions_first_record(
        raw_topic: Settings, probe: GroupFreshnessProbe) -> None:
    await publish_aged(raw_topic, {0: [600, 300, 10], 1: [120]})

    assert_ages(await probe.uncommitted_ages(), {0: 600, 1: 120, 2: 0})
    assert 600 <= await probe.oldest_uncommitted_age() < 600 + TOLERANCE_SECONDS


async def test_the_committed_offset_is_where_the_waiting_starts_and_the_end_is_caught_up(
        raw_topic: Settings, probe: GroupFreshnessProbe) -> None:
    await publish_aged(raw_topic, {0: [600, 300, 10], 1: [120], 2: [900, 60]})

    await commit(raw_topic, probe.group_id, {0: 1, 1: 1})  # partition 0: its first record done; 1: all; 2: none
    assert_ages(await probe.uncommitted_ages(), {0: 300, 1: 0, 2: 900})

    await commit(raw_topic, probe.group_id, {0: 2, 2: 1})
    assert_ages(await probe.uncommitted_ages(), {0: 10, 1: 0, 2: 60})
    assert 60 <= await probe.oldest_uncommitted_age() < 60 + TOLERANCE_SECONDS

    await commit(raw_topic, probe.group_id, {0: 3, 2: 2})
    assert await probe.uncommitted_ages() == dict.fromkeys(range(PARTITIONS), 0.0)

    await publish_aged(raw_topic, {1: [30]})  # a new record waits again: the same probe reads it, no reconnect
    assert_ages(await probe.uncommitted_ages(), {0: 0, 1: 30, 2: 0})


async def test_a_topic_the_broker_does_not_have_is_unavailable_and_not_created(stack: Settings) -> None:
    from aegis_pipeline.stores import kafka

    missing = f"freshness-missing-{uuid.uuid4().hex[:8]}"
    probe = GroupFreshnessProbe(stack, missing, "freshness-nobody")
    await probe.start()
    try:
        with pytest.raises(StoreUnavailableError, match="not on the broker"):
            await probe.oldest_uncommitted_age()
    finally:
        await probe.stop()
    assert missing not in await kafka.list_topics(stack)
