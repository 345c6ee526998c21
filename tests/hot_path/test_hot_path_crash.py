"""kill -9 the hot path in the middle of a stream, restart it: every record is in PostgreSQL exactly once, and
every stored policy has its policy.validated event (a repeat allowed, with the same event id)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from aegis_pipeline.devstack.synthetic import make_records
from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import postgres

pytestmark = pytest.mark.integration

PIPELINE = str(Path(sys.executable).parent / "aegis-pipeline")
RECORDS = 6000


def hot_path_process(settings: Settings, *extra: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "KAFKA_TOPIC_RAW_POLICIES": settings.kafka_topic_raw_policies,
                   "KAFKA_TOPIC_POLICY_EVENTS": settings.kafka_topic_policy_events,
                   "KAFKA_TOPIC_DLQ": settings.kafka_topic_dlq, "METRICS_PORT": "0", "LOG_LEVEL": "WARNING",
                   "HOT_PATH_BATCH_SIZE": "200", "KAFKA_CONSUMER_GROUP": settings.kafka_consumer_group}
    return subprocess.Popen([PIPELINE, "hot-path", *extra], env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


async def count_rows(settings: Settings, source: str) -> int:
    async with postgres.connect(settings.postgres_dsn()) as connection:
        return await connection.fetchval("SELECT count(*) FROM policies WHERE source_system = $1", source)


async def stream(settings: Settings, source: str) -> None:
    """Publish the records in slices, as collectors do, while the hot path consumes."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for start in range(0, RECORDS, 500):
            for record in make_records(500, source=source, start=start):
                await producer.send(settings.kafka_topic_raw_policies, record.model_dump_json().encode(),
                                    key=record.collection_metadata.record_key.encode())
            await producer.flush()
            await asyncio.sleep(0.2)
    finally:
        await producer.stop()


async def read_events(settings: Settings) -> list[dict]:
    consumer = AIOKafkaConsumer(settings.kafka_topic_policy_events, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    events: list[dict] = []
    try:
        while batch := await consumer.getmany(timeout_ms=2000, max_records=5000):
            events.extend(json.loads(message.value) for messages in batch.values() for message in messages)
    finally:
        await consumer.stop()
    return events


async def test_kill_9_mid_stream_loses_nothing_and_stores_nothing_twice(
        own_topics: Callable[..., Awaitable[Settings]]) -> None:
    token = uuid.uuid4().hex[:8]
    settings = await own_topics(partitions=3, kafka_consumer_group=f"crash-{token}")
    source = f"crash_{token}"

    victim = hot_path_process(settings)
    streaming = asyncio.create_task(stream(settings, source))
    try:
        while await count_rows(settings, source) < 1000:  # well into the stream, but not at its end
            assert victim.poll() is None, victim.stderr.read() if victim.stderr else ""
            await asyncio.sleep(0.1)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        stored_at_kill = await count_rows(settings, source)
        await streaming
    finally:
        victim.kill()
    assert stored_at_kill < RECORDS

    survivor = hot_path_process(settings, "--drain")
    _, stderr = await asyncio.to_thread(survivor.communicate, timeout=300)
    assert survivor.returncode == 0, stderr

    async with postgres.connect(settings.postgres_dsn()) as connection:
        rows = await connection.fetch("SELECT id::text, external_id, version FROM policies WHERE source_system = $1",
                                      source)
    assert len(rows) == RECORDS  # every record once: nothing lost, nothing stored twice
    assert len({row["external_id"] for row in rows}) == RECORDS
    assert {row["version"] for row in rows} == {1}  # a redelivered record changed nothing

    events_by_policy: dict[str, set[str]] = defaultdict(set)
    for event in await read_events(settings):
        events_by_policy[event["data"]["policy_id"]].add(event["event_id"])
    assert set(events_by_policy) == {row["id"] for row in rows}  # every stored policy was announced
    assert all(len(ids) == 1 for ids in events_by_policy.values())  # a repeat carries the same event id
