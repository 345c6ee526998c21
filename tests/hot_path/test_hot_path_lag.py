"""The consumer lag a hot path exports (`kafka_consumer_lag{topic,partition}`, KafkaConsumerLagHigh and the
autoscaler read it) on the real engines, while its storing is blocked: another connection holds a lock on the
`policies` table, so the batch's upsert waits in PostgreSQL, as it does behind a stuck database. The lag must
keep following the topic as records arrive, not freeze at its last value until a batch is done."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from aegis_pipeline.devstack.synthetic import make_records
from aegis_pipeline.domain.records import RawPolicyData
from aegis_pipeline.hot_path import service
from aegis_pipeline.hot_path.service import run_hot_path
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

pytestmark = pytest.mark.integration

PARTITIONS = 2


async def publish(settings: Settings, records: list[RawPolicyData]) -> None:
    """One record per produce request: the embedded broker reports the end of a partition as the first offset of
    its newest batch + 1, so records batched together would be counted short by the lag (on Kafka they are not)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(settings.kafka_topic_raw_policies, record.model_dump_json().encode(),
                                         key=record.collection_metadata.record_key.encode())
    finally:
        await producer.stop()


async def stored_count(settings: Settings, source: str) -> int:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        return await connection.fetchval("SELECT count(*) FROM policies WHERE source_system = $1", source)


def exported_lag(settings: Settings) -> float | None:
    """The sum over the raw topic's partitions of what this process exports; None before any is exported."""
    values = [REGISTRY.get_sample_value("kafka_consumer_lag",
                                        {"topic": settings.kafka_topic_raw_policies, "partition": str(partition)})
              for partition in range(PARTITIONS)]
    found = [value for value in values if value is not None]
    return sum(found) if found else None


async def eventually(condition: Callable[[], Awaitable[bool]], *, timeout_seconds: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while loop.time() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.1)
    return False


async def lag_is(settings: Settings, expected: float) -> bool:
    return exported_lag(settings) == expected


async def test_a_hot_path_stuck_on_its_store_keeps_exporting_a_growing_lag(
        own_topics: Callable[..., Awaitable[Settings]], monkeypatch: pytest.MonkeyPatch) -> None:
    # One record per batch: the hot path then holds exactly two records when it is stuck (the batch being stored,
    # and the next one it took meanwhile), so the lag it should export is known: everything else published.
    settings = await own_topics(partitions=PARTITIONS, hot_path_batch_size=1)
    monkeypatch.setattr(service, "LAG_REFRESH_SECONDS", 0.2)  # the same loop, sooner: the test stays short
    source = f"lag_{uuid.uuid4().hex[:6]}"
    records = make_records(45, source=source)
    held = 2

    stop = asyncio.Event()
    async with postgres.connect(settings.postgres_dsn()) as blocker:
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("LOCK TABLE policies IN EXCLUSIVE MODE")  # reads go on; the upsert waits for rollback
        locked = True
        hot_path = asyncio.create_task(run_hot_path(settings, stop, serve_ops=False, group_id=f"lag-{source}"))
        try:
            await publish(settings, records[:5])

            async def waits_on_the_lock() -> bool:
                return await blocker.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted "
                                              "AND relation = 'policies'::regclass") > 0

            assert await eventually(waits_on_the_lock, timeout_seconds=15), "the hot path never tried to store"
            assert await eventually(lambda: lag_is(settings, 5 - held)), exported_lag(settings)

            await publish(settings, records[5:25])
            assert await eventually(lambda: lag_is(settings, 25 - held)), exported_lag(settings)
            await publish(settings, records[25:])
            assert await eventually(lambda: lag_is(settings, 45 - held)), exported_lag(settings)
            assert await stored_count(settings, source) == 0  # stuck all along: nothing was stored

            await lock.rollback()  # the database answers again: the hot path catches up, and its lag says so
            locked = False
            assert await eventually(lambda: lag_is(settings, 0)), exported_lag(settings)
            assert await stored_count(settings, source) == 45
        finally:
            if locked:
                await lock.rollback()
            stop.set()
            summary = await asyncio.wait_for(hot_path, 30)
    assert summary.stored == 45
