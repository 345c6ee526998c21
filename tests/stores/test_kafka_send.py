"""`stores.kafka.send_all` on the real broker: every message arrives once, on the partition a plain `send` of
its key uses, in the order given, also when a partition's messages fill more than one batch."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer

from aegis_pipeline.settings import Settings
from aegis_pipeline.stores import kafka

pytestmark = pytest.mark.integration


async def test_send_all_keeps_each_key_on_its_partition_in_order(stack: Settings) -> None:
    topic = f"send-all-{uuid.uuid4().hex[:8]}"
    await kafka.ensure_topics(stack, [topic], partitions=3)
    # 16 KB batches: 600 messages of 1 KB need several batches per partition.
    producer = kafka.create_producer(stack, max_batch_size=16_384)
    await producer.start()
    try:
        keys = [f"policy-{number % 40}".encode() for number in range(600)]  # 40 keys, 15 messages each
        messages = [(topic, key, f"{index:04d}".encode() + b"." * 1020) for index, key in enumerate(keys)]
        assert await kafka.send_all(producer, messages) == 600
        # A plain send of a known key, after: it must land on the partition send_all chose for that key.
        single = await (await producer.send(topic, b"after", key=b"policy-7"))
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap_servers, auto_offset_reset="earliest",
                                group_id=None)
    await consumer.start()
    received: list[tuple[int, bytes, bytes]] = []
    try:
        while len(received) < 601:
            batch = await consumer.getmany(timeout_ms=2000)
            assert batch, f"only {len(received)} of 601 messages arrived"
            received += [(record.partition, record.key, record.value) for records in batch.values()
                         for record in records]
    finally:
        await consumer.stop()

    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for partition, key, _ in received:
        partitions_of_key[key].add(partition)
    assert all(len(partitions) == 1 for partitions in partitions_of_key.values())
    assert partitions_of_key[b"policy-7"] == {single.partition}
    assert len({partition for partition, _, _ in received}) == 3

    sent_order = [value[:4] for _, _, value in messages]
    for partition in range(3):
        # Per partition, the values arrive in the order they were given (the 601st, "after", comes last).
        values = [value[:4] for got_partition, _, value in received if got_partition == partition]
        in_partition = [value for value in sent_order if value in set(values)]
        assert values[: len(in_partition)] == in_partition
