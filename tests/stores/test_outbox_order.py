"""The outbox relay keeps each key's messages in the order they were committed, as a compacted topic needs (its
last message of a key is the one kept): relays take turns, a relay never sends a row past an older unsent one,
and a tombstone's row leaves as a null value. On the real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import kafka, outbox, postgres
from aegis_pipeline.stores.outbox import RELAY_LOCK_KEY, OutboxEvent, OutboxRelay

pytestmark = pytest.mark.integration


def message(topic: str, number: int, *, tombstone: bool = False) -> OutboxEvent:
    return OutboxEvent(event_id=str(uuid.uuid4()), event_type="test.order" + (".tombstone" if tombstone else ""),
                       topic=topic, key="policy-1", envelope={"number": number, "data": {}})


async def read_values(settings: Settings, topic: str, count: int) -> list[bytes | None]:
    consumer = kafka.create_reader(settings, topic)
    await consumer.start()
    values: list[bytes | None] = []
    try:
        while len(values) < count:
            batch = await consumer.getmany(timeout_ms=3000)
            assert batch, f"only {len(values)} of {count} messages arrived"
            values.extend(record.value for records in batch.values() for record in records)
    finally:
        await consumer.stop()
    return values


async def test_a_key_leaves_in_commit_order_even_when_its_later_row_looks_older(stack: Settings) -> None:
    topic = f"order-{uuid.uuid4().hex[:8]}"
    await kafka.ensure_topics(stack, [topic], partitions=1)
    first, second, gone = message(topic, 1), message(topic, 2), message(topic, 3, tombstone=True)
    async with postgres.connect(stack.postgres_dsn()) as connection:
        async with connection.transaction():
            await outbox.enqueue(connection, [first, second, gone])
        # `created_at` is the transaction's start: a later row of the key can be the older by that clock (its
        # transaction began first, then waited for the first's lock).
        await connection.execute("UPDATE event_outbox SET created_at = now() - interval '1 hour' "
                                 "WHERE event_id = ANY($1::uuid[])", [second.event_id, gone.event_id])
    pool = await postgres.create_pool(stack)
    producer = kafka.create_producer(stack)
    await producer.start()
    try:
        # The relay loop's pass, which leaves rows younger than the grace period to their writer: not the later
        # rows without the first.
        await OutboxRelay(pool, producer, grace_seconds=600).relay_once(include_recent=False)
    finally:
        await producer.stop()
        await pool.close()

    assert await read_values(stack, topic, 3) == [first.payload, second.payload, None]


async def test_relays_take_turns(stack: Settings) -> None:
    pool = await postgres.create_pool(stack)
    producer = kafka.create_producer(stack)
    await producer.start()
    try:
        async with postgres.connect(stack.postgres_dsn()) as holder, holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", RELAY_LOCK_KEY)  # another relay's batch
            relaying = asyncio.create_task(OutboxRelay(pool, producer).relay_once())
            await asyncio.sleep(0.5)
            assert not relaying.done()
        await asyncio.wait_for(relaying, timeout=10)  # its turn came when the other's transaction ended
    finally:
        await producer.stop()
        await pool.close()
